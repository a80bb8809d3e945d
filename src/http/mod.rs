//! HTTP/1.1 spoken directly: one task per connection reads a head (≤ 8 KiB,
//! complete within `limits.http_head_timeout`), routes it, writes the answer,
//! and loops while keep-alive holds. A WebSocket upgrade hands the socket to
//! [`crate::ws`]. Errors get a JSON body (an HTML page on browser routes) and a
//! counted reason, never a panic. With `[tls]` the TLS handshake comes first
//! (within the same head timeout); `redirect` is the plain-HTTP listener that
//! points browsers at HTTPS.
//!
//! `routes` is the table; `auth` (sign-in, sessions, CSRF), `oauth` (signing in
//! with Twitch) and `dashboard` (the page and its JSON API) are the handlers
//! behind the browser routes, `pages`
//! renders their HTML, `settings` reads submitted overlay settings, `form` reads
//! forms, queries and cookies.

mod auth;
mod dashboard;
pub mod form;
mod oauth;
mod pages;
pub mod redirect;
pub mod request;
pub mod response;
pub mod routes;
pub mod settings;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use smol::Timer;
use smol::future::FutureExt;
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::net::TcpStream;

use crate::app::App;
use crate::limits::SlotPermit;
use crate::metrics::BadRequest;
use crate::tls::Conn;
use request::{BodyLength, HeadError, Request, parse_head};
use response::{ApiError, Response};

/// Reading a declared body may take at most this long.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// A response write that takes longer than this ends the connection.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// What a route decided.
pub enum Action {
    Respond(Response),
    /// Read the body (up to the route's limit), then let the handler answer.
    WithBody(BodyHandler),
    /// Read the body (up to the route's limit, maybe empty), then await the handler:
    /// for answers that need the stores, a slow hash or Twitch.
    Async(AsyncHandler),
    /// Switch to the overlay WebSocket (the 101 is written by the caller).
    Upgrade(routes::Upgrade),
}

/// A route handler that needs the request body.
pub type BodyHandler = fn(&Arc<App>, &Request, Vec<u8>) -> Response;

/// The future of an [`Action::Async`] handler.
pub type ResponseFuture = Pin<Box<dyn Future<Output = Response> + Send>>;
/// An async handler, given the body; it owns what it needs from the request.
pub type AsyncHandler = Box<dyn FnOnce(Vec<u8>) -> ResponseFuture + Send>;

/// [`Action::Async`] from a closure returning a future.
pub fn async_action<F, Fut>(handler: F) -> Action
where
    F: FnOnce(Vec<u8>) -> Fut + Send + 'static,
    Fut: Future<Output = Response> + Send + 'static,
{
    Action::Async(Box::new(move |body| Box::pin(handler(body))))
}

enum HeadOutcome {
    Head(Request, usize),
    Closed,
    Error(ApiError, BadRequest),
}

/// HSTS on answers that went out over HTTPS: two years, the usual preload value.
const HSTS: &str = "max-age=63072000";

/// Serves one accepted TCP connection: first the TLS handshake when `[tls]` is
/// set, bounded by `limits.http_head_timeout` like a request head (a client
/// that stalls the handshake holds nothing longer than one that stalls a head).
/// Takes an HTTP slot for a fresh connection, or answers it 503 (`plain`: not
/// a TLS listener) and lets it go: one non-blocking write into the empty send
/// buffer, so a flood costs no task.
pub fn admit(
    app: &App,
    tcp: &smol::Async<std::net::TcpStream>,
    peer: SocketAddr,
    plain: bool,
) -> Option<SlotPermit> {
    let ip = routes::canonical(peer.ip());
    let trusted = app
        .config
        .server
        .trusted_proxies
        .iter()
        .any(|n| n.contains(&ip));
    match app.http_slots.acquire((!trusted).then_some(ip)) {
        Ok(permit) => Some(permit),
        Err(reason) => {
            app.metrics.http_connections_refused.inc(reason);
            if plain {
                let mut out = Vec::with_capacity(512);
                ApiError::AtCapacity
                    .response()
                    .write_to(&mut out, false, false);
                let _ = std::io::Write::write(&mut tcp.get_ref(), &out);
            }
            None
        }
    }
}

/// `_permit` is the connection's HTTP slot: released when this returns, which
/// for an overlay is right after the upgrade (the socket then lives on as its
/// own task, counted by the overlay limits instead).
pub async fn serve_accepted(app: Arc<App>, tcp: TcpStream, peer: SocketAddr, _permit: SlotPermit) {
    let conn = match &app.tls {
        None => Conn::Plain(tcp),
        Some(slot) => match slot.accept(tcp, app.config.limits.http_head_timeout).await {
            Ok(conn) => conn,
            Err(e) => {
                log::debug!("tls handshake with {peer} failed: {e}");
                return;
            }
        },
    };
    serve_connection(app, conn, peer).await;
}

/// Serves one connection (plain or TLS) until it closes or the node shuts down.
pub async fn serve_connection(app: Arc<App>, mut stream: Conn, peer: SocketAddr) {
    let mut buf: Vec<u8> = Vec::new();
    let shutdown = app.shutdown_signal();
    loop {
        let read = read_head(&app, &mut stream, &mut buf, peer.ip());
        let outcome = read
            .or(async {
                let _ = shutdown.recv().await;
                HeadOutcome::Closed
            })
            .await;
        let (mut req, head_len) = match outcome {
            HeadOutcome::Head(req, len) => (req, len),
            HeadOutcome::Closed => return,
            HeadOutcome::Error(err, reason) => {
                app.metrics.http_bad_requests.inc(reason);
                if write_response(&mut stream, &err.response(), false, false).await {
                    finish(&mut stream).await;
                }
                return;
            }
        };
        let _inflight = app.inflight_guard();
        let started = Instant::now();
        req.client_ip = routes::client_ip(&app.config.server.trusted_proxies, peer.ip(), &req);
        req.https = stream.is_tls()
            || routes::forwarded_https(&app.config.server.trusted_proxies, peer.ip(), &req);
        buf.drain(..head_len);
        let (route, action) = routes::route(&app, &req);
        let head_only = req.method == request::Method::Head;
        let mut keep_alive = req.keep_alive() && !app.is_draining();
        let body_consumed = matches!(action, Action::WithBody(_) | Action::Async(_));
        let resp = match action {
            Action::Upgrade(up) => {
                app.metrics.observe_http(
                    req.method.as_str(),
                    route.name,
                    101,
                    started.elapsed().as_secs_f64(),
                );
                // Bytes already read past the head belong to the socket; an idle
                // overlay should not keep the head buffer's capacity.
                let mut leftover = std::mem::take(&mut buf);
                leftover.shrink_to_fit();
                // The socket lives on as its own task, so this HTTP task (and its
                // buffers) end here: an idle overlay costs only its socket state.
                let app2 = Arc::clone(&app);
                app.spawn(routes::finish_upgrade(app2, stream, leftover, up));
                return;
            }
            Action::Respond(resp) => resp,
            Action::WithBody(handler) => {
                match check_body(&mut stream, &mut buf, &req, route.body_limit).await {
                    Ok(body) => handler(&app, &req, body),
                    Err((err, reason)) => {
                        app.metrics.http_bad_requests.inc(reason);
                        keep_alive = false;
                        err.response()
                    }
                }
            }
            Action::Async(handler) => {
                match check_body(&mut stream, &mut buf, &req, route.body_limit).await {
                    Ok(body) => handler(body).await,
                    Err((err, reason)) => {
                        app.metrics.http_bad_requests.inc(reason);
                        keep_alive = false;
                        err.response()
                    }
                }
            }
        };
        let resp = if body_consumed {
            resp
        } else if resp.status >= 400 {
            // Refused before reading a body: if one follows, the stream can't be resynced.
            if request::body_length(&req) != request::BodyLength::None {
                keep_alive = false;
            }
            resp
        } else {
            // A body is only read for routes that take one; others must not send one.
            match check_body(&mut stream, &mut buf, &req, route.body_limit).await {
                Ok(_body) => resp,
                Err((err, reason)) => {
                    app.metrics.http_bad_requests.inc(reason);
                    keep_alive = false;
                    err.response()
                }
            }
        };
        let resp = if req.https {
            resp.header("strict-transport-security", HSTS)
        } else {
            resp
        };
        let status = resp.status;
        let ok = write_response(&mut stream, &resp, keep_alive, head_only).await;
        app.metrics.observe_http(
            req.method.as_str(),
            route.name,
            status,
            started.elapsed().as_secs_f64(),
        );
        log::debug!(
            "{} {} {} {}",
            req.client_ip,
            req.method.as_str(),
            req.path,
            status
        );
        if !ok {
            return;
        }
        if !keep_alive {
            finish(&mut stream).await;
            return;
        }
    }
}

/// How long a polite close may wait for a client that stopped reading.
const CLOSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Ends a connection we answered with `Connection: close`: over TLS a
/// close_notify, so the client can tell the end of the body from a cut.
async fn finish(stream: &mut Conn) {
    use smol::io::AsyncWriteExt;
    let _ = stream
        .close()
        .or(async {
            smol::Timer::after(CLOSE_TIMEOUT).await;
            Ok(())
        })
        .await;
}

async fn read_head(app: &App, stream: &mut Conn, buf: &mut Vec<u8>, peer: IpAddr) -> HeadOutcome {
    let deadline = Instant::now() + app.config.limits.http_head_timeout;
    loop {
        if !buf.is_empty() {
            match parse_head(buf, peer) {
                Ok((req, len)) => return HeadOutcome::Head(req, len),
                Err(HeadError::Incomplete) => {}
                Err(HeadError::TooLarge) => {
                    return HeadOutcome::Error(ApiError::HeadTooLarge, BadRequest::HeadTooLarge);
                }
                Err(HeadError::Malformed(_)) => {
                    return HeadOutcome::Error(ApiError::Malformed, BadRequest::Malformed);
                }
            }
        }
        match read_more(stream, buf, deadline).await {
            Some(0) | None if buf.is_empty() => return HeadOutcome::Closed,
            Some(0) => return HeadOutcome::Closed,
            None => {
                // Slowloris: a head that never completes. Close without a word.
                app.metrics.http_bad_requests.inc(BadRequest::HeadTimeout);
                return HeadOutcome::Closed;
            }
            Some(_) => {}
        }
    }
}

/// Reads (and returns) the body when the route allows one; refuses chunked
/// bodies and bodies over the route's limit.
async fn check_body(
    stream: &mut Conn,
    buf: &mut Vec<u8>,
    req: &Request,
    limit: usize,
) -> Result<Vec<u8>, (ApiError, BadRequest)> {
    let len = match request::body_length(req) {
        BodyLength::None => return Ok(Vec::new()),
        BodyLength::Chunked => {
            return Err((ApiError::LengthRequired, BadRequest::UnsupportedEncoding));
        }
        BodyLength::Invalid => return Err((ApiError::Malformed, BadRequest::Malformed)),
        BodyLength::Exactly(n) if n > limit => {
            return Err((ApiError::BodyTooLarge, BadRequest::BodyTooLarge));
        }
        BodyLength::Exactly(n) => n,
    };
    let deadline = Instant::now() + BODY_TIMEOUT;
    while buf.len() < len {
        match read_more(stream, buf, deadline).await {
            Some(n) if n > 0 => {}
            _ => return Err((ApiError::Malformed, BadRequest::Malformed)),
        }
    }
    Ok(buf.drain(..len).collect())
}

/// Appends one read's worth of bytes to `buf` (heap, not stack: an idle
/// connection's task stays small). `None` at the deadline or on an error.
async fn read_more(stream: &mut Conn, buf: &mut Vec<u8>, deadline: Instant) -> Option<usize> {
    const READ_CHUNK: usize = 2048;
    let start = buf.len();
    buf.resize(start + READ_CHUNK, 0);
    let read = async { stream.read(&mut buf[start..]).await.ok() }.or(async {
        Timer::at(deadline).await;
        None
    });
    let n = read.await;
    buf.truncate(start + n.unwrap_or(0));
    n
}

pub async fn write_response(
    stream: &mut Conn,
    resp: &Response,
    keep_alive: bool,
    head_only: bool,
) -> bool {
    let mut out = Vec::with_capacity(512 + resp.body.len());
    resp.write_to(&mut out, keep_alive, head_only);
    let write = async { stream.write_all(&out).await.is_ok() && stream.flush().await.is_ok() };
    write
        .or(async {
            Timer::after(WRITE_TIMEOUT).await;
            false
        })
        .await
}
