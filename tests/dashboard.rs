//! The dashboard's backend through real HTTP against a real node: sign-in,
//! sessions, CSRF, rate limits, and what the dashboard's API does to overlays.
//! This file: the API and what it does to overlays (home mode);
//! `dashboard/login.rs`: the admin password, sessions, CSRF and rate limits;
//! `dashboard/twitch.rs`: signing in with Twitch against the in-process fake.

use std::time::Duration;

use chatpulse::metrics::VoteResult;

use crate::common::web::{Resp, Web, csrf_of, json_num, json_str};
use crate::common::{Overlay, Received, TEST_TIMEOUT, TestServer, get, run};

/// Signing in with the admin password, sessions, CSRF, rate limits.
mod login;
/// Twitch sign-in: OAuth against the fake, state, consent, channel ownership.
mod twitch;

const PASSWORD: &str = "correct horse battery";
/// Fast hashes in tests; the iteration count is part of the stored hash.
const TEST_ITERATIONS: u32 = 1000;
const WAIT: Duration = Duration::from_secs(10);

/// Limits high enough that only the rate-limit test meets them.
const ROOMY_LIMITS: &str = "[limits]\nauth_per_minute = 100000\nauth_burst = 100000\n\
    dashboard_per_minute = 100000\ndashboard_burst = 100000\n";
const TWO_CHANNELS: &str = "[[channel]]\nlogin = \"alice\"\n\n[[channel]]\nlogin = \"bob\"\n";

/// A home-mode node serving alice and bob, with the admin password set.
async fn start_home(extra: &str) -> TestServer {
    let toml = format!("{extra}\n{}", TWO_CHANNELS);
    let toml = match extra.contains("[limits]") {
        true => toml,
        false => format!("{ROOMY_LIMITS}\n{toml}"),
    };
    let srv = TestServer::start_with(&toml, None, None).await;
    let db = &srv.server.app().db;
    chatpulse::auth::set_admin_password(db, PASSWORD, TEST_ITERATIONS, "test")
        .await
        .unwrap();
    srv
}

/// Signs in with the admin password; returns the client and the dashboard's CSRF token.
async fn sign_in(srv: &TestServer) -> (Web, String) {
    let mut web = Web::new(srv.addr);
    let page = web.get("/login").await;
    assert_eq!(page.status, 200, "{}", page.body);
    let form = format!(
        "password={}&csrf_token={}",
        PASSWORD.replace(' ', "+"),
        csrf_of(&page.body)
    );
    let r = web.post_form("/login", &form).await;
    assert_eq!(
        (r.status, r.location().as_str()),
        (302, "/dashboard"),
        "{}",
        r.body
    );
    let dash = web.get("/dashboard").await;
    assert_eq!(dash.status, 200);
    let csrf = csrf_of(&dash.body);
    (web, csrf)
}

fn metric(srv: &TestServer, line: &str) -> bool {
    srv.metrics().lines().any(|l| l == line)
}

fn is_page(r: &Resp) -> bool {
    r.header("content-type")
        .is_some_and(|t| t.starts_with("text/html"))
        && r.body.contains("<html")
}

async fn audit_actions(srv: &TestServer) -> Vec<(String, String)> {
    let rows = srv.server.app().db.recent_audit(50).await.unwrap();
    rows.into_iter().map(|r| (r.actor, r.action)).collect()
}

#[test]
fn validation_errors_name_the_field() {
    run(TEST_TIMEOUT, async {
        let srv = start_home("").await;
        let (mut web, csrf) = sign_in(&srv).await;
        let url = "/api/config?channel=alice";
        for (body, field, message) in [
            (
                r#"{"for_triggers":[]}"#,
                "for_triggers",
                "for trigger cannot be empty",
            ),
            (
                r#"{"against_triggers":["  "]}"#,
                "against_triggers",
                "against trigger cannot be empty",
            ),
            (
                r#"{"against_triggers":["YES"]}"#,
                "for_triggers",
                "for and against triggers must be different (shared: \\\"yes\\\")",
            ),
            (
                r#"{"memory_seconds":500}"#,
                "memory_seconds",
                "memory seconds must be between 5 and 120",
            ),
            (
                r#"{"model":"decay","decay_speed":3}"#,
                "decay_speed",
                "decay speed must be between 0.1 and 2.0",
            ),
            (
                r#"{"theme":"blue"}"#,
                "theme",
                "theme must be 'dark' or 'light'",
            ),
            (
                r#"{"display_mode":"both"}"#,
                "display_mode",
                "display mode must be 'combined' or 'split'",
            ),
        ] {
            let r = web.post_json(url, &csrf, body).await;
            assert_eq!(r.status, 400, "{body}: {}", r.body);
            let expected =
                format!(r#"{{"error":"{message}","type":"validation","field":"{field}"}}"#);
            assert_eq!(r.body, expected, "{body}");
        }
        let label = format!(r#"{{"for_label":"{}"}}"#, "a".repeat(51));
        let r = web.post_json(url, &csrf, &label).await;
        assert_eq!(
            json_str(&r.body, "error").as_deref(),
            Some("for label exceeds 50 characters")
        );

        // Optimistic concurrency: a save based on an old version is refused.
        let r = web
            .post_json(url, &csrf, r#"{"version":1,"for_label":"A"}"#)
            .await;
        assert_eq!((r.status, r.body.as_str()), (200, r#"{"version":2}"#));
        let r = web
            .post_json(url, &csrf, r#"{"version":1,"for_label":"B"}"#)
            .await;
        assert_eq!(r.status, 409);
        assert_eq!(json_str(&r.body, "type").as_deref(), Some("conflict"));
        assert_eq!(json_num(&r.body, "current"), Some(2));

        // The reference's form post: JSON for XHR, a page otherwise.
        let form = format!("csrf_token={csrf}&memory_seconds=abc");
        let xhr = [
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("X-Requested-With", "XMLHttpRequest"),
        ];
        let r = web
            .send("POST", "/dashboard/config?channel=alice", &xhr, &form)
            .await;
        assert_eq!(r.status, 400);
        assert_eq!(
            json_str(&r.body, "field").as_deref(),
            Some("memory_seconds")
        );
        let r = web
            .post_form("/dashboard/config?channel=alice", &form)
            .await;
        assert_eq!(r.status, 400);
        assert!(
            is_page(&r) && r.body.contains("invalid memory seconds format"),
            "{}",
            r.body
        );
        // Nothing invalid was stored.
        let r = web.get(url).await;
        assert_eq!(json_num(&r.body, "version"), Some(2));
        srv.stop().await;
    });
}

#[test]
fn saving_pushes_to_every_overlay_at_once() {
    run(TEST_TIMEOUT, async {
        let srv = start_home("").await;
        let (mut web, csrf) = sign_in(&srv).await;
        let token = srv.token("alice");
        let mut a = Overlay::connect(srv.addr, &token).await.unwrap();
        let mut b = Overlay::connect(srv.addr, &token).await.unwrap();
        a.frame().await;
        b.frame().await;
        let r = web.get("/api/config?channel=alice").await;
        assert_eq!(
            r.body,
            r#"{"version":1,"for_triggers":["yes"],"against_triggers":["no"],"for_label":"For","against_label":"Against","model":"window","memory_seconds":30,"decay_speed":0.5,"display_mode":"combined","theme":"dark"}"#
        );
        let body = r#"{"version":1,"for_triggers":["yes","y"],"against_triggers":"no, n","for_label":"Yay","against_label":"Nay","model":"window","memory_seconds":null,"decay_speed":0.5,"display_mode":"split","theme":"light"}"#;
        let r = web
            .post_json("/api/config?channel=alice", &csrf, body)
            .await;
        assert_eq!((r.status, r.body.as_str()), (200, r#"{"version":2}"#));
        for ov in [&mut a, &mut b] {
            let f = ov.frame_where("new labels", |f| f.for_label == "Yay").await;
            assert_eq!(
                (f.against_label.as_str(), f.theme.as_str()),
                ("Nay", "light")
            );
            assert_eq!((f.display_mode.as_str(), f.memory_seconds), ("split", None));
        }
        let r = web.get("/api/config?channel=alice").await;
        assert!(
            r.body.contains(
                r#""version":2,"for_triggers":["yes","y"],"against_triggers":["no","n"]"#
            ),
            "{}",
            r.body
        );
        assert!(r.body.contains(r#""memory_seconds":null"#));

        // The reference's form post: 204 for XHR, else back to the dashboard.
        let xhr = [
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("X-Requested-With", "XMLHttpRequest"),
        ];
        let form = format!(
            "csrf_token={csrf}&for_trigger=yes&against_trigger=no&for_label=Up&against_label=Down&memory_seconds=45&display_mode=combined&theme=dark"
        );
        let r = web
            .send("POST", "/dashboard/config?channel=alice", &xhr, &form)
            .await;
        assert_eq!(r.status, 204, "{}", r.body);
        a.frame_where("form save", |f| {
            f.for_label == "Up" && f.memory_seconds == Some(45)
        })
        .await;
        let r = web
            .post_form(
                "/dashboard/config?channel=alice",
                &form.replace("Up", "Upp"),
            )
            .await;
        assert_eq!((r.status, r.location().as_str()), (302, "/dashboard"));
        a.frame_where("form save", |f| f.for_label == "Upp").await;
        let actions = audit_actions(&srv).await;
        assert!(
            actions.contains(&("admin".into(), "config_saved".into())),
            "{actions:?}"
        );
        srv.stop().await;
    });
}

#[test]
fn rotating_closes_the_old_url_and_its_sockets() {
    run(TEST_TIMEOUT, async {
        let srv = start_home("").await;
        let (mut web, csrf) = sign_in(&srv).await;
        let old = srv.token("alice");
        let r = web.get("/api/overlay-url?channel=alice").await;
        assert_eq!(
            json_str(&r.body, "url"),
            Some(format!("http://{}/overlay/{old}", srv.addr))
        );
        let mut ov = Overlay::connect(srv.addr, &old).await.unwrap();
        ov.frame().await;
        let r = web.post_json("/api/rotate?channel=alice", &csrf, "").await;
        assert_eq!(r.status, 200, "{}", r.body);
        let url = json_str(&r.body, "url").unwrap();
        let new = url.rsplit('/').next().unwrap().to_string();
        assert_ne!(new, old);
        assert_eq!(new, srv.token("alice"));
        assert_eq!(ov.closed().await, Some(4404), "rotated close code");
        assert_eq!(get(srv.addr, &format!("/overlay/{old}")).await.0, 404);
        assert_eq!(get(srv.addr, &format!("/overlay/{new}")).await.0, 200);
        let mut again = Overlay::connect(srv.addr, &old).await.unwrap();
        assert!(matches!(
            again.recv(WAIT).await,
            Received::Closed(Some(4404))
        ));
        let actions = audit_actions(&srv).await;
        assert!(
            actions.contains(&("admin".into(), "token_rotated".into())),
            "{actions:?}"
        );
        srv.stop().await;
    });
}

#[test]
fn reset_test_votes_and_status() {
    run(TEST_TIMEOUT, async {
        let srv = start_home("").await;
        let (mut web, csrf) = sign_in(&srv).await;
        let r = web
            .post_json("/api/test-vote?channel=alice&side=for", &csrf, "")
            .await;
        assert_eq!(r.body, r#"{"result":"no_viewers"}"#, "nobody watches yet");
        let mut ov = Overlay::connect(srv.addr, &srv.token("alice"))
            .await
            .unwrap();
        ov.frame().await;
        let r = web.get("/api/status?channel=alice").await;
        assert_eq!(
            r.body,
            r#"{"viewers":1,"source":{"kind":"none","connected":false,"last_message_ms":0,"reconnects":0}}"#
        );
        for side in ["for", "for", "against"] {
            let r = web
                .post_json(
                    &format!("/api/test-vote?channel=alice&side={side}"),
                    &csrf,
                    "",
                )
                .await;
            assert_eq!(
                r.body,
                format!(r#"{{"result":"{}"}}"#, VoteResult::Applied.as_str()),
                "a fresh chatter each time"
            );
        }
        let f = ov.frame_where("3 test votes", |f| f.total_votes == 3).await;
        assert_eq!((f.for_votes, f.against_votes), (2, 1));
        let r = web
            .post_json("/api/test-vote?channel=alice&side=up", &csrf, "")
            .await;
        assert_eq!(r.status, 400);

        let r = web.post_json("/api/reset?channel=alice", &csrf, "").await;
        assert_eq!(r.body, r#"{"status":"ok"}"#);
        ov.frame_where("reset", |f| f.total_votes == 0).await;
        assert!(metric(
            &srv,
            "chat_messages_received_total{source=\"dashboard\"} 4"
        ));
        let actions = audit_actions(&srv).await;
        assert!(
            actions.contains(&("admin".into(), "reset".into())),
            "{actions:?}"
        );

        // Unknown channels; bob is as manageable as alice in home mode.
        let r = web.get("/api/config?channel=zed").await;
        assert_eq!(
            (r.status, json_str(&r.body, "error").as_deref()),
            (404, Some("unknown channel"))
        );
        assert_eq!(web.get("/api/config?channel=bob").await.status, 200);
        assert_eq!(
            web.post_json("/api/status?channel=bob", &csrf, "")
                .await
                .status,
            405
        );
        srv.stop().await;
    });
}

#[test]
fn api_mesh_lists_members_for_the_admin_only() {
    run(TEST_TIMEOUT, async {
        let mesh = "[mesh]\nlisten = \"127.0.0.1:0\"\nsecret = \"dashboard-mesh-secret-0123\"\n";
        let srv = start_home(mesh).await;
        let anonymous = Web::new(srv.addr).get("/api/mesh").await;
        assert_eq!(anonymous.status, 401, "{}", anonymous.body);
        let (mut web, _) = sign_in(&srv).await;
        let r = web.get("/api/mesh").await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(
            r.body.starts_with("{\"enabled\":true,\"node\":\""),
            "{}",
            r.body
        );
        assert!(
            r.body.contains("\"state\":\"alive\",\"rtt_ms\":null"),
            "{}",
            r.body
        );
        srv.stop().await;

        let alone = start_home("").await;
        let (mut web, _) = sign_in(&alone).await;
        let r = web.get("/api/mesh").await;
        assert_eq!(r.body, r#"{"enabled":false,"members":[]}"#);
        alone.stop().await;
    });
}
