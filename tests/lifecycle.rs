//! Startup, graceful shutdown, restart, and the real binary.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::{Overlay, TEST_TIMEOUT, TestServer, get, run, temp_dir};

#[test]
fn shutdown_drains_then_closes_overlays_with_1001() {
    run(TEST_TIMEOUT, async {
        let toml = "[shutdown]\ndrain_delay = \"400ms\"\n[[channel]]\nlogin = \"alice\"\n";
        let srv = TestServer::start_with(toml, None, None).await;
        let mut ov = Overlay::connect(srv.addr, &srv.token("alice"))
            .await
            .unwrap();
        ov.frame().await;
        srv.server.shutdown();
        // during the drain delay the node still answers, but not ready
        let (s, _, body) = get(srv.addr, "/health/ready").await;
        assert_eq!(s, 503);
        assert!(body.contains("\"failed_check\":\"draining\""), "{body}");
        assert_eq!(get(srv.addr, "/health/live").await.0, 200);
        let err = Overlay::connect(srv.addr, &srv.token("alice"))
            .await
            .err()
            .unwrap();
        assert!(err.contains("503"), "no new overlays while draining: {err}");
        assert_eq!(ov.closed().await, Some(1001));
        srv.server.stopped().await.expect("exit 0");
        assert!(
            smol::net::TcpStream::connect(srv.addr).await.is_err(),
            "listener closed"
        );
    });
}

#[test]
fn restart_keeps_the_bar_and_the_url() {
    run(TEST_TIMEOUT, async {
        let toml = "[[channel]]\nlogin = \"alice\"\nmemory_seconds = 120\n";
        let srv = TestServer::start_with(toml, None, None).await;
        let token = srv.token("alice");
        let mut ov = Overlay::connect(srv.addr, &token).await.unwrap();
        ov.frame().await;
        for (who, what) in [("a", "yes"), ("b", "yes"), ("c", "no")] {
            srv.chat("alice", who, what).await;
        }
        ov.frame_where("3 votes", |f| f.total_votes == 3).await;
        let addr = srv.addr;
        let dir = srv.stop().await;
        let srv = TestServer::start_with(toml, Some(dir), Some(addr)).await;
        assert_eq!(srv.token("alice"), token, "overlay URL survives restarts");
        let mut ov = Overlay::connect(srv.addr, &token).await.unwrap();
        let snap = ov.frame().await;
        assert_eq!((snap.for_votes, snap.against_votes), (2, 1));
        srv.stop().await;
    });
}

#[test]
fn edited_config_file_wins_but_unchanged_file_keeps_saved_settings() {
    run(TEST_TIMEOUT, async {
        let toml = "[[channel]]\nlogin = \"alice\"\n";
        let srv = TestServer::start_with(toml, None, None).await;
        let app = srv.server.app().clone();
        let mut cfg = app.hub.config_of("alice").unwrap();
        cfg.for_label = "Saved".into();
        app.save_config("alice", cfg, "test").await.unwrap();
        drop(app);
        let dir = srv.stop().await;
        let srv = TestServer::start_with(toml, Some(dir), None).await;
        assert_eq!(
            srv.server.app().hub.config_of("alice").unwrap().for_label,
            "Saved"
        );
        let dir = srv.stop().await;
        let srv = TestServer::start_with(
            "[[channel]]\nlogin = \"alice\"\nfor_label = \"File\"\n",
            Some(dir),
            None,
        )
        .await;
        assert_eq!(
            srv.server.app().hub.config_of("alice").unwrap().for_label,
            "File"
        );
        srv.stop().await;
    });
}

/// The real binary: `demo` on loopback prints its overlay URL, serves ready,
/// delivers synthetic votes, and exits 0 on SIGTERM.
#[test]
fn binary_demo_smoke() {
    let dir = temp_dir("bin");
    let mut child = Command::new(env!("CARGO_BIN_EXE_chatpulse"))
        .args(["demo", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&dir)
        .env("CHATPULSE_LOG_LEVEL", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn chatpulse");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = lines.next().expect("a line").expect("utf-8");
    let rest = url.strip_prefix("http://").expect("http URL");
    let (host, token) = rest.split_once("/overlay/").expect("overlay URL");
    let addr: std::net::SocketAddr = host.parse().expect("addr");
    run(TEST_TIMEOUT, async {
        assert_eq!(get(addr, "/health/ready").await.0, 200);
        let mut ov = Overlay::connect(addr, token).await.unwrap();
        ov.frame_where("demo votes", |f| f.total_votes > 0).await;
    });
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let code = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(code.success(), "exit status {code}");
}

#[test]
fn binary_rejects_bad_config_with_the_key_named() {
    let dir = temp_dir("badcfg");
    let path = dir.join("bad.toml");
    std::fs::write(&path, "[limits]\nmax_connections = -3\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_chatpulse"))
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("limits.max_connections"), "{err}");
    let out = Command::new(env!("CARGO_BIN_EXE_chatpulse"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("chatpulse "));
}

/// The README's first command is `cargo run --release -- demo`; with a second
/// binary (chatpulse-bench) in the package, cargo needs `default-run` to pick.
#[test]
fn readme_demo_command_resolves_to_the_server_binary() {
    let manifest =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml")).unwrap();
    assert!(
        manifest
            .lines()
            .any(|l| l.trim() == "default-run = \"chatpulse\""),
        "Cargo.toml needs default-run = \"chatpulse\""
    );
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    assert!(
        readme.contains("cargo run --release -- demo"),
        "README's demo command changed: update this test"
    );
}
