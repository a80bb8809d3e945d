//! The dashboard: its API and pages without a session, CSRF or valid input
//! (H22–H25, H28–H32, P01–P04, P07–P10, P13, P19), its rate limits (H33, P12),
//! a store that fails under it (H34, H35, P05, P11), and Twitch mode's sign-in
//! and ownership (H26, H27, P06, P14–P18).

use std::net::SocketAddr;
use std::time::Duration;

use super::{Check, ROOMY, TWO_CHANNELS};
use crate::common::fake_helix::{CLIENT_ID, CLIENT_SECRET, FakeHelix};
use crate::common::web::{Resp, Web, csrf_of};
use crate::common::{TEST_TIMEOUT, TestServer, eventually, run};

pub(super) const PASSWORD: &str = "correct horse battery";

/// A home-mode node from `toml` with the admin password set.
pub(super) async fn start_home(toml: &str) -> TestServer {
    let srv = TestServer::start_with(toml, None, None).await;
    chatpulse::auth::set_admin_password(&srv.server.app().db, PASSWORD, 1000, "test")
        .await
        .unwrap();
    srv
}

/// Signs in with the admin password; the client and the dashboard's CSRF token.
pub(super) async fn sign_in(addr: SocketAddr) -> (Web, String) {
    let mut web = Web::new(addr);
    let page = web.get("/login").await;
    let form = format!(
        "password={}&csrf_token={}",
        PASSWORD.replace(' ', "+"),
        csrf_of(&page.body)
    );
    let r = web.post_form("/login", &form).await;
    assert_eq!(r.location(), "/dashboard", "{}", r.body);
    let csrf = csrf_of(&web.get("/dashboard").await.body);
    (web, csrf)
}

#[test]
fn dashboard_api() {
    run(TEST_TIMEOUT, async {
        let srv = start_home(&format!("{ROOMY}\n{TWO_CHANNELS}")).await;
        let a = srv.addr;
        let mut c = Check::new("dashboard::dashboard_api");

        let before = srv.metrics();
        let mut anon = Web::new(a);
        c.http("H22", &anon.get("/api/channels").await);
        anon.set_cookie("chatpulse_session", "forged.forged");
        c.http("H22", &anon.get("/api/channels").await);
        c.counted("H22", &srv, &before).await;
        let before = srv.metrics();
        c.http("P01", &Web::new(a).get("/dashboard").await);
        c.counted("P01", &srv, &before).await;

        // The sign-in form's own token.
        let mut web = Web::new(a);
        let form_token = csrf_of(&web.get("/login").await.body);
        for (id, form) in [
            ("P02", "password=x".to_string()),
            ("P03", "password=x&csrf_token=forged".to_string()),
            ("P04", format!("password=nope&csrf_token={form_token}")),
        ] {
            let before = srv.metrics();
            c.http(id, &web.post_form("/login", &form).await);
            c.counted(id, &srv, &before).await;
        }

        let (mut web, csrf) = sign_in(a).await;
        let api = "/api/config?channel=alice";
        let json_cases = [
            ("H23", "/api/reset?channel=alice", "", ""),
            ("H24", "/api/reset?channel=alice", "forged", ""),
            (
                "H28",
                "/api/test-vote?channel=alice&side=up",
                csrf.as_str(),
                "",
            ),
            ("H29", api, csrf.as_str(), "not json"),
            ("H30", api, csrf.as_str(), r#"{"theme":"blue"}"#),
            ("H31", api, csrf.as_str(), r#"{"memory_seconds":500}"#),
        ];
        for (id, target, token, body) in json_cases {
            let before = srv.metrics();
            c.http(id, &web.post_json(target, token, body).await);
            c.counted(id, &srv, &before).await;
        }
        let before = srv.metrics();
        c.http("H25", &web.get("/api/config?channel=zed").await);
        c.counted("H25", &srv, &before).await;
        let saved = web
            .post_json(api, &csrf, r#"{"version":1,"for_label":"A"}"#)
            .await;
        assert_eq!(
            (saved.status, saved.body.as_str()),
            (200, r#"{"version":2}"#)
        );
        let before = srv.metrics();
        let r = web
            .post_json(api, &csrf, r#"{"version":1,"for_label":"B"}"#)
            .await;
        c.http("H32", &r);
        c.counted("H32", &srv, &before).await;
        assert!(r.body.ends_with(",\"current\":2}"), "{}", r.body);

        let page_cases = [
            (
                "P07",
                "/dashboard/config?channel=alice",
                "theme=light".to_string(),
            ),
            (
                "P08",
                "/dashboard/config?channel=alice",
                "theme=light&csrf_token=forged".into(),
            ),
            (
                "P09",
                "/dashboard/config?channel=zed",
                format!("csrf_token={csrf}"),
            ),
            (
                "P10",
                "/dashboard/config?channel=alice",
                format!("csrf_token={csrf}&memory_seconds=abc"),
            ),
        ];
        for (id, target, form) in page_cases {
            let before = srv.metrics();
            c.http(id, &web.post_form(target, &form).await);
            c.counted(id, &srv, &before).await;
        }
        let before = srv.metrics();
        c.http("P13", &web.get("/auth/callback?code=x&state=y").await);
        c.counted("P13", &srv, &before).await;
        let before = srv.metrics();
        c.http("P19", &web.get("/overlay/AAAAAAAAAAAAAAAAAAAAAA").await);
        c.counted("P19", &srv, &before).await;
        c.finish();
        srv.stop().await;
    });
}

#[test]
fn dashboard_limits() {
    run(TEST_TIMEOUT, async {
        // The defaults: auth 10/min burst 5; dashboard and API 30/min burst 10.
        let srv = TestServer::start().await;
        let mut c = Check::new("dashboard::dashboard_limits");
        let mut web = Web::new(srv.addr);
        for _ in 0..5 {
            assert_eq!(web.get("/login").await.status, 200);
        }
        let before = srv.metrics();
        let r = web.get("/login").await;
        c.http("P12", &r);
        c.counted("P12", &srv, &before).await;
        assert_eq!(r.header("retry-after").as_deref(), Some("6"));
        for _ in 0..10 {
            assert_eq!(web.get("/api/channels").await.status, 401);
        }
        let before = srv.metrics();
        let r = web.get("/api/config").await;
        c.http("H33", &r);
        c.counted("H33", &srv, &before).await;
        assert_eq!(r.header("retry-after").as_deref(), Some("2"));
        c.finish();
        srv.stop().await;
    });
}

#[test]
fn store_failure() {
    run(TEST_TIMEOUT, async {
        let srv = start_home(&format!("{ROOMY}\n{TWO_CHANNELS}")).await;
        let a = srv.addr;
        let mut c = Check::new("dashboard::store_failure");
        let (mut web, csrf) = sign_in(a).await;
        let mut other = Web::new(a);
        let form_token = csrf_of(&other.get("/login").await.body);
        // SQLite goes away under the running node.
        srv.server.app().db.clone().close().await;

        let before = srv.metrics();
        c.http(
            "H34",
            &web.post_json("/api/rotate?channel=alice", &csrf, "").await,
        );
        c.counted("H34", &srv, &before).await;
        let form = format!("csrf_token={csrf}&theme=light");
        let before = srv.metrics();
        c.http(
            "P11",
            &web.post_form("/dashboard/config?channel=alice", &form)
                .await,
        );
        c.counted("P11", &srv, &before).await;
        let form = format!("password=x&csrf_token={form_token}");
        let before = srv.metrics();
        c.http("P05", &other.post_form("/login", &form).await);
        c.counted("P05", &srv, &before).await;
        // The health loop notices within one round (5 s).
        let before = srv.metrics();
        let ready = eventually("ready to fail", Duration::from_secs(15), || {
            let r = smol::block_on(Web::new(a).get("/health/ready"));
            (r.status == 503).then_some(r)
        })
        .await;
        c.http("H35", &ready);
        c.counted("H35", &srv, &before).await;
        assert!(
            ready.body.contains("\"failed_check\":\"sqlite\""),
            "{}",
            ready.body
        );
        assert_eq!(Web::new(a).get("/health/live").await.status, 200);
        c.finish();
        srv.server.shutdown();
        let server = srv.server;
        let _ = smol::unblock(move || server.wait()).await;
    });
}

/// `/auth/login` → the fake's consent → back to `/auth/callback`; its answer.
async fn twitch_sign_in(web: &mut Web, fake: &FakeHelix) -> Resp {
    let target = |url: &str| {
        let rest = url.split_once("://").map_or(url, |(_, r)| r);
        rest.find('/').map_or("/".into(), |i| rest[i..].to_string())
    };
    let to_twitch = web.get("/auth/login").await.location();
    let back = web
        .send_to(fake.addr, "GET", &target(&to_twitch), &[], "")
        .await
        .location();
    web.get(&target(&back)).await
}

#[test]
fn twitch_mode() {
    run(TEST_TIMEOUT, async {
        let fake = FakeHelix::start().await;
        fake.consent_as("55", "frank", "Frank");
        let toml = format!(
            "{ROOMY}\n[auth]\nmode = \"twitch\"\n\n[twitch]\nsource = \"none\"\n\
             client_id = \"{CLIENT_ID}\"\nclient_secret = \"{CLIENT_SECRET}\"\n\
             helix_url = \"{}\"\nauth_url = \"{}\"\n\n[[channel]]\nlogin = \"erin\"\n",
            fake.helix_url(),
            fake.auth_url()
        );
        let srv = TestServer::start_with(&toml, None, None).await;
        let a = srv.addr;
        let mut c = Check::new("dashboard::twitch_mode");
        let mut web = Web::new(a);
        assert_eq!(
            twitch_sign_in(&mut web, &fake).await.location(),
            "/dashboard"
        );
        for (id, target) in [("H26", "/api/config?channel=erin"), ("H27", "/api/mesh")] {
            let before = srv.metrics();
            c.http(id, &web.get(target).await);
            c.counted(id, &srv, &before).await;
        }
        let before = srv.metrics();
        c.http("P06", &Web::new(a).post_form("/login", "password=x").await);
        c.counted("P06", &srv, &before).await;
        let state = "chatpulse_oauth_state";
        for (id, cookie, query) in [
            ("P14", None, "error=access_denied"),
            ("P15", None, "code=abc&state=x"),
            ("P16", Some("aaaa"), "code=abc&state=bbbb"),
            ("P17", Some("s1"), "state=s1"),
            ("P18", Some("s2"), "code=not-a-code&state=s2"),
        ] {
            let mut w = Web::new(a);
            if let Some(v) = cookie {
                w.set_cookie(state, v);
            }
            let before = srv.metrics();
            c.http(id, &w.get(&format!("/auth/callback?{query}")).await);
            c.counted(id, &srv, &before).await;
        }
        c.finish();
        srv.stop().await;
    });
}
