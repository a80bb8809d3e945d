//! A real nginx, running the shipped `scripts/deploy/nginx/chatpulse.conf`
//! (only addresses and ports rewritten), in front of three in-process nodes:
//! upgrade, idle sockets, least_conn spread, rolling restart. Skipped loudly
//! without `/usr/sbin/nginx` unless CHATPULSE_TEST_REQUIRE_TOOLS=1.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

use smol::future::FutureExt;

use crate::common::{Overlay, Received, TestServer, eventually, get, http_raw, run, temp_dir};

const NGINX: &str = "/usr/sbin/nginx";

/// Nodes trust nginx (loopback) and do not rate-limit the test's many sockets
/// from one IP; a short drain keeps the rolling restart quick.
const NODE: &str = "[server]\ntrusted_proxies = [\"127.0.0.1\"]\n\
    [limits]\nconnection_rate_per_ip = 1000.0\nconnection_burst_per_ip = 1000\n\
    [shutdown]\ndrain_delay = \"300ms\"\ntimeout = \"2s\"\n\
    [[channel]]\nlogin = \"alice\"\n";

pub(crate) struct Nginx {
    child: Child,
    dir: PathBuf,
    pub addr: SocketAddr,
}

impl Nginx {
    /// Starts nginx on a free loopback port in front of `backends`, or None
    /// (skipped) when nginx is not installed.
    pub(crate) async fn start(backends: &[SocketAddr]) -> Option<Nginx> {
        Self::start_edited(backends, |conf| conf).await
    }

    /// [`Nginx::start`] with the site file passed through `edit` (a test's
    /// deliberately broken variant).
    pub(crate) async fn start_edited(
        backends: &[SocketAddr],
        edit: impl Fn(String) -> String,
    ) -> Option<Nginx> {
        if !Path::new(NGINX).exists() {
            assert!(
                std::env::var("CHATPULSE_TEST_REQUIRE_TOOLS").is_err(),
                "{NGINX} required (CHATPULSE_TEST_REQUIRE_TOOLS; Debian package nginx)"
            );
            eprintln!("SKIPPED: {NGINX} not installed (Debian package nginx)");
            return None;
        }
        let dir = temp_dir("nginx");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        std::fs::write(
            dir.join("chatpulse.conf"),
            edit(site_config(backends, addr)),
        )
        .unwrap();
        let d = dir.display();
        // Test-sized process settings around the shipped site file; two workers
        // so least_conn has to use the upstream's shared zone.
        let main = format!(
            "daemon off;\nmaster_process on;\nworker_processes 2;\npid {d}/nginx.pid;\n\
             error_log {d}/error.log info;\nevents {{ worker_connections 1024; }}\n\
             http {{\n  access_log {d}/access.log;\n  client_body_temp_path {d}/body;\n\
             proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n\
             uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
             include {d}/chatpulse.conf;\n}}\n"
        );
        std::fs::write(dir.join("nginx.conf"), main).unwrap();
        // setpriv (util-linux) gives nginx SIGTERM if this test's thread dies
        // without running Drop (a killed test run), so no nginx is left behind.
        let mut cmd = if Path::new("/usr/bin/setpriv").exists() {
            let mut c = Command::new("/usr/bin/setpriv");
            c.args(["--pdeathsig", "TERM", NGINX]);
            c
        } else {
            Command::new(NGINX)
        };
        let child = cmd
            .arg("-p")
            .arg(&dir)
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn nginx");
        let mut nginx = Nginx { child, dir, addr };
        for _ in 0..250 {
            if let Some(status) = nginx.child.try_wait().unwrap() {
                panic!("nginx exited {status}: {}", nginx.error_log());
            }
            if smol::net::TcpStream::connect(addr).await.is_ok() {
                return Some(nginx);
            }
            smol::Timer::after(Duration::from_millis(20)).await;
        }
        panic!("nginx did not listen on {addr}: {}", nginx.error_log());
    }

    fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM to the master stops its workers too; SIGKILL would orphan them.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        for _ in 0..250 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The shipped site file with the three example backends and the listen port
/// replaced; panics if the file no longer has the shape this relies on.
fn site_config(backends: &[SocketAddr], listen: SocketAddr) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/deploy/nginx/chatpulse.conf");
    let mut conf = std::fs::read_to_string(path).unwrap();
    for (example, real) in ["10.0.1.10:8080", "10.0.1.11:8080", "10.0.1.12:8080"]
        .iter()
        .zip(backends)
    {
        let from = format!("server {example} ");
        assert!(conf.contains(&from), "shipped upstream has {from}");
        conf = conf.replace(&from, &format!("server {real} "));
    }
    assert!(conf.contains("    listen 80;\n") && conf.contains("    listen [::]:80;\n"));
    conf.replace("    listen 80;\n", &format!("    listen {listen};\n"))
        .replace("    listen [::]:80;\n", "")
}

/// Three nodes sharing one channel and overlay URL: one data dir, copied (as
/// a restore from backup would), since no mesh runs here.
pub(crate) async fn three_nodes() -> (Vec<TestServer>, String) {
    let first = TestServer::start_with(NODE, None, None).await;
    let token = first.token("alice");
    let seed = first.stop().await;
    let mut nodes = Vec::new();
    for _ in 0..3 {
        let dir = temp_dir("node");
        copy_dir(&seed, &dir);
        let node = TestServer::start_with(NODE, Some(dir), None).await;
        assert_eq!(node.token("alice"), token);
        nodes.push(node);
    }
    (nodes, token)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            // SQLite may still be removing its -wal/-shm as the store thread ends.
            match std::fs::copy(entry.path(), target) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                other => {
                    other.unwrap();
                }
            }
        }
    }
}

pub(crate) fn addrs(nodes: &[TestServer]) -> Vec<SocketAddr> {
    nodes.iter().map(|n| n.addr).collect()
}

/// `websocket_connections_current` from the node's own /metrics text.
fn ws_connections(node: &TestServer) -> u64 {
    node.metrics()
        .lines()
        .find_map(|l| l.strip_prefix("websocket_connections_current "))
        .and_then(|v| v.trim().parse().ok())
        .expect("websocket_connections_current")
}

async fn vote_everywhere(nodes: &[TestServer], chatter: &str) {
    for n in nodes {
        n.chat("alice", chatter, "yes").await;
    }
}

#[test]
fn nginx_proxies_health_and_overlay_websockets() {
    run(Duration::from_secs(60), async {
        let (nodes, token) = three_nodes().await;
        let Some(nginx) = Nginx::start(&addrs(&nodes)).await else {
            return;
        };
        let (status, _, body) = get(nginx.addr, "/health/ready").await;
        assert_eq!(status, 200, "{body}");
        let (status, _, _) = get(nginx.addr, &format!("/overlay/{token}")).await;
        assert_eq!(status, 200);

        // A browser's Origin: nginx forwards Host with its port, so it matches.
        let origin = format!("http://{}", nginx.addr);
        let mut ov = Overlay::connect_with(nginx.addr, &token, &[("Origin", &origin)])
            .await
            .unwrap_or_else(|e| panic!("upgrade through nginx: {e}\n{}", nginx.error_log()));
        let snap = ov.frame().await;
        assert_eq!(snap.kind, "snapshot");
        vote_everywhere(&nodes, "v1").await;
        ov.frame_where("the vote", |f| f.total_votes == 1).await;
    });
}

/// ChatPulse pings every 30 s, so the socket carries traffic both ways and
/// outlives nginx's default 60 s read timeout as well as the shipped 3600 s.
#[test]
fn nginx_keeps_an_idle_overlay_past_60_seconds() {
    run(Duration::from_secs(120), async {
        let (nodes, token) = three_nodes().await;
        let Some(nginx) = Nginx::start(&addrs(&nodes)).await else {
            return;
        };
        let mut ov = Overlay::connect(nginx.addr, &token).await.unwrap();
        ov.frame().await;
        // The test is about time passing: stay idle past nginx's 60 s default,
        // failing at once if the socket closes meanwhile.
        let idle_until = Instant::now() + Duration::from_secs(65);
        let closed = async {
            loop {
                if let Received::Closed(code) = ov.recv(Duration::from_secs(3600)).await {
                    return Some(code);
                }
            }
        }
        .or(async {
            smol::Timer::at(idle_until).await;
            None
        })
        .await;
        assert_eq!(closed, None, "closed while idle");
        vote_everywhere(&nodes, "late").await;
        ov.frame_where("a vote after 65 s idle", |f| f.total_votes == 1)
            .await;
    });
}

/// least_conn: 30 overlays end within ±20 % of 10 per node even when one node
/// starts emptier (round-robin would leave it at half the others).
#[test]
fn nginx_least_conn_spreads_overlays_evenly() {
    run(Duration::from_secs(60), async {
        let (nodes, token) = three_nodes().await;
        let Some(nginx) = Nginx::start(&addrs(&nodes)).await else {
            return;
        };
        let connect = |n: usize| {
            let token = token.clone();
            async move {
                let mut out = Vec::new();
                for _ in 0..n {
                    let mut ov = Overlay::connect(nginx.addr, &token).await.unwrap();
                    ov.frame().await;
                    out.push(ov);
                }
                out
            }
        };
        let counted = |total: u64| {
            let nodes = &nodes;
            eventually("connections counted", Duration::from_secs(10), move || {
                let c: Vec<u64> = nodes.iter().map(ws_connections).collect();
                (c.iter().sum::<u64>() == total).then_some(c)
            })
        };
        let first = connect(15).await;
        counted(15).await;

        // Find node 0's overlays (a vote there reaches only them) and close them.
        nodes[0].chat("alice", "probe", "yes").await;
        let on_node0 = futures_util::future::join_all(first.into_iter().map(|mut ov| async move {
            let voted = async {
                matches!(ov.recv(Duration::from_secs(3600)).await,
                    Received::Frame(f) if f.total_votes == 1)
            }
            .or(async {
                smol::Timer::after(Duration::from_secs(2)).await;
                false
            })
            .await;
            (voted, ov)
        }))
        .await;
        let kept: Vec<Overlay> = on_node0
            .into_iter()
            .filter_map(|(voted, ov)| (!voted).then_some(ov))
            .collect();
        let before = counted(kept.len() as u64).await;
        assert_eq!(before[0], 0, "node 0 emptied: {before:?}");

        let more = connect(30 - kept.len()).await;
        let counts = counted(30).await;
        for c in &counts {
            assert!(
                (8..=12).contains(c),
                "uneven spread {counts:?} (from {before:?})"
            );
        }
        drop((kept, more));
    });
}

/// Counters shared by the reconnecting overlays of the rolling-restart test.
#[derive(Default)]
struct Fleet {
    connected: AtomicUsize,
    closed_1001: AtomicUsize,
    closed_other: AtomicUsize,
}

/// An overlay as the page behaves: dial, read, and on close dial again.
/// `votes` holds the latest total_votes it saw.
async fn reconnecting_overlay(
    nginx: SocketAddr,
    token: String,
    fleet: Arc<Fleet>,
    votes: Arc<AtomicU64>,
) {
    loop {
        let mut ov = match Overlay::connect(nginx, &token).await {
            Ok(ov) => ov,
            Err(_) => {
                smol::Timer::after(Duration::from_millis(100)).await;
                continue;
            }
        };
        let mut counted = false;
        loop {
            match ov.recv(Duration::from_secs(3600)).await {
                Received::Frame(f) => {
                    votes.store(f.total_votes, SeqCst);
                    if !counted {
                        counted = true;
                        fleet.connected.fetch_add(1, SeqCst);
                    }
                }
                Received::Closed(code) => {
                    if counted {
                        fleet.connected.fetch_sub(1, SeqCst);
                    }
                    let which = if code == Some(1001) {
                        &fleet.closed_1001
                    } else {
                        &fleet.closed_other
                    };
                    which.fetch_add(1, SeqCst);
                    break;
                }
            }
        }
        // The page waits a moment before dialling again.
        smol::Timer::after(Duration::from_millis(100)).await;
    }
}

/// GETs through nginx until `stop`; returns (responses, failures): a 5xx or
/// no response at all.
async fn steady_gets(
    nginx: SocketAddr,
    token: String,
    stop: Arc<AtomicBool>,
) -> (u64, Vec<String>) {
    let (mut ok, mut failures) = (0, Vec::new());
    let paths = ["/version".to_string(), format!("/overlay/{token}")];
    let mut i = 0;
    while !stop.load(SeqCst) {
        let path = &paths[i % paths.len()];
        i += 1;
        let raw = format!("GET {path} HTTP/1.1\r\nHost: {nginx}\r\nConnection: close\r\n\r\n");
        match http_raw(nginx, raw.as_bytes()).await {
            Some((status, _, _)) if status < 500 => ok += 1,
            Some((status, _, body)) => failures.push(format!("{path}: {status} {body}")),
            None => failures.push(format!("{path}: no response")),
        }
        // A steady stream, not a flood: about 50 requests a second.
        smol::Timer::after(Duration::from_millis(20)).await;
    }
    (ok, failures)
}

/// Restarting the three nodes one by one (SIGTERM-equivalent shutdown with a
/// drain, then a new node on the same address and data dir) under steady GETs
/// through nginx: no 5xx, and every overlay closed with 1001 comes back.
#[test]
fn nginx_rolling_restart_gives_no_5xx_and_overlays_reconnect() {
    run(Duration::from_secs(240), async {
        let (mut nodes, token) = three_nodes().await;
        let Some(nginx) = Nginx::start(&addrs(&nodes)).await else {
            return;
        };
        const OVERLAYS: usize = 30;
        let fleet = Arc::new(Fleet::default());
        let votes: Vec<Arc<AtomicU64>> = (0..OVERLAYS).map(|_| Arc::default()).collect();
        let _overlays: Vec<smol::Task<()>> = votes
            .iter()
            .map(|v| {
                smol::spawn(reconnecting_overlay(
                    nginx.addr,
                    token.clone(),
                    fleet.clone(),
                    v.clone(),
                ))
            })
            .collect();
        let all_connected = || (fleet.connected.load(SeqCst) == OVERLAYS).then_some(());
        eventually(
            "all overlays connected",
            Duration::from_secs(20),
            all_connected,
        )
        .await;
        let stop = Arc::new(AtomicBool::new(false));
        let gets = smol::spawn(steady_gets(nginx.addr, token.clone(), stop.clone()));

        for i in 0..nodes.len() {
            let node = nodes.remove(i);
            let (addr, before) = (node.addr, fleet.closed_1001.load(SeqCst));
            let on_node = ws_connections(&node) as usize;
            let dir = node.stop().await;
            let node = TestServer::start_with(NODE, Some(dir), Some(addr)).await;
            assert!(
                fleet.closed_1001.load(SeqCst) >= before + on_node,
                "node {i}'s {on_node} overlays got 1001"
            );
            eventually("overlays back", Duration::from_secs(20), all_connected).await;
            // nginx may hold the restarted node out for fail_timeout (30 s) after
            // failed dials: wait until it routes requests there again, so two
            // nodes are never out at once.
            eventually(
                "nginx routes to the restarted node",
                Duration::from_secs(45),
                || {
                    node.metrics()
                        .lines()
                        .any(|l| l.starts_with("http_requests_total{") && !l.ends_with(" 0"))
                        .then_some(())
                },
            )
            .await;
            nodes.insert(i, node);
        }

        stop.store(true, SeqCst);
        let (ok, failures) = gets.await;
        assert!(
            failures.is_empty(),
            "{} failed of {}: {failures:?}",
            failures.len(),
            ok + failures.len() as u64
        );
        assert!(ok > 50, "only {ok} requests went through");
        assert_eq!(fleet.closed_other.load(SeqCst), 0, "closes other than 1001");
        assert_eq!(fleet.connected.load(SeqCst), OVERLAYS);

        // Every overlay is live again: a vote on every node reaches all of them.
        vote_everywhere(&nodes, "after").await;
        eventually(
            "every overlay sees the vote",
            Duration::from_secs(10),
            || votes.iter().all(|v| v.load(SeqCst) >= 1).then_some(()),
        )
        .await;
    });
}
