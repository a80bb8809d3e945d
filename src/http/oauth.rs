//! Signing in with Twitch (reference §5.1, twitch mode): `GET /auth/login`
//! sends the browser to Twitch with a fresh `state` (also kept in the
//! `chatpulse_oauth_state` cookie, 10 minutes, SameSite=Lax so it survives the
//! redirect back); `GET /auth/callback` checks that state, exchanges the code
//! server-side, fetches the user, creates or refreshes the streamer, serves its
//! channel (the chat source subscribes it), keeps the tokens only encrypted, and
//! starts the session. A declined consent or a failure gets a readable page.

use std::sync::Arc;

use super::auth::{clear_cookie, session, set_cookie, sign_in, store_failed};
use super::form::{SameSite, cookie, param};
use super::pages::{error_page, redirect};
use super::request::Request;
use super::response::Response;
use super::{Action, async_action};
use crate::app::App;
use crate::auth::encoding::{constant_time_eq, hex, random};
use crate::auth::session::Subject;
use crate::metrics::LoginResult;
use crate::store::sqlite::TwitchUpsert;

const STATE_COOKIE: &str = "chatpulse_oauth_state";
/// Time allowed between leaving for Twitch and coming back.
const STATE_MAX_AGE: u64 = 600;
/// Longest text from Twitch's error redirect we repeat.
const MAX_SHOWN: usize = 200;

/// Where Twitch sends the browser back: `auth.redirect_uri`, else the public URL,
/// else the Host this request came in on.
fn redirect_uri(app: &App, req: &Request) -> String {
    if let Some(uri) = &app.config.auth.redirect_uri {
        return uri.clone();
    }
    let base = match (&app.config.server.public_url, req.header("host")) {
        (Some(public), _) => public.clone(),
        (None, Some(host)) => {
            let scheme = if req.https { "https" } else { "http" };
            format!("{scheme}://{host}")
        }
        (None, None) => format!("http://{}", app.config.server.listen),
    };
    format!("{base}/auth/callback")
}

/// `GET /auth/login`: off to Twitch with a fresh `state`.
pub(super) fn twitch_start(app: &Arc<App>, req: &Request) -> Action {
    let Some(oauth) = app.auth.oauth.as_ref() else {
        return Action::Respond(redirect("/login"));
    };
    if session(app, req).is_some() {
        return Action::Respond(redirect("/dashboard"));
    }
    let state = match random::<16>() {
        Ok(bytes) => hex(&bytes),
        Err(e) => {
            log::error!("auth: {e}");
            let msg = "The server has no randomness.";
            return Action::Respond(error_page(500, "Sign-in unavailable", msg));
        }
    };
    let url = oauth.authorize_url(&redirect_uri(app, req), &state);
    let cookie = set_cookie(
        app,
        req,
        STATE_COOKIE,
        &state,
        "/auth",
        STATE_MAX_AGE,
        SameSite::Lax,
    );
    Action::Respond(redirect(url).header("set-cookie", cookie))
}

/// `GET /auth/callback?code&state` (or `?error=…` when the streamer declined).
pub(super) fn twitch_callback(app: &Arc<App>, req: &Request) -> Action {
    if app.auth.oauth.is_none() {
        let msg = "This server does not sign in with Twitch.";
        return Action::Respond(error_page(404, "Not available", msg));
    }
    let clear_state = clear_cookie(app, req, STATE_COOKIE, "/auth");
    let refuse = |status, result, title: &str, message: &str| {
        app.metrics.auth_logins.inc(result);
        let resp = error_page(status, title, message).header("set-cookie", clear_state.clone());
        Action::Respond(resp)
    };
    let query = |name: &str| param(&req.query, name).filter(|v| !v.is_empty());
    if let Some(error) = query("error") {
        // Quoted ({:?}): the text comes from the URL and must not forge log lines.
        log::info!(
            "auth: Twitch sign-in cancelled from {} ({:?})",
            req.client_ip,
            error.chars().take(MAX_SHOWN).collect::<String>()
        );
        // Twitch's explanation, shortened: anyone can craft this link.
        let why: String = query("error_description")
            .unwrap_or_else(|| "You did not allow ChatPulse to use your Twitch account.".into())
            .chars()
            .take(MAX_SHOWN)
            .collect();
        let msg = format!(
            "{}. Nothing was changed; you can sign in again any time.",
            why.trim_end_matches('.')
        );
        return refuse(400, LoginResult::Cancelled, "Login cancelled", &msg);
    }
    let expected = req.header("cookie").and_then(|h| cookie(h, STATE_COOKIE));
    let (Some(expected), Some(state)) = (expected, query("state")) else {
        let msg = "The sign-in took too long or this browser blocks cookies. Please try again.";
        return refuse(400, LoginResult::StateMismatch, "Login expired", msg);
    };
    if !constant_time_eq(expected.as_bytes(), state.as_bytes()) {
        log::warn!("auth: OAuth state mismatch from {}", req.client_ip);
        let msg = "This sign-in was not started in this browser. Please try again.";
        return refuse(400, LoginResult::StateMismatch, "Login failed", msg);
    }
    let Some(code) = query("code") else {
        let msg = "Twitch sent no authorization code. Please try again.";
        return refuse(400, LoginResult::TwitchError, "Login failed", msg);
    };
    let (app, req) = (Arc::clone(app), req.clone());
    async_action(move |_| async move {
        finish_twitch_sign_in(&app, &req, &code)
            .await
            .header("set-cookie", clear_state)
    })
}

async fn finish_twitch_sign_in(app: &App, req: &Request, code: &str) -> Response {
    let Some(oauth) = app.auth.oauth.as_ref() else {
        return error_page(
            404,
            "Not available",
            "This server does not sign in with Twitch.",
        );
    };
    let uri = redirect_uri(app, req);
    let twitch = async {
        let tokens = oauth.exchange_code(code, &uri).await?;
        let user = oauth.current_user(&tokens.access_token).await?;
        Ok::<_, crate::twitch::helix::HelixError>((tokens, user))
    };
    let (tokens, user) = match twitch.await {
        Ok(t) => t,
        Err(e) => {
            app.metrics.auth_logins.inc(LoginResult::TwitchError);
            log::warn!("auth: Twitch sign-in failed: {e}");
            let msg = "Twitch did not confirm the sign-in. Please try again in a moment.";
            return error_page(502, "Twitch sign-in failed", msg);
        }
    };
    let upsert = app
        .db
        .upsert_twitch_streamer(&user.id, &user.login, &user.display_name)
        .await;
    let (streamer, config) = match upsert {
        Ok(TwitchUpsert::Ready {
            streamer, config, ..
        }) => (streamer, config),
        Ok(TwitchUpsert::LoginTaken) => {
            app.metrics.auth_logins.inc(LoginResult::Error);
            log::warn!(
                "auth: Twitch user {} signed in as {}, a login another account's channel holds",
                user.id,
                user.login
            );
            let msg = "Another Twitch account's channel on this server has this name. \
                       Ask the server's operator to remove it.";
            return error_page(409, "Channel name in use", msg);
        }
        Err(e) => return store_failed(app, e),
    };
    let streamer_id = streamer.id;
    store_tokens(app, streamer.id, &tokens).await;
    let actor = format!("twitch:{}", streamer.login);
    app.auth
        .note_sign_in(&user.id, &streamer.login, &streamer.display_name);
    let login = streamer.login.clone();
    app.serve_streamer(streamer, config);
    crate::replica::publish(app, &login).await;
    sign_in(
        app,
        req,
        Subject::Streamer(user.id),
        &actor,
        Some(streamer_id),
    )
    .await
}

/// Encrypted when `auth.encryption_key` is set; otherwise not kept at all.
async fn store_tokens(app: &App, streamer_id: i64, tokens: &crate::auth::oauth::UserTokens) {
    let Some(cipher) = app.auth.cipher.as_ref() else {
        log::info!("auth: Twitch user tokens not stored (auth.encryption_key is not set)");
        return;
    };
    let sealed = (|| {
        let access = cipher.seal(&tokens.access_token, &format!("{streamer_id}|access"))?;
        let refresh = match &tokens.refresh_token {
            Some(r) => Some(cipher.seal(r, &format!("{streamer_id}|refresh"))?),
            None => None,
        };
        Ok::<_, crate::auth::AuthError>((access, refresh))
    })();
    let stored = match sealed {
        Ok((access_enc, refresh_enc)) => crate::store::sqlite::StoredTokens {
            access_enc,
            refresh_enc,
            expires_at: tokens
                .expires_in
                .map(|s| crate::app::now_ms() as i64 + s as i64 * 1000),
        },
        Err(e) => {
            log::error!("auth: Twitch user tokens not stored: {e}");
            return;
        }
    };
    if let Err(e) = app.db.store_user_tokens(streamer_id, &stored).await {
        log::error!("auth: Twitch user tokens not stored: {e}");
    }
}
