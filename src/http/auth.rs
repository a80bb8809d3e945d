//! Sign-in routes and the guards of every dashboard route.
//!
//! - `GET|POST /login`: the sign-in page; in home mode the password form posts here.
//!   Its CSRF token is bound (HMAC) to a nonce in a `chatpulse_csrf` cookie
//!   (SameSite=Strict), since there is no session yet.
//! - `GET /auth/login`, `GET /auth/callback`: signing in with Twitch, in `oauth`.
//! - `POST /auth/logout`: signs the session out (CSRF required).
//!
//! Guards: [`require_session`] (pages get a 302 to /login, the API a 401) and
//! [`check_csrf`] (form field `csrf_token` or header `X-CSRF-Token`; missing →
//! 400, wrong → 403).

use std::sync::Arc;

use super::form::{SameSite, SetCookie, cookie, param, parse_urlencoded};
use super::pages::{LOGIN_HTML, error_page, page, redirect, render};
use super::request::Request;
use super::response::{ApiError, Response};
use super::{Action, async_action};
use crate::app::App;
use crate::auth::check_admin_password;
use crate::auth::encoding::{base64url, random};
use crate::auth::session::{Session, Subject};
use crate::config::{AuthMode, SecureCookies};
use crate::metrics::{CsrfReason, LoginResult};

pub(super) const SESSION_COOKIE: &str = "chatpulse_session";
const LOGIN_CSRF_COOKIE: &str = "chatpulse_csrf";
/// How long a sign-in form stays usable.
const LOGIN_CSRF_MAX_AGE: u64 = 86_400;

/// How a route answers refusals: a page for browsers, JSON for the API.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Page,
    Api,
}

/// The signed-in session of this request, if any. A session of the other mode
/// (the server switched between home and twitch) counts as none.
pub(super) fn session(app: &App, req: &Request) -> Option<Session> {
    let value = cookie(req.header("cookie")?, SESSION_COOKIE)?;
    let session = app.auth.open_session(value)?;
    let fits = matches!(
        (&session.subject, app.auth.mode),
        (Subject::Admin, AuthMode::Home) | (Subject::Streamer(_), AuthMode::Twitch)
    );
    fits.then_some(session)
}

/// The session, or the answer for a visitor who is not signed in (or whose
/// session expired or was signed out).
pub(super) fn require_session(app: &App, req: &Request, kind: Kind) -> Result<Session, Response> {
    session(app, req).ok_or_else(|| match kind {
        Kind::Page => redirect("/login"),
        Kind::Api => ApiError::Unauthorized.response(),
    })
}

/// The session's CSRF token must come with every state-changing request.
pub(super) fn check_csrf(
    app: &App,
    req: &Request,
    session: &Session,
    body: &[u8],
    kind: Kind,
) -> Result<(), Response> {
    let token = req
        .header("x-csrf-token")
        .map(str::to_string)
        .or_else(|| form_field(req, body, "csrf_token"));
    let refused = match token.as_deref() {
        None | Some("") => CsrfReason::Missing,
        Some(t) if app.auth.keys.csrf_ok(session, t) => return Ok(()),
        Some(_) => CsrfReason::Invalid,
    };
    app.metrics.csrf_rejected.inc(refused);
    log::warn!(
        "{} {} from {}: CSRF token {}",
        req.method.as_str(),
        req.path,
        req.client_ip,
        refused.as_str()
    );
    let (err, message) = match refused {
        CsrfReason::Missing => (
            ApiError::CsrfMissing,
            "The request carried no security token.",
        ),
        CsrfReason::Invalid => (
            ApiError::CsrfInvalid,
            "The request's security token is not valid.",
        ),
    };
    Err(match kind {
        Kind::Api => err.response(),
        Kind::Page => error_page(
            err.status(),
            "Request refused",
            &format!("{message} Reload the page and try again."),
        ),
    })
}

/// A field of a form-encoded body.
pub(super) fn form_field(req: &Request, body: &[u8], name: &str) -> Option<String> {
    let form = req
        .header("content-type")
        .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
    form.then(|| param(std::str::from_utf8(body).ok()?, name))
        .flatten()
}

/// Cookies get `Secure` when the browser reached us over HTTPS (or always/never).
pub(super) fn secure(app: &App, req: &Request) -> bool {
    match app.config.auth.secure_cookies {
        SecureCookies::Always => true,
        SecureCookies::Never => false,
        SecureCookies::Auto => req.https,
    }
}

pub(super) fn set_cookie(
    app: &App,
    req: &Request,
    name: &str,
    value: &str,
    path: &str,
    max_age: u64,
    same_site: SameSite,
) -> String {
    SetCookie {
        name,
        value,
        path,
        max_age,
        same_site,
        secure: secure(app, req),
    }
    .render()
}

/// The cookie of a session made just now (so its Max-Age is the configured one).
fn session_cookie(app: &App, req: &Request, session: &Session) -> String {
    let max_age = app.auth.max_age().as_secs().max(1);
    let value = app.auth.keys.seal(session);
    set_cookie(
        app,
        req,
        SESSION_COOKIE,
        &value,
        "/",
        max_age,
        SameSite::Lax,
    )
}

pub(super) fn clear_cookie(app: &App, req: &Request, name: &str, path: &str) -> String {
    set_cookie(app, req, name, "", path, 0, SameSite::Lax)
}

/// Starts a session for `subject`: audit, log, cookie, off to the dashboard.
pub(super) async fn sign_in(
    app: &App,
    req: &Request,
    subject: Subject,
    actor: &str,
    streamer_id: Option<i64>,
) -> Response {
    let session = match app.auth.new_session(subject) {
        Ok(s) => s,
        Err(e) => {
            log::error!("auth: cannot start a session: {e}");
            return error_page(
                500,
                "Sign-in failed",
                "The server could not start a session.",
            );
        }
    };
    app.metrics.auth_logins.inc(LoginResult::Success);
    let detail = format!("from {}", req.client_ip);
    if let Err(e) = app.db.audit(actor, "login", streamer_id, &detail).await {
        log::error!("auth: audit of a sign-in failed: {e}");
    }
    log::info!("auth: {actor} signed in from {}", req.client_ip);
    redirect("/dashboard").header("set-cookie", session_cookie(app, req, &session))
}

// ---- GET|POST /login -------------------------------------------------------

/// `GET /login`: the sign-in page (or the dashboard, when already signed in).
pub(super) fn login_page(app: &Arc<App>, req: &Request) -> Action {
    if session(app, req).is_some() {
        return Action::Respond(redirect("/dashboard"));
    }
    Action::Respond(login_form(app, req, 200, ""))
}

/// The sign-in page with a form token for this browser's nonce cookie (kept, so
/// two open tabs both work; made when missing).
fn login_form(app: &App, req: &Request, status: u16, error: &str) -> Response {
    let existing = req
        .header("cookie")
        .and_then(|h| cookie(h, LOGIN_CSRF_COOKIE))
        .filter(|n| n.len() == 22)
        .map(str::to_string);
    let nonce = match existing {
        Some(n) => n,
        None => match random::<16>() {
            Ok(bytes) => base64url(&bytes),
            Err(e) => {
                log::error!("auth: {e}");
                return error_page(500, "Sign-in unavailable", "The server has no randomness.");
            }
        },
    };
    let html = render(
        LOGIN_HTML,
        &[
            ("mode", app.auth.mode.as_str()),
            ("csrf", &app.auth.keys.login_token(&nonce)),
            ("error", error),
        ],
    );
    let mut resp = page(html);
    resp.status = status;
    let cookie = SetCookie {
        name: LOGIN_CSRF_COOKIE,
        value: &nonce,
        path: "/login",
        max_age: LOGIN_CSRF_MAX_AGE,
        same_site: SameSite::Strict,
        secure: secure(app, req),
    };
    resp.header("set-cookie", cookie.render())
}

/// `POST /login` (home mode): form `password`, `csrf_token`.
pub(super) fn login_submit(app: &Arc<App>, req: &Request) -> Action {
    if app.auth.mode != AuthMode::Home {
        let msg = "Sign-in with a password is off: this server signs in with Twitch.";
        return Action::Respond(error_page(404, "Not available", msg));
    }
    let (app, req) = (Arc::clone(app), req.clone());
    async_action(move |body| async move {
        let text = String::from_utf8_lossy(&body);
        let fields = parse_urlencoded(&text);
        let field = |name: &str| {
            fields
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let nonce = req
            .header("cookie")
            .and_then(|h| cookie(h, LOGIN_CSRF_COOKIE));
        let token = field("csrf_token").unwrap_or_default();
        if token.is_empty() || nonce.is_none() {
            app.metrics.csrf_rejected.inc(CsrfReason::Missing);
            let msg = "The sign-in form expired. Please try again.";
            return login_form(&app, &req, 400, msg);
        }
        if !app
            .auth
            .keys
            .login_token_ok(nonce.unwrap_or_default(), token)
        {
            app.metrics.csrf_rejected.inc(CsrfReason::Invalid);
            let msg = "The sign-in form is not valid here. Please try again.";
            return login_form(&app, &req, 403, msg);
        }
        let attempt = field("password").unwrap_or_default();
        match app.db.admin_password_hash().await {
            Ok(None) => {
                let msg =
                    "No admin password is set: run `chatpulse admin set-password` on the server.";
                return login_form(&app, &req, 200, msg);
            }
            Ok(Some(_)) => {}
            Err(e) => return store_failed(&app, e),
        }
        match check_admin_password(&app.db, attempt).await {
            Ok(true) => {
                let resp = sign_in(&app, &req, Subject::Admin, "admin", None).await;
                resp.header(
                    "set-cookie",
                    clear_cookie(&app, &req, LOGIN_CSRF_COOKIE, "/login"),
                )
            }
            Ok(false) => {
                app.metrics.auth_logins.inc(LoginResult::WrongPassword);
                log::warn!("auth: wrong admin password from {}", req.client_ip);
                let detail = format!("wrong password from {}", req.client_ip);
                let _ = app.db.audit("admin", "login_failed", None, &detail).await;
                login_form(&app, &req, 200, "wrong password")
            }
            Err(e) => store_failed(&app, e),
        }
    })
}

pub(super) fn store_failed(app: &App, e: crate::store::StoreError) -> Response {
    app.metrics.auth_logins.inc(LoginResult::Error);
    log::error!("auth: store: {e}");
    error_page(
        500,
        "Sign-in failed",
        "The server could not read its database.",
    )
}

// ---- POST /auth/logout -------------------------------------------------------

pub(super) fn logout(app: &Arc<App>, req: &Request) -> Action {
    let session = match require_session(app, req, Kind::Page) {
        Ok(s) => s,
        Err(resp) => return Action::Respond(resp),
    };
    let (app, req) = (Arc::clone(app), req.clone());
    async_action(move |body| async move {
        if let Err(resp) = check_csrf(&app, &req, &session, &body, Kind::Page) {
            return resp;
        }
        let actor = actor_of(&app, &session);
        if let Err(e) = app.auth.revoke(&app.db, &session).await {
            log::error!("auth: sign-out not stored: {e}");
        }
        let detail = format!("from {}", req.client_ip);
        if let Err(e) = app.db.audit(&actor, "logout", None, &detail).await {
            log::error!("auth: audit of a sign-out failed: {e}");
        }
        log::info!("auth: {actor} signed out");
        redirect("/login").header("set-cookie", clear_cookie(&app, &req, SESSION_COOKIE, "/"))
    })
}

/// The audit log's name for whoever holds `session`.
pub(super) fn actor_of(app: &App, session: &Session) -> String {
    match &session.subject {
        Subject::Admin => "admin".into(),
        Subject::Streamer(id) => super::dashboard::channels_of(app, session)
            .first()
            .map_or_else(
                || format!("twitch-user:{id}"),
                |s| format!("twitch:{}", s.login),
            ),
    }
}
