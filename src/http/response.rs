//! Responses: status, headers, body, the security headers every response
//! carries, and the catalogue of JSON errors users see.

use std::borrow::Cow;

/// Which Content-Security-Policy family a response gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Everything but the overlay: may not be framed by anyone.
    Deny,
    /// The overlay page: OBS (and any dashboard preview) may frame it.
    Overlay,
}

const CSP_DEFAULT: &str = "default-src 'self'; script-src 'self' 'unsafe-inline'; \
style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; \
base-uri 'none'; form-action 'self'; frame-ancestors 'none'";
const CSP_OVERLAY: &str = "default-src 'self'; script-src 'self' 'unsafe-inline'; \
style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self' ws: wss:; \
base-uri 'none'; form-action 'none'; frame-ancestors *";

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(&'static str, Cow<'static, str>)>,
    pub body: Cow<'static, [u8]>,
    pub framing: Framing,
}

impl Response {
    pub fn new(
        status: u16,
        content_type: &'static str,
        body: impl Into<Cow<'static, [u8]>>,
    ) -> Self {
        Response {
            status,
            headers: vec![("content-type", Cow::Borrowed(content_type))],
            body: body.into(),
            framing: Framing::Deny,
        }
    }

    pub fn json(status: u16, body: String) -> Self {
        Response::new(status, "application/json", body.into_bytes())
    }

    pub fn html(body: impl Into<Cow<'static, [u8]>>) -> Self {
        Response::new(200, "text/html; charset=utf-8", body)
    }

    pub fn header(mut self, name: &'static str, value: impl Into<Cow<'static, str>>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn framing(mut self, framing: Framing) -> Self {
        self.framing = framing;
        self
    }

    /// Serialises the head (and the body unless `head_only`) into `out`.
    pub fn write_to(&self, out: &mut Vec<u8>, keep_alive: bool, head_only: bool) {
        use std::io::Write;
        let _ = write!(out, "HTTP/1.1 {} {}\r\n", self.status, reason(self.status));
        for (name, value) in &self.headers {
            let _ = write!(out, "{name}: {value}\r\n");
        }
        let _ = write!(out, "content-length: {}\r\n", self.body.len());
        out.extend_from_slice(b"x-content-type-options: nosniff\r\n");
        out.extend_from_slice(b"referrer-policy: strict-origin-when-cross-origin\r\n");
        let csp = match self.framing {
            Framing::Deny => {
                out.extend_from_slice(b"x-frame-options: DENY\r\n");
                CSP_DEFAULT
            }
            Framing::Overlay => CSP_OVERLAY,
        };
        let _ = write!(out, "content-security-policy: {csp}\r\n");
        let conn = if keep_alive { "keep-alive" } else { "close" };
        let _ = write!(out, "connection: {conn}\r\n\r\n");
        if !head_only {
            out.extend_from_slice(&self.body);
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        204 => "No Content",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// Escapes a string for inclusion in a JSON string literal.
pub fn json_escape(s: &str, out: &mut String) {
    use std::fmt::Write;
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            // Keeps "</script>" inert if a value ever lands in HTML.
            '<' => out.push_str("\\u003c"),
            c => out.push(c),
        }
    }
}

/// Escapes text for HTML element content and attribute values.
pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Every error a client can get from us: `{"error": "...", "type": "..."}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiError {
    NotFound,
    MethodNotAllowed(&'static str),
    HeadTooLarge,
    BodyTooLarge,
    LengthRequired,
    Malformed,
    BadWebSocket(&'static str),
    OriginForbidden,
    RateLimited,
    TooManyPerIp,
    TooManyPerBroadcaster,
    AtCapacity,
    Draining,
    Internal,
    /// No valid session (never signed in, expired, or signed out).
    Unauthorized,
    CsrfMissing,
    CsrfInvalid,
    /// Signed in, but this channel belongs to someone else.
    ChannelForbidden,
    /// Signed in as a streamer on an admin-only route (`/api/mesh`).
    AdminOnly,
    UnknownChannel,
    BadInput(&'static str),
    /// Per-IP request limit of the sign-in or dashboard routes; the caller adds `Retry-After`.
    TooManyRequests,
}

impl ApiError {
    /// (status, type, message)
    fn parts(self) -> (u16, &'static str, &'static str) {
        match self {
            ApiError::NotFound => (404, "not_found", "no such route"),
            ApiError::MethodNotAllowed(_) => (405, "method_not_allowed", "method not allowed"),
            ApiError::HeadTooLarge => (431, "head_too_large", "request head larger than 8 KiB"),
            ApiError::BodyTooLarge => (
                413,
                "body_too_large",
                "request body too large for this route",
            ),
            ApiError::LengthRequired => (
                411,
                "length_required",
                "chunked request bodies are not supported; send Content-Length",
            ),
            ApiError::Malformed => (400, "bad_request", "malformed request"),
            ApiError::BadWebSocket(msg) => (400, "bad_request", msg),
            ApiError::OriginForbidden => (403, "forbidden", "origin not allowed"),
            ApiError::RateLimited => (429, "rate_limited", "too many connection attempts"),
            ApiError::TooManyPerIp => (
                429,
                "rate_limited",
                "too many connections from your IP address",
            ),
            ApiError::TooManyPerBroadcaster => (
                429,
                "rate_limited",
                "too many overlays open for this channel",
            ),
            ApiError::AtCapacity => (503, "unavailable", "server at capacity"),
            ApiError::Draining => (503, "unavailable", "server is shutting down"),
            ApiError::Internal => (500, "internal", "internal server error"),
            ApiError::Unauthorized => (401, "unauthorized", "sign in required"),
            ApiError::CsrfMissing => (400, "csrf", "missing csrf token"),
            ApiError::CsrfInvalid => (403, "csrf", "invalid csrf token"),
            ApiError::ChannelForbidden => (403, "forbidden", "not your channel"),
            ApiError::AdminOnly => (403, "forbidden", "admin only"),
            ApiError::UnknownChannel => (404, "not_found", "unknown channel"),
            ApiError::BadInput(msg) => (400, "bad_request", msg),
            ApiError::TooManyRequests => (429, "rate_limited", "rate limit exceeded"),
        }
    }

    pub fn status(self) -> u16 {
        self.parts().0
    }

    pub fn response(self) -> Response {
        let (status, kind, message) = self.parts();
        let mut body = String::with_capacity(64);
        body.push_str("{\"error\":\"");
        json_escape(message, &mut body);
        body.push_str("\",\"type\":\"");
        body.push_str(kind);
        body.push_str("\"}");
        let mut resp = Response::json(status, body);
        match self {
            ApiError::MethodNotAllowed(allow) => resp = resp.header("allow", allow),
            ApiError::RateLimited | ApiError::TooManyPerIp | ApiError::TooManyPerBroadcaster => {
                resp = resp.header("retry-after", "1")
            }
            ApiError::AtCapacity | ApiError::Draining => resp = resp.header("retry-after", "5"),
            _ => {}
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body_and_headers() {
        let r = ApiError::MethodNotAllowed("GET, HEAD").response();
        let mut out = Vec::new();
        r.write_to(&mut out, true, false);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"));
        assert!(text.contains("allow: GET, HEAD\r\n"));
        assert!(text.contains("x-content-type-options: nosniff\r\n"));
        assert!(text.contains("frame-ancestors 'none'"));
        assert!(
            text.ends_with("{\"error\":\"method not allowed\",\"type\":\"method_not_allowed\"}")
        );
    }

    #[test]
    fn overlay_may_be_framed_and_head_has_no_body() {
        let r = Response::html(&b"<p>x</p>"[..]).framing(Framing::Overlay);
        let mut out = Vec::new();
        r.write_to(&mut out, false, true);
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("frame-ancestors *"));
        assert!(!text.contains("x-frame-options"));
        assert!(text.contains("content-length: 8\r\n"));
        assert!(text.ends_with("connection: close\r\n\r\n"));
    }

    #[test]
    fn escaping() {
        let mut s = String::new();
        json_escape("a\"b\\\n</script>\u{1}", &mut s);
        assert_eq!(s, "a\\\"b\\\\\\n\\u003c/script>\\u0001");
        assert_eq!(
            html_escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
