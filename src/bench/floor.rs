//! `chatpulse-bench floor`: what one small loopback `write(2)` costs on this
//! machine, measured the way the fan-out benchmark measures the node. A writer
//! thread sends a frame-sized message round-robin over N loopback sockets at a
//! fixed rate; reader tasks drain them through the same reactor as the overlay
//! clients. The writer's own CPU time per 1000 writes is the floor under any
//! server that sends one frame per write: on loopback the kernel bills the
//! sender for the receiver's TCP processing and wake-up too.

use std::io::Write as _;
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use smol::io::AsyncReadExt;

use super::stats::Pacer;
use super::{MAX_DURATION, MAX_SOCKETS};

/// Same size as a typical overlay update frame (WebSocket header + JSON).
pub const FRAME_BYTES: usize = 112;
/// The writer wakes every millisecond, as the node does under a 1 ms vote feed.
const TICK: Duration = Duration::from_millis(1);

#[derive(Debug, Clone, Default)]
pub struct FloorReport {
    pub sockets: usize,
    pub writes: u64,
    pub bytes_written: u64,
    pub bytes_read: u64,
    pub duration_s: f64,
    pub writer_cpu_s: f64,
}

impl FloorReport {
    pub fn cpu_per_1000_writes(&self) -> f64 {
        self.writer_cpu_s * 1000.0 / self.writes.max(1) as f64
    }

    pub fn table(&self) -> String {
        format!(
            "write floor: {} writes of {FRAME_BYTES} B over {} loopback sockets in {:.1} s ({:.0}/s)\n\
             writer cpu   {:.3} s ({:.4} s per 1000 writes)\nbytes written {}\nbytes read   {}\n",
            self.writes,
            self.sockets,
            self.duration_s,
            self.writes as f64 / self.duration_s.max(1e-9),
            self.writer_cpu_s,
            self.cpu_per_1000_writes(),
            self.bytes_written,
            self.bytes_read,
        )
    }

    pub fn json(&self) -> String {
        format!(
            "{{\"sockets\":{},\"writes\":{},\"bytes_written\":{},\"bytes_read\":{},\"duration_s\":{:.3},\"writer_cpu_s\":{:.3},\"cpu_s_per_1000_writes\":{:.5}}}",
            self.sockets,
            self.writes,
            self.bytes_written,
            self.bytes_read,
            self.duration_s,
            self.writer_cpu_s,
            self.cpu_per_1000_writes()
        )
    }
}

/// CPU seconds (user + system) of the calling thread.
fn thread_cpu() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// Writes `rate` frames per second for `duration` over `sockets` connections.
pub async fn run(sockets: usize, rate: f64, duration: Duration) -> Result<FloorReport, String> {
    if sockets == 0 || sockets > MAX_SOCKETS || duration > MAX_DURATION {
        return Err(format!(
            "refusing: 1 ≤ sockets ≤ {MAX_SOCKETS}, duration ≤ {MAX_DURATION:?}"
        ));
    }
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let bytes_read = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::with_capacity(sockets);
    let mut accepted = Vec::with_capacity(sockets);
    for _ in 0..sockets {
        let mut client = smol::net::TcpStream::connect(addr)
            .await
            .map_err(|e| e.to_string())?;
        let (server, _) = listener.accept().map_err(|e| e.to_string())?;
        server.set_nodelay(true).map_err(|e| e.to_string())?;
        server.set_nonblocking(true).map_err(|e| e.to_string())?;
        accepted.push(server);
        let counted = Arc::clone(&bytes_read);
        readers.push(smol::spawn(async move {
            let mut buf = vec![0u8; 512];
            while let Ok(n @ 1..) = client.read(&mut buf).await {
                counted.fetch_add(n as u64, Ordering::Relaxed);
            }
        }));
    }
    let writer = std::thread::spawn(move || write_loop(accepted, rate, duration));
    let (writes, bytes_written, cpu_s, elapsed) = smol::unblock(move || writer.join())
        .await
        .map_err(|_| "writer thread panicked".to_string())??;
    smol::Timer::after(Duration::from_millis(200)).await;
    drop(readers);
    Ok(FloorReport {
        sockets,
        writes,
        bytes_written,
        bytes_read: bytes_read.load(Ordering::Relaxed),
        duration_s: elapsed.as_secs_f64(),
        writer_cpu_s: cpu_s,
    })
}

/// The writer: paced like the node's fan-out, one `write` per frame.
fn write_loop(
    mut sockets: Vec<TcpStream>,
    rate: f64,
    duration: Duration,
) -> Result<(u64, u64, f64, Duration), String> {
    let frame = [b'x'; FRAME_BYTES];
    let pacer = Pacer::new(rate);
    let cpu0 = thread_cpu().ok_or("cannot read /proc/thread-self/stat")?;
    let started = Instant::now();
    let mut next_tick = started;
    let (mut sent, mut written) = (0u64, 0u64);
    while started.elapsed() < duration {
        let due = pacer.due(started.elapsed().as_micros() as u64);
        while sent < due {
            let i = (sent % sockets.len() as u64) as usize;
            // A full socket buffer is the reader's problem; the floor counts the attempt.
            written += sockets[i].write(&frame).unwrap_or(0) as u64;
            sent += 1;
        }
        next_tick += TICK;
        if let Some(wait) = next_tick.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    let cpu = thread_cpu().ok_or("cannot read /proc/thread-self/stat")? - cpu0;
    Ok((sent, written, cpu, started.elapsed()))
}
