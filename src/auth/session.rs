//! Signed session cookies and the CSRF tokens bound to them. Nothing is kept
//! on the server but the key (and the ids of signed-out sessions), so every
//! node holding the same `auth.session_secret` accepts every session.
//!
//! A cookie is `base64url(payload) "." base64url(HMAC-SHA256(key, payload))`,
//! payload `v1|<subject>|<expires unix s>|<random id>`. The CSRF token of a
//! session is `base64url(HMAC(key, "csrf|" id))`; the sign-in form's token is
//! `base64url(HMAC(key, "login|" nonce))` for the nonce in its own cookie. The
//! prefixes keep the three uses of the one key apart. Pure: times are passed in.

use ring::hmac;

use super::AuthError;
use super::encoding::{base64url, base64url_decode, random};

const VERSION: &str = "v1";

/// Who a session belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// Home mode: the one admin, who may manage every configured channel.
    Admin,
    /// Twitch mode: a streamer, by Twitch user id (stable across nodes and renames,
    /// unlike the local SQLite row id).
    Streamer(String),
}

impl Subject {
    fn encode(&self) -> String {
        match self {
            Subject::Admin => "admin".into(),
            Subject::Streamer(id) => format!("streamer:{id}"),
        }
    }

    fn decode(s: &str) -> Option<Subject> {
        match s.strip_prefix("streamer:") {
            Some(id) if !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()) => {
                Some(Subject::Streamer(id.into()))
            }
            Some(_) => None,
            None => (s == "admin").then_some(Subject::Admin),
        }
    }
}

/// A verified, unexpired session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub subject: Subject,
    /// Unix seconds; the session is void from this second on.
    pub expires: u64,
    /// 128 random bits: the CSRF binding and the sign-out (revocation) key.
    pub id: String,
}

impl Session {
    pub fn new(subject: Subject, expires: u64) -> Result<Session, AuthError> {
        Ok(Session {
            subject,
            expires,
            id: base64url(&random::<16>()?),
        })
    }
}

/// The HMAC key behind sessions and CSRF tokens.
pub struct SessionKey(hmac::Key);

impl SessionKey {
    pub fn new(secret: &[u8]) -> SessionKey {
        SessionKey(hmac::Key::new(hmac::HMAC_SHA256, secret))
    }

    fn tag(&self, data: &str) -> String {
        base64url(hmac::sign(&self.0, data.as_bytes()).as_ref())
    }

    fn check(&self, data: &str, tag: &str) -> bool {
        base64url_decode(tag).is_some_and(|t| hmac::verify(&self.0, data.as_bytes(), &t).is_ok())
    }

    /// The cookie value of `session`.
    pub fn seal(&self, session: &Session) -> String {
        let payload = format!(
            "{VERSION}|{}|{}|{}",
            session.subject.encode(),
            session.expires,
            session.id
        );
        format!("{}.{}", base64url(payload.as_bytes()), self.tag(&payload))
    }

    /// The session in a cookie value, if its signature holds and it has not expired.
    pub fn open(&self, cookie: &str, now_unix: u64) -> Option<Session> {
        let (payload, tag) = cookie.split_once('.')?;
        let payload = String::from_utf8(base64url_decode(payload)?).ok()?;
        if !self.check(&payload, tag) {
            return None;
        }
        let parts: Vec<&str> = payload.split('|').collect();
        let [VERSION, subject, expires, id] = parts.as_slice() else {
            return None;
        };
        let expires: u64 = expires.parse().ok()?;
        if now_unix >= expires || id.is_empty() {
            return None;
        }
        Some(Session {
            subject: Subject::decode(subject)?,
            expires,
            id: id.to_string(),
        })
    }

    /// The CSRF token pages of `session` carry.
    pub fn csrf_token(&self, session: &Session) -> String {
        self.tag(&format!("csrf|{}", session.id))
    }

    /// Constant-time check of a submitted CSRF token.
    pub fn csrf_ok(&self, session: &Session, token: &str) -> bool {
        self.check(&format!("csrf|{}", session.id), token)
    }

    /// The sign-in form's token for the nonce in the `chatpulse_csrf` cookie.
    pub fn login_token(&self, nonce: &str) -> String {
        self.tag(&format!("login|{nonce}"))
    }

    pub fn login_token_ok(&self, nonce: &str, token: &str) -> bool {
        !nonce.is_empty() && self.check(&format!("login|{nonce}"), token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SessionKey {
        SessionKey::new(b"0123456789abcdef0123456789abcdef")
    }

    #[test]
    fn seal_open_round_trip_and_expiry() {
        let k = key();
        let s = Session::new(Subject::Streamer("1234".into()), 1000).unwrap();
        let cookie = k.seal(&s);
        assert!(
            cookie
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        );
        assert_eq!(k.open(&cookie, 999), Some(s.clone()));
        assert_eq!(k.open(&cookie, 1000), None, "void from its expiry second");
        let admin = Session::new(Subject::Admin, 50).unwrap();
        assert_eq!(k.open(&k.seal(&admin), 0).unwrap().subject, Subject::Admin);
        assert_ne!(admin.id, s.id);
    }

    #[test]
    fn forged_or_foreign_cookies_are_refused() {
        let k = key();
        let s = Session::new(Subject::Admin, 1000).unwrap();
        let cookie = k.seal(&s);
        let other = SessionKey::new(b"another secret, at least 32 chars!!");
        assert_eq!(other.open(&cookie, 0), None);
        // A payload re-signed by nobody: subject swapped, tag kept.
        let (_, tag) = cookie.split_once('.').unwrap();
        let forged = format!("{}.{tag}", base64url(b"v1|streamer:1|1000|x"));
        assert_eq!(k.open(&forged, 0), None);
        for bad in [
            "",
            ".",
            "abc",
            "abc.def",
            &cookie[1..],
            &format!("{cookie}x"),
        ] {
            assert_eq!(k.open(bad, 0), None, "{bad}");
        }
        // Well signed but unreadable payloads.
        for payload in [
            "v2|admin|9|x",
            "v1|root|9|x",
            "v1|streamer:abc|9|x",
            "v1|admin|9",
        ] {
            let cookie = format!("{}.{}", base64url(payload.as_bytes()), k.tag(payload));
            assert_eq!(k.open(&cookie, 0), None, "{payload}");
        }
    }

    #[test]
    fn csrf_tokens_are_bound_to_the_session() {
        let k = key();
        let a = Session::new(Subject::Admin, 1000).unwrap();
        let b = Session::new(Subject::Admin, 1000).unwrap();
        let token = k.csrf_token(&a);
        assert!(k.csrf_ok(&a, &token));
        assert!(!k.csrf_ok(&b, &token));
        assert!(!k.csrf_ok(&a, ""));
        assert!(!k.csrf_ok(&a, "not base64!"));
        let login = k.login_token("nonce1");
        assert!(k.login_token_ok("nonce1", &login));
        assert!(!k.login_token_ok("nonce2", &login));
        assert!(!k.login_token_ok("", &k.login_token("")));
        assert_ne!(login, k.csrf_token(&a));
    }
}
