//! The dashboard page and its JSON API. Every route needs a session; every POST
//! its CSRF token; `?channel=<login>` picks the channel (home mode: any served
//! channel; Twitch mode: only the streamer's own, else 403).
//!
//! | route | answer |
//! |---|---|
//! | `GET /dashboard` | the page (`{{csrf}}`, `{{mode}}`, `{{user}}`) |
//! | `GET /api/channels` | `{"channels":[{"login","display_name"}]}` |
//! | `GET /api/config` | the settings and their `version` |
//! | `POST /api/config` | JSON settings (partial is fine; optional `version` → 409 on a race) |
//! | `POST /dashboard/config` | the reference's form post (204 for XHR, else 302) |
//! | `GET /api/overlay-url`, `POST /api/rotate` | `{"url"}` |
//! | `POST /api/reset` | `{"status":"ok"}` |
//! | `GET /api/status` | viewers and chat-source health |
//! | `POST /api/test-vote?side=for|against` | `{"result"}` of one synthetic chat line |

use std::fmt::Write;
use std::future::Future;
use std::sync::Arc;

use super::auth::{Kind, actor_of, check_csrf, require_session, session};
use super::form::param;
use super::pages::{DASHBOARD_HTML, error_page, page, redirect, render};
use super::request::{Method, Request};
use super::response::{ApiError, Response, json_escape};
use super::settings::{SettingsError, from_form, from_json};
use super::{Action, async_action};
use crate::app::{ActionError, App, now_ms};
use crate::auth::session::{Session, Subject};
use crate::channel::{OverlayConfig, Streamer};
use crate::chat::{ChatMessage, ChatSource};
use crate::config::ChatSourceKind;
use crate::sentiment::{Memory, Model};

/// What a guarded handler gets: the request, who sent it, for which channel.
struct Ctx {
    app: Arc<App>,
    req: Request,
    session: Session,
    channel: Streamer,
}

fn json(status: u16, body: String) -> Response {
    Response::json(status, body).header("cache-control", "no-store")
}

/// Channels `session` may manage, ordered by login: every channel for the admin;
/// a streamer's own (as of their sign-in here, else by the stored Twitch id).
pub(super) fn channels_of(app: &App, session: &Session) -> Vec<Streamer> {
    let all = app.hub.streamers();
    let Subject::Streamer(id) = &session.subject else {
        return all;
    };
    match app.auth.signed_in_as(id) {
        Some((login, display_name)) => all
            .into_iter()
            .filter(|s| s.login == login)
            .map(|s| Streamer {
                display_name: display_name.clone(),
                ..s
            })
            .collect(),
        None => all
            .into_iter()
            .filter(|s| s.twitch_user_id.as_deref() == Some(id.as_str()))
            .collect(),
    }
}

/// The `channel` of the query (default: the first one this session may manage).
fn channel_of(app: &App, req: &Request, session: &Session) -> Result<Streamer, ApiError> {
    let mine = channels_of(app, session);
    let Some(login) = param(&req.query, "channel").filter(|c| !c.is_empty()) else {
        return mine.into_iter().next().ok_or(ApiError::UnknownChannel);
    };
    let login = login.to_ascii_lowercase();
    if let Some(s) = mine.into_iter().find(|s| s.login == login) {
        return Ok(s);
    }
    match app.hub.config_of(&login) {
        Some(_) => Err(ApiError::ChannelForbidden),
        None => Err(ApiError::UnknownChannel),
    }
}

/// Session, channel and (for POST) CSRF checked, then `handler`.
fn guarded<F, Fut>(app: &Arc<App>, req: &Request, kind: Kind, handler: F) -> Action
where
    F: FnOnce(Ctx, Vec<u8>) -> Fut + Send + 'static,
    Fut: Future<Output = Response> + Send + 'static,
{
    let session = match require_session(app, req, kind) {
        Ok(s) => s,
        Err(resp) => return Action::Respond(resp),
    };
    let channel = match channel_of(app, req, &session) {
        Ok(c) => c,
        Err(e) if kind == Kind::Page => {
            let msg = "That channel is not one you can manage here.";
            return Action::Respond(error_page(e.status(), "Unknown channel", msg));
        }
        Err(e) => return Action::Respond(e.response()),
    };
    let state_changing = !matches!(req.method, Method::Get | Method::Head);
    let ctx = Ctx {
        app: Arc::clone(app),
        req: req.clone(),
        session,
        channel,
    };
    async_action(move |body| async move {
        if state_changing
            && let Err(resp) = check_csrf(&ctx.app, &ctx.req, &ctx.session, &body, kind)
        {
            return resp;
        }
        handler(ctx, body).await
    })
}

/// `GET /dashboard`.
pub(super) fn page_view(app: &Arc<App>, req: &Request) -> Action {
    let session = match require_session(app, req, Kind::Page) {
        Ok(s) => s,
        Err(resp) => return Action::Respond(resp),
    };
    let user = match &session.subject {
        Subject::Admin => "admin".to_string(),
        Subject::Streamer(_) => channels_of(app, &session)
            .into_iter()
            .next()
            .map_or_else(|| "streamer".into(), |s| s.display_name),
    };
    let html = render(
        DASHBOARD_HTML,
        &[
            ("csrf", &app.auth.keys.csrf_token(&session)),
            ("mode", app.auth.mode.as_str()),
            ("user", &user),
        ],
    );
    Action::Respond(page(html))
}

/// `GET /api/channels`.
pub(super) fn channels(app: &Arc<App>, req: &Request) -> Action {
    let session = match require_session(app, req, Kind::Api) {
        Ok(s) => s,
        Err(resp) => return Action::Respond(resp),
    };
    let mut body = String::from("{\"channels\":[");
    for (i, s) in channels_of(app, &session).iter().enumerate() {
        body.push_str(if i == 0 {
            "{\"login\":\""
        } else {
            ",{\"login\":\""
        });
        json_escape(&s.login, &mut body);
        body.push_str("\",\"display_name\":\"");
        json_escape(&s.display_name, &mut body);
        body.push_str("\"}");
    }
    body.push_str("]}");
    Action::Respond(json(200, body))
}

/// `GET /api/config`.
pub(super) fn get_config(app: &Arc<App>, req: &Request) -> Action {
    guarded(app, req, Kind::Api, |ctx, _| async move {
        let login = &ctx.channel.login;
        match ctx.app.hub.config_of(login) {
            Some(config) => json(200, config_json(ctx.channel.config_version, &config)),
            None => ApiError::UnknownChannel.response(),
        }
    })
}

/// The settings as the dashboard reads them. Fields of the model not in use
/// carry their defaults, so switching models in the form starts from sane values.
fn config_json(version: i64, c: &OverlayConfig) -> String {
    let list = |items: &[String]| {
        let mut out = String::from("[");
        for (i, t) in items.iter().enumerate() {
            out.push_str(if i == 0 { "\"" } else { ",\"" });
            json_escape(t, &mut out);
            out.push('"');
        }
        out.push(']');
        out
    };
    let (model, memory, speed) = match c.model {
        Model::Window(Memory::Seconds(s)) => ("window", s.to_string(), 0.5),
        Model::Window(Memory::Infinite) => ("window", "null".into(), 0.5),
        Model::Decay { speed } => ("decay", "30".into(), speed),
    };
    let (mut for_label, mut against_label) = (String::new(), String::new());
    json_escape(&c.for_label, &mut for_label);
    json_escape(&c.against_label, &mut against_label);
    let mut out = String::with_capacity(256);
    let _ = write!(
        out,
        "{{\"version\":{version},\"for_triggers\":{},\"against_triggers\":{},\
         \"for_label\":\"{for_label}\",\"against_label\":\"{against_label}\",\
         \"model\":\"{model}\",\"memory_seconds\":{memory},\"decay_speed\":{speed},\
         \"display_mode\":\"{}\",\"theme\":\"{}\"}}",
        list(&c.for_triggers),
        list(&c.against_triggers),
        c.display_mode.as_str(),
        c.theme.as_str()
    );
    out
}

/// `POST /api/config`: JSON settings.
pub(super) fn save_json(app: &Arc<App>, req: &Request) -> Action {
    guarded(app, req, Kind::Api, |ctx, body| async move {
        let Some(current) = ctx.app.hub.config_of(&ctx.channel.login) else {
            return ApiError::UnknownChannel.response();
        };
        let text = String::from_utf8_lossy(&body);
        match from_json(&text, current) {
            Ok((config, version)) => save(&ctx, config, version, Kind::Api).await,
            Err(e) => settings_error(e, Kind::Api),
        }
    })
}

/// `POST /dashboard/config`: the reference's form (`for_trigger`, `against_trigger`,
/// labels, `memory_seconds`, `display_mode`, `theme`, `csrf_token`).
pub(super) fn save_form(app: &Arc<App>, req: &Request) -> Action {
    let xhr = req
        .header("x-requested-with")
        .is_some_and(|v| v.eq_ignore_ascii_case("XMLHttpRequest"));
    let kind = if xhr { Kind::Api } else { Kind::Page };
    guarded(app, req, kind, move |ctx, body| async move {
        let Some(current) = ctx.app.hub.config_of(&ctx.channel.login) else {
            return ApiError::UnknownChannel.response();
        };
        let text = String::from_utf8_lossy(&body);
        let config = match from_form(&text, current) {
            Ok(c) => c,
            Err(e) => return settings_error(e, kind),
        };
        let resp = save(&ctx, config, None, kind).await;
        match (resp.status, kind) {
            (200, Kind::Api) => Response::new(204, "text/plain", &b""[..]),
            (200, Kind::Page) => redirect("/dashboard"),
            _ => resp,
        }
    })
}

async fn save(ctx: &Ctx, config: OverlayConfig, expected: Option<i64>, kind: Kind) -> Response {
    let actor = actor_of(&ctx.app, &ctx.session);
    let saved = ctx
        .app
        .save_config_if(&ctx.channel.login, config, expected, &actor)
        .await;
    match saved {
        Ok(version) => json(200, format!("{{\"version\":{version}}}")),
        Err(ActionError::Invalid(e)) => settings_error(
            SettingsError {
                field: e.field,
                message: e.message,
            },
            kind,
        ),
        Err(ActionError::Conflict(current)) => {
            let mut body = String::from("{\"error\":\"");
            let msg = format!("the settings were changed meanwhile (now version {current})");
            json_escape(&msg, &mut body);
            let _ = write!(body, "\",\"type\":\"conflict\",\"current\":{current}}}");
            match kind {
                Kind::Api => json(409, body),
                Kind::Page => error_page(409, "Settings changed meanwhile", &msg),
            }
        }
        Err(e) => failed(&e, kind),
    }
}

fn settings_error(e: SettingsError, kind: Kind) -> Response {
    match kind {
        Kind::Api => {
            let mut body = String::from("{\"error\":\"");
            json_escape(&e.message, &mut body);
            let _ = write!(
                body,
                "\",\"type\":\"validation\",\"field\":\"{}\"}}",
                e.field
            );
            json(400, body)
        }
        Kind::Page => error_page(400, "Settings not saved", &e.message),
    }
}

fn failed(e: &ActionError, kind: Kind) -> Response {
    log::error!("dashboard: {e}");
    match (e, kind) {
        (ActionError::UnknownChannel, Kind::Api) => ApiError::UnknownChannel.response(),
        (_, Kind::Api) => ApiError::Internal.response(),
        (_, Kind::Page) => error_page(500, "Not saved", "The server could not store the change."),
    }
}

fn url_json(url: &str) -> Response {
    let mut body = String::from("{\"url\":\"");
    json_escape(url, &mut body);
    body.push_str("\"}");
    json(200, body)
}

/// `GET /api/overlay-url`.
pub(super) fn overlay_url(app: &Arc<App>, req: &Request) -> Action {
    guarded(app, req, Kind::Api, |ctx, _| async move {
        let url = ctx
            .app
            .overlay_url(&ctx.channel.overlay_token, ctx.req.header("host"));
        url_json(&url)
    })
}

/// `POST /api/rotate`: a new overlay URL; overlays on the old one are closed (4404).
pub(super) fn rotate(app: &Arc<App>, req: &Request) -> Action {
    guarded(app, req, Kind::Api, |ctx, _| async move {
        let actor = actor_of(&ctx.app, &ctx.session);
        match ctx.app.rotate_token(&ctx.channel.login, &actor).await {
            Ok(token) => url_json(&ctx.app.overlay_url(&token, ctx.req.header("host"))),
            Err(e) => failed(&e, Kind::Api),
        }
    })
}

/// `POST /api/reset`: the bar back to the center on every overlay.
pub(super) fn reset(app: &Arc<App>, req: &Request) -> Action {
    guarded(app, req, Kind::Api, |ctx, _| async move {
        let actor = actor_of(&ctx.app, &ctx.session);
        match ctx.app.reset(&ctx.channel.login, &actor).await {
            Ok(()) => json(200, "{\"status\":\"ok\"}".into()),
            Err(e) => failed(&e, Kind::Api),
        }
    })
}

/// `GET /api/status`: overlays connected to this node and the chat source's health.
pub(super) fn status(app: &Arc<App>, req: &Request) -> Action {
    guarded(app, req, Kind::Api, |ctx, _| async move {
        let app = &ctx.app;
        let viewers = app.hub.viewers(&ctx.channel.login);
        let source = match app.config.twitch.source {
            ChatSourceKind::None => None,
            ChatSourceKind::Irc => Some(ChatSource::Irc),
            ChatSourceKind::EventSubWs => Some(ChatSource::EventSubWs),
            ChatSourceKind::EventSubWebhook => Some(ChatSource::EventSubWebhook),
        };
        let m = &app.metrics;
        let body = match source {
            None => format!(
                "{{\"viewers\":{viewers},\"source\":{{\"kind\":\"none\",\"connected\":false,\
                 \"last_message_ms\":0,\"reconnects\":0}}}}"
            ),
            Some(s) => format!(
                "{{\"viewers\":{viewers},\"source\":{{\"kind\":\"{}\",\"connected\":{},\
                 \"last_message_ms\":{},\"reconnects\":{}}}}}",
                s.as_str(),
                m.chat_source_connected.get(s) == 1,
                m.chat_source_last_message.get(s).max(0) * 1000,
                m.chat_source_reconnects.get(s)
            ),
        };
        json(200, body)
    })
}

/// `GET /api/mesh`: the cluster as this node sees it (admin only): its id, and
/// every member with state and smoothed probe round trip. `enabled: false` without `[mesh]`.
pub(super) fn mesh_status(app: &Arc<App>, req: &Request) -> Action {
    if !app.auth.cli_token_ok(req.header("authorization")) {
        let session = match require_session(app, req, Kind::Api) {
            Ok(s) => s,
            Err(resp) => return Action::Respond(resp),
        };
        if session.subject != Subject::Admin {
            return Action::Respond(ApiError::AdminOnly.response());
        }
    }
    let Some(mesh) = app.mesh() else {
        return Action::Respond(json(200, r#"{"enabled":false,"members":[]}"#.into()));
    };
    let mut body = format!(
        "{{\"enabled\":true,\"node\":\"{:016x}\",\"members\":[",
        mesh.node()
    );
    for (i, m) in mesh.members().iter().enumerate() {
        let rtt = m.rtt.map_or("null".to_string(), |d| {
            format!("{:.3}", d.as_secs_f64() * 1000.0)
        });
        let _ = write!(
            body,
            "{}{{\"node\":\"{:016x}\",\"addr\":\"{}\",\"state\":\"{}\",\"rtt_ms\":{rtt}}}",
            if i == 0 { "" } else { "," },
            m.node,
            m.addr,
            m.state.as_str()
        );
    }
    body.push_str("]}");
    Action::Respond(json(200, body))
}

/// `POST /api/test-vote?side=for|against`: one chat line with the side's first
/// trigger, from a chatter id never used before (so debounce lets it through),
/// through the same entry point as real chat.
pub(super) fn test_vote(app: &Arc<App>, req: &Request) -> Action {
    guarded(app, req, Kind::Api, |ctx, _| async move {
        let side = param(&ctx.req.query, "side");
        let Some(config) = ctx.app.hub.config_of(&ctx.channel.login) else {
            return ApiError::UnknownChannel.response();
        };
        let trigger = match side.as_deref() {
            Some("for") => config.for_triggers.first(),
            Some("against") => config.against_triggers.first(),
            _ => return ApiError::BadInput("side must be for or against").response(),
        };
        let msg = ChatMessage {
            source: ChatSource::Dashboard,
            channel: ctx.channel.login.clone(),
            chatter_id: ctx.app.auth.next_test_chatter(),
            text: trigger.cloned().unwrap_or_default(),
            message_id: None,
            sent_ms: None,
        };
        let result = ctx.app.hub.chat(&msg, now_ms());
        json(200, format!("{{\"result\":\"{}\"}}", result.as_str()))
    })
}

/// `GET /`: signed-in visitors go straight to their dashboard.
pub(super) fn signed_in(app: &App, req: &Request) -> bool {
    session(app, req).is_some()
}
