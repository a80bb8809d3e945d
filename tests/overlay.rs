//! Overlay WebSocket behaviour: snapshot, votes, models, config push, reset,
//! rotation, limits, origin checks and slow-client eviction.

use std::time::Duration;

use chatpulse::metrics::VoteResult;

use crate::common::{Overlay, Received, TEST_TIMEOUT, TestServer, eventually, run};

#[test]
fn snapshot_on_connect_then_update_after_a_vote() {
    run(TEST_TIMEOUT, async {
        let srv = TestServer::start().await;
        let mut ov = Overlay::connect(srv.addr, &srv.token("alice"))
            .await
            .unwrap();
        let snap = ov.frame().await;
        assert_eq!(snap.kind, "snapshot");
        assert_eq!(snap.total_votes, 0);
        assert_eq!(
            (snap.for_label.as_str(), snap.against_label.as_str()),
            ("For", "Against")
        );
        assert_eq!(
            (snap.model.as_str(), snap.memory_seconds),
            ("window", Some(30))
        );
        assert_eq!(
            (snap.display_mode.as_str(), snap.theme.as_str()),
            ("combined", "dark")
        );

        let before = chatpulse::app::now_ms();
        assert_eq!(srv.chat("alice", "u1", "  YES ").await, VoteResult::Applied);
        let up = ov.frame().await;
        assert_eq!(up.kind, "update");
        assert!(up.seq > snap.seq);
        assert_eq!((up.for_votes, up.against_votes), (1, 0));
        assert_eq!(up.for_ratio, 1.0);
        assert!(
            up.ts >= before && up.ts <= chatpulse::app::now_ms(),
            "ts is the vote's accept time"
        );
        srv.stop().await;
    });
}

#[test]
fn no_viewers_no_work_and_unknown_channel() {
    run(TEST_TIMEOUT, async {
        let srv = TestServer::start().await;
        assert_eq!(srv.chat("alice", "u1", "yes").await, VoteResult::NoViewers);
        assert_eq!(
            srv.chat("bob", "u1", "yes").await,
            VoteResult::UnknownChannel
        );
        srv.stop().await;
    });
}

#[test]
fn debounce_triggers_and_token_bucket() {
    run(TEST_TIMEOUT, async {
        let toml = r#"
[votes]
bucket_capacity = 4
bucket_refill_per_minute = 1

[[channel]]
login = "alice"
for_triggers = ["yes", "y", "PogChamp"]
against_triggers = "no, n"
"#;
        let srv = TestServer::start_with(toml, None, None).await;
        let mut ov = Overlay::connect(srv.addr, &srv.token("alice"))
            .await
            .unwrap();
        ov.frame().await;
        assert_eq!(
            srv.chat("alice", "u1", "pogchamp").await,
            VoteResult::Applied
        );
        assert_eq!(
            srv.chat("alice", "u1", "yes").await,
            VoteResult::Debounced,
            "1 s per chatter"
        );
        assert_eq!(
            srv.chat("alice", "u2", "yes please").await,
            VoteResult::NoMatch,
            "whole message only"
        );
        assert_eq!(srv.chat("alice", "u2", "N").await, VoteResult::Applied);
        assert_eq!(srv.chat("alice", "u3", "y").await, VoteResult::Applied);
        assert_eq!(srv.chat("alice", "u4", "no").await, VoteResult::Applied);
        assert_eq!(
            srv.chat("alice", "u5", "no").await,
            VoteResult::RateLimited,
            "bucket of 4"
        );
        let f = ov.frame_where("4 votes", |f| f.total_votes == 4).await;
        assert_eq!((f.for_votes, f.against_votes), (2, 2));
        assert_eq!(f.for_ratio, 0.5);
        let m = srv.metrics();
        assert!(
            m.contains("vote_processing_total{result=\"debounced\"} 1"),
            "{m}"
        );
        assert!(m.contains("vote_processing_total{result=\"rate_limited\"} 1"));
        srv.stop().await;
    });
}

#[test]
fn decay_model_sends_value() {
    run(TEST_TIMEOUT, async {
        let toml = "[[channel]]\nlogin = \"alice\"\nmodel = \"decay\"\ndecay_speed = 0.1\n";
        let srv = TestServer::start_with(toml, None, None).await;
        let mut ov = Overlay::connect(srv.addr, &srv.token("alice"))
            .await
            .unwrap();
        let snap = ov.frame().await;
        assert_eq!((snap.model.as_str(), snap.decay_speed), ("decay", 0.1));
        srv.chat("alice", "u1", "yes").await;
        srv.chat("alice", "u2", "yes").await;
        srv.chat("alice", "u3", "no").await;
        let f = ov.frame_where("3 votes", |f| f.total_votes == 3).await;
        // net +1 vote = +10, barely decayed at 0.1/s
        assert!(f.value > 9.0 && f.value <= 10.0, "value {}", f.value);
        srv.stop().await;
    });
}

#[test]
fn window_expiry_is_visible_without_new_votes() {
    run(TEST_TIMEOUT, async {
        let toml = "[[channel]]\nlogin = \"alice\"\nmemory_seconds = 5\n";
        let srv = TestServer::start_with(toml, None, None).await;
        let mut ov = Overlay::connect(srv.addr, &srv.token("alice"))
            .await
            .unwrap();
        ov.frame().await;
        srv.chat("alice", "u1", "no").await;
        ov.frame_where("the vote", |f| f.total_votes == 1).await;
        // refreshed every second; after 5 s the vote has left the window
        let f = ov.frame_where("expiry", |f| f.total_votes == 0).await;
        assert_eq!((f.for_ratio, f.against_ratio), (0.0, 0.0));
        srv.stop().await;
    });
}

#[test]
fn config_push_reset_and_rotation_reach_live_overlays() {
    run(TEST_TIMEOUT, async {
        let srv = TestServer::start().await;
        let app = srv.server.app().clone();
        let old_token = srv.token("alice");
        let mut ov = Overlay::connect(srv.addr, &old_token).await.unwrap();
        ov.frame().await;
        srv.chat("alice", "u1", "yes").await;
        ov.frame_where("vote", |f| f.total_votes == 1).await;

        let mut cfg = app.hub.config_of("alice").unwrap();
        cfg.for_label = "Hype".into();
        cfg.theme = chatpulse::channel::Theme::Light;
        cfg.display_mode = chatpulse::channel::DisplayMode::Split;
        app.save_config("alice", cfg.clone(), "test").await.unwrap();
        let f = ov.frame_where("config", |f| f.for_label == "Hype").await;
        assert_eq!(
            (f.theme.as_str(), f.display_mode.as_str()),
            ("light", "split")
        );
        assert_eq!(f.total_votes, 1, "config change keeps the votes");

        cfg.against_triggers = vec!["YES".into()];
        assert!(
            app.save_config("alice", cfg, "test").await.is_err(),
            "shared trigger refused"
        );

        app.reset("alice", "test").await.unwrap();
        let f = ov.frame_where("reset", |f| f.total_votes == 0).await;
        assert_eq!(f.for_ratio, 0.0);

        let new_token = app.rotate_token("alice", "test").await.unwrap();
        assert_ne!(new_token, old_token);
        assert_eq!(ov.closed().await, Some(4404));
        let mut gone = Overlay::connect(srv.addr, &old_token).await.unwrap();
        assert_eq!(gone.closed().await, Some(4404), "old URL stays dead");
        let mut fresh = Overlay::connect(srv.addr, &new_token).await.unwrap();
        assert_eq!(fresh.frame().await.kind, "snapshot");
        srv.stop().await;
    });
}

#[test]
fn unknown_token_closes_with_4404() {
    run(TEST_TIMEOUT, async {
        let srv = TestServer::start().await;
        let mut ov = Overlay::connect(srv.addr, "AAAAAAAAAAAAAAAAAAAAAA")
            .await
            .unwrap();
        assert_eq!(ov.closed().await, Some(4404));
        srv.stop().await;
    });
}

fn status_of(err: &str) -> &str {
    ["429", "503", "403", "400"]
        .into_iter()
        .find(|c| err.contains(c))
        .unwrap_or(err)
}

#[test]
fn connection_limits_answer_before_upgrade() {
    run(TEST_TIMEOUT, async {
        let toml = "[limits]\nmax_connections = 5\nmax_connections_per_ip = 3\nmax_overlays_per_broadcaster = 2\n\
connection_burst_per_ip = 8\nconnection_rate_per_ip = 0.1\n\
[[channel]]\nlogin = \"alice\"\n[[channel]]\nlogin = \"bob\"\n[[channel]]\nlogin = \"carol\"\n";
        let srv = TestServer::start_with(toml, None, None).await;
        let (a, b, c) = (srv.token("alice"), srv.token("bob"), srv.token("carol"));
        let mut keep = Vec::new();
        for t in [&a, &a] {
            keep.push(Overlay::connect(srv.addr, t).await.unwrap());
        }
        let err = Overlay::connect(srv.addr, &a).await.err().unwrap();
        assert_eq!(status_of(&err), "429", "per-broadcaster cap: {err}");
        keep.push(Overlay::connect(srv.addr, &b).await.unwrap());
        let err = Overlay::connect(srv.addr, &b).await.err().unwrap();
        assert_eq!(status_of(&err), "429", "per-IP cap of 3: {err}");
        // From other client IPs (through a trusted proxy the cap is per real IP)
        // the global cap of 5 is hit instead; here the same IP hits its rate budget.
        for _ in 0..3 {
            let _ = Overlay::connect(srv.addr, &c).await;
        }
        let err = Overlay::connect(srv.addr, &c).await.err().unwrap();
        assert_eq!(status_of(&err), "429", "rate limit after burst of 8: {err}");
        let m = srv.metrics();
        for reason in ["broadcaster_limit", "ip_limit", "rate_limit"] {
            let line = format!("websocket_connections_rejected_total{{reason=\"{reason}\"}}");
            assert!(
                m.lines()
                    .any(|l| l.starts_with(&line) && !l.ends_with(" 0")),
                "{line} in\n{m}"
            );
        }
        // slots are released on disconnect
        drop(keep);
        eventually("slots released", Duration::from_secs(5), || {
            (srv.server.app().limits.open_connections() == 0).then_some(())
        })
        .await;
        srv.stop().await;
    });
}

#[test]
fn global_cap_and_trusted_proxy_ips() {
    run(TEST_TIMEOUT, async {
        let toml = "[server]\ntrusted_proxies = [\"127.0.0.1\"]\n[limits]\nmax_connections = 2\nmax_connections_per_ip = 1\n\
[[channel]]\nlogin = \"alice\"\n";
        let srv = TestServer::start_with(toml, None, None).await;
        let t = srv.token("alice");
        let _one = Overlay::connect_with(srv.addr, &t, &[("x-forwarded-for", "203.0.113.1")])
            .await
            .unwrap();
        let err = Overlay::connect_with(srv.addr, &t, &[("x-forwarded-for", "203.0.113.1")])
            .await
            .err()
            .unwrap();
        assert_eq!(status_of(&err), "429", "same forwarded IP: {err}");
        let _two = Overlay::connect_with(
            srv.addr,
            &t,
            &[("x-forwarded-for", "198.51.100.7, 127.0.0.1")],
        )
        .await
        .unwrap();
        let err = Overlay::connect_with(srv.addr, &t, &[("x-forwarded-for", "192.0.2.9")])
            .await
            .err()
            .unwrap();
        assert_eq!(status_of(&err), "503", "global cap: {err}");
        srv.stop().await;
    });
}

#[test]
fn origin_check() {
    run(TEST_TIMEOUT, async {
        let srv = TestServer::start_with("[server]\npublic_url = \"https://overlay.example.com\"\n[[channel]]\nlogin = \"alice\"\n", None, None).await;
        let t = srv.token("alice");
        let same = format!("http://{}", srv.addr);
        for ok in [
            "obs://browser-source",
            "https://overlay.example.com",
            same.as_str(),
        ] {
            Overlay::connect_with(srv.addr, &t, &[("origin", ok)])
                .await
                .unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in [
            "https://evil.example",
            "http://localhost:1234",
            "https://overlay.example.com.evil.example",
        ] {
            let err = Overlay::connect_with(srv.addr, &t, &[("origin", bad)])
                .await
                .err()
                .unwrap();
            assert_eq!(status_of(&err), "403", "{bad}: {err}");
        }
        srv.stop().await;
    });
}

#[test]
fn slow_client_is_evicted_without_stalling_others() {
    run(Duration::from_secs(120), async {
        let srv = TestServer::start().await;
        let app = srv.server.app().clone();
        let t = srv.token("alice");
        let stalled = Overlay::connect(srv.addr, &t).await.unwrap(); // never reads
        let mut healthy = Overlay::connect(srv.addr, &t).await.unwrap();
        let mut last = healthy.frame().await.seq;
        let cfg = app.hub.config_of("alice").unwrap();
        for round in 0..2000 {
            // batches smaller than the 16-frame outbox: a reading client keeps up
            for _ in 0..10 {
                app.hub
                    .update_config("alice", cfg.clone(), 1, chatpulse::app::now_ms());
            }
            last = healthy
                .frame_where("batch", |f| f.seq >= last + 10)
                .await
                .seq;
            if srv
                .metrics()
                .contains("broadcaster_slow_clients_evicted_total 1")
            {
                assert!(round > 0);
                drop(stalled);
                // the healthy one keeps getting updates
                srv.chat("alice", "u1", "yes").await;
                healthy
                    .frame_where("vote after eviction", |f| f.total_votes == 1)
                    .await;
                srv.stop().await;
                return;
            }
        }
        panic!("stalled client never evicted");
    });
}

#[test]
fn oversized_inbound_message_is_dropped_and_counted() {
    run(TEST_TIMEOUT, async {
        let srv = TestServer::start().await;
        let mut ov = Overlay::connect(srv.addr, &srv.token("alice"))
            .await
            .unwrap();
        ov.frame().await;
        ov.send_text("x".repeat(5000)).await;
        match ov.recv(Duration::from_secs(10)).await {
            Received::Closed(code) => assert_eq!(code, Some(1009)),
            Received::Frame(f) => panic!("unexpected frame {f:?}"),
        }
        assert!(
            srv.metrics()
                .contains("websocket_inbound_dropped_total{reason=\"too_large\"} 1")
        );
        srv.stop().await;
    });
}
