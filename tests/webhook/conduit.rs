//! The webhook source's control plane against the fake: conduit found or
//! created and its shard assigned, subscriptions created and reconciled,
//! revocations, retries (429, 500, 409) and app-token refresh.

use chatpulse::app::now_ms;

use super::{BOT, Msg, SECRET, STREAMER_ID, WAIT, metric, start, wait_subscribed};
use crate::common::fake_helix::{CLIENT_ID, CLIENT_SECRET, FakeHelix, FakeSub};
use crate::common::{TEST_TIMEOUT, TestServer, eventually, run};

#[test]
fn conduit_shard_and_subscriptions_are_set_up_once() {
    run(TEST_TIMEOUT, async {
        let fake = FakeHelix::start().await;
        fake.add_user("alice", "1001");
        let srv = start(&fake, &["alice"]).await;
        let subs = wait_subscribed(&fake, 2).await;
        let conduits = fake.conduits();
        assert_eq!(conduits.len(), 1, "{conduits:?}");
        let conduit = &conduits[0];
        let shard = &conduit.shards[0];
        assert_eq!(shard.method, "webhook");
        assert_eq!(
            shard.callback.as_deref(),
            Some("https://example.invalid/webhooks/eventsub")
        );
        assert_eq!(shard.secret.as_deref(), Some(SECRET));
        let mut broadcasters: Vec<&str> = subs
            .iter()
            .map(|s| s.broadcaster_user_id.as_str())
            .collect();
        broadcasters.sort();
        assert_eq!(broadcasters, ["1001", STREAMER_ID]);
        for s in &subs {
            assert_eq!(
                (s.kind.as_str(), s.user_id.as_str(), s.method.as_str()),
                ("channel.chat.message", BOT, "conduit")
            );
            assert_eq!(s.conduit_id.as_ref(), Some(&conduit.id));
        }
        // Twitch verifies the shard: the node answers its challenge.
        fake.deliver_challenges_to(srv.addr).await;
        assert_eq!(
            fake.challenges(),
            [(200, format!("challenge-{}-0", conduit.id))]
        );
        assert_eq!(fake.conduits()[0].shards[0].status, "enabled");

        let db = &srv.server.app().db;
        let rows = eventually("stored rows", WAIT, || {
            let rows = smol::block_on(db.eventsub_subscriptions()).unwrap();
            (rows.len() == 2).then_some(rows)
        })
        .await;
        assert!(
            rows.iter()
                .all(|r| r.status == "enabled" && r.conduit_id == conduit.id)
        );
        let ids = db.twitch_user_ids().await.unwrap();
        assert_eq!(
            ids,
            [
                ("alice".to_string(), "1001".to_string()),
                ("streamer".into(), STREAMER_ID.into())
            ]
        );
        let dir = srv.stop().await;

        // A restart finds the stored conduit and the existing subscriptions.
        let toml = fake.webhook_toml(SECRET, BOT, &["alice", "streamer"]);
        let srv = TestServer::start_with(&toml, Some(dir), None).await;
        eventually("the second node's round", WAIT, || {
            metric(&srv, "chat_source_connected{source=\"eventsub_webhook\"} 1").then_some(())
        })
        .await;
        let posts = |what: &str| {
            fake.requests()
                .iter()
                .filter(|r| r.starts_with(what))
                .count()
        };
        assert_eq!(posts("POST /helix/eventsub/conduits"), 1);
        assert_eq!(
            posts("PATCH /helix/eventsub/conduits/shards"),
            2,
            "re-pointed once per process"
        );
        assert_eq!(posts("POST /helix/eventsub/subscriptions"), 2);
        assert_eq!(fake.subscriptions(), subs);
        srv.stop().await;
    });
}

#[test]
fn reconcile_adopts_the_conduit_and_drops_stale_subscriptions() {
    run(TEST_TIMEOUT, async {
        let fake = FakeHelix::start().await;
        fake.add_conduit("conduit-old", 1);
        fake.add_conduit("conduit-other", 1);
        fake.set_page_size(1);
        let sub = |id: &str, broadcaster: &str, user: &str, conduit: &str| FakeSub {
            id: id.into(),
            status: "enabled".into(),
            kind: "channel.chat.message".into(),
            broadcaster_user_id: broadcaster.into(),
            user_id: user.into(),
            method: "conduit".into(),
            conduit_id: Some(conduit.into()),
            session_id: None,
            callback: None,
        };
        fake.add_subscription(sub("gone-channel", "999", BOT, "conduit-old"));
        fake.add_subscription(sub("kept", STREAMER_ID, BOT, "conduit-old"));
        fake.add_subscription(sub("not-ours", "999", BOT, "conduit-other"));
        // A stored row for a subscription Twitch no longer has.
        let dir = crate::common::temp_dir("webhook");
        let db = chatpulse::store::sqlite::Db::open(&dir.join(chatpulse::store::sqlite::FILE_NAME))
            .await
            .unwrap();
        let row = chatpulse::store::sqlite::StoredSubscription {
            id: "stale-row".into(),
            kind: "channel.chat.message".into(),
            broadcaster_user_id: "555".into(),
            login: "bob".into(),
            bot_user_id: BOT.into(),
            conduit_id: "conduit-old".into(),
            status: "enabled".into(),
            reason: None,
        };
        db.upsert_eventsub_subscription(&row).await.unwrap();
        db.close().await;

        fake.add_user("streamer", STREAMER_ID);
        let mut toml = fake.webhook_toml(SECRET, BOT, &[]);
        toml += "\n[[channel]]\nlogin = \"streamer\"\n";
        let srv = TestServer::start_with(&toml, Some(dir), None).await;
        let ids = |subs: Vec<FakeSub>| subs.into_iter().map(|s| s.id).collect::<Vec<_>>();
        eventually("stale subscription deleted", WAIT, || {
            (ids(fake.subscriptions()) == ["kept", "not-ours"]).then_some(())
        })
        .await;
        let db = &srv.server.app().db;
        let rows = eventually("rows reconciled", WAIT, || {
            let rows = smol::block_on(db.eventsub_subscriptions()).unwrap();
            (rows.len() == 1 && rows[0].id == "kept").then_some(rows)
        })
        .await;
        assert_eq!(rows[0].login, "streamer");
        assert_eq!(
            db.conduit_id(CLIENT_ID).await.unwrap().as_deref(),
            Some("conduit-old")
        );
        assert_eq!(fake.conduits().len(), 2, "adopted, not created");

        // Twitch revokes the kept one: 204, and the row says so.
        let revocation = r#"{"subscription":{"id":"kept","status":"authorization_revoked","type":"channel.chat.message","version":"1","cost":0,"condition":{"broadcaster_user_id":"1971641","user_id":"2914196"},"transport":{"method":"conduit","conduit_id":"conduit-old"},"created_at":"2023-11-06T18:11:47.492253549Z"}}"#;
        assert_eq!(
            Msg::new("revocation", revocation).send(srv.addr).await.0,
            204
        );
        eventually("row marked revoked", WAIT, || {
            let rows = smol::block_on(db.eventsub_subscriptions()).unwrap();
            (rows[0].status == "revoked"
                && rows[0].reason.as_deref() == Some("authorization_revoked"))
            .then_some(())
        })
        .await;
        assert!(metric(
            &srv,
            "eventsub_webhook_requests_total{result=\"revocation\"} 1"
        ));
        srv.stop().await;
    });
}

#[test]
fn rate_limits_server_errors_and_conflicts_are_survived() {
    run(TEST_TIMEOUT, async {
        let fake = FakeHelix::start().await;
        fake.add_user("alice", "1001");
        let now_unix = now_ms() / 1000;
        fake.rate_limit_next("POST", "/helix/eventsub/subscriptions", now_unix);
        fake.fail_next("GET", "/helix/eventsub/conduits", 500);
        fake.fail_next("POST", "/helix/eventsub/subscriptions", 409);
        let srv = start(&fake, &["alice"]).await;
        eventually("a good round", WAIT, || {
            metric(&srv, "chat_source_connected{source=\"eventsub_webhook\"} 1").then_some(())
        })
        .await;
        let reqs = fake.requests();
        let count = |what: &str| reqs.iter().filter(|r| r.starts_with(what)).count();
        assert_eq!(
            count("GET /helix/eventsub/conduits"),
            2,
            "500 retried: {reqs:?}"
        );
        // alice: 429 then 409 (already subscribed: fine, not retried); streamer: created.
        assert_eq!(count("POST /helix/eventsub/subscriptions"), 3, "{reqs:?}");
        assert_eq!(fake.subscriptions().len(), 1);
        assert!(metric(&srv, "twitch_token_failures_total 0"));
        srv.stop().await;
    });
}

#[test]
fn app_tokens_are_refreshed_before_expiry() {
    run(TEST_TIMEOUT, async {
        let fake = FakeHelix::start().await;
        fake.set_token_lifetime(2);
        let srv = start(&fake, &[]).await;
        wait_subscribed(&fake, 1).await;
        eventually("refreshed tokens", WAIT, || {
            (fake.tokens_issued() >= 3).then_some(())
        })
        .await;
        assert!(metric(
            &srv,
            "chat_source_connected{source=\"eventsub_webhook\"} 1"
        ));
        assert!(metric(&srv, "twitch_token_failures_total 0"));
        srv.stop().await;
    });
}

#[test]
fn helix_client_and_tokens_against_the_fake() {
    use chatpulse::twitch::helix::{Helix, HelixError, SubscriptionRequest, Transport};
    use chatpulse::twitch::tokens::AppTokens;
    run(TEST_TIMEOUT, async {
        let fake = FakeHelix::start().await;
        fake.add_user("alice", "1001");
        let tls = chatpulse::tls::client_config(None).unwrap();
        let http = chatpulse::twitch::http::HttpClient::new(tls);
        let helix = Helix::new(http, &fake.helix_url(), &fake.auth_url(), CLIENT_ID);
        let mut tokens = AppTokens::new(helix.clone(), CLIENT_SECRET);
        let token = tokens.validate().await.unwrap();
        assert_eq!(tokens.validate().await.unwrap(), token, "still valid");
        fake.invalidate_tokens();
        let fresh = tokens.validate().await.unwrap();
        assert_ne!(fresh, token, "invalid → re-acquired");
        assert_eq!(fake.tokens_issued(), 2);
        let info = helix.validate(&fresh).await.unwrap();
        assert_eq!((info.login, info.scopes.len()), (None, 0));
        assert!(matches!(
            helix.validate("nope").await,
            Err(HelixError::Unauthorized(_))
        ));

        let logins: Vec<String> = (0..150)
            .map(|i| format!("user{i}"))
            .chain(["ALICE".into()])
            .collect();
        assert_eq!(
            helix.users_by_login(&fresh, &logins).await.unwrap(),
            [("alice".to_string(), "1001".to_string())]
        );
        let conduit = helix.create_conduit(&fresh, 1).await.unwrap();
        let req = SubscriptionRequest {
            kind: "channel.chat.message",
            version: "1",
            broadcaster_user_id: "1001",
            user_id: BOT,
            transport: Transport::Conduit {
                conduit_id: &conduit.id,
            },
        };
        let id = helix.create_subscription(&fresh, &req).await.unwrap();
        assert!(matches!(
            helix.create_subscription(&fresh, &req).await,
            Err(HelixError::Conflict)
        ));
        fake.set_page_size(1);
        let req2 = SubscriptionRequest {
            broadcaster_user_id: "1002",
            ..req
        };
        helix.create_subscription(&fresh, &req2).await.unwrap();
        let listed = helix
            .list_subscriptions(&fresh, Some("channel.chat.message"))
            .await
            .unwrap();
        assert_eq!(listed.len(), 2, "both pages");
        assert_eq!(listed[0].id, id);
        helix.delete_subscription(&fresh, &id).await.unwrap();
        assert!(matches!(
            helix.delete_subscription(&fresh, &id).await,
            Err(HelixError::Status(404, _))
        ));
        let users_calls = fake
            .requests()
            .iter()
            .filter(|r| r.starts_with("GET /helix/users"))
            .count();
        assert_eq!(users_calls, 2, "151 logins in batches of 100");
    });
}
