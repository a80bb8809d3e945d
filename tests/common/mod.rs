//! The test harness: a real ChatPulse node started in-process on
//! `127.0.0.1:0` with a temp data dir, plus small real clients (HTTP over a raw
//! socket, WebSocket via async-tungstenite) to talk to it.

#![allow(dead_code, clippy::question_mark, clippy::large_enum_variant)]

pub mod browser;
pub mod fake_eventsub_ws;
pub mod fake_helix;
pub mod fake_irc;
#[cfg(feature = "postgres")]
pub mod pg;
pub mod web;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::Message;
use chatpulse::chat::{ChatMessage, ChatSource};
use chatpulse::{Mode, Server};
use futures_util::StreamExt;
use nanoserde::DeJson;
use smol::future::FutureExt;
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::net::TcpStream;

/// Every async test body runs under this overall limit.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `fut` to completion on a fresh executor, failing after `limit`.
pub fn run<T>(limit: Duration, fut: impl Future<Output = T>) -> T {
    smol::block_on(with_timeout(limit, fut))
}

pub async fn with_timeout<T>(limit: Duration, fut: impl Future<Output = T>) -> T {
    fut.or(async {
        smol::Timer::after(limit).await;
        panic!("test timed out after {limit:?}");
    })
    .await
}

/// A chat source that cannot reach Twitch (`what` says why): it tries again
/// (a second attempt within 30 s), readiness stays 200 and shows `source`
/// (config spelling) down, an overlay of `login` is served, and the attempts
/// back off — delays of at least 0.5, 1, 2, 4 s (jittered into the upper half
/// of 1, 2, 4, 8), so however fast the machine, few attempts fit in the time.
/// When the attempts reach a listener (`reached`: a certificate the node does
/// not trust), each is one TLS handshake there, not a burst of them.
pub async fn retries_with_backoff(
    srv: &TestServer,
    what: &str,
    source: &str,
    login: &str,
    reached: Option<&fake_irc::FakeIrc>,
) {
    let series = format!(
        "chat_source_reconnects_total{{source=\"{}\"}}",
        source.replace('-', "_")
    );
    let reconnects = || sample(&srv.metrics(), &series);
    let started = Instant::now();
    eventually(
        &format!("{what}: a second attempt"),
        Duration::from_secs(30),
        || (reconnects() >= 2).then_some(()),
    )
    .await;
    let (status, _, body) = get(srv.addr, "/health/ready").await;
    assert_eq!(status, 200, "{what}: {body}");
    let down = format!("\"chat\":{{\"source\":\"{source}\",\"connected\":false,");
    assert!(body.contains(&down), "{what}: {body}");
    let mut ov = Overlay::connect(srv.addr, &srv.token(login)).await.unwrap();
    assert_eq!(ov.frame().await.kind, "snapshot");
    smol::Timer::after(Duration::from_secs(2)).await;
    let secs = started.elapsed().as_secs_f64();
    let most = 2.0 + (secs / 0.5).log2().ceil();
    let n = reconnects();
    assert!(n as f64 <= most, "{what}: {n} reconnects in {secs:.1} s");
    if let Some(listener) = reached {
        let handshakes = listener.connections() as u64;
        assert!(
            handshakes <= n + 1,
            "{what}: {handshakes} handshakes, {n} attempts"
        );
    }
}

/// Polls `check` every 20 ms until it returns Some, or panics at the deadline.
pub async fn eventually<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        smol::Timer::after(Duration::from_millis(20)).await;
    }
}

pub fn temp_dir(tag: &str) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "chatpulse-it-{}-{}-{}",
        tag,
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

pub const ONE_CHANNEL: &str = "[[channel]]\nlogin = \"alice\"\n";

pub struct TestServer {
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    pub server: Server,
}

impl TestServer {
    /// One home-mode channel "alice" with the default settings.
    pub async fn start() -> TestServer {
        Self::start_with(ONE_CHANNEL, None, None).await
    }

    pub async fn start_with(
        toml: &str,
        data_dir: Option<PathBuf>,
        addr: Option<SocketAddr>,
    ) -> TestServer {
        let mut config = chatpulse::config::from_toml_str(toml).expect("test config");
        if !toml.contains("[twitch]") {
            // Never reach out to the real Twitch from a test.
            config.twitch.source = chatpulse::config::ChatSourceKind::None;
        }
        config.server.listen = addr.unwrap_or_else(|| "127.0.0.1:0".parse().unwrap());
        let data_dir = data_dir.unwrap_or_else(|| temp_dir("srv"));
        config.data_dir = data_dir.clone();
        // Port reuse right after a stop can race the kernel; retry briefly.
        let mut tries = 0;
        let server = loop {
            match Server::start(config.clone(), Mode::Serve) {
                Ok(s) => break s,
                Err(e) if tries < 50 => {
                    tries += 1;
                    let _ = e;
                    smol::Timer::after(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("server start: {e}"),
            }
        };
        TestServer {
            addr: server.local_addr(),
            data_dir,
            server,
        }
    }

    pub fn token(&self, login: &str) -> String {
        self.server
            .app()
            .hub
            .streamers()
            .into_iter()
            .find(|s| s.login == login)
            .map(|s| s.overlay_token)
            .expect("channel exists")
    }

    pub fn overlay_url(&self, login: &str) -> String {
        format!("http://{}/overlay/{}", self.addr, self.token(login))
    }

    pub fn ws_url(&self, login: &str) -> String {
        format!("ws://{}/ws/overlay/{}", self.addr, self.token(login))
    }

    /// Injects one chat line through the chat entry point.
    pub async fn chat(
        &self,
        login: &str,
        chatter: &str,
        text: &str,
    ) -> chatpulse::metrics::VoteResult {
        let msg = ChatMessage {
            source: ChatSource::Test,
            channel: login.into(),
            chatter_id: chatter.into(),
            text: text.into(),
            message_id: None,
            sent_ms: None,
        };
        self.server.app().hub.chat(&msg, chatpulse::app::now_ms())
    }

    /// The cluster this node is in (panics if it has no `[mesh]`).
    pub fn mesh(&self) -> std::sync::Arc<chatpulse::mesh::Mesh> {
        self.server.app().mesh().expect("node is in a cluster")
    }

    pub fn metrics(&self) -> String {
        self.server.app().metrics.render()
    }

    /// Graceful shutdown; returns the data dir for a restart.
    pub async fn stop(self) -> PathBuf {
        self.server.shutdown();
        let dir = self.data_dir.clone();
        // Joins the node's threads, so its stores are closed when this returns.
        let server = self.server;
        smol::unblock(move || server.wait())
            .await
            .expect("clean shutdown");
        dir
    }
}

/// One overlay frame, as the page receives it.
#[derive(DeJson, Debug, Clone)]
pub struct Frame {
    #[nserde(rename = "type")]
    pub kind: String,
    pub seq: u64,
    pub ts: u64,
    #[nserde(rename = "forRatio")]
    pub for_ratio: f64,
    #[nserde(rename = "againstRatio")]
    pub against_ratio: f64,
    #[nserde(rename = "totalVotes")]
    pub total_votes: u64,
    #[nserde(rename = "forVotes")]
    pub for_votes: u64,
    #[nserde(rename = "againstVotes")]
    pub against_votes: u64,
    pub value: f64,
    pub model: String,
    #[nserde(rename = "decaySpeed")]
    pub decay_speed: f64,
    #[nserde(rename = "memorySeconds")]
    pub memory_seconds: Option<u64>,
    #[nserde(rename = "displayMode")]
    pub display_mode: String,
    pub theme: String,
    #[nserde(rename = "forLabel")]
    pub for_label: String,
    #[nserde(rename = "againstLabel")]
    pub against_label: String,
    pub status: String,
}

pub struct Overlay {
    pub ws: WebSocketStream<TcpStream>,
}

#[derive(Debug)]
pub enum Received {
    Frame(Frame),
    Closed(Option<u16>),
}

impl Overlay {
    pub async fn connect(addr: SocketAddr, token: &str) -> Result<Overlay, String> {
        Self::connect_with(addr, token, &[]).await
    }

    pub async fn connect_with(
        addr: SocketAddr,
        token: &str,
        headers: &[(&str, &str)],
    ) -> Result<Overlay, String> {
        use async_tungstenite::tungstenite::client::IntoClientRequest;
        let mut req = format!("ws://{addr}/ws/overlay/{token}")
            .into_client_request()
            .map_err(|e| e.to_string())?;
        for (k, v) in headers {
            req.headers_mut().insert(
                async_tungstenite::tungstenite::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let (ws, _) = async_tungstenite::client_async(req, stream)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Overlay { ws })
    }

    /// Next frame or close, skipping pings; panics after `limit`.
    pub async fn recv(&mut self, limit: Duration) -> Received {
        let next = async {
            loop {
                match self.ws.next().await {
                    Some(Ok(Message::Text(t))) => {
                        let f = Frame::deserialize_json(&t)
                            .unwrap_or_else(|e| panic!("bad frame {t}: {e}"));
                        return Received::Frame(f);
                    }
                    Some(Ok(Message::Close(c))) => {
                        return Received::Closed(c.map(|c| c.code.into()));
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(_)) | None => return Received::Closed(None),
                }
            }
        };
        with_timeout(limit, next).await
    }

    pub async fn frame(&mut self) -> Frame {
        match self.recv(Duration::from_secs(10)).await {
            Received::Frame(f) => f,
            Received::Closed(c) => panic!("expected a frame, got close {c:?}"),
        }
    }

    /// Waits for a frame satisfying `pred`, skipping others.
    pub async fn frame_where(&mut self, what: &str, pred: impl Fn(&Frame) -> bool) -> Frame {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            assert!(Instant::now() < deadline, "no frame where {what}");
            let f = self.frame().await;
            if pred(&f) {
                return f;
            }
        }
    }

    pub async fn closed(&mut self) -> Option<u16> {
        loop {
            match self.recv(Duration::from_secs(15)).await {
                Received::Closed(c) => return c,
                Received::Frame(_) => continue,
            }
        }
    }

    pub async fn send_text(&mut self, text: String) -> bool {
        self.ws.send(Message::Text(text.into())).await.is_ok()
    }
}

/// A minimal HTTP/1.1 exchange over a raw socket: sends `raw`, returns
/// (status, head, body) of the first response, or None if the server closed.
pub async fn http_raw(addr: SocketAddr, raw: &[u8]) -> Option<(u16, String, String)> {
    let mut s = TcpStream::connect(addr).await.ok()?;
    s.write_all(raw).await.ok()?;
    read_response(&mut s).await
}

pub async fn read_response(s: &mut TcpStream) -> Option<(u16, String, String)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(pos) = find(&buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..pos]).to_string();
            let len = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap())
                })
                .unwrap_or(0);
            let is_head = false;
            let _ = is_head;
            while buf.len() < pos + 4 + len {
                let n = s.read(&mut chunk).await.ok()?;
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let status = head.split(' ').nth(1)?.parse().ok()?;
            let end = (pos + 4 + len).min(buf.len());
            let body = String::from_utf8_lossy(&buf[pos + 4..end]).to_string();
            return Some((status, head, body));
        }
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A TCP connection to `to` from the loopback address `src`, as if from another host.
pub fn connect_from(
    src: std::net::IpAddr,
    to: SocketAddr,
) -> std::io::Result<smol::Async<std::net::TcpStream>> {
    use rustix::net::{AddressFamily, SocketType, bind, connect, socket};
    let fd = socket(AddressFamily::INET, SocketType::STREAM, None)?;
    bind(&fd, &SocketAddr::new(src, 0))?;
    connect(&fd, &to)?;
    smol::Async::new(std::net::TcpStream::from(fd))
}

/// The value of one series (`name{labels}` as written) in a `/metrics` page; 0 when absent.
pub fn sample(page: &str, series: &str) -> u64 {
    page.lines()
        .find_map(|l| {
            l.strip_prefix(series)?
                .strip_prefix(' ')?
                .parse::<f64>()
                .ok()
        })
        .map_or(0, |v| v as u64)
}

/// The sum of every series of the family `name` (all label sets) in a `/metrics` page.
pub fn family_sum(page: &str, name: &str) -> u64 {
    page.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with([' ', '{']))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

/// Reads until the peer closes (or the read fails); returns what it sent.
pub async fn read_to_close(s: &mut (impl smol::io::AsyncRead + Unpin)) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
}

pub async fn get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    http_raw(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .expect("response")
}

/// Whether `openssl` runs here; without it a test skips loudly, or fails when
/// CHATPULSE_TEST_REQUIRE_TOOLS is set.
pub fn openssl_available() -> bool {
    let ok = std::process::Command::new("openssl")
        .arg("version")
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var("CHATPULSE_TEST_REQUIRE_TOOLS").is_err(),
            "openssl required (CHATPULSE_TEST_REQUIRE_TOOLS; Debian package openssl)"
        );
        eprintln!("SKIPPED: openssl not installed (Debian package openssl)");
    }
    ok
}

/// Runs `openssl ARGS` in `dir`; panics with its stderr on failure.
pub fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `[mesh]` listening on 127.0.0.1:0 with `seeds` and `secret`, then `rest`
/// (channels, other sections).
pub fn mesh_toml(seeds: &[SocketAddr], secret: &str, rest: &str) -> String {
    let seeds: Vec<String> = seeds.iter().map(|s| format!("\"{s}\"")).collect();
    format!(
        "[mesh]\nlisten = \"127.0.0.1:0\"\nseeds = [{}]\nsecret = \"{secret}\"\n\n{rest}",
        seeds.join(", ")
    )
}

/// Node A with `first`, then B and C (seeded with A) with `others`, all with
/// `secret`; returns once all three see each other alive.
pub async fn mesh_trio(secret: &str, first: &str, others: &str) -> Vec<TestServer> {
    let a = TestServer::start_with(&mesh_toml(&[], secret, first), None, None).await;
    let seed = a.mesh().local_addr();
    let b = TestServer::start_with(&mesh_toml(&[seed], secret, others), None, None).await;
    let c = TestServer::start_with(&mesh_toml(&[seed], secret, others), None, None).await;
    let nodes = vec![a, b, c];
    // Generous: the machine is shared and SWIM works in whole probe periods.
    eventually(
        "three live members everywhere",
        Duration::from_secs(20),
        || {
            nodes
                .iter()
                .all(|n| n.mesh().live().len() == 3)
                .then_some(())
        },
    )
    .await;
    nodes
}
