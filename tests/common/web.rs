//! A small browser stand-in for the dashboard tests: plain HTTP/1.1 requests
//! over fresh sockets, a cookie jar fed by `Set-Cookie` (Max-Age=0 deletes;
//! paths are ignored), and helpers for forms, JSON and redirects.

use std::net::SocketAddr;

use super::http_raw;

/// One response.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl Resp {
    /// The first value of a header (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers(name).into_iter().next()
    }

    pub fn headers(&self, name: &str) -> Vec<String> {
        self.head
            .lines()
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .filter(|(k, _)| k.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
            .collect()
    }

    /// The `Set-Cookie` value that sets `name`, if any.
    pub fn set_cookie(&self, name: &str) -> Option<String> {
        self.headers("set-cookie")
            .into_iter()
            .find(|c| c.starts_with(&format!("{name}=")))
    }

    pub fn location(&self) -> String {
        self.header("location").unwrap_or_default()
    }
}

/// A client with a cookie jar, talking to one address.
#[derive(Clone)]
pub struct Web {
    pub addr: SocketAddr,
    pub cookies: Vec<(String, String)>,
    /// Extra headers sent with every request.
    pub headers: Vec<(String, String)>,
}

impl Web {
    pub fn new(addr: SocketAddr) -> Web {
        Web {
            addr,
            cookies: Vec::new(),
            headers: Vec::new(),
        }
    }

    pub fn cookie(&self, name: &str) -> Option<String> {
        self.cookies
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    }

    pub fn set_cookie(&mut self, name: &str, value: &str) {
        self.cookies.retain(|(n, _)| n != name);
        self.cookies.push((name.into(), value.into()));
    }

    /// Sends a request to `addr` (any server: ours or a fake) with our cookies
    /// when it is ours.
    pub async fn send(
        &mut self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Resp {
        self.send_to(self.addr, method, target, headers, body).await
    }

    pub async fn send_to(
        &mut self,
        addr: SocketAddr,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Resp {
        let mut req =
            format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
        if addr == self.addr && !self.cookies.is_empty() {
            let jar: Vec<String> = self
                .cookies
                .iter()
                .map(|(n, v)| format!("{n}={v}"))
                .collect();
            req += &format!("Cookie: {}\r\n", jar.join("; "));
        }
        for (k, v) in self
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .chain(headers.iter().copied())
        {
            req += &format!("{k}: {v}\r\n");
        }
        if !body.is_empty() || method == "POST" {
            req += &format!("Content-Length: {}\r\n", body.len());
        }
        req += "\r\n";
        req += body;
        let (status, head, body) = http_raw(addr, req.as_bytes()).await.expect("a response");
        let resp = Resp { status, head, body };
        if addr == self.addr {
            self.remember(&resp);
        }
        resp
    }

    fn remember(&mut self, resp: &Resp) {
        for c in resp.headers("set-cookie") {
            let first = c.split(';').next().unwrap_or_default();
            let Some((name, value)) = first.split_once('=') else {
                continue;
            };
            self.cookies.retain(|(n, _)| n != name);
            if !c.contains("Max-Age=0") {
                self.cookies.push((name.to_string(), value.to_string()));
            }
        }
    }

    pub async fn get(&mut self, target: &str) -> Resp {
        self.send("GET", target, &[], "").await
    }

    /// A form post (`application/x-www-form-urlencoded`).
    pub async fn post_form(&mut self, target: &str, body: &str) -> Resp {
        let ct = [("Content-Type", "application/x-www-form-urlencoded")];
        self.send("POST", target, &ct, body).await
    }

    /// A JSON post with `X-CSRF-Token: csrf` (none when `csrf` is empty).
    pub async fn post_json(&mut self, target: &str, csrf: &str, body: &str) -> Resp {
        let mut h = vec![("Content-Type", "application/json")];
        if !csrf.is_empty() {
            h.push(("X-CSRF-Token", csrf));
        }
        self.send("POST", target, &h, body).await
    }
}

/// The `content` of `<meta name="csrf-token">`, or the value of the first
/// `name="csrf_token"` input, in a page.
pub fn csrf_of(page: &str) -> String {
    let after = |marker: &str, attr: &str| {
        let start = page.find(marker)?;
        let rest = &page[start..];
        let v = rest.find(attr)? + attr.len();
        let end = rest[v..].find('"')?;
        Some(rest[v..v + end].to_string())
    };
    after("name=\"csrf-token\"", "content=\"")
        .or_else(|| after("name=\"csrf_token\"", "value=\""))
        .expect("a CSRF token in the page")
}

/// A JSON string field's value (no escapes in our test values).
pub fn json_str(body: &str, field: &str) -> Option<String> {
    let key = format!("\"{field}\":\"");
    let start = body.find(&key)? + key.len();
    let end = body[start..].find('"')?;
    Some(body[start..start + end].to_string())
}

/// A JSON number field's value.
pub fn json_num(body: &str, field: &str) -> Option<i64> {
    let key = format!("\"{field}\":");
    let start = body.find(&key)? + key.len();
    let digits: String = body[start..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '-')
        .collect();
    digits.parse().ok()
}
