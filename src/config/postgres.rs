//! `environment` and `[postgres]`: the optional shared store of larger
//! deployments, and the one rule the environment enforces on it — in
//! production the connection to PostgreSQL must be encrypted.

use std::fmt;

use super::ConfigError;

/// `environment`: what the deployment is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Environment {
    #[default]
    Development,
    Production,
}

impl Environment {
    pub fn parse(s: &str) -> Option<Environment> {
        match s {
            "development" => Some(Environment::Development),
            "production" => Some(Environment::Production),
            _ => None,
        }
    }
}

/// `[postgres]`.
#[derive(Clone, Default, PartialEq)]
pub struct PostgresSection {
    /// `postgres://user:password@host:port/db?sslmode=require`; `None`: SQLite only.
    pub url: Option<String>,
}

/// The URL carries a password: it stays out of logs and panic messages.
impl fmt::Debug for PostgresSection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresSection")
            .field("url", &self.url.as_ref().map(|_| "<set>"))
            .finish()
    }
}

/// The `sslmode` query parameter of a `postgres://` URL (lower-cased), if any.
pub fn sslmode(url: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| k.eq_ignore_ascii_case("sslmode"))
        .map(|(_, v)| v.to_ascii_lowercase())
}

/// In production, PostgreSQL only over TLS: `sslmode=disable` and `allow` are
/// refused (as the reference does), and so are `prefer` and no `sslmode` at
/// all, which silently fall back to plain text when the server offers no TLS.
pub(super) fn check(env: Environment, pg: &PostgresSection) -> Result<(), ConfigError> {
    let Some(url) = &pg.url else {
        return Ok(());
    };
    if env != Environment::Production {
        return Ok(());
    }
    match sslmode(url).as_deref() {
        Some("require" | "verify-ca" | "verify-full") => Ok(()),
        found => Err(ConfigError::Invalid {
            key: "postgres.url".into(),
            value: format!("sslmode={}", found.unwrap_or("(none: prefer)")),
            expected:
                "sslmode=require, verify-ca or verify-full when environment = \"production\" \
                       (the connection must be encrypted)"
                    .into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(u: &str) -> PostgresSection {
        PostgresSection {
            url: Some(u.into()),
        }
    }

    #[test]
    fn production_refuses_plain_text_postgres() {
        let prod = Environment::Production;
        for refused in [
            "postgres://u:p@db/chatpulse",
            "postgres://u:p@db/chatpulse?sslmode=disable",
            "postgres://u:p@db/chatpulse?application_name=x&SSLMODE=Allow",
            "postgres://u:p@db/chatpulse?sslmode=prefer",
        ] {
            let e = check(prod, &url(refused)).unwrap_err().to_string();
            assert!(
                e.contains("postgres.url") && e.contains("production"),
                "{e}"
            );
            assert!(!e.contains(":p@"), "the password is never echoed: {e}");
        }
        for ok in ["require", "verify-ca", "VERIFY-FULL"] {
            check(prod, &url(&format!("postgres://db/x?sslmode={ok}"))).unwrap();
        }
        check(
            Environment::Development,
            &url("postgres://db/x?sslmode=disable"),
        )
        .unwrap();
        check(prod, &PostgresSection::default()).unwrap();
        assert!(!format!("{:?}", url("postgres://u:secret@db/x")).contains("secret"));
    }
}
