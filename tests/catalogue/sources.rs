//! Chat sources and the mesh: webhook deliveries that are unsigned, stale,
//! replayed or unreadable (B01–B15), IRC lines the parser drops (I01–I04), and
//! mesh frames from strangers (M01–M04, M07).

use std::net::SocketAddr;
use std::time::Duration;

use chatpulse::app::now_ms;
use chatpulse::chat::webhook::verify::sign;
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::net::TcpStream;

use super::{Check, raw};
use crate::common::fake_helix::{FakeHelix, rfc3339};
use crate::common::fake_irc::FakeIrc;
use crate::common::web::{Resp, Web};
use crate::common::{
    ONE_CHANNEL, TEST_TIMEOUT, TestServer, mesh_toml, read_to_close, run, with_timeout,
};

pub(super) const WEBHOOK_SECRET: &str = "catalogue-webhook-secret";

/// Request headers, owned.
pub(super) type Headers = Vec<(String, String)>;

/// A webhook delivery: `headers` as given (signed ones from [`signed`]) and `body`.
async fn deliver(addr: SocketAddr, headers: &Headers, body: &str) -> Resp {
    let mut req = format!(
        "POST /webhooks/eventsub HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req += &format!("{k}: {v}\r\n");
    }
    raw(addr, format!("{req}\r\n{body}").as_bytes()).await
}

/// Twitch's headers for one message, signed with `secret`.
pub(super) fn signed(
    secret: &str,
    id: &str,
    ts: &str,
    kind: &str,
    sub: &str,
    body: &str,
) -> Headers {
    let sig = sign(secret.as_bytes(), id, ts, body.as_bytes());
    [
        ("Twitch-Eventsub-Message-Id", id),
        ("Twitch-Eventsub-Message-Timestamp", ts),
        ("Twitch-Eventsub-Message-Signature", &sig),
        ("Twitch-Eventsub-Message-Type", kind),
        ("Twitch-Eventsub-Subscription-Type", sub),
        ("Twitch-Eventsub-Subscription-Version", "1"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

#[test]
fn webhook() {
    run(TEST_TIMEOUT, async {
        let fake = FakeHelix::start().await;
        fake.add_user("streamer", "1971641");
        let toml = fake.webhook_toml(WEBHOOK_SECRET, "2914196", &["streamer"]);
        let srv = TestServer::start_with(&toml, None, None).await;
        let a = srv.addr;
        let mut c = Check::new("sources::webhook");
        let now = rfc3339(now_ms());
        let minutes = |m: i64| rfc3339((now_ms() as i64 + m * 60_000) as u64);
        let chat = "channel.chat.message";
        let unreadable = r#"{"subscription":{},"event":{}}"#;
        let long_id = "i".repeat(257);
        let s = |id: &str, ts: &str, kind: &str, sub: &str, body: &str| {
            signed(WEBHOOK_SECRET, id, ts, kind, sub, body)
        };
        let cases: Vec<(&str, Headers, &str)> = vec![
            ("B01", Vec::new(), "{}"),
            (
                "B02",
                signed("another-secret", "b02", &now, "notification", chat, "{}"),
                "{}",
            ),
            (
                "B03",
                s("b03", "2021-02-19 23:47", "notification", chat, "{}"),
                "{}",
            ),
            (
                "B04",
                s("b04", &minutes(-11), "notification", chat, "{}"),
                "{}",
            ),
            (
                "B05",
                s("b05", &minutes(2), "notification", chat, "{}"),
                "{}",
            ),
            ("B06", s(&long_id, &now, "notification", chat, "{}"), "{}"),
            ("B07", s("b07", &now, "something_else", chat, "{}"), "{}"),
            (
                "B08",
                s("b08", &now, "webhook_callback_verification", chat, "{}"),
                "{}",
            ),
            (
                "B10",
                s("b10", &now, "notification", chat, unreadable),
                unreadable,
            ),
            (
                "B09",
                s("b10", &now, "notification", chat, unreadable),
                unreadable,
            ),
            (
                "B11",
                s("b11", &now, "notification", "channel.follow", "{}"),
                "{}",
            ),
            ("B12", s("b12", &now, "revocation", chat, "{}"), "{}"),
        ];
        for (id, headers, body) in cases {
            let before = srv.metrics();
            c.http(id, &deliver(a, &headers, body).await);
            c.counted(id, &srv, &before).await;
        }
        let before = srv.metrics();
        let huge = format!(
            "POST /webhooks/eventsub HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{{",
            1024 * 1024 + 1
        );
        c.http("B13", &raw(a, huge.as_bytes()).await);
        c.counted("B13", &srv, &before).await;
        let before = srv.metrics();
        c.http("B14", &Web::new(a).get("/webhooks/eventsub").await);
        c.counted("B14", &srv, &before).await;
        let plain = TestServer::start().await;
        let before = plain.metrics();
        let headers = s("b15", &now, "notification", chat, "{}");
        c.http("B15", &deliver(plain.addr, &headers, "{}").await);
        c.counted("B15", &plain, &before).await;
        c.finish();
        plain.stop().await;
        srv.stop().await;
    });
}

#[test]
fn irc_lines() {
    run(TEST_TIMEOUT, async {
        let irc = FakeIrc::start(false).await;
        let srv = TestServer::start_with(&irc.toml(&["bar"]), None, None).await;
        irc.wait_for_join(1, "bar").await;
        let mut c = Check::new("sources::irc_lines");
        let too_long = [b'x'; 9000];
        let cases: [(&str, &[u8]); 4] = [
            ("I01", &too_long),
            ("I02", b"\xff\xfe PRIVMSG #bar :yes\r\n"),
            ("I03", b":prefix-only\r\n"),
            ("I04", b"PRIVMSG #bar\r\n"),
        ];
        for (id, bytes) in cases {
            let before = srv.metrics();
            irc.send_raw(bytes);
            if id == "I01" {
                irc.send_line("the end of the too-long line");
            }
            c.plain(id, "dropped");
            c.counted(id, &srv, &before).await;
        }
        assert_eq!(irc.connections(), 1, "no reconnect");
        c.finish();
        srv.stop().await;
    });
}

#[test]
fn mesh_frames() {
    run(TEST_TIMEOUT, async {
        let toml = mesh_toml(&[], "catalogue-mesh-secret-0123", ONE_CHANNEL);
        let srv = TestServer::start_with(&toml, None, None).await;
        let port = srv.mesh().local_addr();
        let mut c = Check::new("sources::mesh_frames");
        let framed = |first: u8, len: usize| {
            let mut f = (len as u32).to_be_bytes().to_vec();
            f.push(first);
            f.extend((1..len).map(|i| i as u8));
            f
        };
        for (id, bytes) in [
            ("M01", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
            ("M02", framed(3, 10)),
            ("M03", framed(99, 40)),
            ("M04", framed(3, 40)),
        ] {
            let before = srv.metrics();
            let mut s = TcpStream::connect(port).await.unwrap();
            // The challenge: all a stranger gets.
            let mut prefix = [0u8; 4];
            s.read_exact(&mut prefix).await.unwrap();
            let mut challenge = vec![0u8; u32::from_be_bytes(prefix) as usize];
            s.read_exact(&mut challenge).await.unwrap();
            let _ = s.write_all(&bytes).await;
            let said = with_timeout(Duration::from_secs(10), read_to_close(&mut s)).await;
            assert!(said.is_empty(), "{id}: {said:?}");
            c.plain(id, "closed");
            c.counted(id, &srv, &before).await;
        }
        // Eight strangers that never answer their challenge hold every slot of their address.
        let mut idle = Vec::new();
        for _ in 0..8 {
            let mut s = TcpStream::connect(port).await.unwrap();
            let mut prefix = [0u8; 4];
            s.read_exact(&mut prefix).await.unwrap();
            idle.push(s);
        }
        let before = srv.metrics();
        let mut s = TcpStream::connect(port).await.unwrap();
        let said = with_timeout(Duration::from_secs(10), read_to_close(&mut s)).await;
        assert!(said.is_empty(), "M07: {said:?}");
        c.plain("M07", "closed");
        c.counted("M07", &srv, &before).await;
        drop(idle);
        assert_eq!(srv.mesh().live().len(), 1);
        c.finish();
        srv.stop().await;
    });
}
