//! `chatpulse-bench`: a bounded load test against a ChatPulse node it starts
//! itself on loopback. It creates the broadcasters through the config file,
//! feeds votes through the real IRC ingestion path ([`feed`]), holds N overlay
//! WebSockets ([`clients`]), samples the node's CPU and RSS from /proc, and
//! reports latency percentiles, frame rate, evictions and cost per frame.

pub mod clients;
pub mod feed;
pub mod floor;
pub mod micro;
pub mod netlab;
pub mod partition;
pub mod soak;
pub mod stats;

use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use clients::ClientStats;
use stats::Summary;

/// Hard upper bounds: the tool refuses anything larger (it only targets loopback).
pub const MAX_SOCKETS: usize = 50_000;
pub const MAX_DURATION: Duration = Duration::from_secs(600);

#[derive(Debug, Clone)]
pub struct Options {
    pub server_bin: PathBuf,
    pub sockets: usize,
    pub broadcasters: usize,
    pub votes_per_sec: f64,
    pub duration: Duration,
    pub warmup: Duration,
    pub connect_rate: f64,
    /// 1 = one node; more = a mesh where votes enter the first node (IRC) and
    /// the overlays hang on the last ("vote on A → overlay on C").
    pub nodes: usize,
}

#[derive(Debug, Clone, Default)]
pub struct Report {
    pub nodes: usize,
    pub sockets: usize,
    pub broadcasters: usize,
    pub votes_per_sec: f64,
    pub duration_s: f64,
    pub connect_s: f64,
    pub connect_errors: u64,
    pub votes_sent: u64,
    pub frames: u64,
    pub latency_us: Summary,
    pub clients_closed: u64,
    pub evicted: u64,
    pub server_cpu_s: f64,
    pub rss_idle_kib: u64,
    pub rss_loaded_kib: u64,
    pub rss_end_kib: u64,
}

impl Report {
    pub fn frames_per_sec(&self) -> f64 {
        self.frames as f64 / self.duration_s.max(1e-9)
    }

    pub fn cpu_per_1000_frames(&self) -> f64 {
        self.server_cpu_s * 1000.0 / (self.frames.max(1) as f64)
    }

    pub fn bytes_per_socket(&self) -> f64 {
        (self.rss_loaded_kib.saturating_sub(self.rss_idle_kib)) as f64 * 1024.0
            / self.sockets.max(1) as f64
    }

    pub fn table(&self) -> String {
        let l = &self.latency_us;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{} node(s), sockets {} over {} broadcasters, {} votes/s for {:.1} s",
            self.nodes, self.sockets, self.broadcasters, self.votes_per_sec, self.duration_s
        );
        let _ = writeln!(
            s,
            "connect          {:.2} s ({:.0}/s, {} errors)",
            self.connect_s,
            self.sockets as f64 / self.connect_s.max(1e-9),
            self.connect_errors
        );
        let _ = writeln!(s, "votes sent       {}", self.votes_sent);
        let _ = writeln!(
            s,
            "frames           {} ({:.0}/s)",
            self.frames,
            self.frames_per_sec()
        );
        let _ = writeln!(s, "{}", l.line(", ts has 1 ms resolution"));
        let _ = writeln!(
            s,
            "clients closed   {} (evicted by server: {})",
            self.clients_closed, self.evicted
        );
        let _ = writeln!(
            s,
            "server cpu       {:.3} s ({:.4} s per 1000 frames)",
            self.server_cpu_s,
            self.cpu_per_1000_frames()
        );
        let _ = writeln!(
            s,
            "server rss KiB   idle {}  with sockets {}  end {}  ({:.0} B/socket)",
            self.rss_idle_kib,
            self.rss_loaded_kib,
            self.rss_end_kib,
            self.bytes_per_socket()
        );
        s
    }

    pub fn json(&self) -> String {
        let l = &self.latency_us;
        format!(
            "{{\"nodes\":{},\"sockets\":{},\"broadcasters\":{},\"votes_per_sec\":{},\"duration_s\":{:.3},\"connect_s\":{:.3},\"connect_errors\":{},\"votes_sent\":{},\"frames\":{},\"frames_per_sec\":{:.1},\"latency_us\":{{\"count\":{},\"p50\":{},\"p90\":{},\"p99\":{},\"max\":{}}},\"clients_closed\":{},\"evicted\":{},\"server_cpu_s\":{:.3},\"cpu_s_per_1000_frames\":{:.5},\"rss_idle_kib\":{},\"rss_loaded_kib\":{},\"rss_end_kib\":{},\"bytes_per_socket\":{:.0}}}",
            self.nodes,
            self.sockets,
            self.broadcasters,
            self.votes_per_sec,
            self.duration_s,
            self.connect_s,
            self.connect_errors,
            self.votes_sent,
            self.frames,
            self.frames_per_sec(),
            l.count,
            l.p50,
            l.p90,
            l.p99,
            l.max,
            self.clients_closed,
            self.evicted,
            self.server_cpu_s,
            self.cpu_per_1000_frames(),
            self.rss_idle_kib,
            self.rss_loaded_kib,
            self.rss_end_kib,
            self.bytes_per_socket()
        )
    }
}

/// CPU seconds (user+system) and RSS (KiB) of a process, from /proc.
pub fn proc_sample(pid: u32) -> Option<(f64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After "pid (comm) ": field 3 is index 0, so utime (14) is 11 and stime (15) is 12.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())?;
    Some((ticks as f64 / 100.0, rss))
}

pub(crate) struct Node {
    child: Child,
    addr: std::net::SocketAddr,
    tokens: Vec<String>,
    dir: PathBuf,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Mesh settings of one bench node: its listen port and the seed to join.
pub(crate) struct MeshOpts {
    pub listen: std::net::SocketAddr,
    pub seed: Option<std::net::SocketAddr>,
}

const MESH_SECRET: &str = "chatpulse-bench-mesh-secret";

/// Writes a file only its owner may read: the node refuses a config that holds
/// secrets (here the mesh secret) and is readable by every user.
fn write_private(path: &std::path::Path, text: &str) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| format!("{}: {e}", path.display()))
}

fn free_port() -> Result<std::net::SocketAddr, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    l.local_addr().map_err(|e| e.to_string())
}

fn start_node(
    opts: &Options,
    feed: Option<std::net::SocketAddr>,
    mesh: Option<MeshOpts>,
) -> Result<Node, String> {
    let spec = NodeSpec {
        http_ip: std::net::Ipv4Addr::LOCALHOST.into(),
        feed,
        mesh,
        channel_extra: "",
    };
    spawn_node(opts, spec, Command::new(&opts.server_bin))
}

/// Where and how one bench node runs.
pub(crate) struct NodeSpec<'a> {
    /// Its HTTP listener's address (port 0).
    pub http_ip: std::net::IpAddr,
    /// The IRC feed it reads as its chat source; none: `source = "none"`.
    pub feed: Option<std::net::SocketAddr>,
    pub mesh: Option<MeshOpts>,
    /// TOML lines added to every `[[channel]]` table.
    pub channel_extra: &'a str,
}

/// Starts `program` (the node binary, possibly wrapped, e.g. in `ip netns exec`)
/// as a node serving `opts.broadcasters` channels.
pub(crate) fn spawn_node(
    opts: &Options,
    spec: NodeSpec<'_>,
    program: Command,
) -> Result<Node, String> {
    let NodeSpec {
        http_ip,
        feed,
        mesh,
        channel_extra,
    } = spec;
    let dir = std::env::temp_dir().join(format!(
        "chatpulse-bench-{}-{}",
        std::process::id(),
        crate::app::now_ms()
    ));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let mut toml = String::from(
        "[limits]\nmax_connections = 1000000\nmax_connections_per_ip = 1000000\n\
connection_rate_per_ip = 1000000\nconnection_burst_per_ip = 1000000\nmax_overlays_per_broadcaster = 100000\n\
max_http_connections = 1000000\nmax_http_connections_per_ip = 1000000\n\
[votes]\nbucket_capacity = 1000000\nbucket_refill_per_minute = 1000000\n\
",
    );
    let _ = writeln!(
        toml,
        "[server]\nlisten = \"{}\"",
        std::net::SocketAddr::new(http_ip, 0)
    );
    match feed {
        Some(feed) => {
            let _ = write!(
                toml,
                "[twitch]\nsource = \"irc\"\nirc_addr = \"{feed}\"\nirc_tls = false\n"
            );
        }
        None => toml.push_str("[twitch]\nsource = \"none\"\n"),
    }
    if let Some(m) = &mesh {
        let _ = write!(
            toml,
            "[mesh]\nlisten = \"{}\"\nsecret = \"{MESH_SECRET}\"\n",
            m.listen
        );
        if let Some(seed) = m.seed {
            let _ = writeln!(toml, "seeds = [\"{seed}\"]");
        }
    }
    for i in 0..opts.broadcasters {
        let _ = write!(toml, "[[channel]]\nlogin = \"b{i:06}\"\n{channel_extra}");
    }
    write_private(&dir.join("bench.toml"), &toml)?;
    let (child, addr, tokens) = launch(program, &dir, opts.broadcasters)?;
    Ok(Node {
        child,
        addr,
        tokens,
        dir,
    })
}

/// Runs `program serve` on the config and data in `dir`; returns once it has
/// printed its overlay URLs (one per channel, in login order).
fn launch(
    mut program: Command,
    dir: &std::path::Path,
    broadcasters: usize,
) -> Result<(Child, std::net::SocketAddr, Vec<String>), String> {
    let mut child = program
        .arg("serve")
        .arg("--config")
        .arg(dir.join("bench.toml"))
        .arg("--data-dir")
        .arg(dir.join("data"))
        .env("CHATPULSE_LOG_LEVEL", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("starting {:?}: {e}", program.get_program()))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut tokens = Vec::with_capacity(broadcasters);
    let mut addr = None;
    for line in BufReader::new(stdout).lines().take(broadcasters) {
        let line = line.map_err(|e| e.to_string())?;
        let rest = line
            .strip_prefix("http://")
            .ok_or(format!("unexpected output {line:?}"))?;
        let (host, token) = rest
            .split_once("/overlay/")
            .ok_or(format!("unexpected output {line:?}"))?;
        addr = Some(
            host.parse()
                .map_err(|_| format!("bad address in {line:?}"))?,
        );
        tokens.push(token.to_string());
    }
    let addr = addr.ok_or("the node printed no overlay URL")?;
    Ok((child, addr, tokens))
}

impl Node {
    /// SIGKILL: no leave, no flush, as in a crash or power loss.
    pub(crate) fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the node again on its own config and data (after [`Node::kill9`]).
    pub(crate) fn restart(&mut self, program: Command) -> Result<(), String> {
        let (child, addr, tokens) = launch(program, &self.dir, self.tokens.len())?;
        (self.child, self.addr, self.tokens) = (child, addr, tokens);
        Ok(())
    }
}

async fn scrape(addr: std::net::SocketAddr) -> String {
    use smol::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = smol::net::TcpStream::connect(addr).await else {
        return String::new();
    };
    let _ = s
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await;
    let mut body = String::new();
    let _ = s.read_to_string(&mut body).await;
    body
}

async fn scrape_evicted(addr: std::net::SocketAddr) -> u64 {
    scrape_gauge(addr, "broadcaster_slow_clients_evicted_total").await
}

/// One unlabelled series of the node's `/metrics` (0 when absent or unreachable).
async fn scrape_gauge(addr: std::net::SocketAddr, name: &str) -> u64 {
    scrape(addr)
        .await
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Runs one bounded benchmark and returns its report.
pub async fn run(opts: &Options) -> Result<Report, String> {
    if opts.sockets > MAX_SOCKETS || opts.duration > MAX_DURATION || opts.broadcasters == 0 {
        return Err(format!(
            "refusing: sockets ≤ {MAX_SOCKETS}, duration ≤ {MAX_DURATION:?}, broadcasters ≥ 1"
        ));
    }
    let feed = feed::Feed::start().await.map_err(|e| e.to_string())?;
    let cluster = start_cluster(opts, feed.addr).await?;
    // Overlays hang on the last node; votes enter through the first.
    let node = cluster.last().ok_or("no node")?;
    let pid = node.child.id();
    let pids: Vec<u32> = cluster.iter().map(|n| n.child.id()).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    // The node paces its JOINs like Twitch requires (20 per ~10 s); the feed
    // delivers to every channel regardless, so the first JOIN means "logged in".
    while feed.joined() == 0 {
        if Instant::now() > deadline {
            return Err("the node never logged in to the feed".into());
        }
        smol::Timer::after(Duration::from_millis(20)).await;
    }
    let (_, rss_idle) = proc_sample(pid).ok_or("cannot read /proc of the node")?;
    let stats = Arc::new(ClientStats::default());
    let (tasks, connect) = clients::open(
        node.addr,
        &node.tokens,
        opts.sockets,
        opts.connect_rate,
        &stats,
    )
    .await;
    smol::Timer::after(Duration::from_secs(1)).await;
    let (_, rss_loaded) = proc_sample(pid).ok_or("node died")?;
    let channels: Vec<String> = (0..opts.broadcasters).map(|i| format!("b{i:06}")).collect();
    feed.send_votes(&channels, opts.votes_per_sec, opts.warmup)
        .await;
    stats.recording.store(true, Ordering::SeqCst);
    let cpu0 = cpu_of(&pids)?;
    let started = Instant::now();
    let votes_sent = feed
        .send_votes(&channels, opts.votes_per_sec, opts.duration)
        .await;
    // Let the last frames land before closing the window.
    smol::Timer::after(Duration::from_millis(200)).await;
    let elapsed = started.elapsed();
    stats.recording.store(false, Ordering::SeqCst);
    let cpu1 = cpu_of(&pids)?;
    let (_, rss_end) = proc_sample(pid).ok_or("node died")?;
    let evicted = scrape_evicted(node.addr).await;
    let mut samples =
        std::mem::take(&mut *stats.latencies.lock().unwrap_or_else(|e| e.into_inner()));
    let report = Report {
        nodes: cluster.len(),
        sockets: opts.sockets,
        broadcasters: opts.broadcasters,
        votes_per_sec: opts.votes_per_sec,
        duration_s: elapsed.as_secs_f64(),
        connect_s: connect.as_secs_f64(),
        connect_errors: stats.connect_errors.load(Ordering::SeqCst),
        votes_sent,
        frames: stats.frames.load(Ordering::SeqCst),
        latency_us: stats::summarize(&mut samples),
        clients_closed: stats.closed.load(Ordering::SeqCst),
        evicted,
        server_cpu_s: cpu1 - cpu0,
        rss_idle_kib: rss_idle,
        rss_loaded_kib: rss_loaded,
        rss_end_kib: rss_end,
    };
    drop(tasks);
    drop(cluster);
    Ok(report)
}

/// CPU seconds of all nodes together.
fn cpu_of(pids: &[u32]) -> Result<f64, String> {
    pids.iter()
        .map(|&p| {
            proc_sample(p)
                .map(|(cpu, _)| cpu)
                .ok_or_else(|| "a node died".to_string())
        })
        .sum()
}

/// Waits until every node's `/metrics` counts all of them alive.
pub(crate) async fn await_alive(nodes: &[Node], limit: Duration) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    let want = format!("mesh_members{{state=\"alive\"}} {}", nodes.len());
    for node in nodes {
        while !scrape(node.addr).await.contains(&want) {
            if Instant::now() > deadline {
                return Err("the nodes never saw each other alive".into());
            }
            smol::Timer::after(Duration::from_millis(50)).await;
        }
    }
    Ok(())
}

/// One node, or `opts.nodes` meshed nodes (the first reads the IRC feed) that
/// have all seen each other alive.
async fn start_cluster(opts: &Options, feed: std::net::SocketAddr) -> Result<Vec<Node>, String> {
    if opts.nodes <= 1 {
        return Ok(vec![start_node(opts, Some(feed), None)?]);
    }
    let first = free_port()?;
    let mut nodes = Vec::with_capacity(opts.nodes);
    for i in 0..opts.nodes.min(5) {
        let listen = if i == 0 { first } else { free_port()? };
        let mesh = MeshOpts {
            listen,
            seed: (i > 0).then_some(first),
        };
        nodes.push(start_node(opts, (i == 0).then_some(feed), Some(mesh))?);
    }
    await_alive(&nodes, Duration::from_secs(30)).await?;
    Ok(nodes)
}
