//! The plain-HTTP listener of `tls.redirect_listen`: one request per
//! connection, answered with a 301 to the same path on HTTPS. The health
//! endpoints are answered here directly (no redirect), so load balancers and
//! container probes that only speak plain HTTP keep working. No HSTS here:
//! browsers ignore it over plain HTTP.

use std::net::SocketAddr;
use std::sync::Arc;

use smol::net::TcpStream;

use super::request::{Method, Request};
use super::response::{ApiError, Response};
use super::{Action, HeadOutcome, read_head, routes, write_response};
use crate::app::App;
use crate::tls::Conn;

/// Serves one connection of the redirect listener; `https_port` is the port
/// `server.listen` is bound to.
pub async fn serve_redirect(app: Arc<App>, tcp: TcpStream, peer: SocketAddr, https_port: u16) {
    let mut stream = Conn::Plain(tcp);
    let mut buf = Vec::new();
    let resp = match read_head(&app, &mut stream, &mut buf, peer.ip()).await {
        HeadOutcome::Head(req, _) => {
            let head_only = req.method == Method::Head;
            let resp = answer(&app, &req, https_port);
            let _ = write_response(&mut stream, &resp, false, head_only).await;
            return;
        }
        HeadOutcome::Closed => return,
        HeadOutcome::Error(err, reason) => {
            app.metrics.http_bad_requests.inc(reason);
            err.response()
        }
    };
    let _ = write_response(&mut stream, &resp, false, false).await;
}

fn answer(app: &Arc<App>, req: &Request, https_port: u16) -> Response {
    if req.path.starts_with("/health/")
        && let (_, Action::Respond(resp)) = routes::route(app, req)
    {
        return resp;
    }
    let target = https_location(
        app.config.server.public_url.as_deref(),
        req.header("host"),
        https_port,
        &req.path,
        &req.query,
    );
    match target {
        Some(url) => Response::new(301, "text/plain; charset=utf-8", &b"moved to https\n"[..])
            .header("location", url),
        None => ApiError::Malformed.response(),
    }
}

/// Where a plain-HTTP request should go: `public_url`'s origin when set, else
/// the request's `Host` (its port replaced by the HTTPS port, omitted when 443).
/// None when there is no usable host to send the browser to.
pub fn https_location(
    public_url: Option<&str>,
    host: Option<&str>,
    https_port: u16,
    path: &str,
    query: &str,
) -> Option<String> {
    let base = match public_url {
        Some(origin) if origin.starts_with("https://") => origin.trim_end_matches('/').to_string(),
        _ => {
            let host = host_name(host?)?;
            match https_port {
                443 => format!("https://{host}"),
                port => format!("https://{host}:{port}"),
            }
        }
    };
    let query = match query {
        "" => String::new(),
        q => format!("?{q}"),
    };
    Some(format!("{base}{path}{query}"))
}

/// The host part of a `Host` header (`name`, `name:port`, `[v6]:port`), if it
/// is made only of characters a host can have: nothing that could end the
/// `Location` header or turn it into another URL.
fn host_name(host: &str) -> Option<&str> {
    let name = if host.starts_with('[') {
        &host[..=host.find(']')?]
    } else {
        host.split(':').next()?
    };
    let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '[' | ']' | ':');
    (!name.is_empty() && name.chars().all(ok)).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::https_location;

    #[test]
    fn location_from_host_or_public_url() {
        let loc = |public, host, port, path, query| https_location(public, host, port, path, query);
        assert_eq!(
            loc(None, Some("example.com"), 443, "/a", "b=1").as_deref(),
            Some("https://example.com/a?b=1")
        );
        assert_eq!(
            loc(None, Some("example.com:80"), 8443, "/", "").as_deref(),
            Some("https://example.com:8443/")
        );
        assert_eq!(
            loc(None, Some("[::1]:80"), 443, "/x", "").as_deref(),
            Some("https://[::1]/x")
        );
        assert_eq!(
            loc(Some("https://o.example"), Some("evil"), 443, "/x", "").as_deref(),
            Some("https://o.example/x")
        );
        assert_eq!(loc(None, None, 443, "/", ""), None);
        assert_eq!(loc(None, Some("a b"), 443, "/", ""), None);
        assert_eq!(loc(None, Some("a/b@c"), 443, "/", ""), None);
        assert_eq!(loc(None, Some(""), 443, "/", ""), None);
    }
}
