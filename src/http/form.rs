//! What browsers send besides the path: `application/x-www-form-urlencoded`
//! bodies and query strings (percent escapes, `+` for space), the `Cookie`
//! header, and the `Set-Cookie` values we answer with. Pure.

/// Decoded `name=value` pairs in order; pairs that do not decode are skipped.
pub fn parse_urlencoded(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Some((decode_component(k)?, decode_component(v)?))
        })
        .collect()
}

/// The first value of `name` in a query string or form body.
pub fn param(s: &str, name: &str) -> Option<String> {
    parse_urlencoded(s)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

/// `%XX` escapes and `+` as space; `None` on a bad escape or non-UTF-8.
pub fn decode_component(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return None;
                }
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The value of cookie `name` in a `Cookie` header (`a=1; b=2`).
pub fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        (k == name).then(|| v.trim_matches('"'))
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSite {
    Lax,
    Strict,
}

/// One `Set-Cookie` value. Every cookie we set is HttpOnly: no script reads them.
#[derive(Debug, Clone)]
pub struct SetCookie<'a> {
    pub name: &'a str,
    pub value: &'a str,
    pub path: &'a str,
    /// Seconds; 0 deletes the cookie.
    pub max_age: u64,
    pub same_site: SameSite,
    pub secure: bool,
}

impl SetCookie<'_> {
    pub fn render(&self) -> String {
        let same_site = match self.same_site {
            SameSite::Lax => "Lax",
            SameSite::Strict => "Strict",
        };
        let secure = if self.secure { "; Secure" } else { "" };
        format!(
            "{}={}; Path={}; Max-Age={}; HttpOnly; SameSite={same_site}{secure}",
            self.name, self.value, self.path, self.max_age
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_bodies_and_queries() {
        let pairs = parse_urlencoded("a=1&b=x+y%21&empty=&flag&bad=%zz&c=%C3%A9");
        let expected = [
            ("a", "1"),
            ("b", "x y!"),
            ("empty", ""),
            ("flag", ""),
            ("c", "é"),
        ];
        let got: Vec<(&str, &str)> = pairs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(got, expected);
        assert_eq!(
            param("channel=alice&side=for", "side").as_deref(),
            Some("for")
        );
        assert_eq!(param("", "side"), None);
        assert_eq!(decode_component("%ff"), None, "not UTF-8");
        assert_eq!(decode_component("%2"), None);
        assert_eq!(decode_component("%+1"), None);
    }

    #[test]
    fn encoding_round_trips() {
        let s = "https://x.example/a b?c=d&e=ü";
        assert_eq!(
            percent_encode(s),
            "https%3A%2F%2Fx.example%2Fa%20b%3Fc%3Dd%26e%3D%C3%BC"
        );
        assert_eq!(decode_component(&percent_encode(s)).as_deref(), Some(s));
    }

    #[test]
    fn cookies() {
        let h = "theme=dark; chatpulse_session=abc.def ;other=\"q\"";
        assert_eq!(cookie(h, "chatpulse_session"), Some("abc.def"));
        assert_eq!(cookie(h, "other"), Some("q"));
        assert_eq!(cookie(h, "chatpulse"), None);
        let c = SetCookie {
            name: "s",
            value: "v",
            path: "/",
            max_age: 60,
            same_site: SameSite::Lax,
            secure: true,
        };
        assert_eq!(
            c.render(),
            "s=v; Path=/; Max-Age=60; HttpOnly; SameSite=Lax; Secure"
        );
    }
}
