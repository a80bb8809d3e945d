//! Startup configuration: defaults < TOML file < `CHATPULSE_*` environment < command
//! line, checked once into a typed [`Config`] that is then passed down as a value.
//! Every error names the key, the bad value and what is allowed.
//!
//! This file owns the types, [`ConfigError`], [`load`] and the order of the layers.
//! `keys::KEYS` is the one table of scalar keys: the file name (`limits.max_connections`)
//! and the environment name (`CHATPULSE_LIMITS_MAX_CONNECTIONS`) both come from it.
//! `[[channel]]` tables are read by `seeds`; `toml` works around nanoserde's TOML
//! parser; [`IpNet`] lives in `ipnet`; `[mesh]` and its checks in `mesh`,
//! `environment` and `[postgres]` in `postgres`. `config.example.toml` documents every key; a
//! test keeps it equal to the defaults.

mod ipnet;
mod keys;
mod mesh;
pub(crate) mod perms;
mod postgres;
mod seeds;
mod toml;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use log::LevelFilter;
use nanoserde::Toml;

use self::keys::{ENV_ALIASES, KEYS, Raw, set};
pub use self::mesh::{DEFAULT_MESH_TLS_NAME, MeshSection};
pub use self::postgres::{Environment, PostgresSection, sslmode};
use self::seeds::channel_seeds;
use self::toml::parse_toml;
use crate::channel::{FieldError, OverlayConfig};

pub use self::ipnet::IpNet;
pub use self::keys::{format_duration, parse_duration};

#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub server: ServerConfig,
    /// Where the stores live; relative to the working directory.
    pub data_dir: PathBuf,
    /// `development` or `production` (stricter checks, e.g. on `postgres.url`).
    pub environment: Environment,
    pub log: LogConfig,
    pub limits: LimitsConfig,
    pub votes: VotesConfig,
    pub shutdown: ShutdownConfig,
    pub twitch: TwitchConfig,
    pub auth: AuthConfig,
    pub mesh: MeshSection,
    pub tls: TlsSection,
    pub postgres: PostgresSection,
    /// `[[channel]]` tables, in file order; logins are unique.
    pub channels: Vec<ChannelSeed>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Origin form of the public address, e.g. `https://overlay.example.com` (scheme
    /// and host lower-case, default port and trailing `/` removed): the allowed
    /// WebSocket `Origin` and the base of printed overlay URLs.
    pub public_url: Option<String>,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Also allow `http://localhost:<any port>` (and 127.0.0.1, [::1]) Origins.
    pub dev: bool,
    /// Executor threads; 0 = automatic (1 up to 2 cores, else half the cores, ≤ 4).
    pub workers: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogConfig {
    pub level: LevelFilter,
    pub format: LogFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Clone, Debug, PartialEq)]
pub struct LimitsConfig {
    pub max_connections: u32,
    pub max_connections_per_ip: u32,
    /// New connections per second per IP (token bucket refill).
    pub connection_rate_per_ip: f64,
    pub connection_burst_per_ip: u32,
    pub max_overlays_per_broadcaster: u32,
    /// Messages queued per overlay before it is dropped as too slow.
    pub outbox_messages: u32,
    pub ws_max_message_bytes: u32,
    pub http_head_timeout: Duration,
    /// Open connections that are not (yet) overlay WebSockets: requests, idle
    /// keep-alives, TLS handshakes, slow heads. Over it: closed at once with a 503.
    pub max_http_connections: u32,
    /// The same per client address (trusted proxies exempt).
    pub max_http_connections_per_ip: u32,
    /// Per-IP request rate of the sign-in routes (`/login`, `/auth/*`), and its burst.
    pub auth_per_minute: u32,
    pub auth_burst: u32,
    /// Per-IP request rate of the dashboard and its API (`/dashboard*`, `/api/*`).
    pub dashboard_per_minute: u32,
    pub dashboard_burst: u32,
}

#[derive(Clone, Debug, PartialEq)]
pub struct VotesConfig {
    /// One counted vote per chatter per this interval.
    pub debounce: Duration,
    pub bucket_capacity: u32,
    pub bucket_refill_per_minute: u32,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ShutdownConfig {
    /// Time between failing readiness and closing the listener (for load balancers).
    pub drain_delay: Duration,
    /// Deadline for the rest of shutdown.
    pub timeout: Duration,
}

/// Where chat comes from (one source per deployment).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChatSourceKind {
    /// No Twitch connection (demo, tests, or chat injected by another node).
    None,
    /// Anonymous (or token) IRC over TLS: works with nothing but a channel name.
    Irc,
    /// EventSub over WebSocket with a user token (`user:read:chat`): no public URL.
    EventSubWs,
    /// EventSub webhooks through a conduit (app token + bot user): needs a public HTTPS URL.
    EventSubWebhook,
}

impl ChatSourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChatSourceKind::None => "none",
            ChatSourceKind::Irc => "irc",
            ChatSourceKind::EventSubWs => "eventsub-ws",
            ChatSourceKind::EventSubWebhook => "eventsub-webhook",
        }
    }
}

/// `[twitch]`: the chat source, credentials, and Twitch's base URLs (tests point
/// them at in-process fakes).
#[derive(Clone, PartialEq)]
pub struct TwitchConfig {
    pub source: ChatSourceKind,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    /// User access token: IRC login (`chat:read`) or EventSub WebSocket (`user:read:chat`).
    pub user_token: Option<String>,
    /// Bot user id for webhook/conduit subscriptions (`condition.user_id`).
    pub bot_user_id: Option<String>,
    /// EventSub webhook secret, 10..=100 ASCII characters.
    pub webhook_secret: Option<String>,
    /// Public HTTPS URL Twitch posts to, ending in `/webhooks/eventsub`.
    pub callback_url: Option<String>,
    /// `host:port` of Twitch IRC.
    pub irc_addr: String,
    pub irc_tls: bool,
    pub eventsub_ws_url: String,
    pub helix_url: String,
    pub auth_url: String,
    /// Extra CA certificates (PEM) to trust besides the embedded roots.
    pub ca_file: Option<PathBuf>,
}

/// Secrets stay out of logs and panic messages.
impl fmt::Debug for TwitchConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hidden = |v: &Option<String>| if v.is_some() { "<set>" } else { "<unset>" };
        f.debug_struct("TwitchConfig")
            .field("source", &self.source)
            .field("client_id", &self.client_id)
            .field("client_secret", &hidden(&self.client_secret))
            .field("user_token", &hidden(&self.user_token))
            .field("bot_user_id", &self.bot_user_id)
            .field("webhook_secret", &hidden(&self.webhook_secret))
            .field("callback_url", &self.callback_url)
            .field("irc_addr", &self.irc_addr)
            .field("irc_tls", &self.irc_tls)
            .field("eventsub_ws_url", &self.eventsub_ws_url)
            .field("helix_url", &self.helix_url)
            .field("auth_url", &self.auth_url)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

/// Who may sign in to the dashboard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMode {
    /// One admin password; the configured channels are the streamers.
    Home,
    /// Streamers sign in with Twitch (OAuth authorization code, scope `channel:bot`).
    Twitch,
}

impl AuthMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMode::Home => "home",
            AuthMode::Twitch => "twitch",
        }
    }
}

/// When session cookies carry the `Secure` attribute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecureCookies {
    /// When the request came over HTTPS: `X-Forwarded-Proto: https` from a trusted proxy.
    Auto,
    Always,
    Never,
}

/// `[auth]`: dashboard sign-in, sessions and secrets at rest.
#[derive(Clone, PartialEq)]
pub struct AuthConfig {
    pub mode: AuthMode,
    pub session_max_age: Duration,
    /// HMAC key of session cookies and CSRF tokens (≥ 32 characters). Unset: one is
    /// generated once and kept in SQLite (cluster nodes must then share one here).
    pub session_secret: Option<String>,
    /// AES-256-GCM key for Twitch user tokens at rest (64 hex characters in the file).
    pub encryption_key: Option<[u8; 32]>,
    /// Twitch mode: the public `https://…/auth/callback` registered with Twitch.
    /// Unset: `server.public_url` + `/auth/callback`, else the request's Host.
    pub redirect_uri: Option<String>,
    pub secure_cookies: SecureCookies,
}

/// Secrets stay out of logs and panic messages.
impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hidden = |set: bool| if set { "<set>" } else { "<unset>" };
        f.debug_struct("AuthConfig")
            .field("mode", &self.mode)
            .field("session_max_age", &self.session_max_age)
            .field("session_secret", &hidden(self.session_secret.is_some()))
            .field("encryption_key", &hidden(self.encryption_key.is_some()))
            .field("redirect_uri", &self.redirect_uri)
            .field("secure_cookies", &self.secure_cookies)
            .finish()
    }
}

/// `[tls]`: HTTPS and WSS served directly on `server.listen`. Both files or neither.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TlsSection {
    /// PEM certificate chain, leaf first.
    pub cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: Option<PathBuf>,
    /// A plain-HTTP listener answering 301 to `https://` (health endpoints answered).
    pub redirect_listen: Option<SocketAddr>,
}

/// A channel set up from the config file rather than through the dashboard.
#[derive(Clone, Debug, PartialEq)]
pub struct ChannelSeed {
    /// Lower-case Twitch login: 1..=25 of `[a-z0-9_]`.
    pub login: String,
    /// Normalized and valid.
    pub config: OverlayConfig,
}

/// Command-line settings; they win over file and environment.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub config_path: Option<PathBuf>,
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            server: ServerConfig {
                listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
                public_url: None,
                trusted_proxies: Vec::new(),
                dev: false,
                workers: 0,
            },
            data_dir: PathBuf::from("chatpulse-data"),
            environment: Environment::Development,
            log: LogConfig {
                level: LevelFilter::Info,
                format: LogFormat::Text,
            },
            limits: LimitsConfig {
                max_connections: 10_000,
                max_connections_per_ip: 100,
                connection_rate_per_ip: 10.0,
                connection_burst_per_ip: 20,
                max_overlays_per_broadcaster: 50,
                outbox_messages: 16,
                ws_max_message_bytes: 4096,
                http_head_timeout: Duration::from_secs(10),
                max_http_connections: 1024,
                max_http_connections_per_ip: 64,
                auth_per_minute: 10,
                auth_burst: 5,
                dashboard_per_minute: 30,
                dashboard_burst: 10,
            },
            votes: VotesConfig {
                debounce: Duration::from_secs(1),
                bucket_capacity: 100,
                bucket_refill_per_minute: 100,
            },
            shutdown: ShutdownConfig {
                drain_delay: Duration::ZERO,
                timeout: Duration::from_secs(10),
            },
            twitch: TwitchConfig {
                source: ChatSourceKind::Irc,
                client_id: None,
                client_secret: None,
                user_token: None,
                bot_user_id: None,
                webhook_secret: None,
                callback_url: None,
                irc_addr: "irc.chat.twitch.tv:6697".into(),
                irc_tls: true,
                eventsub_ws_url: "wss://eventsub.wss.twitch.tv/ws".into(),
                helix_url: "https://api.twitch.tv/helix".into(),
                auth_url: "https://id.twitch.tv/oauth2".into(),
                ca_file: None,
            },
            auth: AuthConfig {
                mode: AuthMode::Home,
                session_max_age: Duration::from_secs(7 * 24 * 3600),
                session_secret: None,
                encryption_key: None,
                redirect_uri: None,
                secure_cookies: SecureCookies::Auto,
            },
            mesh: MeshSection::default(),
            tls: TlsSection::default(),
            postgres: PostgresSection::default(),
            channels: Vec::new(),
        }
    }
}

#[derive(Debug)]
pub enum ConfigError {
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Not TOML (as far as nanoserde's parser goes); `line` is 1-based.
    Syntax {
        path: Option<PathBuf>,
        line: usize,
        message: String,
    },
    UnknownKey {
        key: String,
        suggestion: Option<String>,
    },
    UnknownVariable {
        name: String,
        suggestion: Option<String>,
    },
    /// `what` names the thing and where it was seen twice.
    Duplicate {
        what: String,
    },
    Missing {
        key: String,
    },
    /// `key` is a file key (`limits.max_connections`), a variable or a flag.
    Invalid {
        key: String,
        value: String,
        expected: String,
    },
    /// A file named by `key` that exists in the config but cannot be used.
    File {
        key: String,
        path: PathBuf,
        message: String,
    },
    /// A config file that sets secrets (`holds`) and is open to every user.
    Exposed {
        path: PathBuf,
        holds: String,
        hint: String,
    },
    /// A `[[channel]]` (0-based `index`) that breaks an [`OverlayConfig`] rule.
    Channel {
        index: usize,
        error: FieldError,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let did_you_mean = |s: &Option<String>| {
            s.as_ref()
                .map(|s| format!(" (did you mean {s:?}?)"))
                .unwrap_or_default()
        };
        match self {
            ConfigError::Read { path, source } => {
                write!(f, "config: file {}: {source}", path.display())
            }
            ConfigError::Syntax {
                path: Some(path),
                line,
                message,
            } => {
                write!(f, "config: file {}: line {line}: {message}", path.display())
            }
            ConfigError::Syntax {
                path: None,
                line,
                message,
            } => write!(f, "config: line {line}: {message}"),
            ConfigError::UnknownKey { key, suggestion } => {
                write!(f, "config: unknown key {key:?}{}", did_you_mean(suggestion))
            }
            ConfigError::UnknownVariable { name, suggestion } => {
                write!(
                    f,
                    "config: unknown environment variable {name}{}",
                    did_you_mean(suggestion)
                )
            }
            ConfigError::Duplicate { what } => write!(f, "config: {what}"),
            ConfigError::Missing { key } => write!(f, "config: {key} is required"),
            ConfigError::Invalid {
                key,
                value,
                expected,
            } => write!(f, "config: {key} = {value}: expected {expected}"),
            ConfigError::File { key, path, message } => {
                write!(
                    f,
                    "config: {key} = {:?}: {message}",
                    path.display().to_string()
                )
            }
            ConfigError::Exposed { path, holds, hint } => write!(
                f,
                "config: file {} holds secrets ({holds}) but {hint}",
                path.display()
            ),
            ConfigError::Channel { index, error } => {
                write!(f, "config: channel[{index}].{}: {error}", error.field)
            }
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConfigError::Read { source, .. } => Some(source),
            ConfigError::Channel { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// Reads the file (`--config`, else `CHATPULSE_CONFIG`, else none), then the
/// environment, then the command line. `env` is passed in so tests need not touch
/// the process environment; `main` passes `std::env::vars()`.
pub fn load(overrides: &Overrides, env: &[(String, String)]) -> Result<Config, ConfigError> {
    let mut config = Config::default();
    let env_path = env
        .iter()
        .find(|(k, v)| k == "CHATPULSE_CONFIG" && !v.is_empty());
    let path = overrides
        .config_path
        .clone()
        .or_else(|| env_path.map(|(_, v)| PathBuf::from(v)));
    if let Some(path) = path {
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        let map = parse_toml(&text, Some(&path))?;
        perms::check_config_file(&path, &map)?;
        apply_file(&mut config, &map)?;
    }
    apply_env(&mut config, env)?;
    if let Some(listen) = &overrides.listen {
        set(&mut config, "server.listen", "--listen", Raw::Text(listen))?;
    }
    if let Some(dir) = &overrides.data_dir {
        set(
            &mut config,
            "data_dir",
            "--data-dir",
            Raw::Text(&dir.to_string_lossy()),
        )?;
        config.data_dir = dir.clone(); // keeps a non-UTF-8 path intact
    }
    check_twitch(&config.twitch)?;
    check_auth(&config)?;
    mesh::check(&config.mesh)?;
    check_tls(&config.tls)?;
    postgres::check(config.environment, &config.postgres)?;
    Ok(config)
}

/// A certificate needs its key (and the reverse); a redirect needs HTTPS to point at.
fn check_tls(t: &TlsSection) -> Result<(), ConfigError> {
    let missing = |key: &str| Err(ConfigError::Missing { key: key.into() });
    match (&t.cert, &t.key) {
        (Some(_), None) => missing("tls.key (tls.cert is set)"),
        (None, Some(_)) => missing("tls.cert (tls.key is set)"),
        (None, None) if t.redirect_listen.is_some() => {
            missing("tls.cert and tls.key (tls.redirect_listen is set)")
        }
        _ => Ok(()),
    }
}

/// Twitch sign-in needs the app's credentials.
fn check_auth(config: &Config) -> Result<(), ConfigError> {
    if config.auth.mode != AuthMode::Twitch {
        return Ok(());
    }
    for (key, present) in [
        ("twitch.client_id", config.twitch.client_id.is_some()),
        (
            "twitch.client_secret",
            config.twitch.client_secret.is_some(),
        ),
    ] {
        if !present {
            return Err(ConfigError::Missing {
                key: format!("{key} (auth.mode = \"twitch\")"),
            });
        }
    }
    Ok(())
}

/// Keys a chat source cannot run without.
fn check_twitch(t: &TwitchConfig) -> Result<(), ConfigError> {
    let need = |key: &'static str, present: bool| match present {
        true => Ok(()),
        false => Err(ConfigError::Missing {
            key: key.to_string(),
        }),
    };
    match t.source {
        ChatSourceKind::None | ChatSourceKind::Irc => Ok(()),
        ChatSourceKind::EventSubWs => {
            need("twitch.client_id", t.client_id.is_some())?;
            need("twitch.user_token", t.user_token.is_some())
        }
        ChatSourceKind::EventSubWebhook => {
            need("twitch.client_id", t.client_id.is_some())?;
            need("twitch.client_secret", t.client_secret.is_some())?;
            need("twitch.bot_user_id", t.bot_user_id.is_some())?;
            need("twitch.webhook_secret", t.webhook_secret.is_some())?;
            need("twitch.callback_url", t.callback_url.is_some())
        }
    }
}

/// The defaults overlaid with a TOML document (no environment).
pub fn from_toml_str(s: &str) -> Result<Config, ConfigError> {
    let mut config = Config::default();
    apply_file(&mut config, &parse_toml(s, None)?)?;
    check_twitch(&config.twitch)?;
    check_auth(&config)?;
    mesh::check(&config.mesh)?;
    check_tls(&config.tls)?;
    postgres::check(config.environment, &config.postgres)?;
    Ok(config)
}

fn apply_file(config: &mut Config, map: &BTreeMap<String, Toml>) -> Result<(), ConfigError> {
    for (name, value) in map {
        if let ("channel", Toml::Array(tables)) = (name.as_str(), value) {
            config.channels = channel_seeds(tables)?;
        } else if KEYS.iter().any(|k| k.name == name) {
            set(config, name, name, Raw::Toml(value))?;
        } else {
            let suggestion = match name.starts_with("channel.") {
                true => Some("[[channel]]".to_string()),
                false => suggest(name, KEYS.iter().map(|k| k.name)),
            };
            return Err(ConfigError::UnknownKey {
                key: name.clone(),
                suggestion,
            });
        }
    }
    Ok(())
}

/// `CHATPULSE_` + the key upper-cased with `.` as `_`.
fn env_name(key: &str) -> String {
    format!("CHATPULSE_{}", key.replace('.', "_").to_ascii_uppercase())
}

/// `RUST_LOG` (a plain level only) < `CHATPULSE_LOG_LEVEL`; every other
/// `CHATPULSE_*` must be a known key, `CHATPULSE_CONFIG`, or reserved for tools.
fn apply_env(config: &mut Config, env: &[(String, String)]) -> Result<(), ConfigError> {
    if let Some(Ok(level)) = env
        .iter()
        .find(|(k, _)| k == "RUST_LOG")
        .map(|(_, v)| v.trim().parse())
    {
        config.log.level = level;
    }
    let mut vars: Vec<&(String, String)> = env
        .iter()
        .filter(|(k, _)| k.starts_with("CHATPULSE_"))
        .collect();
    vars.sort();
    let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
    for (var, value) in vars {
        if var == "CHATPULSE_CONFIG"
            || var.starts_with("CHATPULSE_TEST_")
            || var.starts_with("CHATPULSE_BENCH_")
        {
            continue;
        }
        let alias = ENV_ALIASES
            .iter()
            .find(|(alias, _)| alias == var)
            .map(|(_, key)| *key);
        let Some(key) = alias.or_else(|| KEYS.iter().map(|k| k.name).find(|k| env_name(k) == *var))
        else {
            let known = KEYS
                .iter()
                .map(|k| env_name(k.name))
                .chain(ENV_ALIASES.iter().map(|(a, _)| a.to_string()));
            let suggestion = suggest(var, known.chain(["CHATPULSE_CONFIG".to_string()]));
            return Err(ConfigError::UnknownVariable {
                name: var.clone(),
                suggestion,
            });
        };
        if let Some(other) = seen.insert(key, var) {
            let what = format!("{key} is set by both {other} and {var}");
            return Err(ConfigError::Duplicate { what });
        }
        set(config, key, var, Raw::Text(value))?;
    }
    Ok(())
}

/// The closest candidate within edit distance 2.
fn suggest<S: AsRef<str>>(word: &str, candidates: impl Iterator<Item = S>) -> Option<String> {
    let scored = candidates.map(|c| (edit_distance(word, c.as_ref()), c.as_ref().to_string()));
    scored.filter(|(d, _)| *d <= 2).min().map(|(_, c)| c)
}

/// Levenshtein distance over bytes (keys are ASCII).
fn edit_distance(a: &str, b: &str) -> usize {
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.bytes().enumerate() {
        let mut row = vec![i + 1];
        for (j, cb) in b.bytes().enumerate() {
            row.push(
                (prev[j] + usize::from(ca != cb))
                    .min(prev[j + 1] + 1)
                    .min(row[j] + 1),
            );
        }
        prev = row;
    }
    prev[b.len()]
}
