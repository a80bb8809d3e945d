//! The table of scalar keys ([`KEYS`]) and how each value is read: the parsers behind
//! every `section.key`, from a TOML value or from environment / flag text, with the
//! "expected ..." text each one reports. Also [`parse_duration`] / [`format_duration`]
//! and the public-URL → origin rule.

use std::fmt;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

use log::LevelFilter;
use nanoserde::Toml;

use super::{AuthMode, ChatSourceKind, Config, ConfigError, IpNet, LogFormat, SecureCookies};
use crate::channel;

/// A scalar key: its `section.key` name and how to set it from a file or text value.
/// A setter's error is the "expected ..." part of [`ConfigError::Invalid`].
pub(super) struct Key {
    pub(super) name: &'static str,
    pub(super) set: fn(&mut Config, Raw) -> Result<(), String>,
}

/// `key!(section.field, parse, extra)`: the [`Key`] named `"section.field"` that stores
/// `parse(value, extra)?` in `config.section.field`.
macro_rules! key {
    ($first:ident $(. $rest:ident)*, $parse:expr $(, $extra:expr)?) => {
        Key {
            name: concat!(stringify!($first) $(, ".", stringify!($rest))*),
            set: |c, v| {
                c.$first $(.$rest)* = $parse(v $(, $extra)?)?;
                Ok(())
            },
        }
    };
}

const MAX_COUNT: u32 = 1_000_000;
const fn ms(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

/// In the order of `config.example.toml` (top-level keys come first in TOML).
pub(super) const KEYS: &[Key] = &[
    key!(data_dir, directory),
    key!(environment, environment),
    key!(server.listen, socket_addr),
    key!(server.public_url, public_url),
    key!(server.trusted_proxies, ip_nets),
    key!(server.dev, boolean),
    key!(server.workers, integer, 0..=64),
    key!(log.level, level),
    key!(log.format, log_format),
    key!(limits.max_connections, integer, 1..=MAX_COUNT),
    key!(limits.max_connections_per_ip, integer, 1..=MAX_COUNT),
    key!(limits.connection_rate_per_ip, number, 0.1..=1e6),
    key!(limits.connection_burst_per_ip, integer, 1..=MAX_COUNT),
    key!(limits.max_overlays_per_broadcaster, integer, 1..=100_000),
    key!(limits.outbox_messages, integer, 1..=4096),
    key!(limits.ws_max_message_bytes, integer, 256..=1_048_576),
    key!(limits.http_head_timeout, duration, ms(100)..=ms(300_000)),
    key!(limits.max_http_connections, integer, 1..=MAX_COUNT),
    key!(limits.max_http_connections_per_ip, integer, 1..=MAX_COUNT),
    key!(limits.auth_per_minute, integer, 1..=MAX_COUNT),
    key!(limits.auth_burst, integer, 1..=MAX_COUNT),
    key!(limits.dashboard_per_minute, integer, 1..=MAX_COUNT),
    key!(limits.dashboard_burst, integer, 1..=MAX_COUNT),
    key!(votes.debounce, duration, ms(0)..=ms(60_000)),
    key!(votes.bucket_capacity, integer, 1..=MAX_COUNT),
    key!(votes.bucket_refill_per_minute, integer, 1..=MAX_COUNT),
    key!(shutdown.drain_delay, duration, ms(0)..=ms(300_000)),
    key!(shutdown.timeout, duration, ms(100)..=ms(600_000)),
    key!(twitch.source, chat_source),
    key!(twitch.client_id, opt_token),
    key!(twitch.client_secret, opt_token),
    key!(twitch.user_token, opt_user_token),
    key!(twitch.bot_user_id, opt_user_id),
    key!(twitch.webhook_secret, opt_webhook_secret),
    key!(twitch.callback_url, opt_https_url),
    key!(twitch.irc_addr, host_port),
    key!(twitch.irc_tls, boolean),
    key!(twitch.eventsub_ws_url, ws_url),
    key!(twitch.helix_url, http_url),
    key!(twitch.auth_url, http_url),
    key!(twitch.ca_file, opt_path),
    key!(auth.mode, auth_mode),
    key!(auth.session_max_age, duration, ms(1000)..=ms(DAY_MS * 365)),
    key!(auth.session_secret, opt_session_secret),
    key!(auth.encryption_key, opt_encryption_key),
    key!(auth.redirect_uri, opt_callback_url),
    key!(auth.secure_cookies, secure_cookies),
    key!(mesh.listen, opt_socket_addr),
    key!(mesh.advertise, opt_socket_addr),
    key!(mesh.seeds, seed_list),
    key!(mesh.secret, opt_mesh_secret),
    key!(mesh.tls_cert, opt_path),
    key!(mesh.tls_key, opt_path),
    key!(mesh.tls_ca, opt_path),
    key!(mesh.tls_name, dns_name),
    key!(tls.cert, opt_path),
    key!(tls.key, opt_path),
    key!(tls.redirect_listen, opt_socket_addr),
    key!(postgres.url, opt_postgres_url),
];

const DAY_MS: u64 = 86_400_000;

/// Short names kept for the most common settings, beside `CHATPULSE_SERVER_*`.
pub(super) const ENV_ALIASES: &[(&str, &str)] = &[
    ("CHATPULSE_LISTEN", "server.listen"),
    ("CHATPULSE_PUBLIC_URL", "server.public_url"),
];

/// A value as found: a parsed TOML value, or text from the environment or a flag.
#[derive(Clone, Copy)]
pub(super) enum Raw<'a> {
    Toml(&'a Toml),
    Text(&'a str),
}

/// Shown as written: strings quoted, numbers bare.
impl fmt::Display for Raw<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Raw::Text(s) => write!(f, "{s:?}"),
            Raw::Toml(Toml::Str(s)) => write!(f, "{s:?}"),
            Raw::Toml(Toml::Num(n)) => write!(f, "{n}"),
            Raw::Toml(Toml::Bool(b)) => write!(f, "{b}"),
            Raw::Toml(Toml::Date(d)) => f.write_str(d),
            Raw::Toml(Toml::SimpleArray(items)) => {
                let items: Vec<String> = items.iter().map(|t| Raw::Toml(t).to_string()).collect();
                write!(f, "[{}]", items.join(", "))
            }
            Raw::Toml(Toml::Array(_)) => f.write_str("[[...]]"),
        }
    }
}

pub(super) fn text<'a>(v: Raw<'a>) -> Result<&'a str, String> {
    match v {
        Raw::Text(s) => Ok(s),
        Raw::Toml(Toml::Str(s)) => Ok(s),
        _ => Err("a string".into()),
    }
}

fn directory(v: Raw) -> Result<PathBuf, String> {
    let s = text(v)?;
    match s.trim().is_empty() {
        true => Err("a directory path".into()),
        false => Ok(PathBuf::from(s)),
    }
}

fn socket_addr(v: Raw) -> Result<SocketAddr, String> {
    let expected = "an address and port like 0.0.0.0:8080 or [::]:8080";
    text(v)?.trim().parse().map_err(|_| expected.into())
}

/// An empty string is no address.
fn opt_socket_addr(v: Raw) -> Result<Option<SocketAddr>, String> {
    match text(v)?.trim() {
        "" => Ok(None),
        _ => socket_addr(v).map(Some),
    }
}

/// `ip:port` or `dns-name:port` (resolved at every join attempt, so a name
/// that stands for several nodes, like a Kubernetes headless Service, works).
fn seed_list(v: Raw) -> Result<Vec<String>, String> {
    let bad = |s: &str| {
        format!(
            "addresses or names with ports like 10.0.0.2:7946 or chatpulse-mesh:7946 ({s:?} is not one)"
        )
    };
    strings(v)?
        .iter()
        .map(|s| {
            let s = s.trim();
            if s.parse::<SocketAddr>().is_ok() {
                return Ok(s.to_string());
            }
            let (host, port) = s.rsplit_once(':').ok_or_else(|| bad(s))?;
            let name_ok = !host.is_empty()
                && host.len() <= 253
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
            match port.parse::<u16>() {
                Ok(p) if p > 0 && name_ok => Ok(s.to_string()),
                _ => Err(bad(s)),
            }
        })
        .collect()
}

/// Printable ASCII, at least [`crate::mesh::MIN_SECRET_LEN`] bytes; empty means unset.
fn opt_mesh_secret(v: Raw) -> Result<Option<String>, String> {
    let min = crate::mesh::MIN_SECRET_LEN;
    match text(v)?.trim() {
        "" => Ok(None),
        s if s.len() >= min && s.bytes().all(|b| b.is_ascii_graphic()) => Ok(Some(s.to_string())),
        _ => Err(format!(
            "at least {min} printable ASCII characters (e.g. `openssl rand -hex 32`)"
        )),
    }
}

/// An empty string is no URL.
fn public_url(v: Raw) -> Result<Option<String>, String> {
    let expected = "an http:// or https:// URL with no path, like https://overlay.example.com";
    match text(v)?.trim() {
        "" => Ok(None),
        url => origin_of(url).map(Some).ok_or(expected.into()),
    }
}

fn ip_nets(v: Raw) -> Result<Vec<IpNet>, String> {
    let list = strings(v)?;
    let bad = |s| format!("IP addresses or networks like 10.0.0.0/8 or ::1 ({s:?} is neither)");
    list.iter()
        .map(|s| IpNet::parse(s).ok_or_else(|| bad(s)))
        .collect()
}

fn level(v: Raw) -> Result<LevelFilter, String> {
    let expected = "one of error, warn, info, debug, trace, off";
    text(v)?.trim().parse().map_err(|_| expected.into())
}

fn environment(v: Raw) -> Result<super::Environment, String> {
    super::Environment::parse(text(v)?.trim()).ok_or_else(|| "development or production".into())
}

/// A `postgres://` or `postgresql://` URL; empty means SQLite only.
fn opt_postgres_url(v: Raw) -> Result<Option<String>, String> {
    match text(v)?.trim() {
        "" => Ok(None),
        u if u.starts_with("postgres://") || u.starts_with("postgresql://") => {
            Ok(Some(u.to_string()))
        }
        _ => Err("a postgres://user:password@host:port/database URL".into()),
    }
}

fn log_format(v: Raw) -> Result<LogFormat, String> {
    match text(v)?.trim() {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        _ => Err("text or json".into()),
    }
}

/// A TOML array of strings, or one comma-separated string.
pub(super) fn strings(v: Raw) -> Result<Vec<String>, String> {
    match v {
        Raw::Toml(Toml::SimpleArray(items)) => items
            .iter()
            .map(|t| match t {
                Toml::Str(s) => Ok(s.clone()),
                _ => Err("an array of strings".into()),
            })
            .collect(),
        _ => Ok(channel::parse_trigger_list(
            text(v).map_err(|_| "an array of strings")?,
        )),
    }
}

fn chat_source(v: Raw) -> Result<ChatSourceKind, String> {
    match text(v)?.trim() {
        "none" => Ok(ChatSourceKind::None),
        "irc" => Ok(ChatSourceKind::Irc),
        "eventsub-ws" => Ok(ChatSourceKind::EventSubWs),
        "eventsub-webhook" => Ok(ChatSourceKind::EventSubWebhook),
        _ => Err("one of none, irc, eventsub-ws, eventsub-webhook".into()),
    }
}

/// A credential: printable ASCII without spaces; empty means unset.
fn opt_token(v: Raw) -> Result<Option<String>, String> {
    match text(v)?.trim() {
        "" => Ok(None),
        t if t.bytes().all(|b| b.is_ascii_graphic()) => Ok(Some(t.to_string())),
        _ => Err("printable ASCII without spaces".into()),
    }
}

/// Like [`opt_token`]; an `oauth:` prefix (as IRC tools show tokens) is dropped.
fn opt_user_token(v: Raw) -> Result<Option<String>, String> {
    Ok(opt_token(v)?.map(|t| t.strip_prefix("oauth:").unwrap_or(&t).to_string()))
}

fn opt_user_id(v: Raw) -> Result<Option<String>, String> {
    match text(v)?.trim() {
        "" => Ok(None),
        id if id.len() <= 20 && id.bytes().all(|b| b.is_ascii_digit()) => Ok(Some(id.to_string())),
        _ => Err("a numeric Twitch user id".into()),
    }
}

/// Twitch's rule for webhook secrets: 10..=100 ASCII characters.
fn opt_webhook_secret(v: Raw) -> Result<Option<String>, String> {
    match text(v)?.trim() {
        "" => Ok(None),
        s if (10..=100).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_graphic()) => {
            Ok(Some(s.to_string()))
        }
        _ => Err("10 to 100 printable ASCII characters".into()),
    }
}

fn url_with(v: Raw, schemes: &[&str], expected: &str) -> Result<String, String> {
    let s = text(v)?.trim();
    let ok = schemes.iter().any(|p| {
        s.strip_prefix(p)
            .is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'))
    });
    match ok && !s.contains(char::is_whitespace) {
        true => Ok(s.trim_end_matches('/').to_string()),
        false => Err(expected.into()),
    }
}

fn http_url(v: Raw) -> Result<String, String> {
    url_with(v, &["https://", "http://"], "an http:// or https:// URL")
}

fn ws_url(v: Raw) -> Result<String, String> {
    url_with(v, &["wss://", "ws://"], "a ws:// or wss:// URL")
}

fn opt_https_url(v: Raw) -> Result<Option<String>, String> {
    match text(v)?.trim() {
        "" => Ok(None),
        _ => url_with(
            v,
            &["https://"],
            "an https:// URL (Twitch only calls HTTPS on port 443)",
        )
        .map(Some),
    }
}

fn auth_mode(v: Raw) -> Result<AuthMode, String> {
    match text(v)?.trim() {
        "home" => Ok(AuthMode::Home),
        "twitch" => Ok(AuthMode::Twitch),
        _ => Err("home or twitch".into()),
    }
}

fn secure_cookies(v: Raw) -> Result<SecureCookies, String> {
    match text(v)?.trim() {
        "auto" => Ok(SecureCookies::Auto),
        "always" => Ok(SecureCookies::Always),
        "never" => Ok(SecureCookies::Never),
        _ => Err("one of auto, always, never".into()),
    }
}

/// At least 32 printable ASCII characters (an HMAC key worth the name); empty means unset.
fn opt_session_secret(v: Raw) -> Result<Option<String>, String> {
    match text(v)?.trim() {
        "" => Ok(None),
        s if s.len() >= 32 && s.bytes().all(|b| b.is_ascii_graphic()) => Ok(Some(s.to_string())),
        _ => Err("at least 32 printable ASCII characters (e.g. `openssl rand -hex 32`)".into()),
    }
}

/// 64 hex characters = 32 bytes; empty means unset.
fn opt_encryption_key(v: Raw) -> Result<Option<[u8; 32]>, String> {
    let expected = || "64 hex characters (32 bytes, e.g. `openssl rand -hex 32`)".to_string();
    let s = text(v)?.trim();
    if s.is_empty() {
        return Ok(None);
    }
    if s.len() != 64 {
        return Err(expected());
    }
    let mut key = [0u8; 32];
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(s.get(2 * i..2 * i + 2).ok_or_else(expected)?, 16)
            .map_err(|_| expected())?;
    }
    Ok(Some(key))
}

/// An http(s) URL ending in `/auth/callback`; empty means unset.
fn opt_callback_url(v: Raw) -> Result<Option<String>, String> {
    let expected = "an http:// or https:// URL ending in /auth/callback";
    match text(v)?.trim() {
        "" => Ok(None),
        _ => match http_url(v) {
            Ok(url) if url.ends_with("/auth/callback") => Ok(Some(url)),
            _ => Err(expected.into()),
        },
    }
}

fn host_port(v: Raw) -> Result<String, String> {
    let s = text(v)?.trim();
    let expected = "host:port, like irc.chat.twitch.tv:6697";
    match s.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0) => Ok(s.to_string()),
        _ => Err(expected.into()),
    }
}

/// A DNS name a certificate can carry (what mesh peers verify each other as).
fn dns_name(v: Raw) -> Result<String, String> {
    let s = text(v)?.trim();
    let expected = "a DNS name like chatpulse-mesh";
    match rustls_pki_types::ServerName::try_from(s) {
        Ok(rustls_pki_types::ServerName::DnsName(_)) => Ok(s.to_string()),
        _ => Err(expected.into()),
    }
}

fn opt_path(v: Raw) -> Result<Option<PathBuf>, String> {
    match text(v)?.trim() {
        "" => Ok(None),
        p => Ok(Some(PathBuf::from(p))),
    }
}

fn boolean(v: Raw) -> Result<bool, String> {
    match (v, text(v).map(str::trim)) {
        (Raw::Toml(Toml::Bool(b)), _) => Ok(*b),
        (Raw::Text(_), Ok("true" | "1")) => Ok(true),
        (Raw::Text(_), Ok("false" | "0")) => Ok(false),
        _ => Err("true or false".into()),
    }
}

fn integer(v: Raw, range: RangeInclusive<u32>) -> Result<u32, String> {
    let n = match v {
        // Comparisons are false for NaN, so NaN falls through to None.
        Raw::Toml(Toml::Num(n)) if n.fract() == 0.0 && *n >= 0.0 && *n <= u32::MAX as f64 => {
            Some(*n as u32)
        }
        Raw::Text(s) => s.trim().parse().ok(),
        _ => None,
    };
    let expected = || format!("an integer in {}..={}", range.start(), range.end());
    n.filter(|n| range.contains(n)).ok_or_else(expected)
}

fn number(v: Raw, range: RangeInclusive<f64>) -> Result<f64, String> {
    let n = match v {
        Raw::Toml(Toml::Num(n)) => Some(*n),
        Raw::Text(s) => s.trim().parse().ok(),
        _ => None,
    };
    let expected = || format!("a number in {}..={}", range.start(), range.end());
    n.filter(|n| range.contains(n)).ok_or_else(expected)
}

fn duration(v: Raw, range: RangeInclusive<Duration>) -> Result<Duration, String> {
    let d = match v {
        Raw::Toml(Toml::Num(n)) if *n >= 0.0 && n.is_finite() => {
            Some(Duration::from_millis((n * 1000.0).round() as u64))
        }
        Raw::Toml(Toml::Num(_)) => None,
        _ => text(v).ok().and_then(parse_duration),
    };
    let (start, end) = (
        format_duration(*range.start()),
        format_duration(*range.end()),
    );
    let expected = || {
        format!(
            r#"a duration in {start}..={end} like "10s", "500ms", "2m", "1h", "7d" or a number of seconds"#
        )
    };
    d.filter(|d| range.contains(d)).ok_or_else(expected)
}

/// `"10s"`, `"500ms"`, `"2m"`, `"1h"`, `"7d"`, `"1.5s"`, or a bare number of seconds
/// (millisecond precision).
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (number, unit) = s.split_at(
        s.find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(s.len()),
    );
    let unit_ms = match unit.trim_start() {
        "ms" => 1.0,
        "" | "s" => 1000.0,
        "m" => 60_000.0,
        "h" => 3_600_000.0,
        "d" => 86_400_000.0,
        _ => return None,
    };
    let n: f64 = number.parse().ok()?;
    Some(Duration::from_millis((n * unit_ms).round() as u64))
}

/// The shortest exact form: `10s`, `500ms`, `2m`, `1h`, `7d`, `0s`.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    match ms {
        0 => "0s".into(),
        _ if ms.is_multiple_of(86_400_000) => format!("{}d", ms / 86_400_000),
        _ if ms.is_multiple_of(3_600_000) => format!("{}h", ms / 3_600_000),
        _ if ms.is_multiple_of(60_000) => format!("{}m", ms / 60_000),
        _ if ms.is_multiple_of(1000) => format!("{}s", ms / 1000),
        _ => format!("{ms}ms"),
    }
}

/// `https://Example.com:443/` → `https://example.com`; `None` if it has a path,
/// query, user or a bad port.
pub(super) fn origin_of(url: &str) -> Option<String> {
    let url = url.to_ascii_lowercase();
    let (scheme, rest) = url
        .split_once("://")
        .filter(|(s, _)| *s == "http" || *s == "https")?;
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.is_empty()
        || !authority
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-.:[]".contains(c))
    {
        return None;
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !port.ends_with(']') => {
            (host, Some(port.parse::<u16>().ok().filter(|&p| p > 0)?))
        }
        _ => (authority, None),
    };
    let bracketed = host.starts_with('[') && host.ends_with(']');
    if host.is_empty() || (host.contains(':') || host.contains('[')) && !bracketed {
        return None;
    }
    match (scheme, port) {
        (_, None) | ("http", Some(80)) | ("https", Some(443)) => Some(format!("{scheme}://{host}")),
        (_, Some(port)) => Some(format!("{scheme}://{host}:{port}")),
    }
}

/// Sets `key` (a [`KEYS`] name); errors show the value under the name the user wrote.
pub(super) fn set(
    config: &mut Config,
    key: &str,
    shown_as: &str,
    value: Raw,
) -> Result<(), ConfigError> {
    let Some(k) = KEYS.iter().find(|k| k.name == key) else {
        unreachable!("{key} is not in KEYS");
    };
    (k.set)(config, value).map_err(|expected| ConfigError::Invalid {
        key: shown_as.to_string(),
        // A refused credential is still a credential: it must not reach the log.
        value: match super::perms::SECRET_KEYS.contains(&key) {
            true => "(hidden)".to_string(),
            false => value.to_string(),
        },
        expected,
    })
}
