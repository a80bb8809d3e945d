//! Who may use the dashboard, and the secrets that prove it.
//!
//! - `home` mode: one admin password ([`password`], PBKDF2) stored in SQLite;
//!   the configured channels are the streamers.
//! - `twitch` mode: streamers sign in with Twitch ([`oauth`]); a first sign-in
//!   creates the streamer with the default settings.
//!
//! Either way a sign-in yields a signed session cookie ([`session`]; HMAC, no
//! server-side store, so any node with the same key accepts it) whose id also
//! binds the CSRF token. Signed-out session ids are kept until they would have
//! expired, in memory and in SQLite (per node; cluster-wide revocation comes with
//! the mesh). [`ratelimit`] holds the per-IP limits of these pages, [`crypto`]
//! encrypts Twitch user tokens at rest. [`Auth`] ties them to one node.

pub mod crypto;
pub mod encoding;
pub mod oauth;
pub mod password;
pub mod ratelimit;
pub mod session;

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::{AuthMode, Config};
use crate::store::StoreError;
use crate::store::sqlite::Db;
use crypto::TokenCipher;
use oauth::OAuthClient;
use ratelimit::{RateLimiter, RateSettings};
use session::{Session, SessionKey, Subject};

/// What can go wrong with secrets.
#[derive(Debug)]
pub enum AuthError {
    /// The OS random source failed.
    Random(String),
    Crypto(&'static str),
    Store(StoreError),
    /// The TLS client for Twitch could not be set up.
    Tls(String),
}

impl std::fmt::Display for AuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuthError::Random(e) => write!(f, "the OS random source failed: {e}"),
            AuthError::Crypto(e) => write!(f, "token encryption: {e}"),
            AuthError::Store(e) => write!(f, "store: {e}"),
            AuthError::Tls(e) => write!(f, "TLS for Twitch sign-in: {e}"),
        }
    }
}

impl std::error::Error for AuthError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            AuthError::Store(e) => Some(e),
            _ => None,
        }
    }
}

impl From<StoreError> for AuthError {
    fn from(e: StoreError) -> Self {
        AuthError::Store(e)
    }
}

pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The sign-in state of one node.
pub struct Auth {
    pub mode: AuthMode,
    pub keys: SessionKey,
    /// Set when `auth.encryption_key` is: without it user tokens are not stored.
    pub cipher: Option<TokenCipher>,
    pub limiter: RateLimiter,
    /// Twitch mode only.
    pub oauth: Option<OAuthClient>,
    /// Lets `chatpulse mesh status` on this machine read `/api/mesh`; also in
    /// `<data_dir>/cli.token` (mode 0600). Empty when it could not be written.
    pub cli_token: String,
    max_age: Duration,
    /// Signed-out session id → its expiry (unix s).
    revoked: Mutex<HashMap<String, u64>>,
    /// Numbers the dashboard's synthetic test chatters (fresh each, so no debounce).
    test_votes: AtomicU64,
    /// Twitch user id → (login, display name) as of their last sign-in on this node.
    /// The hub keeps a channel's identity as loaded; a sign-in that adopts a
    /// config-file channel or follows a rename is known here without rebuilding it.
    signed_in: Mutex<HashMap<String, (String, String)>>,
}

impl Auth {
    /// Reads (or creates) the session key and the signed-out sessions.
    pub async fn load(config: &Config, db: &Db) -> Result<Auth, AuthError> {
        let secret = match &config.auth.session_secret {
            Some(s) => s.clone(),
            None => {
                let fresh = encoding::base64url(&encoding::random::<32>()?);
                let stored = db.session_secret_or(&fresh).await?;
                if stored == fresh {
                    log::info!("auth: generated a session secret (kept in the database)");
                }
                stored
            }
        };
        let now = now_unix();
        let revoked = db.revoked_sessions(now).await?.into_iter().collect();
        let oauth = match config.auth.mode {
            AuthMode::Home => None,
            AuthMode::Twitch => Some(oauth_client(config)?),
        };
        let l = &config.limits;
        let cli_token = crate::cli::mesh_status::write_token(&config.data_dir)
            .inspect_err(|e| {
                log::warn!("auth: cannot write the CLI token ({e}); `chatpulse mesh status` will be refused")
            })
            .unwrap_or_default();
        Ok(Auth {
            mode: config.auth.mode,
            cli_token,
            keys: SessionKey::new(secret.as_bytes()),
            cipher: config.auth.encryption_key.as_ref().map(TokenCipher::new),
            limiter: RateLimiter::new(
                RateSettings {
                    per_minute: l.auth_per_minute,
                    burst: l.auth_burst,
                },
                RateSettings {
                    per_minute: l.dashboard_per_minute,
                    burst: l.dashboard_burst,
                },
            ),
            oauth,
            max_age: config.auth.session_max_age,
            revoked: Mutex::new(revoked),
            test_votes: AtomicU64::new(0),
            signed_in: Mutex::new(HashMap::new()),
        })
    }

    /// `Authorization: Bearer <cli token>` (constant time; never with an empty token).
    pub fn cli_token_ok(&self, authorization: Option<&str>) -> bool {
        let given = authorization
            .and_then(|h| h.strip_prefix("Bearer "))
            .unwrap_or("");
        !self.cli_token.is_empty()
            && encoding::constant_time_eq(given.trim().as_bytes(), self.cli_token.as_bytes())
    }

    pub fn max_age(&self) -> Duration {
        self.max_age
    }

    /// A new session for `subject`, valid for `auth.session_max_age`.
    pub fn new_session(&self, subject: Subject) -> Result<Session, AuthError> {
        Session::new(subject, now_unix() + self.max_age.as_secs().max(1))
    }

    /// The session in a cookie value: signed by our key, unexpired, not signed out.
    pub fn open_session(&self, cookie: &str) -> Option<Session> {
        let session = self.keys.open(cookie, now_unix())?;
        let revoked = self.lock_revoked().contains_key(&session.id);
        (!revoked).then_some(session)
    }

    /// Signs a session out on this node, durably.
    pub async fn revoke(&self, db: &Db, session: &Session) -> Result<(), StoreError> {
        let now = now_unix();
        {
            let mut revoked = self.lock_revoked();
            revoked.retain(|_, until| *until > now);
            revoked.insert(session.id.clone(), session.expires);
        }
        db.revoke_session(&session.id, session.expires, now).await
    }

    /// `dashboard-test-<n>`: a chatter id no real chatter has.
    pub fn next_test_chatter(&self) -> String {
        let n = self.test_votes.fetch_add(1, Ordering::Relaxed);
        format!("dashboard-test-{n}")
    }

    /// Remembers who a Twitch user is as of their sign-in now.
    pub fn note_sign_in(&self, twitch_id: &str, login: &str, display_name: &str) {
        let mut known = self.signed_in.lock().unwrap_or_else(|e| e.into_inner());
        known.insert(twitch_id.into(), (login.into(), display_name.into()));
    }

    /// (login, display name) of a Twitch user who signed in on this node.
    pub fn signed_in_as(&self, twitch_id: &str) -> Option<(String, String)> {
        let known = self.signed_in.lock().unwrap_or_else(|e| e.into_inner());
        known.get(twitch_id).cloned()
    }

    fn lock_revoked(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        self.revoked.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn oauth_client(config: &Config) -> Result<OAuthClient, AuthError> {
    let t = &config.twitch;
    let tls = crate::tls::client_config(t.ca_file.as_deref())
        .map_err(|e| AuthError::Tls(e.to_string()))?;
    // Config validation requires both in twitch mode.
    let id = t.client_id.as_deref().unwrap_or_default();
    let secret = t.client_secret.as_deref().unwrap_or_default();
    let http = crate::twitch::http::HttpClient::new(tls);
    Ok(OAuthClient::new(
        http,
        &t.auth_url,
        &t.helix_url,
        id,
        secret,
    ))
}

/// Hashes `password` (off the async threads) and stores it as the admin password.
pub async fn set_admin_password(
    db: &Db,
    password: &str,
    iterations: u32,
    actor: &str,
) -> Result<(), AuthError> {
    let password = password.to_owned();
    let hash = smol::unblock(move || password::hash(&password, iterations)).await?;
    db.set_admin_password_hash(&hash, actor).await?;
    log::info!("auth: admin password set by {actor}");
    Ok(())
}

/// Checks an admin sign-in attempt (slow on purpose, off the async threads).
/// False when no password was ever set.
pub async fn check_admin_password(db: &Db, attempt: &str) -> Result<bool, StoreError> {
    let Some(stored) = db.admin_password_hash().await? else {
        return Ok(false);
    };
    let attempt = attempt.to_owned();
    Ok(smol::unblock(move || password::verify(&attempt, &stored)).await)
}

/// Home mode, first start: when no admin password is stored, stores a random one
/// and returns it, for the caller to show once. `None` when one exists already.
pub async fn ensure_admin_password(db: &Db) -> Result<Option<String>, AuthError> {
    if db.admin_password_hash().await?.is_some() {
        return Ok(None);
    }
    let generated = password::generate()?;
    set_admin_password(db, &generated, password::ITERATIONS, "first-start").await?;
    log::warn!(
        "auth: no admin password was set, so one was generated and printed on stdout; \
         change it with `chatpulse admin set-password`"
    );
    Ok(Some(generated))
}
