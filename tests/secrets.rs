//! Secrets never reach the log: the real binary at `trace` level, configured
//! with every secret it knows, driven through the paths that log errors —
//! Twitch unreachable (token validation, IRC login), a stranger on the mesh
//! port, wrong passwords and forged cookies, a read of the CLI token — and its
//! whole stderr searched for every secret afterwards.

use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use smol::io::AsyncWriteExt;

use crate::common::{TEST_TIMEOUT, eventually, get, http_raw, run, temp_dir};

fn free_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

#[test]
fn no_secret_ever_reaches_the_log() {
    let dir = temp_dir("secrets");
    let secrets = [
        ("twitch.client_secret", "cs0client0secret0value"),
        ("twitch.user_token", "ut0user0token0value0xyz"),
        ("twitch.webhook_secret", "wh0webhook0secret0value"),
        (
            "auth.session_secret",
            "ss0session0secret0value0padding0to032",
        ),
        ("mesh.secret", "ms0mesh0secret0value0padding"),
    ];
    let encryption_key = "e1".repeat(32);
    let (http, mesh) = (free_port(), free_port());
    let closed = free_port(); // nothing listens: Twitch "down"
    let toml = format!(
        "[twitch]\nsource = \"irc\"\nirc_addr = \"{closed}\"\nirc_tls = false\n\
         client_id = \"cid\"\nclient_secret = \"{}\"\nuser_token = \"oauth:{}\"\n\
         webhook_secret = \"{}\"\nhelix_url = \"http://{closed}\"\nauth_url = \"http://{closed}\"\n\
         [auth]\nsession_secret = \"{}\"\nencryption_key = \"{encryption_key}\"\n\
         [mesh]\nlisten = \"{mesh}\"\nadvertise = \"{mesh}\"\nsecret = \"{}\"\n\
         [[channel]]\nlogin = \"alice\"\n",
        secrets[0].1, secrets[1].1, secrets[2].1, secrets[3].1, secrets[4].1
    );
    let config = dir.join("chatpulse.toml");
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&config)
        .and_then(|mut f| f.write_all(toml.as_bytes()))
        .unwrap();
    let log = dir.join("stderr.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_chatpulse"))
        .args(["serve", "--listen", &http.to_string(), "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .env("CHATPULSE_LOG_LEVEL", "trace")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("spawn chatpulse");
    run(TEST_TIMEOUT, async {
        eventually("the node serves", Duration::from_secs(20), || {
            std::net::TcpStream::connect(http).ok()
        })
        .await;
        // A stranger on the mesh port: no secret, then garbage.
        if let Ok(mut s) = smol::net::TcpStream::connect(mesh).await {
            let _ = s.write_all(b"\x00\x00\x00\x10hello, let me in").await;
        }
        // Wrong password, a forged session cookie, a wrong CLI token.
        let form = "password=ms0mesh0secret0value0padding";
        let post = format!(
            "POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{form}",
            form.len()
        );
        let _ = http_raw(http, post.as_bytes()).await;
        let forged = "GET /dashboard HTTP/1.1\r\nHost: x\r\nCookie: chatpulse_session=ss0session0secret0value0padding0to032\r\nConnection: close\r\n\r\n";
        let _ = http_raw(http, forged.as_bytes()).await;
        let bearer = "GET /api/mesh HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer wh0webhook0secret0value\r\nConnection: close\r\n\r\n";
        let _ = http_raw(http, bearer.as_bytes()).await;
        assert_eq!(get(http, "/health/live").await.0, 200);
        // Long enough for a few IRC reconnects and the token validation to fail.
        smol::Timer::after(Duration::from_secs(4)).await;
    });
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("TRACE") || text.contains("DEBUG"),
        "trace logging ran: {text}"
    );
    assert!(
        text.contains("irc:"),
        "the IRC failure path was logged: {text}"
    );
    let cli_token = std::fs::read_to_string(dir.join("data").join("cli.token")).unwrap_or_default();
    let mut needles: Vec<(&str, String)> =
        secrets.iter().map(|(k, v)| (*k, v.to_string())).collect();
    needles.push(("auth.encryption_key", encryption_key));
    if !cli_token.is_empty() {
        needles.push(("cli.token", cli_token));
    }
    for (what, value) in needles {
        assert!(!text.contains(&value), "{what} appears in the log:\n{text}");
    }
}
