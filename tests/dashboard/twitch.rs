//! Signing in with Twitch (`auth.mode = "twitch"`) against the in-process fake
//! of Twitch's OAuth and Helix: the authorization-code flow end to end, a
//! declined consent, a state that does not match, Twitch failing, and what a
//! streamer may manage.

use super::{ROOMY_LIMITS, WAIT, audit_actions, is_page};
use crate::common::fake_helix::{CLIENT_ID, CLIENT_SECRET, FakeHelix};
use crate::common::web::{Resp, Web, csrf_of, json_num, json_str};
use crate::common::{TEST_TIMEOUT, TestServer, eventually, run};

const KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

/// A twitch-mode node against `fake`; `source` is the `[twitch]` chat source
/// section (a full one for the webhook source, else "none").
async fn start(fake: &FakeHelix, twitch: Option<String>, extra: &str) -> TestServer {
    let twitch = twitch.unwrap_or_else(|| {
        format!(
            "[twitch]\nsource = \"none\"\nclient_id = \"{CLIENT_ID}\"\nclient_secret = \"{CLIENT_SECRET}\"\n\
             helix_url = \"{}\"\nauth_url = \"{}\"\n",
            fake.helix_url(),
            fake.auth_url()
        )
    });
    let toml = format!(
        "{ROOMY_LIMITS}\n[auth]\nmode = \"twitch\"\nencryption_key = \"{KEY}\"\n\n{twitch}\n{extra}"
    );
    TestServer::start_with(&toml, None, None).await
}

/// Path and query of an absolute URL.
fn target(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.find('/').map_or("/".into(), |i| rest[i..].to_string())
}

/// `/auth/login` → the fake's authorize page → back to `/auth/callback`.
/// Returns the callback's answer.
async fn twitch_sign_in(web: &mut Web, fake: &FakeHelix) -> Resp {
    let r = web.get("/auth/login").await;
    assert_eq!(r.status, 302, "{}", r.body);
    let authorize = r.location();
    assert!(
        authorize.starts_with(&format!("{}/authorize?", fake.auth_url())),
        "{authorize}"
    );
    let at_twitch = web
        .send_to(fake.addr, "GET", &target(&authorize), &[], "")
        .await;
    assert_eq!(at_twitch.status, 302, "{}", at_twitch.body);
    let back = at_twitch.location();
    assert!(
        back.starts_with(&format!("http://{}/auth/callback?", web.addr)),
        "{back}"
    );
    web.get(&target(&back)).await
}

#[test]
fn first_sign_in_creates_the_streamer_and_subscribes_its_chat() {
    run(TEST_TIMEOUT, async {
        let fake = FakeHelix::start().await;
        fake.consent_as("4242", "carol", "Carol");
        fake.add_user("carol", "4242");
        let webhook = fake.webhook_toml("secretabcd", "2914196", &[]);
        let srv = start(&fake, Some(webhook), "").await;
        let mut web = Web::new(srv.addr);

        let page = web.get("/login").await;
        assert!(page.body.contains("data-mode=\"twitch\""), "{}", page.body);
        // A multi-tenant landing page lists nobody's overlay link.
        let landing = crate::common::get(srv.addr, "/").await.2;
        assert!(landing.contains("Sign in with Twitch"), "{landing}");
        let r = web.get("/auth/login").await;
        let url = r.location();
        let redirect = format!(
            "redirect_uri=http%3A%2F%2F127.0.0.1%3A{}%2Fauth%2Fcallback",
            srv.addr.port()
        );
        for part in [
            "response_type=code",
            &format!("client_id={CLIENT_ID}"),
            &redirect,
            "scope=channel%3Abot",
            "&state=",
        ] {
            assert!(url.contains(part), "{part} in {url}");
        }
        let state = r.set_cookie("chatpulse_oauth_state").unwrap();
        for attr in ["HttpOnly", "SameSite=Lax", "Max-Age=600", "Path=/auth"] {
            assert!(state.contains(attr), "{attr} in {state}");
        }

        let r = twitch_sign_in(&mut web, &fake).await;
        assert_eq!(
            (r.status, r.location().as_str()),
            (302, "/dashboard"),
            "{}",
            r.body
        );
        assert!(r.set_cookie("chatpulse_session").is_some());
        assert!(
            r.set_cookie("chatpulse_oauth_state")
                .unwrap()
                .contains("Max-Age=0")
        );
        let dash = web.get("/dashboard").await;
        assert_eq!(dash.status, 200);
        assert!(
            dash.body.contains("Carol"),
            "the display name in the header"
        );
        let r = web.get("/api/channels").await;
        assert_eq!(
            r.body,
            r#"{"channels":[{"login":"carol","display_name":"Carol"}]}"#
        );
        let r = web.get("/api/config").await;
        assert_eq!(
            json_num(&r.body, "version"),
            Some(1),
            "defaults at first sign-in: {}",
            r.body
        );
        assert!(r.body.contains(r#""for_triggers":["yes"]"#));

        // The streamer is served at once and their chat subscribed without
        // waiting for the hourly round.
        let app = srv.server.app();
        let streamer = app
            .hub
            .streamers()
            .into_iter()
            .find(|s| s.login == "carol")
            .unwrap();
        assert_eq!(streamer.twitch_user_id.as_deref(), Some("4242"));
        eventually("carol's chat subscription", WAIT, || {
            fake.subscriptions()
                .into_iter()
                .find(|s| s.broadcaster_user_id == "4242" && s.kind == "channel.chat.message")
        })
        .await;
        // Tokens are kept encrypted only.
        let stored = app
            .db
            .user_tokens(streamer.id)
            .await
            .unwrap()
            .expect("stored tokens");
        assert!(!stored.access_enc.contains("usertoken") && stored.refresh_enc.is_some());
        let cipher = app.auth.cipher.as_ref().unwrap();
        let access = cipher
            .open(&stored.access_enc, &format!("{}|access", streamer.id))
            .unwrap();
        assert!(access.starts_with("usertoken"), "{access}");
        let actions = audit_actions(&srv).await;
        for (actor, action) in [
            ("twitch:carol", "channel_created"),
            ("twitch:carol", "login"),
        ] {
            assert!(
                actions.contains(&(actor.into(), action.into())),
                "{actions:?}"
            );
        }
        assert!(
            fake.requests()
                .iter()
                .any(|r| r.starts_with("POST /oauth2/token"))
        );

        // A later sign-in (another browser) keeps the channel and its overlay URL.
        let mut other = Web::new(srv.addr);
        let r = twitch_sign_in(&mut other, &fake).await;
        assert_eq!(r.location(), "/dashboard");
        assert_eq!(srv.token("carol"), streamer.overlay_token);
        assert_eq!(app.hub.streamers().len(), 1);

        // Signing out works the same as in home mode.
        let csrf = csrf_of(&dash.body);
        let r = web
            .post_form("/auth/logout", &format!("csrf_token={csrf}"))
            .await;
        assert_eq!(r.location(), "/login");
        assert_eq!(web.get("/api/channels").await.status, 401);
        srv.stop().await;
    });
}

#[test]
fn declined_consent_mismatched_state_and_twitch_failures_get_pages() {
    run(TEST_TIMEOUT, async {
        let fake = FakeHelix::start().await;
        let srv = start(&fake, None, "").await;

        // "Cancel" on Twitch's consent page: a readable page, not JSON.
        fake.deny_consent();
        let mut web = Web::new(srv.addr);
        let r = twitch_sign_in(&mut web, &fake).await;
        assert_eq!(r.status, 400);
        assert!(is_page(&r), "{}", r.body);
        assert!(
            r.body.contains("Login cancelled") && r.body.contains("The user denied you access"),
            "{}",
            r.body
        );
        assert!(r.body.contains("href=\"/login\""), "a way back");
        assert!(r.set_cookie("chatpulse_session").is_none());

        // A callback whose state is not this browser's.
        fake.consent_as("77", "dave", "Dave");
        let mut web = Web::new(srv.addr);
        web.get("/auth/login").await;
        let r = web.get("/auth/callback?code=abc&state=not-the-one").await;
        assert_eq!(r.status, 400);
        assert!(is_page(&r) && r.body.contains("Login failed"), "{}", r.body);
        // No state cookie at all (another browser, or cookies blocked).
        let r = Web::new(srv.addr)
            .get("/auth/callback?code=abc&state=x")
            .await;
        assert_eq!(r.status, 400);
        assert!(r.body.contains("Login expired"), "{}", r.body);

        // Twitch refuses the code exchange: 502 page, no session, no streamer.
        fake.fail_next("POST", "/oauth2/token", 500);
        let mut web = Web::new(srv.addr);
        let r = twitch_sign_in(&mut web, &fake).await;
        assert_eq!(r.status, 502);
        assert!(r.body.contains("Twitch sign-in failed"), "{}", r.body);
        assert!(srv.server.app().hub.streamers().is_empty());
        let m = srv.metrics();
        for line in [
            "auth_logins_total{result=\"cancelled\"} 1",
            "auth_logins_total{result=\"state_mismatch\"} 2",
            "auth_logins_total{result=\"twitch_error\"} 1",
        ] {
            assert!(m.lines().any(|l| l == line), "{line}");
        }

        // Then it works, and password sign-in is off in this mode.
        let r = twitch_sign_in(&mut web, &fake).await;
        assert_eq!(r.location(), "/dashboard");
        let r = Web::new(srv.addr).post_form("/login", "password=x").await;
        assert_eq!(r.status, 404);
        srv.stop().await;
    });
}

#[test]
fn a_streamer_manages_only_their_own_channel() {
    run(TEST_TIMEOUT, async {
        let fake = FakeHelix::start().await;
        let srv = start(&fake, None, "[[channel]]\nlogin = \"erin\"\n").await;
        fake.consent_as("55", "frank", "Frank");
        let mut web = Web::new(srv.addr);
        twitch_sign_in(&mut web, &fake).await;
        let dash = web.get("/dashboard").await;
        let csrf = csrf_of(&dash.body);
        let r = web.get("/api/channels").await;
        assert_eq!(
            r.body,
            r#"{"channels":[{"login":"frank","display_name":"Frank"}]}"#
        );
        let r = web.get("/api/config?channel=erin").await;
        assert_eq!(
            (r.status, json_str(&r.body, "type").as_deref()),
            (403, Some("forbidden"))
        );
        let r = web.post_json("/api/reset?channel=erin", &csrf, "").await;
        assert_eq!(r.status, 403);
        let r = web.post_json("/api/rotate?channel=erin", &csrf, "").await;
        assert_eq!(r.status, 403);
        let r = web
            .post_json(
                "/api/config?channel=frank",
                &csrf,
                r#"{"for_label":"Yes!"}"#,
            )
            .await;
        assert_eq!((r.status, r.body.as_str()), (200, r#"{"version":2}"#));

        // The owner of a config-file channel adopts it at sign-in.
        fake.consent_as("66", "erin", "Erin");
        let mut erin = Web::new(srv.addr);
        twitch_sign_in(&mut erin, &fake).await;
        assert_eq!(erin.get("/api/config?channel=erin").await.status, 200);
        assert_eq!(erin.get("/api/config?channel=frank").await.status, 403);
        srv.stop().await;
    });
}
