//! Overload: floods of idle, slow and refused connections on the HTTP and mesh
//! ports. The node keeps serving everyone else, counts what it refused, and its
//! memory and descriptors come back when the flood goes. Every flood targets
//! loopback (other 127.0.0.0/8 source addresses stand for other hosts), is
//! bounded in count and stops by itself.

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use smol::Async;
use smol::future::FutureExt;
use smol::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::{
    ONE_CHANNEL, Overlay, TEST_TIMEOUT, TestServer, connect_from, family_sum, get, read_to_close,
    run, sample, temp_dir,
};

fn lo(last: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, last])
}

/// Everything the server sends until it closes (or `limit` passes: then `None`).
async fn read_until_closed(s: &mut Async<TcpStream>, limit: Duration) -> Option<String> {
    let read = async { Some(String::from_utf8_lossy(&read_to_close(s).await).into_owned()) };
    read.or(async {
        smol::Timer::after(limit).await;
        None
    })
    .await
}

#[test]
fn a_connection_flood_is_capped_per_address_and_overall_and_others_are_served() {
    run(TEST_TIMEOUT, async {
        let toml = format!(
            "[limits]\nmax_http_connections = 20\nmax_http_connections_per_ip = 8\n\
             http_head_timeout = \"3s\"\n\n{ONE_CHANNEL}"
        );
        let srv = TestServer::start_with(&toml, None, None).await;
        // One host opens its 8 sockets and says nothing...
        let mut idle = Vec::new();
        for _ in 0..8 {
            idle.push(connect_from(lo(9), srv.addr).unwrap());
        }
        // ...the 9th and later from it are answered 503 and closed at once.
        for _ in 0..5 {
            let mut s = connect_from(lo(9), srv.addr).unwrap();
            let text = read_until_closed(&mut s, Duration::from_secs(5))
                .await
                .expect("a refused socket is closed at once");
            assert!(text.starts_with("HTTP/1.1 503 "), "{text}");
            assert!(text.contains("\"type\":\"unavailable\""), "{text}");
            assert!(text.contains("retry-after: 5"), "{text}");
        }
        // Everyone else is served: pages, and an overlay that sees a vote.
        assert_eq!(get(srv.addr, "/health/live").await.0, 200);
        let mut ov = Overlay::connect(srv.addr, &srv.token("alice"))
            .await
            .unwrap();
        ov.frame().await;
        srv.chat("alice", "u1", "yes").await;
        ov.frame_where("the vote", |f| f.total_votes == 1).await;
        // Two more hosts fill the node: 8 + 8 + 4 = 20, then even a new host waits.
        for src in [10, 11] {
            for _ in 0..if src == 10 { 8 } else { 4 } {
                idle.push(connect_from(lo(src), srv.addr).unwrap());
            }
        }
        smol::Timer::after(Duration::from_millis(200)).await; // accepted in order
        let mut s = connect_from(lo(12), srv.addr).unwrap();
        let text = read_until_closed(&mut s, Duration::from_secs(5))
            .await
            .unwrap();
        assert!(text.starts_with("HTTP/1.1 503 "), "{text}");
        // The overlay, already upgraded, holds no HTTP slot and still gets updates.
        srv.chat("alice", "u2", "no").await;
        ov.frame_where("the second vote", |f| f.total_votes == 2)
            .await;
        assert!(
            sample(
                &srv.metrics(),
                "http_connections_refused_total{reason=\"ip_limit\"}"
            ) >= 5
        );
        assert!(
            sample(
                &srv.metrics(),
                "http_connections_refused_total{reason=\"global_limit\"}"
            ) >= 1
        );
        // Idle sockets are cut at the head deadline, and the slots come back.
        for s in &mut idle {
            let text = read_until_closed(s, Duration::from_secs(20))
                .await
                .expect("an idle socket is closed at the head deadline");
            assert!(text.is_empty(), "closed without a word: {text:?}");
        }
        assert_eq!(get(srv.addr, "/health/live").await.0, 200);
        // The gauge is read at scrape time (this scrape is one of them).
        let (_, _, page) = get(srv.addr, "/metrics").await;
        let open = page
            .lines()
            .find_map(|l| l.strip_prefix("http_connections_open "));
        assert_eq!(open, Some("1"), "slots released");
        srv.stop().await;
    });
}

#[test]
fn slowloris_heads_are_cut_at_the_deadline_however_slowly_they_trickle() {
    run(TEST_TIMEOUT, async {
        let toml = format!("[limits]\nhttp_head_timeout = \"1s\"\n\n{ONE_CHANNEL}");
        let srv = TestServer::start_with(&toml, None, None).await;
        let mut slow = Vec::new();
        for _ in 0..6 {
            let mut s = connect_from(lo(20), srv.addr).unwrap();
            s.write_all(b"GET /health/live HTTP/1.1\r\n").await.unwrap();
            slow.push(s);
        }
        // A byte per socket every 100 ms: the head never ends, the deadline does.
        let started = Instant::now();
        let mut cut = vec![false; slow.len()];
        while cut.iter().any(|c| !c) && started.elapsed() < Duration::from_secs(15) {
            for (s, cut) in slow.iter_mut().zip(cut.iter_mut()) {
                if !*cut && s.write_all(b"X-Slow: 1\r\n").await.is_err() {
                    *cut = true;
                }
            }
            for (s, cut) in slow.iter_mut().zip(cut.iter_mut()) {
                let mut byte = [0u8; 64];
                let peek = s
                    .read(&mut byte)
                    .or(async {
                        smol::Timer::after(Duration::from_millis(10)).await;
                        Err(std::io::ErrorKind::WouldBlock.into())
                    })
                    .await;
                if matches!(peek, Ok(0)) {
                    *cut = true;
                }
            }
            assert_eq!(get(srv.addr, "/health/live").await.0, 200, "others served");
            smol::Timer::after(Duration::from_millis(100)).await;
        }
        assert!(cut.iter().all(|c| *c), "every trickling head was cut");
        assert!(
            sample(
                &srv.metrics(),
                "http_bad_requests_total{reason=\"head_timeout\"}"
            ) >= 6
        );
        srv.stop().await;
    });
}

/// The real binary under a flood of over a thousand sockets from 15 addresses,
/// three times over: each address is capped (the rest refused and counted)
/// while the node keeps room for everyone else; the resident set after the
/// third round is not above the first (no per-connection leak), and once the
/// flood lets go the node's descriptors come back to where they were.
#[test]
fn thousands_of_flooding_sockets_leave_memory_and_descriptors_where_they_were() {
    let dir = temp_dir("flood");
    let mut child = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_chatpulse"))
            .args(["demo", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&dir)
            .env("CHATPULSE_LOG_LEVEL", "error")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn chatpulse"),
    );
    let url = BufReader::new(child.0.stdout.take().unwrap())
        .lines()
        .next()
        .expect("a line")
        .expect("utf-8");
    let host = url
        .strip_prefix("http://")
        .unwrap()
        .split('/')
        .next()
        .unwrap();
    let addr: SocketAddr = host.parse().unwrap();
    let pid = child.0.id();
    let rss = || chatpulse::bench::proc_sample(pid).expect("node alive").1;
    let fd_list = || -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .map(|p| p.display().to_string())
            .collect();
        v.sort();
        v
    };
    let fds = || fd_list().len();
    run(TEST_TIMEOUT, async {
        assert_eq!(get(addr, "/health/ready").await.0, 200);
        let before = fd_list();
        let fds_before = before.len();
        let mut after_round = Vec::new();
        for round in 1..=3u64 {
            // 15 hosts × 80 sockets: 64 each admitted (960 of the 1024 slots).
            let mut held = Vec::new();
            for src in 30..45u8 {
                for _ in 0..80 {
                    if let Ok(s) = connect_from(lo(src), addr) {
                        held.push(s);
                    }
                }
            }
            // The node accepts at its own pace (the whole suite shares the cores).
            let want = round * 15 * (80 - 64);
            let refused = settle(addr, "http_connections_refused_total", |n| n >= want).await;
            assert_eq!(refused, want, "refusals counted in round {round}");
            assert_eq!(
                get(addr, "/health/live").await.0,
                200,
                "served under the flood"
            );
            after_round.push(rss());
            drop(held);
            // Every slot free again (the scrape holds one) before the next round.
            settle(addr, "http_connections_open", |n| n <= 1).await;
        }
        let growth_kib = after_round[2].saturating_sub(after_round[0]);
        assert!(
            growth_kib < 4096,
            "resident set grew {growth_kib} KiB from round 1 to 3: {after_round:?}"
        );
        // Descriptors: every flooding socket is gone again.
        let deadline = Instant::now() + Duration::from_secs(10);
        while fds() > fds_before + 2 && Instant::now() < deadline {
            smol::Timer::after(Duration::from_millis(100)).await;
        }
        assert!(
            fds() <= fds_before + 2,
            "{} fds, {fds_before} before",
            fds()
        );
    });
}

/// Polls `name` until `done` holds or 20 s passed; returns the last value.
async fn settle(addr: SocketAddr, name: &str, done: impl Fn(u64) -> bool) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let n = family_sum(&get(addr, "/metrics").await.2, name);
        if done(n) || Instant::now() > deadline {
            return n;
        }
        smol::Timer::after(Duration::from_millis(100)).await;
    }
}

/// The node dies with the test, even when an assertion fails.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
