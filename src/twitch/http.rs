//! A small HTTP/1.1 client for Twitch's OAuth and Helix APIs: one request per
//! connection (`Connection: close`; these calls are rare), `httparse` for the
//! response head, Content-Length, chunked or read-to-EOF bodies, size and time
//! limits. Speaks `http://` (tests' fakes) and `https://` (rustls).

use std::sync::Arc;
use std::time::Duration;

use futures_rustls::rustls::ClientConfig;
use smol::Timer;
use smol::future::FutureExt;
use smol::io::{AsyncReadExt, AsyncWriteExt};

use crate::tls;

/// Longest response head we read.
const MAX_HEAD: usize = 16 * 1024;
/// Largest response body we accept (a full page of subscriptions is ~100 KB).
const MAX_BODY: usize = 4 * 1024 * 1024;
/// Whole exchange, connect to last byte.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug)]
pub enum HttpError {
    BadUrl(String),
    Io(std::io::Error),
    Timeout,
    Malformed(&'static str),
    TooLarge,
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HttpError::BadUrl(u) => write!(f, "bad URL {u:?}"),
            HttpError::Io(e) => write!(f, "{e}"),
            HttpError::Timeout => write!(f, "timed out after {REQUEST_TIMEOUT:?}"),
            HttpError::Malformed(what) => write!(f, "malformed response: {what}"),
            HttpError::TooLarge => write!(f, "response too large"),
        }
    }
}

impl std::error::Error for HttpError {}

/// `scheme://host[:port]/path?query`, split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// Path and query, always starting with '/'.
    pub target: String,
}

impl Url {
    pub fn parse(url: &str) -> Result<Url, HttpError> {
        let bad = || HttpError::BadUrl(url.to_string());
        let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else if let Some(r) = url.strip_prefix("wss://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("ws://") {
            (false, r)
        } else {
            return Err(bad());
        };
        let (authority, target) = match rest.find(['/', '?']) {
            Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_string()),
            Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
            None => (rest, "/".to_string()),
        };
        let default_port = if tls { 443 } else { 80 };
        let (host, port) = if let Some(end) = authority.strip_prefix('[').and_then(|a| a.find(']'))
        {
            let host = &authority[..end + 2];
            match &authority[end + 2..] {
                "" => (host, default_port),
                p => (
                    host,
                    p.strip_prefix(':')
                        .and_then(|p| p.parse().ok())
                        .ok_or_else(bad)?,
                ),
            }
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, p.parse().map_err(|_| bad())?),
                None => (authority, default_port),
            }
        };
        if host.is_empty() || host.contains('@') {
            return Err(bad());
        }
        Ok(Url {
            tls,
            host: host.to_string(),
            port,
            target,
        })
    }

    /// `Host:` header value.
    pub fn authority(&self) -> String {
        let default = if self.tls { 443 } else { 80 };
        if self.port == default {
            self.host.clone()
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    /// Lower-case names.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Cheap to clone; holds the TLS client config.
#[derive(Clone)]
pub struct HttpClient {
    tls: Arc<ClientConfig>,
}

impl HttpClient {
    pub fn new(tls: Arc<ClientConfig>) -> Self {
        HttpClient { tls }
    }

    pub fn tls_config(&self) -> &Arc<ClientConfig> {
        &self.tls
    }

    /// Sends one request; `body` is (content type, bytes).
    pub async fn request(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<(&str, &[u8])>,
    ) -> Result<HttpResponse, HttpError> {
        let url = Url::parse(url)?;
        let exchange = self.exchange(method, &url, headers, body);
        exchange
            .or(async {
                Timer::after(REQUEST_TIMEOUT).await;
                Err(HttpError::Timeout)
            })
            .await
    }

    async fn exchange(
        &self,
        method: &str,
        url: &Url,
        headers: &[(&str, &str)],
        body: Option<(&str, &[u8])>,
    ) -> Result<HttpResponse, HttpError> {
        let tls = url.tls.then_some(&self.tls);
        let mut stream = tls::connect(&url.host, url.port, tls)
            .await
            .map_err(HttpError::Io)?;
        let mut req = format!(
            "{method} {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: chatpulse/{}\r\nConnection: close\r\n",
            url.target,
            url.authority(),
            env!("CARGO_PKG_VERSION")
        );
        for (k, v) in headers {
            req.push_str(k);
            req.push_str(": ");
            req.push_str(v);
            req.push_str("\r\n");
        }
        let body_bytes = body.map_or(&[][..], |(_, b)| b);
        if let Some((ctype, b)) = body {
            req.push_str(&format!(
                "Content-Type: {ctype}\r\nContent-Length: {}\r\n",
                b.len()
            ));
        } else if matches!(method, "POST" | "PUT" | "PATCH") {
            req.push_str("Content-Length: 0\r\n");
        }
        req.push_str("\r\n");
        let mut out = req.into_bytes();
        out.extend_from_slice(body_bytes);
        stream.write_all(&out).await.map_err(HttpError::Io)?;
        stream.flush().await.map_err(HttpError::Io)?;
        let mut buf = Vec::with_capacity(4096);
        let mut chunk = vec![0u8; 8192];
        loop {
            let n = stream.read(&mut chunk).await.map_err(HttpError::Io)?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            if buf.len() > MAX_HEAD + MAX_BODY {
                return Err(HttpError::TooLarge);
            }
        }
        parse_response(&buf, method == "HEAD")
    }
}

/// Parses a complete response (the server closed the connection after it).
pub fn parse_response(buf: &[u8], head_only: bool) -> Result<HttpResponse, HttpError> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    let head_len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Err(HttpError::Malformed("truncated head")),
        Err(_) => return Err(HttpError::Malformed("bad head")),
    };
    if head_len > MAX_HEAD {
        return Err(HttpError::TooLarge);
    }
    let status = resp.code.ok_or(HttpError::Malformed("no status"))?;
    let headers: Vec<(String, String)> = resp
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_ascii_lowercase(),
                String::from_utf8_lossy(h.value).trim().to_string(),
            )
        })
        .collect();
    let rest = &buf[head_len..];
    let find = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let body = if head_only || status == 204 || status == 304 {
        Vec::new()
    } else if find("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
        decode_chunked(rest)?
    } else if let Some(len) = find("content-length") {
        let len: usize = len
            .parse()
            .map_err(|_| HttpError::Malformed("content-length"))?;
        if rest.len() < len {
            return Err(HttpError::Malformed("truncated body"));
        }
        rest[..len].to_vec()
    } else {
        rest.to_vec()
    };
    if body.len() > MAX_BODY {
        return Err(HttpError::TooLarge);
    }
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

fn decode_chunked(mut rest: &[u8]) -> Result<Vec<u8>, HttpError> {
    let mut body = Vec::new();
    loop {
        let line_end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or(HttpError::Malformed("chunk size"))?;
        let size_text = std::str::from_utf8(&rest[..line_end])
            .map_err(|_| HttpError::Malformed("chunk size"))?;
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size =
            usize::from_str_radix(size_text, 16).map_err(|_| HttpError::Malformed("chunk size"))?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(body);
        }
        if rest.len() < size + 2 || body.len() + size > MAX_BODY {
            return Err(HttpError::Malformed("truncated chunk"));
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = Url::parse("https://api.twitch.tv/helix/users?login=a").unwrap();
        assert_eq!(
            (u.tls, u.host.as_str(), u.port, u.target.as_str()),
            (true, "api.twitch.tv", 443, "/helix/users?login=a")
        );
        let u = Url::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!(
            (u.port, u.target.as_str(), u.authority().as_str()),
            (8080, "/", "127.0.0.1:8080")
        );
        let u = Url::parse("wss://[::1]:9/ws").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("[::1]", 9));
        assert!(Url::parse("ftp://x").is_err());
        assert!(Url::parse("http://:80/").is_err());
        assert!(Url::parse("http://u@h/").is_err());
    }

    #[test]
    fn responses() {
        let r = parse_response(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: b\r\n\r\nhiXX",
            false,
        )
        .unwrap();
        assert_eq!(
            (r.status, r.body.as_slice(), r.header("x-a")),
            (200, &b"hi"[..], Some("b"))
        );
        let r = parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n3;x=1\r\n!!!\r\n0\r\n\r\n", false).unwrap();
        assert_eq!(r.body, b"hi!!!");
        let r = parse_response(b"HTTP/1.1 204 No Content\r\n\r\n", false).unwrap();
        assert!(r.body.is_empty());
        let r = parse_response(b"HTTP/1.0 500 X\r\n\r\nuntil eof", false).unwrap();
        assert_eq!(r.body, b"until eof");
        assert!(
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort", false).is_err()
        );
        assert!(parse_response(b"garbage", false).is_err());
        assert!(
            parse_response(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                false
            )
            .is_err()
        );
    }
}
