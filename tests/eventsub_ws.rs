//! The EventSub WebSocket source end to end: a real node reads chat from the
//! fake EventSub server, subscribes through the fake Helix, and overlays see
//! the votes. Keepalive timeout, reconnect hand-over, revocation, close codes,
//! sharding, a token without the scope, and an EventSub host that cannot be
//! reached (no DNS name, an untrusted certificate).

use std::time::Duration;

use chatpulse::chat::eventsub_ws::{Limits, eventsub_ws_loop_with};

use crate::common::fake_eventsub_ws::{ConnInfo, FakeEventSub};
use crate::common::fake_helix::{CLIENT_ID, FakeHelix, FakeSub};
use crate::common::fake_irc::FakeIrc;
use crate::common::{
    Frame, Overlay, TEST_TIMEOUT, TestServer, eventually, retries_with_backoff, run,
};

const TOKEN: &str = "readertoken";
const READER_ID: &str = "2914196";
/// The broadcaster of Twitch's example payload.
const STREAMER_ID: &str = "1971641";
const WAIT: Duration = Duration::from_secs(20);

struct Rig {
    helix: FakeHelix,
    es: FakeEventSub,
    srv: TestServer,
}

fn twitch_toml(source: &str, helix: &FakeHelix, es: &FakeEventSub, logins: &[&str]) -> String {
    twitch_toml_at(source, helix, &es.url(), logins)
}

fn twitch_toml_at(source: &str, helix: &FakeHelix, es_url: &str, logins: &[&str]) -> String {
    let mut toml = format!(
        "[twitch]\nsource = \"{source}\"\nclient_id = \"{CLIENT_ID}\"\nuser_token = \"{TOKEN}\"\n\
         eventsub_ws_url = \"{es_url}\"\nhelix_url = \"{}\"\nauth_url = \"{}\"\n",
        helix.helix_url(),
        helix.auth_url()
    );
    for login in logins {
        toml += &format!("\n[[channel]]\nlogin = \"{login}\"\n");
    }
    toml
}

/// Fakes with the reader's token and the channel "streamer", and a node
/// reading it over EventSub WebSocket.
async fn rig(keepalive_secs: u64, scopes: &[&str]) -> Rig {
    let helix = FakeHelix::start().await;
    helix.add_user_token(TOKEN, READER_ID, "reader", scopes);
    helix.add_user("streamer", STREAMER_ID);
    let es = FakeEventSub::start(keepalive_secs).await;
    let toml = twitch_toml("eventsub-ws", &helix, &es, &["streamer"]);
    let srv = TestServer::start_with(&toml, None, None).await;
    Rig { helix, es, srv }
}

impl Rig {
    /// Waits for connection `i` and the subscription on its session.
    async fn subscribed(&self, i: usize) -> (ConnInfo, FakeSub) {
        eventually("a subscribed session", WAIT, || {
            let conn = self.es.connection(i).filter(|c| c.open)?;
            let sub = self
                .helix
                .subscriptions()
                .into_iter()
                .find(|s| s.session_id.as_deref() == Some(conn.session_id.as_str()))?;
            Some((conn, sub))
        })
        .await
    }

    async fn overlay(&self) -> Overlay {
        let mut ov = Overlay::connect(self.srv.addr, &self.srv.token("streamer"))
            .await
            .unwrap();
        assert_eq!(ov.frame().await.kind, "snapshot");
        ov
    }

    fn metric(&self, sample: &str) -> Option<String> {
        let text = self.srv.metrics();
        text.lines().find_map(|l| {
            l.strip_prefix(sample)?
                .strip_prefix(' ')
                .map(str::to_string)
        })
    }

    async fn metric_is(&self, sample: &str, value: &str) {
        eventually(&format!("{sample} = {value}"), WAIT, || {
            (self.metric(sample).as_deref() == Some(value)).then_some(())
        })
        .await
    }

    fn subscription_posts(&self) -> usize {
        let posts = self.helix.requests();
        posts
            .iter()
            .filter(|r| r.starts_with("POST /helix/eventsub/subscriptions"))
            .count()
    }
}

async fn votes(ov: &mut Overlay, n: u64) -> Frame {
    ov.frame_where(&format!("{n} votes"), |f| f.total_votes == n)
        .await
}

const KIND: &str = "eventsub_ws_messages_total{type=";

#[test]
fn documented_notification_becomes_a_vote_on_the_overlay() {
    run(TEST_TIMEOUT, async {
        let r = rig(10, &["user:read:chat"]).await;
        let mut ov = r.overlay().await;
        let (conn, sub) = r.subscribed(0).await;
        assert_eq!(conn.path, "/ws");
        assert_eq!(
            (sub.kind.as_str(), sub.method.as_str(), sub.status.as_str()),
            ("channel.chat.message", "websocket", "enabled")
        );
        assert_eq!(
            (sub.broadcaster_user_id.as_str(), sub.user_id.as_str()),
            (STREAMER_ID, READER_ID)
        );
        r.metric_is("chat_source_connected{source=\"eventsub_ws\"}", "1")
            .await;

        r.es.chat(0, "4145994", "cc106a89-1814-919d-454c-f4f2f970aae7", "yes");
        let f = votes(&mut ov, 1).await;
        assert_eq!((f.for_votes, f.against_votes), (1, 0));
        // Twitch may deliver twice: the same message id counts once.
        r.es.chat(0, "4145994", "cc106a89-1814-919d-454c-f4f2f970aae7", "yes");
        r.metric_is(&format!("{KIND}\"duplicate\"}}"), "1").await;
        r.es.chat(0, "42", "m-2", "no");
        let f = votes(&mut ov, 2).await;
        assert_eq!((f.for_votes, f.against_votes), (1, 1));
        assert_eq!(
            r.metric(&format!("{KIND}\"notification\"}}")).as_deref(),
            Some("2")
        );

        // Pings are answered; nothing else is ever sent to Twitch.
        r.es.ping(0);
        eventually("a pong", WAIT, || {
            (r.es.connection(0)?.pongs > 0).then_some(())
        })
        .await;
        assert!(r.es.connection(0).unwrap().inbound.is_empty());
        let validations = r.helix.requests();
        assert!(validations.iter().any(|q| q == "GET /oauth2/validate"));
        r.srv.stop().await;
    });
}

#[test]
fn keepalive_timeout_reconnects_and_resubscribes() {
    run(TEST_TIMEOUT, async {
        let r = rig(1, &["user:read:chat"]).await;
        let mut ov = r.overlay().await;
        let (first, _) = r.subscribed(0).await;
        r.es.silence(0);
        // Silent for keepalive (1 s) + grace: a new socket and a new subscription;
        // the old session's subscription is deleted, not left to block it.
        let (second, sub) = r.subscribed(1).await;
        assert_ne!(second.session_id, first.session_id);
        let subs = r.helix.subscriptions();
        assert_eq!(subs.len(), 1, "{subs:?}");
        let requests = r.helix.requests();
        assert!(
            requests
                .iter()
                .any(|q| q.starts_with("DELETE /helix/eventsub/subscriptions?id=")),
            "{requests:?}"
        );
        assert_eq!(sub.broadcaster_user_id, STREAMER_ID);
        r.metric_is("chat_source_reconnects_total{source=\"eventsub_ws\"}", "1")
            .await;
        r.es.chat(1, "7", "after-timeout", "yes");
        votes(&mut ov, 1).await;
        r.srv.stop().await;
    });
}

#[test]
fn session_reconnect_hands_over_without_loss_or_resubscribing() {
    run(TEST_TIMEOUT, async {
        let r = rig(10, &["user:read:chat"]).await;
        let mut ov = r.overlay().await;
        let (first, _) = r.subscribed(0).await;
        r.es.reconnect(0);
        // The old socket keeps delivering while the new one connects.
        r.es.chat(0, "1", "during-handover", "yes");
        let second = eventually("the reconnect socket", WAIT, || r.es.connection(1)).await;
        assert_eq!(second.path, format!("/ws?reconnect={}", first.session_id));
        r.metric_is("chat_source_connected{source=\"eventsub_ws\"}", "1")
            .await;
        // Both sockets deliver during the overlap; a message on both counts once.
        r.es.chat(1, "2", "on-new", "yes");
        r.es.chat(0, "3", "late-on-old", "no");
        r.es.chat(0, "2", "on-new", "yes");
        let f = votes(&mut ov, 3).await;
        assert_eq!((f.for_votes, f.against_votes), (2, 1));
        r.metric_is(&format!("{KIND}\"duplicate\"}}"), "1").await;

        // Twitch closes the old socket; the new one carries on, no fresh session.
        r.es.close(0, 1000);
        eventually("old socket closed", WAIT, || {
            (!r.es.connection(0)?.open).then_some(())
        })
        .await;
        r.es.chat(1, "4", "after-close", "yes");
        votes(&mut ov, 4).await;
        assert_eq!(r.es.connections().len(), 2);
        assert_eq!(
            r.subscription_posts(),
            1,
            "no resubscribe after a hand-over"
        );
        assert_eq!(
            r.metric("chat_source_reconnects_total{source=\"eventsub_ws\"}")
                .as_deref(),
            Some("0")
        );
        assert!(r.es.connections().iter().all(|c| c.inbound.is_empty()));
        r.srv.stop().await;
    });
}

#[test]
fn revocation_is_counted_and_rechecks_the_token() {
    run(TEST_TIMEOUT, async {
        let r = rig(10, &["user:read:chat"]).await;
        let (_, sub) = r.subscribed(0).await;
        let validations = || {
            r.helix
                .requests()
                .iter()
                .filter(|q| *q == "GET /oauth2/validate")
                .count()
        };
        assert_eq!(validations(), 1);
        r.es.revoke(0, &sub.id, STREAMER_ID, "authorization_revoked");
        r.metric_is(&format!("{KIND}\"revocation\"}}"), "1").await;
        eventually("a second validation", WAIT, || {
            (validations() == 2).then_some(())
        })
        .await;
        // The token is still valid: the socket stays.
        assert!(r.es.connection(0).unwrap().open);
        assert_eq!(r.es.connections().len(), 1);
        r.srv.stop().await;
    });
}

#[test]
fn close_4004_reconnects_and_resubscribes() {
    run(TEST_TIMEOUT, async {
        let r = rig(10, &["user:read:chat"]).await;
        let mut ov = r.overlay().await;
        let (first, _) = r.subscribed(0).await;
        r.es.close(0, 4004);
        let (second, _) = r.subscribed(1).await;
        assert_eq!(
            second.path, "/ws",
            "a fresh connection, not a reconnect URL"
        );
        assert_ne!(second.session_id, first.session_id);
        assert_eq!(r.helix.subscriptions().len(), 1);
        r.metric_is("chat_source_reconnects_total{source=\"eventsub_ws\"}", "1")
            .await;
        r.es.chat(1, "9", "after-4004", "no");
        let f = votes(&mut ov, 1).await;
        assert_eq!(f.against_votes, 1);
        r.srv.stop().await;
    });
}

#[test]
fn channels_are_sharded_over_sockets_within_the_limits() {
    run(TEST_TIMEOUT, async {
        let helix = FakeHelix::start().await;
        helix.add_user_token(TOKEN, READER_ID, "reader", &["user:read:chat"]);
        for (login, id) in [("aa", "11"), ("bb", "22"), ("cc", "33")] {
            helix.add_user(login, id);
        }
        let es = FakeEventSub::start(10).await;
        // Source "none": this test runs the loop itself, with small limits.
        let toml = twitch_toml("none", &helix, &es, &["aa", "bb", "cc"]);
        let srv = TestServer::start_with(&toml, None, None).await;
        let limits = Limits {
            subs_per_socket: 1,
            max_sockets: 2,
        };
        let task = smol::spawn(eventsub_ws_loop_with(srv.server.app().clone(), limits));
        let subs = eventually("two subscriptions", WAIT, || {
            let subs = helix.subscriptions();
            (subs.len() == 2).then_some(subs)
        })
        .await;
        // One channel per socket, two sockets; "cc" finds no room.
        let conns = es.connections();
        assert_eq!(conns.len(), 2);
        let mut broadcasters: Vec<&str> = subs
            .iter()
            .map(|s| s.broadcaster_user_id.as_str())
            .collect();
        broadcasters.sort();
        assert_eq!(broadcasters, ["11", "22"]);
        let sessions: Vec<Option<&str>> = subs.iter().map(|s| s.session_id.as_deref()).collect();
        assert_ne!(sessions[0], sessions[1]);
        for session in sessions {
            assert!(
                conns
                    .iter()
                    .any(|c| Some(c.session_id.as_str()) == session && c.open)
            );
        }
        let m = srv.metrics();
        assert!(
            m.contains("chat_source_connected{source=\"eventsub_ws\"} 1"),
            "{m}"
        );
        task.cancel().await;
        srv.stop().await;
    });
}

#[test]
fn token_without_the_scope_never_connects() {
    run(TEST_TIMEOUT, async {
        let r = rig(10, &["chat:read"]).await;
        r.metric_is("twitch_token_failures_total", "1").await;
        assert!(r.es.connections().is_empty());
        assert!(r.helix.subscriptions().is_empty());
        assert!(
            !r.helix
                .requests()
                .iter()
                .any(|q| q.contains("/helix/users")),
            "stops before resolving channels"
        );
        assert_eq!(
            r.metric("chat_source_connected{source=\"eventsub_ws\"}")
                .as_deref(),
            Some("0")
        );
        r.srv.stop().await;
    });
}

/// Twitch's EventSub host unreachable — its name does not resolve, or its
/// certificate is not one we trust: the socket retries on a doubling delay
/// (never a busy loop, one handshake per attempt), the token is not blamed,
/// readiness stays 200 and shows the source down, overlays keep being served.
#[test]
fn unreachable_or_untrusted_eventsub_is_retried_with_backoff_and_shown() {
    run(TEST_TIMEOUT, async {
        let helix = FakeHelix::start().await;
        helix.add_user_token(TOKEN, READER_ID, "reader", &["user:read:chat"]);
        helix.add_user("streamer", STREAMER_ID);
        // A TLS listener whose certificate chains to a CA the node was not given.
        let tls = FakeIrc::start(true).await;
        let untrusted = format!("wss://{}/ws", tls.addr);
        let unresolvable = "wss://eventsub.chatpulse-test.invalid/ws".to_string();
        let cases = [
            ("untrusted", untrusted, Some(&tls)),
            ("unresolvable", unresolvable, None),
        ];
        for (what, url, reached) in cases {
            let toml = twitch_toml_at("eventsub-ws", &helix, &url, &["streamer"]);
            let srv = TestServer::start_with(&toml, None, None).await;
            retries_with_backoff(&srv, what, "eventsub-ws", "streamer", reached).await;
            // A host we cannot reach says nothing about the token.
            let text = srv.metrics();
            assert!(text.contains("\ntwitch_token_failures_total 0\n"), "{what}");
            srv.stop().await;
        }
    });
}
