//! The route table (one readable match) and the handlers behind it.

use std::fmt::Write;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use crate::tls::Conn;
use async_tungstenite::tungstenite::handshake::derive_accept_key;

use super::request::{Method, Request, percent_decode};
use super::response::{ApiError, Framing, Response, html_escape, json_escape};
use super::{Action, auth, dashboard, oauth, pages};
use crate::app::App;
use crate::config::IpNet;
use crate::hub::{CLOSE_TOKEN_INVALID, SubscribeError, Subscription};
use crate::limits::Permit;
use crate::metrics::{ChatSource, RateClass, RejectReason, WsConnectResult};

const OVERLAY_HTML: &str = include_str!("../../assets/overlay.html");
const LANDING_HTML: &str = include_str!("../../assets/landing.html");

/// A matched route: its template (the metrics label) and body limit.
#[derive(Clone, Copy)]
pub struct Route {
    pub name: &'static str,
    pub body_limit: usize,
}

/// Largest body of the sign-in and dashboard routes (forms and JSON settings).
const FORM_LIMIT: usize = 16 * 1024;

const fn route_named(name: &'static str) -> Route {
    Route {
        name,
        body_limit: 0,
    }
}

/// A browser route that may carry a form or JSON body.
const fn route_form(name: &'static str) -> Route {
    Route {
        name,
        body_limit: FORM_LIMIT,
    }
}

/// Everything needed to finish an overlay upgrade after the 101.
pub struct Upgrade {
    accept_key: String,
    grant: Grant,
}

enum Grant {
    Overlay(Subscription, Permit),
    /// Unknown or rotated token: upgrade, then close 4404 so the page stops retrying.
    Invalid,
}

pub fn route(app: &Arc<App>, req: &Request) -> (Route, Action) {
    let path = req.path.as_str();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let get = matches!(req.method, Method::Get | Method::Head);
    let post = req.method == Method::Post;
    let (route, action) = match segments.as_slice() {
        [""] => (route_named("/"), get.then(|| landing(app, req))),
        // Sign-in and the dashboard: rate limited per IP (see `limited`); handlers
        // check the session and CSRF themselves. Errors are pages, /api/* JSON.
        ["login"] => (
            route_form("/login"),
            match req.method {
                Method::Get | Method::Head => Some(auth::login_page(app, req)),
                Method::Post => Some(auth::login_submit(app, req)),
                _ => None,
            },
        ),
        ["auth", "login"] => (
            route_named("/auth/login"),
            get.then(|| oauth::twitch_start(app, req)),
        ),
        ["auth", "callback"] => (
            route_named("/auth/callback"),
            get.then(|| oauth::twitch_callback(app, req)),
        ),
        ["auth", "logout"] => (
            route_form("/auth/logout"),
            post.then(|| auth::logout(app, req)),
        ),
        ["dashboard"] => (
            route_named("/dashboard"),
            get.then(|| dashboard::page_view(app, req)),
        ),
        ["dashboard", "config"] => (
            route_form("/dashboard/config"),
            post.then(|| dashboard::save_form(app, req)),
        ),
        ["api", "channels"] => (
            route_named("/api/channels"),
            get.then(|| dashboard::channels(app, req)),
        ),
        ["api", "config"] => (
            route_form("/api/config"),
            match req.method {
                Method::Get | Method::Head => Some(dashboard::get_config(app, req)),
                Method::Post => Some(dashboard::save_json(app, req)),
                _ => None,
            },
        ),
        ["api", "overlay-url"] => (
            route_named("/api/overlay-url"),
            get.then(|| dashboard::overlay_url(app, req)),
        ),
        ["api", "rotate"] => (
            route_form("/api/rotate"),
            post.then(|| dashboard::rotate(app, req)),
        ),
        ["api", "reset"] => (
            route_form("/api/reset"),
            post.then(|| dashboard::reset(app, req)),
        ),
        ["api", "status"] => (
            route_named("/api/status"),
            get.then(|| dashboard::status(app, req)),
        ),
        ["api", "mesh"] => (
            route_named("/api/mesh"),
            get.then(|| dashboard::mesh_status(app, req)),
        ),
        ["api", "test-vote"] => (
            route_form("/api/test-vote"),
            post.then(|| dashboard::test_vote(app, req)),
        ),
        ["overlay", token] => (
            route_named("/overlay/{token}"),
            get.then(|| overlay_page(app, token)),
        ),
        ["ws", "overlay", token] => (
            route_named("/ws/overlay/{token}"),
            (req.method == Method::Get).then(|| overlay_socket(app, req, token)),
        ),
        ["health", "live"] => (
            route_named("/health/live"),
            get.then(|| Action::Respond(live(app))),
        ),
        ["health", "ready"] => (
            route_named("/health/ready"),
            get.then(|| Action::Respond(ready(app))),
        ),
        ["health", "startup"] => (
            route_named("/health/startup"),
            get.then(|| Action::Respond(startup(app))),
        ),
        ["metrics"] => (
            route_named("/metrics"),
            get.then(|| Action::Respond(metrics(app))),
        ),
        ["version"] => (
            route_named("/version"),
            get.then(|| Action::Respond(version())),
        ),
        // Only when chat comes by webhook; never rate limited (every chat line is a POST).
        ["webhooks", "eventsub"]
            if app.config.twitch.source == crate::config::ChatSourceKind::EventSubWebhook =>
        {
            let route = Route {
                name: "/webhooks/eventsub",
                body_limit: crate::chat::webhook::MAX_BODY,
            };
            let handler = Action::WithBody(crate::chat::webhook::handle);
            (route, (req.method == Method::Post).then_some(handler))
        }
        _ => {
            return (
                route_named("unmatched"),
                Action::Respond(ApiError::NotFound.response()),
            );
        }
    };
    if let Some(refused) = limited(app, req, route.name) {
        return (route, Action::Respond(refused));
    }
    let allow = match route.name {
        "/ws/overlay/{token}" => "GET",
        "/webhooks/eventsub" | "/auth/logout" | "/dashboard/config" | "/api/rotate"
        | "/api/reset" | "/api/test-vote" => "POST",
        "/login" | "/api/config" => "GET, HEAD, POST",
        _ => "GET, HEAD",
    };
    let action =
        action.unwrap_or_else(|| Action::Respond(ApiError::MethodNotAllowed(allow).response()));
    (route, action)
}

/// The per-IP request limit of the sign-in and dashboard routes, checked before
/// any session or CSRF work (handlers build their answers lazily). Overlays,
/// their sockets, webhooks, health and metrics are never limited here.
fn limited(app: &App, req: &Request, route: &str) -> Option<Response> {
    let class = match route {
        // The dashboard polls its status every few seconds; a cheap read that
        // must not eat the budget of the actions (it still needs a session).
        "/api/status" if req.method == Method::Get => return None,
        "/login" | "/auth/login" | "/auth/callback" | "/auth/logout" => RateClass::Auth,
        _ if route.starts_with("/dashboard") || route.starts_with("/api/") => RateClass::Dashboard,
        _ => return None,
    };
    let retry = app
        .auth
        .limiter
        .check(class, req.client_ip, Instant::now())
        .err()?;
    app.metrics.http_rate_limited.inc(class);
    log::debug!(
        "{} {} from {}: rate limited",
        req.method.as_str(),
        req.path,
        req.client_ip
    );
    let resp = match route.starts_with("/api/") {
        true => ApiError::TooManyRequests.response(),
        false => pages::error_page(
            429,
            "Too many requests",
            &format!("Please wait {retry} s and try again."),
        ),
    };
    Some(resp.header("retry-after", retry.to_string()))
}

fn json_status(status: u16, body: String) -> Response {
    Response::json(status, body).header("cache-control", "no-store")
}

fn live(app: &App) -> Response {
    let uptime = app.started.elapsed().as_secs_f64();
    json_status(200, format!("{{\"status\":\"ok\",\"uptime\":{uptime:.3}}}"))
}

/// Ready does not depend on the mesh: a node that lost its peers keeps serving
/// its overlays on its own. The body says how many members it sees.
/// The chat sources that hold a connection to Twitch (a webhook has none).
fn connected_source(kind: crate::config::ChatSourceKind) -> Option<ChatSource> {
    use crate::config::ChatSourceKind as K;
    match kind {
        K::Irc => Some(ChatSource::Irc),
        K::EventSubWs => Some(ChatSource::EventSubWs),
        K::None | K::EventSubWebhook => None,
    }
}

fn ready(app: &App) -> Response {
    match app.readiness() {
        Ok(()) => {
            let mut body = String::from("{\"status\":\"ready\"");
            if let Some(mesh) = app.mesh() {
                let members = mesh.members();
                let live = members.iter().filter(|m| m.state.is_live()).count();
                body += &format!(
                    ",\"mesh\":{{\"members\":{},\"live\":{live}}}",
                    members.len()
                );
            }
            // Twitch unreachable does not fail readiness either (overlays still
            // serve, and every node would fail at once): shown, not failed.
            if let Some(source) = connected_source(app.config.twitch.source) {
                let m = &app.metrics;
                body += &format!(
                    ",\"chat\":{{\"source\":\"{}\",\"connected\":{},\"reconnects\":{}}}",
                    app.config.twitch.source.as_str(),
                    m.chat_source_connected.get(source) > 0,
                    m.chat_source_reconnects.get(source)
                );
            }
            // PostgreSQL down does not stop serving (SQLite is the replica): shown, not failed.
            if app.config.postgres.url.is_some() {
                let pg = &app.pg_status;
                let lag = pg.lag_seconds();
                body += &format!(
                    ",\"postgres\":{{\"up\":{},\"outbox\":{},\"lag_seconds\":{}}}",
                    pg.up.load(std::sync::atomic::Ordering::SeqCst),
                    pg.outbox.load(std::sync::atomic::Ordering::SeqCst),
                    if lag.is_finite() {
                        format!("{lag:.1}")
                    } else {
                        "null".into()
                    }
                );
            }
            body.push('}');
            json_status(200, body)
        }
        Err((check, error)) => {
            // A store's own error text (SQL, file names) goes to the log
            // (`App::set_store_fault`), never to an unauthenticated probe.
            let error = match check {
                "startup" | "draining" => error,
                _ => "store unavailable; the node's log has the cause".into(),
            };
            let mut body =
                format!("{{\"status\":\"unhealthy\",\"failed_check\":\"{check}\",\"error\":\"");
            json_escape(&error, &mut body);
            body.push_str("\"}");
            json_status(503, body)
        }
    }
}

fn startup(app: &App) -> Response {
    if app.is_started() {
        json_status(200, "{\"status\":\"ready\"}".into())
    } else {
        json_status(
            503,
            "{\"status\":\"unhealthy\",\"failed_check\":\"startup\",\"error\":\"still starting\"}"
                .into(),
        )
    }
}

fn metrics(app: &App) -> Response {
    let open = app.http_slots.open();
    app.metrics.http_connections_open.set(i64::from(open));
    let mut page = app.metrics.render();
    if app.config.postgres.url.is_some() {
        page += &app.pg_status.render();
    }
    Response::new(200, crate::metrics::CONTENT_TYPE, page.into_bytes())
        .header("cache-control", "no-store")
}

fn version() -> Response {
    let b = crate::BUILD;
    json_status(
        200,
        format!(
            "{{\"version\":\"{}\",\"commit\":\"{}\",\"rustc\":\"{}\"}}",
            b.version, b.commit, b.rustc
        ),
    )
}

fn overlay_page(app: &App, token: &str) -> Action {
    // An unknown token still gets the page (with 404): in OBS the streamer then
    // sees "overlay URL no longer valid" instead of raw JSON on stream.
    let status = if app.hub.token_exists(token) {
        200
    } else {
        404
    };
    let mut resp = Response::html(OVERLAY_HTML.as_bytes())
        .framing(Framing::Overlay)
        .header("cache-control", "no-store");
    resp.status = status;
    Action::Respond(resp)
}

/// Home page. Overlay links are secrets, so they are listed only to clients on
/// loopback or a private network (the streamer's own LAN), never to the internet,
/// and only in home mode: a multi-tenant server shows each streamer only their own,
/// on the dashboard. A signed-in visitor goes to the dashboard.
fn landing(app: &App, req: &Request) -> Action {
    if dashboard::signed_in(app, req) {
        return Action::Respond(pages::redirect("/dashboard"));
    }
    let mut items = String::new();
    if app.auth.mode == crate::config::AuthMode::Twitch {
        items.push_str(
            "<li><a href=\"/login\">Sign in with Twitch</a> to see your overlay link.</li>",
        );
    } else if is_local(req.client_ip) {
        for s in app.hub.streamers() {
            let url = app.overlay_url(&s.overlay_token, req.header("host"));
            let _ = write!(
                items,
                "<li><strong>{}</strong> — <a href=\"{url}\">{url}</a></li>",
                html_escape(&s.display_name),
                url = html_escape(&url)
            );
        }
    } else {
        items.push_str("<li>Overlay links are shown only on the streamer's own network.</li>");
    }
    let body = LANDING_HTML.replace("<!--CHANNELS-->", &items);
    Action::Respond(Response::html(body.into_bytes()).header("cache-control", "no-store"))
}

fn is_local(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_private() || v4.is_link_local(),
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || (v6.segments()[0] & 0xfe00) == 0xfc00
                || (v6.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}

pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The client's address: the socket peer, unless that peer is a trusted proxy;
/// then the right-most `X-Forwarded-For` entry that is not itself trusted.
pub fn client_ip(trusted: &[IpNet], peer: IpAddr, req: &Request) -> IpAddr {
    let peer = canonical(peer);
    if !trusted.iter().any(|n| n.contains(&peer)) {
        return peer;
    }
    let Some(xff) = req.header("x-forwarded-for") else {
        return peer;
    };
    for part in xff.rsplit(',') {
        let Ok(ip) = part.trim().parse::<IpAddr>() else {
            return peer;
        };
        let ip = canonical(ip);
        if !trusted.iter().any(|n| n.contains(&ip)) {
            return ip;
        }
    }
    peer
}

/// True when a trusted proxy says the client spoke HTTPS (`X-Forwarded-Proto`).
pub fn forwarded_https(trusted: &[IpNet], peer: IpAddr, req: &Request) -> bool {
    let peer = canonical(peer);
    trusted.iter().any(|n| n.contains(&peer))
        && req
            .header("x-forwarded-proto")
            .and_then(|v| v.split(',').next())
            .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"))
}

fn origin_allowed(app: &App, req: &Request) -> bool {
    let Some(origin) = req.header("origin").filter(|o| !o.is_empty()) else {
        return true;
    };
    if origin.starts_with("obs://") {
        return true;
    }
    let host_origin = origin.split_once("://").map(|(_, h)| h);
    // Same origin: the page we served opening its own socket.
    if let (Some(h), Some(host)) = (host_origin, req.header("host"))
        && h.eq_ignore_ascii_case(host)
    {
        return true;
    }
    if let Some(public) = &app.config.server.public_url
        && public.trim_end_matches('/').eq_ignore_ascii_case(origin)
    {
        return true;
    }
    if app.config.server.dev
        && let Some(h) = host_origin
    {
        let name = h.rsplit_once(':').map_or(h, |(n, _)| n);
        return matches!(name, "localhost" | "127.0.0.1" | "[::1]");
    }
    false
}

fn overlay_socket(app: &Arc<App>, req: &Request, token: &str) -> Action {
    let reject = |err: ApiError, reason: RejectReason| {
        app.metrics.ws_rejected.inc(reason);
        Action::Respond(err.response())
    };
    if !req.is_websocket_upgrade() {
        let resp = ApiError::BadWebSocket("expected a WebSocket upgrade").response();
        app.metrics.ws_rejected.inc(RejectReason::BadRequest);
        return Action::Respond(resp);
    }
    if req.header("sec-websocket-version") != Some("13") {
        app.metrics.ws_rejected.inc(RejectReason::BadRequest);
        let resp = ApiError::BadWebSocket("unsupported WebSocket version").response();
        return Action::Respond(resp.header("sec-websocket-version", "13"));
    }
    let Some(key) = req.header("sec-websocket-key").filter(|k| k.len() == 24) else {
        return reject(
            ApiError::BadWebSocket("missing Sec-WebSocket-Key"),
            RejectReason::BadRequest,
        );
    };
    if !origin_allowed(app, req) {
        return reject(ApiError::OriginForbidden, RejectReason::Origin);
    }
    if app.is_draining() {
        return Action::Respond(ApiError::Draining.response());
    }
    let permit = match app.limits.acquire(req.client_ip, Instant::now()) {
        Ok(p) => p,
        Err(reason) => {
            let err = match reason {
                RejectReason::GlobalLimit => ApiError::AtCapacity,
                RejectReason::IpLimit => ApiError::TooManyPerIp,
                _ => ApiError::RateLimited,
            };
            return reject(err, reason);
        }
    };
    let accept_key = derive_accept_key(key.as_bytes());
    let token = percent_decode(token).unwrap_or_default();
    let grant = match app.hub.subscribe(&token, crate::app::now_ms()) {
        Ok(sub) => Grant::Overlay(sub, permit),
        Err(SubscribeError::UnknownToken) => Grant::Invalid,
        Err(SubscribeError::BroadcasterFull) => {
            return reject(
                ApiError::TooManyPerBroadcaster,
                RejectReason::BroadcasterLimit,
            );
        }
    };
    Action::Upgrade(Upgrade { accept_key, grant })
}

/// Writes the 101 and runs the socket (or closes it at once for a bad token).
pub async fn finish_upgrade(app: Arc<App>, mut stream: Conn, leftover: Vec<u8>, up: Upgrade) {
    use smol::io::AsyncWriteExt;
    let head = format!(
        "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: {}\r\n\r\n",
        up.accept_key
    );
    if stream.write_all(head.as_bytes()).await.is_err() {
        if let Grant::Overlay(sub, _) = &up.grant {
            app.hub.unsubscribe(&sub.login, sub.id);
        }
        return;
    }
    match up.grant {
        Grant::Overlay(sub, permit) => {
            app.metrics.ws_connections.inc(WsConnectResult::Accepted);
            crate::ws::serve_overlay(app, stream, leftover, sub, permit).await;
        }
        Grant::Invalid => {
            app.metrics
                .ws_connections
                .inc(WsConnectResult::UnknownToken);
            crate::ws::close_invalid(app, stream, CLOSE_TOKEN_INVALID).await;
        }
    }
}
