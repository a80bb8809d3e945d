//! The load tool's overlay clients: N real WebSockets spread over the
//! broadcasters, each timing every frame that carries a new vote (its `ts` is
//! the server time the newest vote was accepted).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_tungstenite::tungstenite::Message;
use async_tungstenite::tungstenite::protocol::WebSocketConfig;
use futures_util::StreamExt;
use smol::net::TcpStream;

use super::stats::{Pacer, json_u64};

/// Shared by every client task.
#[derive(Default)]
pub struct ClientStats {
    pub recording: AtomicBool,
    pub frames: AtomicU64,
    pub closed: AtomicU64,
    pub connect_errors: AtomicU64,
    /// vote → overlay latency samples, microseconds.
    pub latencies: Mutex<Vec<u64>>,
}

fn now_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Opens `n` overlays round-robin over `tokens`, at most `rate` per second.
/// Returns the client tasks and how long opening took.
pub async fn open(
    addr: SocketAddr,
    tokens: &[String],
    n: usize,
    rate: f64,
    stats: &Arc<ClientStats>,
) -> (Vec<smol::Task<()>>, Duration) {
    let started = Instant::now();
    let pacer = Pacer::new(rate);
    let mut tasks = Vec::with_capacity(n);
    let (ready_tx, ready_rx) = smol::channel::unbounded::<bool>();
    for i in 0..n {
        while pacer.due(started.elapsed().as_micros() as u64) <= i as u64 {
            smol::Timer::after(Duration::from_millis(1)).await;
        }
        let url = format!("ws://{addr}/ws/overlay/{}", tokens[i % tokens.len()]);
        tasks.push(smol::spawn(client(
            url,
            addr,
            Arc::clone(stats),
            ready_tx.clone(),
        )));
    }
    for _ in 0..n {
        if ready_rx.recv().await.is_err() {
            break;
        }
    }
    (tasks, started.elapsed())
}

async fn client(
    url: String,
    addr: SocketAddr,
    stats: Arc<ClientStats>,
    ready: smol::channel::Sender<bool>,
) {
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    let ws = match TcpStream::connect(addr).await {
        Ok(tcp) => async_tungstenite::client_async_with_config(url, tcp, Some(config))
            .await
            .ok(),
        Err(_) => None,
    };
    let Some((mut ws, _)) = ws else {
        stats.connect_errors.fetch_add(1, Ordering::Relaxed);
        let _ = ready.send(false).await;
        return;
    };
    let _ = ready.send(true).await;
    drop(ready);
    let mut last_ts = 0u64;
    while let Some(msg) = ws.next().await {
        let Ok(Message::Text(text)) = msg else {
            if matches!(msg, Ok(Message::Close(_)) | Err(_)) {
                break;
            }
            continue;
        };
        let Some(ts) = json_u64(&text, "ts") else {
            continue;
        };
        let recording = stats.recording.load(Ordering::Relaxed);
        if recording {
            stats.frames.fetch_add(1, Ordering::Relaxed);
        }
        // Only frames carrying a newer vote are timed (1 s refreshes repeat the ts).
        if ts > last_ts && last_ts != 0 && recording {
            let latency = now_micros().saturating_sub(ts * 1000);
            stats
                .latencies
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(latency);
        }
        last_ts = last_ts.max(ts);
    }
    stats.closed.fetch_add(1, Ordering::Relaxed);
}
