//! The EventSub webhook source end to end: a real node with
//! `source = "eventsub-webhook"` against the in-process Twitch fake. Signed
//! requests go straight to the node's `/webhooks/eventsub` (the configured
//! callback is `https://example.invalid/…`, as Twitch requires https). This
//! file: the request handler; `webhook/conduit.rs`: the control plane.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chatpulse::app::now_ms;
use chatpulse::chat::webhook::verify::sign;

use crate::common::fake_helix::{FakeHelix, FakeSub, rfc3339};
use crate::common::{Overlay, TEST_TIMEOUT, TestServer, eventually, http_raw, run};

/// Conduit, shard, subscriptions and tokens: the control plane against the fake.
mod conduit;

const SECRET: &str = "secretabcd";
const BOT: &str = "2914196";
const STREAMER_ID: &str = "1971641";
const WAIT: Duration = Duration::from_secs(20);

/// Twitch's documented example (reference §1(b)) with fields real payloads add:
/// unknown ones, an empty `color`, shared-chat `source_*` fields.
const CHAT_PAYLOAD: &str = r##"{"subscription":{"id":"0b7f3361-672b-4d39-b307-dd5b576c9b27","status":"enabled","type":"channel.chat.message","version":"1","condition":{"broadcaster_user_id":"1971641","user_id":"2914196"},"transport":{"method":"webhook","callback":"https://example.com/webhooks/callback"},"created_at":"2023-11-06T18:11:47.492253549Z","cost":0},"event":{"broadcaster_user_id":"1971641","broadcaster_user_login":"streamer","broadcaster_user_name":"streamer","chatter_user_id":"4145994","chatter_user_login":"viewer32","chatter_user_name":"viewer32","message_id":"cc106a89-1814-919d-454c-f4f2f970aae7","message":{"text":"Hi chat","fragments":[{"type":"text","text":"Hi chat","cheermote":null,"emote":null,"mention":null}]},"color":"","badges":[{"set_id":"moderator","id":"1","info":""},{"set_id":"subscriber","id":"12","info":"16"},{"set_id":"sub-gifter","id":"1","info":""}],"message_type":"text","cheer":null,"reply":null,"channel_points_custom_reward_id":null,"channel_points_animation_id":null,"source_broadcaster_user_id":null,"source_broadcaster_user_login":null,"source_broadcaster_user_name":null,"source_message_id":null,"source_badges":null,"is_source_only":null,"future_field":{"nested":[1,2.5,{"x":true}]}}}"##;

/// A fake with the example's streamer, and a node serving `streamer` (votes
/// on "hi chat") plus `extra` channels.
async fn start(fake: &FakeHelix, extra: &[&str]) -> TestServer {
    fake.add_user("streamer", STREAMER_ID);
    let mut toml = fake.webhook_toml(SECRET, BOT, extra);
    toml += "\n[[channel]]\nlogin = \"streamer\"\nfor_triggers = [\"hi chat\"]\n";
    TestServer::start_with(&toml, None, None).await
}

/// Makes message ids unique within the test binary.
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// A signed webhook request; fields can be spoiled before sending.
struct Msg {
    id: String,
    ts: String,
    kind: &'static str,
    sub_type: &'static str,
    body: String,
    signature: Option<String>,
}

impl Msg {
    fn new(kind: &'static str, body: &str) -> Msg {
        Msg {
            id: format!("m-{}-{}", now_ms(), NEXT_ID.fetch_add(1, Ordering::Relaxed)),
            ts: rfc3339(now_ms()),
            kind,
            sub_type: "channel.chat.message",
            body: body.to_string(),
            signature: None,
        }
    }

    fn chat() -> Msg {
        Msg::new("notification", CHAT_PAYLOAD)
    }

    async fn send(&self, addr: SocketAddr) -> (u16, String, String) {
        let sig = self
            .signature
            .clone()
            .unwrap_or_else(|| sign(SECRET.as_bytes(), &self.id, &self.ts, self.body.as_bytes()));
        let raw = format!(
            "POST /webhooks/eventsub HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\
             Twitch-Eventsub-Message-Id: {}\r\nTwitch-Eventsub-Message-Retry: 0\r\n\
             Twitch-Eventsub-Message-Type: {}\r\nTwitch-Eventsub-Message-Signature: {sig}\r\n\
             Twitch-Eventsub-Message-Timestamp: {}\r\n\
             Twitch-Eventsub-Subscription-Type: {}\r\nTwitch-Eventsub-Subscription-Version: 1\r\n\r\n{}",
            self.body.len(),
            self.id,
            self.kind,
            self.ts,
            self.sub_type,
            self.body
        );
        http_raw(addr, raw.as_bytes()).await.expect("response")
    }
}

fn metric(srv: &TestServer, line: &str) -> bool {
    srv.metrics().lines().any(|l| l == line)
}

/// Waits until the node has a subscription per channel on the fake.
async fn wait_subscribed(fake: &FakeHelix, n: usize) -> Vec<FakeSub> {
    eventually("subscriptions on the fake", WAIT, || {
        let subs = fake.subscriptions();
        (subs.len() == n).then_some(subs)
    })
    .await
}

#[test]
fn documented_signature_verifies_and_forgeries_are_refused() {
    run(TEST_TIMEOUT, async {
        let fake = FakeHelix::start().await;
        let srv = start(&fake, &[]).await;
        // The documented vector: signature good, timestamp (2021) stale → 400, not 403.
        let vector = Msg {
            id: "ae2ff348-e102-16be-a3eb-6830c1bf38d2".into(),
            ts: "2021-02-19T23:47:00.8091512Z".into(),
            kind: "notification",
            sub_type: "channel.follow",
            body: r#"{"subscription":{"id":"ae2ff348-e102-16be-a3eb-6830c1bf38d2","status":"enabled","type":"channel.follow","version":"1","condition":{"broadcaster_user_id":"44429626"},"transport":{"method":"webhook","callback":"null"},"created_at":"2021-02-19T23:47:00.7621315Z"},"event":{"user_id":"28408015","user_login":"testFromUser","user_name":"testFromUser","broadcaster_user_id":"44429626","broadcaster_user_login":"44429626","broadcaster_user_name":"testBroadcaster"}}"#.into(),
            signature: Some("sha256=d10f5bd9474b7ac7bd7105eb79c2d52768b4d0cd2a135982c3bf5a1d59a78823".into()),
        };
        assert_eq!(vector.body.len(), 458);
        let (status, _, body) = vector.send(srv.addr).await;
        assert_eq!((status, body.contains("too old")), (400, true), "{body}");
        let forged = Msg {
            signature: Some(
                "sha256=d10f5bd9474b7ac7bd7105eb79c2d52768b4d0cd2a135982c3bf5a1d59a78824".into(),
            ),
            ..vector
        };
        assert_eq!(forged.send(srv.addr).await.0, 403);
        // A fresh message: tampered body, or no signature at all.
        let mut m = Msg::chat();
        m.signature = Some(sign(SECRET.as_bytes(), &m.id, &m.ts, b"{}"));
        assert_eq!(m.send(srv.addr).await.0, 403);
        let mut m = Msg::chat();
        m.signature = Some(String::new());
        assert_eq!(m.send(srv.addr).await.0, 403);
        assert!(metric(
            &srv,
            "eventsub_webhook_requests_total{result=\"bad_signature\"} 3"
        ));
        assert!(metric(
            &srv,
            "eventsub_webhook_requests_total{result=\"stale\"} 1"
        ));
        srv.stop().await;
    });
}

#[test]
fn stale_and_future_timestamps_are_refused() {
    run(TEST_TIMEOUT, async {
        let fake = FakeHelix::start().await;
        let srv = start(&fake, &[]).await;
        for (offset_ms, want) in [
            (-11 * 60_000i64, 400),
            (2 * 60_000, 400),
            (-9 * 60_000, 204),
            (30_000, 204),
        ] {
            let mut m = Msg::chat();
            m.id = format!("ts{offset_ms}");
            m.ts = rfc3339((now_ms() as i64 + offset_ms) as u64);
            let (status, _, body) = m.send(srv.addr).await;
            assert_eq!(status, want, "offset {offset_ms} ms: {body}");
        }
        let mut m = Msg::chat();
        m.ts = "2021-02-19 23:47".into();
        assert_eq!(m.send(srv.addr).await.0, 400, "unparseable timestamp");
        srv.stop().await;
    });
}

#[test]
fn chat_reaches_an_overlay_and_a_replay_is_counted_once() {
    run(TEST_TIMEOUT, async {
        let fake = FakeHelix::start().await;
        let srv = start(&fake, &[]).await;
        let mut ov = Overlay::connect(srv.addr, &srv.token("streamer"))
            .await
            .unwrap();
        ov.frame().await;
        let m = Msg::chat();
        let (status, _, _) = m.send(srv.addr).await;
        assert_eq!(status, 204);
        let f = ov
            .frame_where("the webhook vote", |f| f.for_votes == 1)
            .await;
        assert_eq!((f.for_votes, f.against_votes), (1, 0));
        // Twitch redelivers with the same id: acknowledged, not counted again.
        assert_eq!(m.send(srv.addr).await.0, 204);
        assert!(metric(
            &srv,
            "eventsub_webhook_requests_total{result=\"notification\"} 1"
        ));
        assert!(metric(
            &srv,
            "eventsub_webhook_requests_total{result=\"duplicate\"} 1"
        ));
        assert!(metric(
            &srv,
            "chat_messages_received_total{source=\"eventsub_webhook\"} 1"
        ));
        // Other subscription types are acknowledged and ignored.
        let mut other = Msg::new("notification", r#"{"subscription":{},"event":{}}"#);
        other.sub_type = "channel.follow";
        assert_eq!(other.send(srv.addr).await.0, 204);
        assert!(metric(
            &srv,
            "eventsub_webhook_requests_total{result=\"ignored\"} 1"
        ));
        srv.stop().await;
    });
}

#[test]
fn challenge_is_echoed_exactly_and_oversize_bodies_are_refused() {
    run(TEST_TIMEOUT, async {
        let fake = FakeHelix::start().await;
        let srv = start(&fake, &[]).await;
        let body = r#"{"challenge":"pogchamp-kappa-360noscope-vohiyo","subscription":{"id":"f1c2a387-161a-49f9-a165-0f21d7a4e1c4","status":"webhook_callback_verification_pending","type":"channel.chat.message","version":"1","condition":{"broadcaster_user_id":"12826","user_id":"141981764"},"transport":{"method":"webhook","callback":"https://example.com/webhooks/callback"},"created_at":"2019-11-16T10:11:12.634234626Z"}}"#;
        let (status, head, text) = Msg::new("webhook_callback_verification", body)
            .send(srv.addr)
            .await;
        assert_eq!(
            (status, text.as_str()),
            (200, "pogchamp-kappa-360noscope-vohiyo")
        );
        let head = head.to_ascii_lowercase();
        assert!(head.contains("content-type: text/plain\r\n"), "{head}");
        assert!(head.contains("content-length: 32\r\n"), "{head}");
        let unknown = Msg::new("something_else", "{}");
        assert_eq!(unknown.send(srv.addr).await.0, 400);

        let raw = format!(
            "POST /webhooks/eventsub HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{{",
            1024 * 1024 + 1
        );
        assert_eq!(http_raw(srv.addr, raw.as_bytes()).await.unwrap().0, 413);
        let (status, head, _) = crate::common::get(srv.addr, "/webhooks/eventsub").await;
        assert_eq!(status, 405);
        assert!(head.to_ascii_lowercase().contains("allow: post"), "{head}");
        srv.stop().await;
    });
}

#[test]
fn webhook_route_exists_only_for_the_webhook_source() {
    run(TEST_TIMEOUT, async {
        let srv = TestServer::start().await;
        let m = Msg::new("webhook_callback_verification", r#"{"challenge":"x"}"#);
        assert_eq!(m.send(srv.addr).await.0, 404);
        srv.stop().await;
    });
}
