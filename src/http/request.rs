//! The request head: read from a socket under size and time limits, parsed with
//! `httparse` into an owned, small [`Request`]. Parsing is pure (`parse_head`)
//! so it is tested without sockets.

use std::net::IpAddr;

/// Longest request head we accept; larger heads are answered 431.
pub const MAX_HEAD_BYTES: usize = 8 * 1024;
/// Most headers we parse; more is treated like an oversized head.
const MAX_HEADERS: usize = 48;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Patch,
    Options,
    Other,
}

impl Method {
    fn parse(s: &str) -> Method {
        match s {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "PATCH" => Method::Patch,
            "OPTIONS" => Method::Options,
            _ => Method::Other,
        }
    }

    /// Label for logs and metrics (bounded set).
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Patch => "PATCH",
            Method::Options => "OPTIONS",
            Method::Other => "OTHER",
        }
    }
}

/// A parsed request head. Header names are lower-cased.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: Method,
    pub path: String,
    pub query: String,
    /// HTTP/1.0 clients get `Connection: close` unless they ask for keep-alive.
    pub http10: bool,
    pub headers: Vec<(String, String)>,
    /// Client address after applying `trusted_proxies`.
    pub client_ip: IpAddr,
    /// The client spoke HTTPS: a trusted proxy said `X-Forwarded-Proto: https`.
    pub https: bool,
}

/// Why a head could not be turned into a [`Request`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeadError {
    /// More bytes are needed.
    Incomplete,
    /// Head larger than [`MAX_HEAD_BYTES`] or too many headers.
    TooLarge,
    /// Not HTTP/1.x, or bytes that are not a request head.
    Malformed(&'static str),
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// True when a comma-separated header (e.g. `Connection`) lists `token`.
    pub fn header_has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(k, _)| k == name)
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    pub fn keep_alive(&self) -> bool {
        if self.header_has_token("connection", "close") {
            return false;
        }
        !self.http10 || self.header_has_token("connection", "keep-alive")
    }

    pub fn is_websocket_upgrade(&self) -> bool {
        self.header_has_token("connection", "upgrade")
            && self
                .header("upgrade")
                .is_some_and(|u| u.eq_ignore_ascii_case("websocket"))
    }
}

/// Parses a complete head from `buf`. On success returns the request (with
/// `client_ip` set to `peer`) and the head's length in bytes.
pub fn parse_head(buf: &[u8], peer: IpAddr) -> Result<(Request, usize), HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD_BYTES => {
            return Err(HeadError::TooLarge);
        }
        Ok(httparse::Status::Partial) => return Err(HeadError::Incomplete),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(_) => return Err(HeadError::Malformed("malformed request head")),
    };
    if len > MAX_HEAD_BYTES {
        return Err(HeadError::TooLarge);
    }
    let method = Method::parse(req.method.unwrap_or(""));
    let target = req.path.unwrap_or("");
    if !target.starts_with('/') {
        return Err(HeadError::Malformed(
            "request target must be an absolute path",
        ));
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut owned = Vec::with_capacity(req.headers.len());
    for h in req.headers.iter() {
        let Ok(value) = std::str::from_utf8(h.value) else {
            return Err(HeadError::Malformed("header value is not UTF-8"));
        };
        owned.push((h.name.to_ascii_lowercase(), value.trim().to_string()));
    }
    let request = Request {
        method,
        path: path.to_string(),
        query: query.to_string(),
        http10: req.version == Some(0),
        headers: owned,
        client_ip: peer,
        https: false,
    };
    Ok((request, len))
}

/// How the body of a request is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyLength {
    None,
    Exactly(usize),
    /// `Transfer-Encoding` present: we do not accept chunked bodies.
    Chunked,
    Invalid,
}

pub fn body_length(req: &Request) -> BodyLength {
    if req.header("transfer-encoding").is_some() {
        return BodyLength::Chunked;
    }
    let mut lengths = req.headers.iter().filter(|(k, _)| k == "content-length");
    match (lengths.next(), lengths.next()) {
        (None, _) => BodyLength::None,
        (Some((_, v)), None) => match v.parse::<usize>() {
            Ok(0) => BodyLength::None,
            Ok(n) => BodyLength::Exactly(n),
            Err(_) => BodyLength::Invalid,
        },
        // Two Content-Length headers: request smuggling territory, refuse.
        (Some(_), Some(_)) => BodyLength::Invalid,
    }
}

/// Decodes `%XX` escapes of one path segment; `None` on bad escapes or non-UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    if !s.contains('%') {
        return Some(s.to_string());
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const PEER: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    #[test]
    fn parses_a_simple_get() {
        let raw = b"GET /overlay/abc?x=1 HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, keep-alive\r\nUpgrade: websocket\r\n\r\nrest";
        let (req, len) = parse_head(raw, PEER).unwrap();
        assert_eq!(len, raw.len() - 4);
        assert_eq!(req.method, Method::Get);
        assert_eq!(req.path, "/overlay/abc");
        assert_eq!(req.query, "x=1");
        assert_eq!(req.header("host"), Some("a"));
        assert!(req.is_websocket_upgrade());
        assert!(req.keep_alive());
    }

    #[test]
    fn incomplete_then_too_large() {
        assert_eq!(
            parse_head(b"GET / HTTP/1.1\r\nHost: a\r\n", PEER).unwrap_err(),
            HeadError::Incomplete
        );
        let mut big = b"GET / HTTP/1.1\r\nX: ".to_vec();
        big.resize(MAX_HEAD_BYTES + 10, b'a');
        assert_eq!(parse_head(&big, PEER).unwrap_err(), HeadError::TooLarge);
    }

    #[test]
    fn garbage_is_malformed() {
        for raw in [
            &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"[..],
            b"GET\r\n\r\n",
            b"GET http://x/ HTTP/1.1\r\n\r\n",
            b"GET / HTTP/2.0\r\n\r\n",
        ] {
            assert!(
                matches!(parse_head(raw, PEER), Err(HeadError::Malformed(_))),
                "{raw:?}"
            );
        }
    }

    #[test]
    fn http10_closes_by_default() {
        let (req, _) = parse_head(b"GET / HTTP/1.0\r\n\r\n", PEER).unwrap();
        assert!(!req.keep_alive());
        let (req, _) =
            parse_head(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", PEER).unwrap();
        assert!(req.keep_alive());
    }

    #[test]
    fn body_framing() {
        let parse = |raw: &[u8]| parse_head(raw, PEER).unwrap().0;
        let r = parse(b"POST / HTTP/1.1\r\nContent-Length: 12\r\n\r\n");
        assert_eq!(body_length(&r), BodyLength::Exactly(12));
        let r = parse(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(body_length(&r), BodyLength::Chunked);
        let r = parse(b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n");
        assert_eq!(body_length(&r), BodyLength::Invalid);
        let r = parse(b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n");
        assert_eq!(body_length(&r), BodyLength::Invalid);
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b").as_deref(), Some("a b"));
        assert_eq!(percent_decode("a%2"), None);
        assert_eq!(percent_decode("%ff"), None);
    }
}
