//! The load tool's chat feed: a minimal IRC server the ChatPulse node under
//! test connects to as its chat source (`[twitch] source = "irc"`), so votes
//! travel the real ingestion path. It answers the login (CAP/NICK/JOIN) and
//! then writes PRIVMSG lines at a fixed rate.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use smol::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use smol::net::{TcpListener, TcpStream};

use super::stats::Pacer;

/// Write granularity: 1 ms keeps bursts small (5 ms batches of ~100 frames made
/// the measured p99 mostly queueing in the tool itself) and syscalls bounded.
const TICK: Duration = Duration::from_millis(1);

pub struct Feed {
    pub addr: std::net::SocketAddr,
    /// Chatter names and message ids start with this (two feeds never clash).
    prefix: String,
    /// Votes sent so far: ids and chatters never repeat across calls.
    next: std::sync::atomic::AtomicU64,
    joined: Arc<Mutex<HashSet<String>>>,
    conn: Arc<Mutex<Option<TcpStream>>>,
}

impl Feed {
    pub async fn start() -> std::io::Result<Feed> {
        Feed::start_on("127.0.0.1".parse().expect("an IP"), "u").await
    }

    /// A feed listening on `ip` whose chatters are named `{prefix}{n}`.
    pub async fn start_on(ip: std::net::IpAddr, prefix: &str) -> std::io::Result<Feed> {
        let listener = TcpListener::bind((ip, 0)).await?;
        let addr = listener.local_addr()?;
        let joined = Arc::new(Mutex::new(HashSet::new()));
        let conn = Arc::new(Mutex::new(None));
        let (j, c) = (Arc::clone(&joined), Arc::clone(&conn));
        smol::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                *c.lock().unwrap_or_else(|e| e.into_inner()) = Some(stream.clone());
                smol::spawn(login(stream, Arc::clone(&j))).detach();
            }
        })
        .detach();
        Ok(Feed {
            addr,
            prefix: prefix.to_string(),
            next: Default::default(),
            joined,
            conn,
        })
    }

    pub fn joined(&self) -> usize {
        self.joined.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Sends votes round-robin over `channels` at `rate`/s for `duration`;
    /// every vote comes from a new chatter (no debounce). Returns votes sent.
    pub async fn send_votes(&self, channels: &[String], rate: f64, duration: Duration) -> u64 {
        let Some(mut stream) = self.conn.lock().unwrap_or_else(|e| e.into_inner()).clone() else {
            return 0;
        };
        let pacer = Pacer::new(rate);
        let started = Instant::now();
        let mut sent: u64 = 0;
        let p = &self.prefix;
        let base = self.next.load(std::sync::atomic::Ordering::SeqCst);
        let mut batch = String::new();
        while started.elapsed() < duration {
            smol::Timer::after(TICK).await;
            let due = pacer.due(started.elapsed().as_micros() as u64);
            batch.clear();
            while sent < due {
                let chan = &channels[(sent % channels.len().max(1) as u64) as usize];
                let text = if sent.is_multiple_of(3) { "no" } else { "yes" };
                let now = crate::app::now_ms();
                let n = base + sent;
                batch.push_str(&format!(
                    "@id={p}{n};room-id=1;tmi-sent-ts={now};user-id={p}{n} :{p}{n}!{p}{n}@u.tmi.twitch.tv PRIVMSG #{chan} :{text}\r\n"
                ));
                sent += 1;
            }
            if !batch.is_empty() && stream.write_all(batch.as_bytes()).await.is_err() {
                break;
            }
        }
        self.next
            .fetch_add(sent, std::sync::atomic::Ordering::SeqCst);
        sent
    }
}

/// Answers a client's login and records the channels it joins.
async fn login(stream: TcpStream, joined: Arc<Mutex<HashSet<String>>>) {
    let mut writer = stream.clone();
    let mut lines = BufReader::new(stream).lines();
    while let Some(Ok(line)) = smol::stream::StreamExt::next(&mut lines).await {
        let reply = if line.starts_with("CAP REQ") {
            let caps = line.split_once(':').map_or("", |(_, c)| c);
            format!(":tmi.twitch.tv CAP * ACK :{caps}\r\n")
        } else if let Some(nick) = line.strip_prefix("NICK ") {
            format!(":tmi.twitch.tv 001 {nick} :Welcome, GLHF!\r\n:tmi.twitch.tv 376 {nick} :>\r\n")
        } else if let Some(chans) = line.strip_prefix("JOIN ") {
            let mut set = joined.lock().unwrap_or_else(|e| e.into_inner());
            for c in chans.split(',') {
                set.insert(c.trim().trim_start_matches('#').to_string());
            }
            String::new()
        } else if let Some(arg) = line.strip_prefix("PING") {
            format!("PONG{arg}\r\n")
        } else {
            String::new()
        };
        if !reply.is_empty() && writer.write_all(reply.as_bytes()).await.is_err() {
            return;
        }
    }
}
