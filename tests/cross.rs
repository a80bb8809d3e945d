//! The ARM release binaries that `scripts/cross-build.sh` makes, run here under
//! qemu-user: `--version`, then `demo` on loopback with `/health/ready` 200 and
//! one overlay WebSocket receiving a vote update from the synthetic chat.
//! `scripts/test.sh` builds them first when it can (as root); without them
//! (or without qemu-user-static) these skip loudly, or fail with
//! CHATPULSE_TEST_REQUIRE_TOOLS=1. CHATPULSE_TEST_CROSS_DIR overrides where
//! they are looked for (default `target/cross`, the script's default).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common::{Overlay, get, run, temp_dir};

/// qemu emulates every instruction: a start takes seconds, not milliseconds.
const EMULATED: Duration = Duration::from_secs(120);

fn binary(target: &str, qemu: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("CHATPULSE_TEST_CROSS_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/cross"),
        PathBuf::from,
    );
    let bin = dir.join(target).join("release/chatpulse");
    let has_qemu = Command::new(qemu)
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if bin.exists() && has_qemu {
        return Some(bin);
    }
    assert!(
        std::env::var("CHATPULSE_TEST_REQUIRE_TOOLS").is_err(),
        "{} and {qemu} required (CHATPULSE_TEST_REQUIRE_TOOLS): run scripts/cross-build.sh {target}",
        bin.display()
    );
    eprintln!("SKIPPED: no {} or {qemu}", bin.display());
    None
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn runs_under_qemu(target: &str, qemu: &str) {
    let Some(bin) = binary(target, qemu) else {
        return;
    };
    let out = Command::new(qemu)
        .arg(&bin)
        .arg("--version")
        .output()
        .expect("run under qemu");
    let version = String::from_utf8_lossy(&out.stdout);
    assert!(
        version.starts_with(&format!("chatpulse {}", env!("CARGO_PKG_VERSION"))),
        "{version}"
    );

    let dir = temp_dir("cross");
    let mut child = Command::new(qemu)
        .arg(&bin)
        .args(["demo", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&dir)
        .env("CHATPULSE_LOG_LEVEL", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start demo under qemu");
    let stdout = child.stdout.take().expect("stdout");
    let node = Killed(child);
    // The demo prints its overlay URL: http://127.0.0.1:PORT/overlay/TOKEN.
    let url = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find(|l| l.contains("/overlay/"))
        .expect("the demo printed its overlay URL");
    let rest = url.trim().trim_start_matches("http://");
    let (host, token) = rest.split_once("/overlay/").expect("overlay URL");
    let addr: SocketAddr = host.parse().expect("address in the URL");
    run(EMULATED, async {
        let (status, _, body) = get(addr, "/health/ready").await;
        assert_eq!(status, 200, "{body}");
        let mut overlay = Overlay::connect(addr, token).await.expect("overlay socket");
        overlay.frame().await;
        overlay
            .frame_where("a vote from the synthetic chat", |f| f.total_votes > 0)
            .await;
    });
    drop(node);
}

#[test]
fn aarch64_release_binary_runs_the_demo_under_qemu() {
    runs_under_qemu("aarch64-unknown-linux-gnu", "qemu-aarch64-static");
}

#[test]
fn armv7_release_binary_runs_the_demo_under_qemu() {
    runs_under_qemu("armv7-unknown-linux-gnueabihf", "qemu-arm-static");
}
