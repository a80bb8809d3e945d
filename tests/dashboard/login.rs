//! Home-mode sign-in with the admin password, sessions (expiry, sign-out,
//! Secure behind an HTTPS proxy), CSRF on every state-changing request, and the
//! per-IP rate limits.

use super::{PASSWORD, WAIT, audit_actions, is_page, metric, sign_in, start_home};
use crate::common::web::{Web, csrf_of, json_str};
use crate::common::{TEST_TIMEOUT, eventually, get, run};

#[test]
fn password_sign_in_pages_and_sign_out() {
    run(TEST_TIMEOUT, async {
        let srv = start_home("").await;
        let mut web = Web::new(srv.addr);
        // Not signed in: pages go to /login, the API answers 401 JSON.
        let r = web.get("/dashboard").await;
        assert_eq!((r.status, r.location().as_str()), (302, "/login"));
        let r = web.get("/api/channels").await;
        assert_eq!(r.status, 401);
        assert_eq!(json_str(&r.body, "type").as_deref(), Some("unauthorized"));

        let page = web.get("/login").await;
        assert!(page.body.contains("data-mode=\"home\""), "{}", page.body);
        let nonce = page
            .set_cookie("chatpulse_csrf")
            .expect("login CSRF cookie");
        assert!(
            nonce.contains("HttpOnly") && nonce.contains("SameSite=Strict"),
            "{nonce}"
        );
        let csrf = csrf_of(&page.body);
        let r = web
            .post_form("/login", &format!("password=nope&csrf_token={csrf}"))
            .await;
        assert_eq!(r.status, 200);
        assert!(r.body.contains("wrong password"), "{}", r.body);
        assert!(r.set_cookie("chatpulse_session").is_none());

        let form = format!("password={}&csrf_token={csrf}", PASSWORD.replace(' ', "+"));
        let r = web.post_form("/login", &form).await;
        assert_eq!((r.status, r.location().as_str()), (302, "/dashboard"));
        let cookie = r.set_cookie("chatpulse_session").expect("session cookie");
        for attr in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=604800"] {
            assert!(cookie.contains(attr), "{attr} in {cookie}");
        }
        assert!(!cookie.contains("Secure"), "plain HTTP, no proxy: {cookie}");
        let session = web.cookie("chatpulse_session").unwrap();

        let dash = web.get("/dashboard").await;
        assert_eq!(dash.status, 200);
        assert!(
            dash.head.contains("frame-ancestors 'none'"),
            "{}",
            dash.head
        );
        assert!(dash.head.contains("cache-control: no-store"));
        assert!(!dash.body.contains("{{"), "every placeholder filled");
        let csrf = csrf_of(&dash.body);
        assert_eq!(
            (
                web.get("/").await.location(),
                web.get("/login").await.location()
            ),
            ("/dashboard".into(), "/dashboard".into())
        );
        let r = web.get("/api/channels").await;
        assert_eq!(
            r.body,
            r#"{"channels":[{"login":"alice","display_name":"alice"},{"login":"bob","display_name":"bob"}]}"#
        );

        // Signing out needs the CSRF token, then the cookie is gone and void.
        let r = web.post_form("/auth/logout", "").await;
        assert_eq!(r.status, 400);
        assert!(is_page(&r), "a page for the browser: {}", r.body);
        let r = web
            .post_form("/auth/logout", &format!("csrf_token={csrf}"))
            .await;
        assert_eq!((r.status, r.location().as_str()), (302, "/login"));
        assert!(
            r.set_cookie("chatpulse_session")
                .unwrap()
                .contains("Max-Age=0")
        );
        assert_eq!(web.get("/dashboard").await.location(), "/login");
        // The old cookie, replayed, is signed out on the server too.
        web.set_cookie("chatpulse_session", &session);
        assert_eq!(web.get("/dashboard").await.location(), "/login");
        assert_eq!(web.get("/api/channels").await.status, 401);

        let actions = audit_actions(&srv).await;
        for (actor, action) in [
            ("admin", "login"),
            ("admin", "logout"),
            ("admin", "login_failed"),
            ("test", "password_set"),
        ] {
            assert!(
                actions.contains(&(actor.into(), action.into())),
                "{actor} {action}: {actions:?}"
            );
        }
        assert!(metric(&srv, "auth_logins_total{result=\"success\"} 1"));
        assert!(metric(
            &srv,
            "auth_logins_total{result=\"wrong_password\"} 1"
        ));
        srv.stop().await;
    });
}

#[test]
fn csrf_missing_is_400_and_wrong_is_403() {
    run(TEST_TIMEOUT, async {
        let srv = start_home("").await;
        // The sign-in form's own token.
        let mut web = Web::new(srv.addr);
        web.get("/login").await;
        let r = web.post_form("/login", "password=x").await;
        assert_eq!(r.status, 400);
        let r = web
            .post_form("/login", "password=x&csrf_token=forged")
            .await;
        assert_eq!(r.status, 403);
        assert!(
            r.body.contains("data-mode=\"home\""),
            "the sign-in page again"
        );

        let (mut web, csrf) = sign_in(&srv).await;
        let r = web.post_json("/api/reset?channel=alice", "", "").await;
        assert_eq!(r.status, 400);
        assert_eq!(r.body, r#"{"error":"missing csrf token","type":"csrf"}"#);
        let r = web
            .post_json("/api/reset?channel=alice", "forged", "")
            .await;
        assert_eq!(r.status, 403);
        assert_eq!(r.body, r#"{"error":"invalid csrf token","type":"csrf"}"#);
        // Another session's token is wrong here too.
        let (_, other_csrf) = sign_in(&srv).await;
        assert_ne!(other_csrf, csrf);
        let r = web
            .post_json("/api/reset?channel=alice", &other_csrf, "")
            .await;
        assert_eq!(r.status, 403);
        // The header or the form field will do.
        let r = web.post_json("/api/reset?channel=alice", &csrf, "").await;
        assert_eq!((r.status, r.body.as_str()), (200, r#"{"status":"ok"}"#));
        let r = web
            .post_form("/api/reset?channel=alice", &format!("csrf_token={csrf}"))
            .await;
        assert_eq!(r.status, 200);
        let r = web.post_form("/dashboard/config", "theme=light").await;
        assert_eq!(r.status, 400);
        assert!(is_page(&r));
        assert!(
            metric(&srv, "csrf_rejected_total{reason=\"missing\"} 3"),
            "{}",
            srv.metrics()
        );
        assert!(metric(&srv, "csrf_rejected_total{reason=\"invalid\"} 3"));
        srv.stop().await;
    });
}

#[test]
fn sessions_expire_and_cookies_are_secure_behind_https() {
    run(TEST_TIMEOUT, async {
        let extra =
            "[server]\ntrusted_proxies = [\"127.0.0.1\"]\n\n[auth]\nsession_max_age = \"1s\"\n";
        let srv = start_home(extra).await;
        let (mut web, _) = sign_in(&srv).await;
        assert_eq!(web.get("/api/channels").await.status, 200);
        eventually("the session to expire", WAIT, || {
            let status = smol::block_on(web.clone().get("/api/channels")).status;
            (status == 401).then_some(())
        })
        .await;
        assert_eq!(web.get("/dashboard").await.location(), "/login");

        // Behind a TLS-terminating proxy the cookies are Secure.
        let mut web = Web::new(srv.addr);
        web.headers
            .push(("X-Forwarded-Proto".into(), "https".into()));
        let page = web.get("/login").await;
        assert!(
            page.set_cookie("chatpulse_csrf")
                .unwrap()
                .contains("; Secure")
        );
        let form = format!(
            "password={}&csrf_token={}",
            PASSWORD.replace(' ', "+"),
            csrf_of(&page.body)
        );
        let r = web.post_form("/login", &form).await;
        let cookie = r.set_cookie("chatpulse_session").unwrap();
        assert!(
            cookie.contains("; Secure") && cookie.contains("Max-Age=1"),
            "{cookie}"
        );
        srv.stop().await;
    });
}

#[test]
fn rate_limits_answer_429_with_retry_after() {
    run(TEST_TIMEOUT, async {
        // The defaults: auth 10/min burst 5; dashboard+API 30/min burst 10.
        let srv = start_home("[limits]\n").await;
        let mut web = Web::new(srv.addr);
        for _ in 0..5 {
            assert_eq!(web.get("/login").await.status, 200);
        }
        let r = web.get("/login").await;
        assert_eq!(r.status, 429);
        assert_eq!(
            r.header("retry-after").as_deref(),
            Some("6"),
            "10/min: one per 6 s"
        );
        assert!(is_page(&r));
        assert_eq!(web.post_form("/login", "password=x").await.status, 429);

        for _ in 0..10 {
            assert_eq!(web.get("/api/channels").await.status, 401);
        }
        // The dashboard's status polling is not counted (still needs a session).
        assert_eq!(web.get("/api/status").await.status, 401);
        let r = web.get("/api/config").await;
        assert_eq!(r.status, 429);
        assert_eq!(
            r.header("retry-after").as_deref(),
            Some("2"),
            "30/min: one per 2 s"
        );
        assert_eq!(json_str(&r.body, "type").as_deref(), Some("rate_limited"));
        assert_eq!(
            web.get("/dashboard").await.status,
            429,
            "same class as the API"
        );

        // Overlays, health and metrics are never limited.
        let token = srv.token("alice");
        for _ in 0..20 {
            assert_eq!(get(srv.addr, "/health/live").await.0, 200);
            assert_eq!(get(srv.addr, &format!("/overlay/{token}")).await.0, 200);
        }
        assert!(metric(&srv, "http_rate_limited_total{class=\"auth\"} 2"));
        assert!(metric(
            &srv,
            "http_rate_limited_total{class=\"dashboard\"} 2"
        ));
        srv.stop().await;
    });
}
