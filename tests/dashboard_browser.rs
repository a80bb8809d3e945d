//! The dashboard in a real headless Chromium. Home mode: sign in with the admin
//! password, edit and save settings, watch the real overlay (a separate page, as
//! in OBS, and the preview iframe) follow without a reload, send a test vote, see
//! a validation message, sign out. Twitch mode: "Log in with Twitch" against the
//! in-process fake of Twitch's OAuth lands on the streamer's dashboard.
//!
//! Needs Chromium (`/usr/bin/chromium` or `CHATPULSE_TEST_CHROMIUM`). Without it the
//! tests print a loud skip line, unless `CHATPULSE_TEST_REQUIRE_BROWSER=1` (CI) makes
//! that a failure. Screenshots land in `target/`; with
//! `CHATPULSE_TEST_UPDATE_SCREENSHOTS=1` the dashboard one is also copied to
//! `assets/dashboard-screenshot.png` (for the README), so normal runs leave the tree
//! clean.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::browser::{Browser, Page, launch_or_skip};
use crate::common::fake_helix::{CLIENT_ID, CLIENT_SECRET, FakeHelix};
use crate::common::{TEST_TIMEOUT, TestServer, run};

/// Page loads, sign-in and a save each take well under a second locally; the status
/// panel refreshes every 3 s.
const PAGE_WAIT: Duration = Duration::from_secs(20);

const PASSWORD: &str = "correct horse battery";
/// Few rounds: the test checks the flow, not PBKDF2's cost.
const TEST_ITERATIONS: u32 = 1_000;

/// The per-IP limits raised so a burst of test clicks never meets a 429.
const ROOMY_LIMITS: &str = "[limits]\nauth_per_minute = 6000\nauth_burst = 1000\n\
dashboard_per_minute = 6000\ndashboard_burst = 1000\n";

/// The overlay inside the dashboard's preview iframe (same origin, so readable).
const PREVIEW: &str = "document.getElementById('preview').contentDocument";

/// Where the overlay's ball rests with no votes (percent of the pill).
const CENTER: &str = "50";

async fn wait(page: &Page<'_>, condition: &str) -> String {
    page.wait_for(condition, PAGE_WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

async fn eval(page: &Page<'_>, js: &str) -> String {
    page.eval(js).await.unwrap_or_else(|e| panic!("{e}"))
}

/// A JS string literal (JSON is valid JS).
fn js_str(s: &str) -> String {
    nanoserde::SerJson::serialize_json(&s.to_string())
}

async fn click(page: &Page<'_>, selector: &str) {
    let sel = js_str(selector);
    eval(
        page,
        &format!(
            "(el => {{ if (!el) throw new Error('no element ' + {sel}); el.click(); return true; }})\
             (document.querySelector({sel}))"
        ),
    )
    .await;
}

/// Sets a control's value the way typing ends: `input`, then `change`.
async fn type_into(page: &Page<'_>, id: &str, text: &str) {
    let (id, text) = (js_str(id), js_str(text));
    eval(
        page,
        &format!(
            "(el => {{ el.focus(); el.value = {text}; \
             el.dispatchEvent(new Event('input', {{bubbles: true}})); \
             el.dispatchEvent(new Event('change', {{bubbles: true}})); return true; }})\
             (document.getElementById({id}))"
        ),
    )
    .await;
}

async fn value_of(page: &Page<'_>, id: &str) -> String {
    eval(
        page,
        &format!("document.getElementById({}).value", js_str(id)),
    )
    .await
}

async fn shown(page: &Page<'_>, id: &str) -> bool {
    let js = format!(
        "document.getElementById({}).getClientRects().length > 0",
        js_str(id)
    );
    eval(page, &js).await == "true"
}

async fn screenshot(page: &Page<'_>, name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join(name);
    page.screenshot(&path).await.unwrap();
    let png = std::fs::read(&path).unwrap();
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 1024,
        "bad screenshot {}: {} bytes",
        path.display(),
        png.len()
    );
    path
}

/// The login page in home mode: a wrong password comes back with a visible
/// message, the right one lands on a loaded dashboard.
async fn sign_in_with_password(page: &Page<'_>) {
    assert_eq!(eval(page, "document.body.dataset.mode").await, "home");
    assert!(shown(page, "password").await, "no password field");
    assert!(!shown(page, "twitch").await, "Twitch button in home mode");
    assert!(!shown(page, "error").await, "an error before any attempt");

    eval(page, "window.__before = 1").await;
    type_into(page, "password", "not the password").await;
    click(page, "#submit").await;
    let message = wait(
        page,
        "!window.__before && location.pathname === '/login' && \
         document.getElementById('error').getClientRects().length > 0 && \
         document.getElementById('error').textContent.trim()",
    )
    .await;
    eprintln!("wrong password: {message:?}");

    type_into(page, "password", PASSWORD).await;
    click(page, "#submit").await;
    wait(
        page,
        "location.pathname === '/dashboard' && document.body.dataset.ready === '1'",
    )
    .await;
}

/// The stored settings are on screen; the overlay URL only after "Reveal".
async fn check_loaded(dash: &Page<'_>, token: &str) {
    assert_eq!(value_of(dash, "for_label").await, "For");
    assert_eq!(value_of(dash, "for_triggers").await, "yes");
    assert_eq!(value_of(dash, "against_triggers").await, "no");
    assert_eq!(value_of(dash, "model").await, "window");
    assert_eq!(value_of(dash, "memory_seconds").await, "30");
    assert_eq!(value_of(dash, "display_mode").await, "combined");
    assert_eq!(value_of(dash, "theme").await, "dark");
    assert_eq!(eval(dash, "location.hash").await, "#alice");

    let masked = value_of(dash, "overlay_url").await;
    assert!(!masked.contains(token), "URL shown before Reveal: {masked}");
    click(dash, "#reveal").await;
    let url = value_of(dash, "overlay_url").await;
    assert!(
        url.ends_with(&format!("/overlay/{token}")),
        "revealed {url}"
    );
    click(dash, "#reveal").await;
}

/// A label the input allows (26 UTF-16 units) but the server refuses (52 bytes):
/// the message shows next to the field and goes away on the next edit.
async fn check_validation_message(dash: &Page<'_>) {
    type_into(dash, "for_label", &"🎉".repeat(13)).await;
    click(dash, "#save").await;
    let error = wait(dash, "document.getElementById('err_for_label').textContent").await;
    assert!(error.contains("50"), "validation message {error:?}");
    let invalid = "document.getElementById('for_label').getAttribute('aria-invalid')";
    assert_eq!(eval(dash, invalid).await, "true");
    type_into(dash, "for_label", "Hype").await;
    let cleared = "document.getElementById('err_for_label').textContent";
    assert_eq!(eval(dash, cleared).await, "");
    assert_eq!(eval(dash, invalid).await, "null");
}

/// Trigger words typed the two ways a tag editor takes them (a comma, Enter),
/// a new theme; saved with the label already typed.
async fn edit_and_save(dash: &Page<'_>) -> String {
    let typed = "(el => { el.value = 'y,Pog'; \
         el.dispatchEvent(new Event('input', {bubbles: true})); \
         el.dispatchEvent(new KeyboardEvent('keydown', {key: 'Enter', bubbles: true, cancelable: true})); \
         return document.getElementById('for_triggers').value; })\
         (document.querySelector('#for_triggers input'))";
    assert_eq!(eval(dash, typed).await, "yes, y, Pog");
    type_into(dash, "against_triggers", "no, n").await;
    click(dash, "#theme input[value=light]").await;
    assert!(shown(dash, "dirty").await, "no unsaved-changes hint");

    click(dash, "#save").await;
    let version = wait(dash, "document.body.dataset.saved").await;
    wait(
        dash,
        "document.getElementById('toasts').textContent.includes('Saved')",
    )
    .await;
    assert!(
        !shown(dash, "dirty").await,
        "unsaved-changes hint after saving"
    );
    version
}

#[test]
fn dashboard_changes_reach_the_live_overlay() {
    run(TEST_TIMEOUT, async {
        let Some(browser) = launch_or_skip("dashboard browser test").await else {
            return;
        };
        // The overlay "in OBS" gets a browser of its own: a second tab would hide the
        // dashboard's, and hidden pages pause their timers and animation frames.
        let obs = Browser::launch().await.unwrap();
        let toml = format!("{ROOMY_LIMITS}\n[[channel]]\nlogin = \"alice\"\n");
        let srv = TestServer::start_with(&toml, None, None).await;
        let app = srv.server.app();
        chatpulse::auth::set_admin_password(&app.db, PASSWORD, TEST_ITERATIONS, "test")
            .await
            .unwrap();

        let dash = browser
            .open(&format!("http://{}/login", srv.addr))
            .await
            .unwrap();
        dash.set_viewport(1280, 1000).await.unwrap();
        sign_in_with_password(&dash).await;
        check_loaded(&dash, &srv.token("alice")).await;

        // The preview iframe and the OBS page both run the real overlay.
        wait(&dash, &format!("{PREVIEW}.body.dataset.status === 'live'")).await;
        let overlay = obs.open(&srv.overlay_url("alice")).await.unwrap();
        overlay.set_viewport(800, 100).await.unwrap();
        wait(&overlay, "document.body.dataset.status === 'live'").await;
        assert_eq!(eval(&overlay, "document.body.dataset.theme").await, "dark");
        // Markers a reload would wipe.
        eval(&overlay, "window.__kept = 1").await;
        eval(&dash, &format!("{PREVIEW}.defaultView.__kept = 1")).await;

        // Both are counted, and the chat source has a status.
        let viewers = wait(
            &dash,
            "(n => n >= 2 && n)(Number(document.getElementById('viewers').textContent))",
        )
        .await;
        let source = wait(
            &dash,
            "document.getElementById('source_status').dataset.state !== 'wait' && \
             document.getElementById('source_status').innerText",
        )
        .await;
        eprintln!("viewers {viewers}, chat source: {source:?}");

        check_validation_message(&dash).await;
        let version = edit_and_save(&dash).await;
        eprintln!("saved as version {version}");
        let stored = app.hub.config_of("alice").unwrap();
        assert_eq!(stored.for_triggers, ["yes", "y", "Pog"]);
        assert_eq!(stored.against_triggers, ["no", "n"]);
        assert_eq!(stored.for_label, "Hype");

        // Both overlays switch theme and label without a reload.
        wait(
            &overlay,
            "document.body.dataset.theme === 'light' && \
             document.getElementById('cFor').textContent === 'Hype'",
        )
        .await;
        assert_eq!(
            eval(&overlay, "window.__kept").await,
            "1",
            "overlay reloaded"
        );
        let preview_switched = format!(
            "{PREVIEW}.body.dataset.theme === 'light' && \
             {PREVIEW}.getElementById('cFor').textContent === 'Hype'"
        );
        wait(&dash, &preview_switched).await;
        let kept = eval(&dash, &format!("{PREVIEW}.defaultView.__kept")).await;
        assert_eq!(kept, "1", "preview reloaded");

        // "Test vote: Hype" moves both balls right of the center.
        let label = "document.getElementById('vote_for').textContent.trim()";
        assert_eq!(eval(&dash, label).await, "Test vote: Hype");
        click(&dash, "#vote_for").await;
        let settled =
            "Math.abs(document.body.dataset.position - document.body.dataset.target) < 0.01";
        let right = format!("Number(document.body.dataset.position) > {CENTER} + 5");
        wait(&overlay, &format!("{right} && {settled}")).await;
        let pos = wait(
            &dash,
            &format!("(p => p > {CENTER} + 5 && p)(Number({PREVIEW}.body.dataset.position))"),
        )
        .await;
        eprintln!("preview ball at {pos}% after a test vote for");
        screenshot(&overlay, "overlay-light-screenshot.png").await;

        // A clean picture: no focus ring, the toasts gone, the preview settled.
        eval(&dash, "document.activeElement.blur(), true").await;
        wait(
            &dash,
            "document.getElementById('toasts').children.length === 0",
        )
        .await;
        wait(&dash, &settled.replace("document", PREVIEW)).await;
        let shot = screenshot(&dash, "dashboard-screenshot.png").await;
        if std::env::var("CHATPULSE_TEST_UPDATE_SCREENSHOTS").as_deref() == Ok("1") {
            let dest =
                Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/dashboard-screenshot.png");
            std::fs::copy(&shot, &dest).unwrap();
            eprintln!("updated {}", dest.display());
        }

        click(&dash, "#reset").await;
        let centered = format!("Number(document.body.dataset.target) === {CENTER}");
        wait(&overlay, &centered).await;

        // Signing out lands on the login page, and the API no longer answers.
        click(&dash, "#logout").await;
        wait(
            &dash,
            "location.pathname === '/login' && document.readyState === 'complete'",
        )
        .await;
        let status = "fetch('/api/channels', {credentials: 'same-origin'}).then(r => r.status)";
        assert_eq!(eval(&dash, status).await, "401");
        srv.stop().await;
    });
}

#[test]
fn twitch_sign_in_lands_on_the_streamers_dashboard() {
    run(TEST_TIMEOUT, async {
        let Some(browser) = launch_or_skip("dashboard browser test").await else {
            return;
        };
        let fake = FakeHelix::start().await;
        fake.consent_as("4242", "carol", "Carol");
        fake.add_user("carol", "4242");
        let toml = format!(
            "{ROOMY_LIMITS}\n[auth]\nmode = \"twitch\"\n\n[twitch]\nsource = \"none\"\n\
             client_id = \"{CLIENT_ID}\"\nclient_secret = \"{CLIENT_SECRET}\"\n\
             helix_url = \"{}\"\nauth_url = \"{}\"\n",
            fake.helix_url(),
            fake.auth_url()
        );
        let srv = TestServer::start_with(&toml, None, None).await;

        let page = browser
            .open(&format!("http://{}/login", srv.addr))
            .await
            .unwrap();
        assert_eq!(eval(&page, "document.body.dataset.mode").await, "twitch");
        assert!(shown(&page, "twitch").await, "no Twitch button");
        assert!(
            !shown(&page, "password").await,
            "password form in Twitch mode"
        );

        // Our /auth/login → the fake's consent (granted at once) → /auth/callback.
        click(&page, "#twitch").await;
        wait(
            &page,
            "location.pathname === '/dashboard' && document.body.dataset.ready === '1'",
        )
        .await;
        let header = eval(&page, "document.querySelector('.who').textContent").await;
        assert!(header.contains("Carol"), "header {header:?}");
        assert_eq!(
            eval(&page, "document.getElementById('chan_name').textContent").await,
            "Carol"
        );
        assert!(!shown(&page, "chan_pick").await, "a picker for one channel");
        assert_eq!(eval(&page, "location.hash").await, "#carol");
        assert_eq!(value_of(&page, "for_triggers").await, "yes");
        wait(&page, &format!("{PREVIEW}.body.dataset.status === 'live'")).await;
        srv.stop().await;
    });
}
