//! HTTP from the first byte: framing and the head (H01–H12), the node's and
//! an address's connection limits (H37, H38), the overlay's WebSocket upgrade,
//! its limits and its closes (H13–H20, W01–W04), and a draining node (H21, H36,
//! W06).

use std::net::SocketAddr;
use std::time::Duration;

use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::Message;
use async_tungstenite::tungstenite::protocol::frame::Frame as WsFrame;
use async_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use futures_util::StreamExt;
use smol::io::AsyncWriteExt;
use smol::net::TcpStream;

use super::{Check, ROOMY, TWO_CHANNELS, raw};
use crate::common::web::{Resp, Web};
use crate::common::{
    ONE_CHANNEL, Overlay, TEST_TIMEOUT, TestServer, eventually, read_to_close, run, with_timeout,
};

/// A WebSocket upgrade of `/ws/overlay/{token}` with `headers` (all of them but Host).
fn upgrade(addr: SocketAddr, token: &str, headers: &[(&str, &str)]) -> String {
    let mut req = format!("GET /ws/overlay/{token} HTTP/1.1\r\nHost: {addr}\r\n");
    for (k, v) in headers {
        req += &format!("{k}: {v}\r\n");
    }
    req + "\r\n"
}

pub(super) const UPGRADE: [(&str, &str); 4] = [
    ("Connection", "Upgrade"),
    ("Upgrade", "websocket"),
    ("Sec-WebSocket-Version", "13"),
    ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
];

/// The upgrade headers from client address `ip` (through the trusted proxy).
fn upgrade_from(addr: SocketAddr, token: &str, ip: &str) -> String {
    let mut h = UPGRADE.to_vec();
    h.push(("X-Forwarded-For", ip));
    upgrade(addr, token, &h)
}

/// The close frame's code and reason, skipping frames; None if the socket ends without one.
async fn close_of(ws: &mut WebSocketStream<TcpStream>) -> Option<(u16, String)> {
    let next = async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(c))) => {
                    return c.map(|c| (u16::from(c.code), c.reason.as_str().to_string()));
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return None,
            }
        }
    };
    with_timeout(Duration::from_secs(15), next).await
}

#[test]
fn http_transport() {
    run(TEST_TIMEOUT, async {
        let toml = format!("{ROOMY}http_head_timeout = \"300ms\"\n{ONE_CHANNEL}");
        let srv = TestServer::start_with(&toml, None, None).await;
        let a = srv.addr;
        let mut c = Check::new("http::http_transport");
        let mut big = b"GET / HTTP/1.1\r\nX-Big: ".to_vec();
        big.extend(std::iter::repeat_n(b'a', 9000));
        big.extend_from_slice(b"\r\n\r\n");
        let many = format!("GET / HTTP/1.1\r\n{}\r\n", "X-N: 1\r\n".repeat(49));
        let body =
            |n: usize| format!("POST /login HTTP/1.1\r\nHost: x\r\nContent-Length: {n}\r\n\r\n");
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("H01", big),
            ("H01", many.into_bytes()),
            (
                "H02",
                b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03garbage\r\n\r\n".to_vec(),
            ),
            ("H02", b"HELLO\r\n\r\n".to_vec()),
            ("H02", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec()),
            ("H03", b"GET http://x/ HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
            (
                "H04",
                b"GET / HTTP/1.1\r\nHost: x\r\nX-Bad: \xff\xfe\r\n\r\n".to_vec(),
            ),
            (
                "H05",
                b"GET /health/live HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"
                    .to_vec(),
            ),
            (
                "H05",
                b"GET /health/live HTTP/1.1\r\nContent-Length: ten\r\n\r\n".to_vec(),
            ),
            (
                "H08",
                b"GET /health/live HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
                    .to_vec(),
            ),
            (
                "H09",
                b"GET /health/live HTTP/1.1\r\nContent-Length: 10\r\n\r\n0123456789".to_vec(),
            ),
            ("H10", body(16 * 1024 + 1).into_bytes()),
            (
                "H11",
                b"GET /no/such/route HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            ),
            (
                "H12",
                b"DELETE /health/live HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            ),
        ];
        for (id, bytes) in cases {
            let before = srv.metrics();
            let r = raw(a, &bytes).await;
            c.http(id, &r);
            c.counted(id, &srv, &before).await;
            if id == "H12" {
                assert_eq!(r.header("allow").as_deref(), Some("GET, HEAD"));
            }
        }

        // H06: a body cut short; the client ends its side.
        let before = srv.metrics();
        let mut s = TcpStream::connect(a).await.unwrap();
        s.write_all(format!("{}0123456789", body(100)).as_bytes())
            .await
            .unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let (status, head, text) = crate::common::read_response(&mut s).await.unwrap();
        c.http(
            "H06",
            &Resp {
                status,
                head,
                body: text,
            },
        );
        c.counted("H06", &srv, &before).await;

        // H07: half a head, then silence: closed without a word.
        let before = srv.metrics();
        let mut slow = TcpStream::connect(a).await.unwrap();
        slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        let said = with_timeout(Duration::from_secs(10), read_to_close(&mut slow)).await;
        assert!(said.is_empty(), "{}", String::from_utf8_lossy(&said));
        c.plain("H07", "closed");
        c.counted("H07", &srv, &before).await;
        c.finish();
        srv.stop().await;
    });
}

#[test]
fn http_connections() {
    run(TEST_TIMEOUT, async {
        let mut c = Check::new("http::http_connections");
        for (id, limits) in [
            (
                "H37",
                "max_http_connections = 2\nmax_http_connections_per_ip = 1\n",
            ),
            ("H38", "max_http_connections = 1\n"),
        ] {
            let toml = format!("[limits]\n{limits}{ONE_CHANNEL}");
            let srv = TestServer::start_with(&toml, None, None).await;
            let before = srv.metrics();
            let idle = TcpStream::connect(srv.addr).await.unwrap();
            let mut refused = TcpStream::connect(srv.addr).await.unwrap();
            let said = with_timeout(Duration::from_secs(10), read_to_close(&mut refused)).await;
            let said = String::from_utf8_lossy(&said).to_string();
            let (head, body) = said.split_once("\r\n\r\n").expect("an answer");
            let status = head
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let r = Resp {
                status,
                head: head.to_string(),
                body: body.to_string(),
            };
            c.http(id, &r);
            c.counted(id, &srv, &before).await;
            assert_eq!(r.header("retry-after").as_deref(), Some("5"));
            drop(idle);
            srv.stop().await;
        }
        c.finish();
    });
}

#[test]
fn overlay_upgrade() {
    run(TEST_TIMEOUT, async {
        let toml = format!(
            "[server]\ntrusted_proxies = [\"127.0.0.1\"]\n[limits]\nmax_connections = 2\n\
             max_connections_per_ip = 1\nmax_overlays_per_broadcaster = 1\n\
             connection_burst_per_ip = 2\nconnection_rate_per_ip = 0.1\n{TWO_CHANNELS}"
        );
        let srv = TestServer::start_with(&toml, None, None).await;
        let a = srv.addr;
        let mut c = Check::new("http::overlay_upgrade");
        let from = |ip: &'static str| [("x-forwarded-for", ip)];
        let released = || async {
            eventually("overlay slots released", Duration::from_secs(10), || {
                (srv.server.app().limits.open_connections() == 0).then_some(())
            })
            .await
        };

        // After the upgrade: closes with a code and a reason.
        let before = srv.metrics();
        let mut ov = Overlay::connect_with(a, "AAAAAAAAAAAAAAAAAAAAAA", &from("198.51.100.1"))
            .await
            .unwrap();
        c.close("W01", close_of(&mut ov.ws).await);
        c.counted("W01", &srv, &before).await;

        let mut ov = Overlay::connect_with(a, &srv.token("alice"), &from("198.51.100.2"))
            .await
            .unwrap();
        ov.frame().await;
        srv.server
            .app()
            .rotate_token("alice", "test")
            .await
            .unwrap();
        c.close("W02", close_of(&mut ov.ws).await);
        released().await;

        let before = srv.metrics();
        let mut ov = Overlay::connect_with(a, &srv.token("alice"), &from("198.51.100.3"))
            .await
            .unwrap();
        ov.frame().await;
        ov.send_text("x".repeat(5000)).await;
        c.close("W03", close_of(&mut ov.ws).await);
        c.counted("W03", &srv, &before).await;

        let before = srv.metrics();
        let mut ov = Overlay::connect_with(a, &srv.token("bob"), &from("198.51.100.4"))
            .await
            .unwrap();
        ov.frame().await;
        let not_utf8 = WsFrame::message(vec![0xff, 0xfe], OpCode::Data(Data::Text), true);
        let _ = ov.ws.send(Message::Frame(not_utf8)).await;
        c.close("W04", close_of(&mut ov.ws).await);
        c.counted("W04", &srv, &before).await;
        released().await;

        // Before the upgrade: JSON, in the order the checks run.
        let alice = srv.token("alice");
        let bob = srv.token("bob");
        let mut bad_version = UPGRADE.to_vec();
        bad_version[2].1 = "12";
        let no_key = &UPGRADE[..3];
        let mut evil = UPGRADE.to_vec();
        evil.push(("Origin", "https://evil.example"));
        for (id, req) in [
            ("H13", upgrade(a, &alice, &[])),
            ("H14", upgrade(a, &alice, &bad_version)),
            ("H15", upgrade(a, &alice, no_key)),
            ("H16", upgrade(a, &alice, &evil)),
        ] {
            let before = srv.metrics();
            let r = raw(a, req.as_bytes()).await;
            c.http(id, &r);
            c.counted(id, &srv, &before).await;
            if id == "H14" {
                assert_eq!(r.header("sec-websocket-version").as_deref(), Some("13"));
            }
        }
        // Limits (burst 2 per address, 1 open per address and per channel, 2 per node).
        let _first = Overlay::connect_with(a, &alice, &from("203.0.113.1"))
            .await
            .unwrap();
        let mut steps = vec![
            ("H18", upgrade_from(a, &bob, "203.0.113.1")),
            ("H17", upgrade_from(a, &bob, "203.0.113.1")),
            ("H19", upgrade_from(a, &alice, "203.0.113.2")),
        ];
        for (id, req) in steps.drain(..) {
            let before = srv.metrics();
            let r = raw(a, req.as_bytes()).await;
            c.http(id, &r);
            c.counted(id, &srv, &before).await;
            assert_eq!(r.header("retry-after").as_deref(), Some("1"), "{id}");
        }
        let _second = Overlay::connect_with(a, &bob, &from("203.0.113.2"))
            .await
            .unwrap();
        let before = srv.metrics();
        let r = raw(a, upgrade_from(a, &bob, "203.0.113.3").as_bytes()).await;
        c.http("H20", &r);
        c.counted("H20", &srv, &before).await;
        assert_eq!(r.header("retry-after").as_deref(), Some("5"));
        c.finish();
        srv.stop().await;
    });
}

#[test]
fn draining() {
    run(TEST_TIMEOUT, async {
        let toml = format!("[shutdown]\ndrain_delay = \"2s\"\n{ONE_CHANNEL}");
        let srv = TestServer::start_with(&toml, None, None).await;
        let mut c = Check::new("http::draining");
        let token = srv.token("alice");
        let mut ov = Overlay::connect(srv.addr, &token).await.unwrap();
        ov.frame().await;
        let before = srv.metrics();
        srv.server.shutdown();
        c.http("H36", &Web::new(srv.addr).get("/health/ready").await);
        let r = raw(srv.addr, upgrade(srv.addr, &token, &UPGRADE).as_bytes()).await;
        c.http("H21", &r);
        assert_eq!(r.header("retry-after").as_deref(), Some("5"));
        c.close("W06", close_of(&mut ov.ws).await);
        for id in ["H21", "H36", "W06"] {
            c.counted(id, &srv, &before).await;
        }
        c.finish();
        srv.server.stopped().await.expect("exit 0");
    });
}
