//! Built-in TLS (`[tls]`): HTTPS and WSS on `server.listen` with the test
//! certificate, HSTS only over TLS, files refused at start with the key named,
//! TLS 1.1 refused (needs `openssl`), the plain-HTTP redirect listener, and a
//! certificate reload that new connections see while an open WSS overlay keeps
//! receiving frames. A missing `openssl` skips loudly, or fails with
//! CHATPULSE_TEST_REQUIRE_TOOLS=1.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::Message;
use chatpulse::metrics::VoteResult;
use chatpulse::tls::{self, MaybeTls};
use futures_rustls::rustls::ClientConfig;
use futures_util::StreamExt;
use nanoserde::DeJson;
use smol::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::{
    self, Frame, ONE_CHANNEL, TEST_TIMEOUT, TestServer, openssl, openssl_available, run, temp_dir,
};

const HSTS: &str = "strict-transport-security: max-age=63072000";

fn certs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/common/certs")
}

/// Copies a file, readable by its owner only (git checks keys out 0644, which
/// the node refuses for a private key).
fn private_copy(from: &Path, to: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::copy(from, to).expect("copy test cert");
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// Copies the test leaf into a temp dir (so a test may overwrite it) and
/// returns the dir and the `[tls]` table pointing at the copies.
fn tls_files() -> (PathBuf, String) {
    let dir = temp_dir("tls");
    for f in ["cert.pem", "key.pem"] {
        private_copy(&certs().join(f), &dir.join(f));
    }
    let toml = format!(
        "[tls]\ncert = {:?}\nkey = {:?}\n",
        dir.join("cert.pem").display().to_string(),
        dir.join("key.pem").display().to_string()
    );
    (dir, toml)
}

async fn start_tls() -> (TestServer, PathBuf) {
    let (dir, tls) = tls_files();
    let srv = TestServer::start_with(&format!("{ONE_CHANNEL}{tls}"), None, None).await;
    (srv, dir)
}

fn client(ca: &Path) -> Arc<ClientConfig> {
    tls::client_config(Some(ca)).expect("client config")
}

async fn connect(
    addr: SocketAddr,
    config: Option<&Arc<ClientConfig>>,
) -> std::io::Result<MaybeTls> {
    tls::connect("127.0.0.1", addr.port(), config).await
}

/// One `GET path` with `Connection: close`; returns (status, lower-cased head).
async fn get(addr: SocketAddr, config: Option<&Arc<ClientConfig>>, path: &str) -> (u16, String) {
    let mut s = connect(addr, config).await.expect("connect");
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    // The server closes without close_notify after `Connection: close`; the
    // bytes read before that error are the whole answer.
    let _ = s.read_to_end(&mut buf).await;
    let text = String::from_utf8_lossy(&buf).to_ascii_lowercase();
    let head = text
        .split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .to_string();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"));
    (status, head)
}

async fn wss(
    addr: SocketAddr,
    config: &Arc<ClientConfig>,
    token: &str,
) -> WebSocketStream<MaybeTls> {
    let stream = connect(addr, Some(config)).await.expect("tls connect");
    let url = format!("wss://127.0.0.1:{}/ws/overlay/{token}", addr.port());
    let (ws, _) = async_tungstenite::client_async(url, stream)
        .await
        .expect("wss handshake");
    ws
}

async fn frame(ws: &mut WebSocketStream<MaybeTls>) -> Frame {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => return Frame::deserialize_json(&t).expect("frame"),
            Some(Ok(_)) => continue,
            other => panic!("expected a frame, got {other:?}"),
        }
    }
}

async fn vote_reaches(srv: &TestServer, ws: &mut WebSocketStream<MaybeTls>, chatter: &str) {
    assert_eq!(srv.chat("alice", chatter, "yes").await, VoteResult::Applied);
    loop {
        let f = frame(ws).await;
        if f.for_votes >= 1 {
            return;
        }
    }
}

#[test]
fn https_page_wss_overlay_and_hsts_only_over_tls() {
    run(TEST_TIMEOUT, async {
        let (srv, _dir) = start_tls().await;
        let ca = client(&certs().join("ca.pem"));
        let (status, head) = get(srv.addr, Some(&ca), "/health/live").await;
        assert_eq!(status, 200);
        assert!(head.contains(HSTS), "HSTS over TLS: {head}");
        let (status, _) = get(
            srv.addr,
            Some(&ca),
            &format!("/overlay/{}", srv.token("alice")),
        )
        .await;
        assert_eq!(status, 200);

        // Plain HTTP to the TLS port gets no answer, only a closed socket.
        let plain =
            common::http_raw(srv.addr, b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(plain.is_none(), "plain HTTP on the TLS port: {plain:?}");

        let mut ws = wss(srv.addr, &ca, &srv.token("alice")).await;
        assert_eq!(frame(&mut ws).await.kind, "snapshot");
        vote_reaches(&srv, &mut ws, "u1").await;
        srv.stop().await;

        let plain = TestServer::start().await;
        let (status, head) = get(plain.addr, None, "/health/live").await;
        assert_eq!(status, 200);
        assert!(
            !head.contains("strict-transport-security"),
            "no HSTS over plain: {head}"
        );
        plain.stop().await;
    });
}

#[test]
fn stalled_handshake_is_closed_at_the_head_timeout() {
    run(TEST_TIMEOUT, async {
        let (_dir, tls) = tls_files();
        let toml = format!("{ONE_CHANNEL}[limits]\nhttp_head_timeout = \"200ms\"\n{tls}");
        let srv = TestServer::start_with(&toml, None, None).await;
        // A client that connects and never sends its ClientHello.
        let mut s = connect(srv.addr, None).await.expect("connect");
        let mut buf = [0u8; 16];
        let read = common::with_timeout(Duration::from_secs(10), s.read(&mut buf)).await;
        assert!(matches!(read, Ok(0) | Err(_)), "closed, got {read:?}");
        srv.stop().await;
    });
}

#[test]
fn bad_cert_or_key_refused_at_start_naming_the_key() {
    let (good, _) = tls_files();
    let missing = temp_dir("tls-missing").join("nope.pem");
    let open_key = good.join("open-key.pem");
    std::fs::copy(good.join("key.pem"), &open_key).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&open_key, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let cases = [
        ("tls.cert", missing.clone(), good.join("key.pem")),
        ("tls.key", good.join("cert.pem"), missing.clone()),
        // A certificate where the key should be: no private key in it.
        ("tls.key", good.join("cert.pem"), good.join("cert.pem")),
        ("tls.cert", good.join("key.pem"), good.join("key.pem")),
        // A key every user on the host may read.
        ("tls.key", good.join("cert.pem"), open_key.clone()),
    ];
    for (key, cert, key_file) in cases {
        let toml = format!(
            "[tls]\ncert = {:?}\nkey = {:?}\n",
            cert.display().to_string(),
            key_file.display().to_string()
        );
        let mut config = chatpulse::config::from_toml_str(&toml).expect("config parses");
        config.server.listen = "127.0.0.1:0".parse().unwrap();
        config.data_dir = temp_dir("tls-bad");
        config.twitch.source = chatpulse::config::ChatSourceKind::None;
        let err = match chatpulse::Server::start(config, chatpulse::Mode::Serve) {
            Ok(s) => {
                s.shutdown();
                let _ = s.wait();
                panic!("{key} {cert:?} / {key_file:?} accepted");
            }
            Err(e) => e.to_string(),
        };
        let path = if key == "tls.cert" { &cert } else { &key_file };
        assert!(err.contains(key), "{err} names {key}");
        assert!(
            err.contains(&path.display().to_string()),
            "{err} names {path:?}"
        );
        if key_file == open_key {
            assert!(
                err.contains("must stay private") && err.contains("chmod"),
                "{err}"
            );
        }
    }
    let half = chatpulse::config::from_toml_str("[tls]\ncert = \"a.pem\"\n").unwrap_err();
    assert!(half.to_string().contains("tls.key"), "{half}");
}

/// `openssl s_client` with `version_flag`; true when a session was established.
async fn s_client(addr: SocketAddr, version_flag: &'static str) -> bool {
    smol::unblock(move || {
        let out = Command::new("openssl")
            .args(["s_client", "-connect", &addr.to_string(), version_flag])
            // OpenSSL 3 refuses TLS 1.1 on its own side at the default level.
            .args(["-cipher", "DEFAULT@SECLEVEL=0"])
            .stdin(Stdio::null())
            .output()
            .expect("openssl s_client");
        let text = String::from_utf8_lossy(&out.stdout);
        out.status.success() && text.contains("Cipher is") && !text.contains("Cipher is (NONE)")
    })
    .await
}

#[test]
fn tls_1_1_refused_1_2_accepted() {
    if !openssl_available() {
        return;
    }
    run(TEST_TIMEOUT, async {
        let (srv, _dir) = start_tls().await;
        assert!(s_client(srv.addr, "-tls1_2").await, "TLS 1.2 handshake");
        assert!(
            !s_client(srv.addr, "-tls1_1").await,
            "TLS 1.1 must be refused"
        );
        srv.stop().await;
    });
}

/// A second CA (`ca2.pem`) and a localhost leaf it signed (`cert2.pem`, `key2.pem`).
fn second_cert(dir: &Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let ca = [
        "req", "-x509", "-keyout", "ca2.key", "-out", "ca2.pem", "-days", "2",
    ];
    openssl(
        dir,
        &[&ca[..], &ec[..], &["-subj", "/CN=chatpulse test CA 2"]].concat(),
    );
    let csr = [
        "req",
        "-keyout",
        "key2.pem",
        "-out",
        "leaf2.csr",
        "-subj",
        "/CN=localhost",
    ];
    openssl(dir, &[&csr[..], &ec[..]].concat());
    std::fs::write(
        dir.join("ext.cnf"),
        "basicConstraints=CA:FALSE\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "leaf2.csr",
            "-CA",
            "ca2.pem",
            "-CAkey",
            "ca2.key",
            "-CAcreateserial",
            "-out",
            "cert2.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
    );
}

#[test]
fn reload_serves_the_new_cert_and_keeps_open_overlays() {
    if !openssl_available() {
        return;
    }
    run(TEST_TIMEOUT, async {
        let (srv, dir) = start_tls().await;
        let gen_dir = dir.clone();
        smol::unblock(move || second_cert(&gen_dir)).await;
        let old_ca = client(&certs().join("ca.pem"));
        let new_ca = client(&dir.join("ca2.pem"));
        assert!(
            connect(srv.addr, Some(&new_ca)).await.is_err(),
            "new CA before reload"
        );

        let mut ws = wss(srv.addr, &old_ca, &srv.token("alice")).await;
        assert_eq!(frame(&mut ws).await.kind, "snapshot");

        // A broken file: the reload fails and the old certificate stays.
        std::fs::write(dir.join("cert.pem"), "not a certificate").unwrap();
        let err = srv.server.reload_tls().expect_err("garbage cert reloads");
        assert!(err.to_string().contains("tls.cert"), "{err}");
        assert_eq!(get(srv.addr, Some(&old_ca), "/health/live").await.0, 200);

        std::fs::copy(dir.join("cert2.pem"), dir.join("cert.pem")).unwrap();
        std::fs::copy(dir.join("key2.pem"), dir.join("key.pem")).unwrap();
        srv.server.reload_tls().expect("reload");
        assert_eq!(get(srv.addr, Some(&new_ca), "/health/live").await.0, 200);
        assert!(
            connect(srv.addr, Some(&old_ca)).await.is_err(),
            "old cert after reload"
        );

        // The overlay opened before the reload still gets frames.
        vote_reaches(&srv, &mut ws, "u1").await;
        srv.stop().await;
    });
}

#[test]
fn redirect_listener_sends_https_and_answers_health() {
    run(TEST_TIMEOUT, async {
        let (_dir, tls) = tls_files();
        let toml = format!("{ONE_CHANNEL}{tls}redirect_listen = \"127.0.0.1:0\"\n");
        let srv = TestServer::start_with(&toml, None, None).await;
        let redirect = srv.server.redirect_addr().expect("redirect listener");
        let raw =
            b"GET /overlay/x?y=1 HTTP/1.1\r\nHost: example.com:8080\r\nConnection: close\r\n\r\n";
        let (status, head, _) = common::http_raw(redirect, raw).await.expect("answer");
        assert_eq!(status, 301);
        let want = format!(
            "location: https://example.com:{}/overlay/x?y=1",
            srv.addr.port()
        );
        assert!(head.to_ascii_lowercase().contains(&want), "{head}");
        assert!(
            !head
                .to_ascii_lowercase()
                .contains("strict-transport-security"),
            "{head}"
        );
        let (status, _, _) = common::http_raw(
            redirect,
            b"GET /health/ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await
        .expect("answer");
        assert_eq!(status, 200);
        let (status, _, _) = common::http_raw(redirect, b"GET / HTTP/1.1\r\n\r\n")
            .await
            .expect("answer");
        assert_eq!(status, 400, "no Host: nowhere to redirect");
        srv.stop().await;
    });
}
