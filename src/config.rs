//! Startup configuration: defaults < TOML file < `CHATPULSE_*` environment < command
//! line, checked once into a typed [`Config`] that is then passed down as a value.
//! Every error names the key, the bad value and what is allowed.
//!
//! [`KEYS`] is the one table of scalar keys: the file name (`limits.max_connections`)
//! and the environment name (`CHATPULSE_LIMITS_MAX_CONNECTIONS`) both come from it.
//! `[[channel]]` tables are read by [`channel_seed`]. `config.example.toml` documents
//! every key; a test keeps it equal to the defaults.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use log::LevelFilter;
use nanoserde::{Toml, TomlParser};

use crate::channel::{self, DisplayMode, FieldError, OverlayConfig, Theme};
use crate::sentiment::{Memory, Model};

#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub server: ServerConfig,
    /// Where the stores live; relative to the working directory.
    pub data_dir: PathBuf,
    pub log: LogConfig,
    pub limits: LimitsConfig,
    pub votes: VotesConfig,
    pub shutdown: ShutdownConfig,
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
            },
            data_dir: PathBuf::from("chatpulse-data"),
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
        apply_file(&mut config, &parse_toml(&text, Some(&path))?)?;
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
    Ok(config)
}

/// The defaults overlaid with a TOML document (no environment).
pub fn from_toml_str(s: &str) -> Result<Config, ConfigError> {
    let mut config = Config::default();
    apply_file(&mut config, &parse_toml(s, None)?)?;
    Ok(config)
}

/// A scalar key: its `section.key` name and how to set it from a file or text value.
/// A setter's error is the "expected ..." part of [`ConfigError::Invalid`].
struct Key {
    name: &'static str,
    set: fn(&mut Config, Raw) -> Result<(), String>,
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
const KEYS: &[Key] = &[
    key!(data_dir, directory),
    key!(server.listen, socket_addr),
    key!(server.public_url, public_url),
    key!(server.trusted_proxies, ip_nets),
    key!(server.dev, boolean),
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
    key!(votes.debounce, duration, ms(0)..=ms(60_000)),
    key!(votes.bucket_capacity, integer, 1..=MAX_COUNT),
    key!(votes.bucket_refill_per_minute, integer, 1..=MAX_COUNT),
    key!(shutdown.drain_delay, duration, ms(0)..=ms(300_000)),
    key!(shutdown.timeout, duration, ms(100)..=ms(600_000)),
];

/// Short names kept for the most common settings, beside `CHATPULSE_SERVER_*`.
const ENV_ALIASES: &[(&str, &str)] = &[
    ("CHATPULSE_LISTEN", "server.listen"),
    ("CHATPULSE_PUBLIC_URL", "server.public_url"),
];

/// A value as found: a parsed TOML value, or text from the environment or a flag.
#[derive(Clone, Copy)]
enum Raw<'a> {
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

fn text<'a>(v: Raw<'a>) -> Result<&'a str, String> {
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

fn log_format(v: Raw) -> Result<LogFormat, String> {
    match text(v)?.trim() {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        _ => Err("text or json".into()),
    }
}

/// A TOML array of strings, or one comma-separated string.
fn strings(v: Raw) -> Result<Vec<String>, String> {
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
            r#"a duration in {start}..={end} like "10s", "500ms", "2m", "1h" or a number of seconds"#
        )
    };
    d.filter(|d| range.contains(d)).ok_or_else(expected)
}

/// `"10s"`, `"500ms"`, `"2m"`, `"1h"`, `"1.5s"`, or a bare number of seconds
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
        _ => return None,
    };
    let n: f64 = number.parse().ok()?;
    Some(Duration::from_millis((n * unit_ms).round() as u64))
}

/// The shortest exact form: `10s`, `500ms`, `2m`, `1h`, `0s`.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    match ms {
        0 => "0s".into(),
        _ if ms.is_multiple_of(3_600_000) => format!("{}h", ms / 3_600_000),
        _ if ms.is_multiple_of(60_000) => format!("{}m", ms / 60_000),
        _ if ms.is_multiple_of(1000) => format!("{}s", ms / 1000),
        _ => format!("{ms}ms"),
    }
}

/// `https://Example.com:443/` → `https://example.com`; `None` if it has a path,
/// query, user or a bad port.
fn origin_of(url: &str) -> Option<String> {
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

/// An IP network such as `10.0.0.0/8`; a bare address is a one-address network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// `10.0.0.0/8`, `127.0.0.1`, `::1/128`. Host bits may be set (`10.1.2.3/8`).
    pub fn parse(s: &str) -> Option<IpNet> {
        let (addr, prefix) = s
            .trim()
            .split_once('/')
            .map_or((s.trim(), None), |(a, p)| (a, Some(p)));
        let addr: IpAddr = addr.parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse().ok().filter(|&p| p <= max)?
            }
            Some(_) => return None,
        };
        // `::ffff:10.0.0.0/104` is kept as 10.0.0.0/8 so it matches peers of both forms.
        if let IpAddr::V6(v6) = addr
            && let Some(v4) = v6.to_ipv4_mapped()
            && prefix >= 96
        {
            return Some(IpNet {
                addr: IpAddr::V4(v4),
                prefix: prefix - 96,
            });
        }
        Some(IpNet { addr, prefix })
    }

    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// IPv4-mapped IPv6 peers (`::ffff:10.0.0.1`, as a dual-stack listener reports
    /// IPv4 clients) are matched as IPv4.
    pub fn contains(&self, ip: &IpAddr) -> bool {
        let (net, ip, bits) = match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                (u32::from(net) as u128, u32::from(ip) as u128, 32)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => (u128::from(net), u128::from(ip), 128),
            _ => return false,
        };
        let host_bits = bits - u32::from(self.prefix);
        net.checked_shr(host_bits).unwrap_or(0) == ip.checked_shr(host_bits).unwrap_or(0)
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Parses each table on its own, because nanoserde's parser carries the previous
/// `[table]` prefix into `[[channel]]` keys and sends every key after a
/// `[[channel]]` into that channel. Also refuses a key set twice across tables.
fn parse_toml(text: &str, path: Option<&Path>) -> Result<BTreeMap<String, Toml>, ConfigError> {
    let mut merged = BTreeMap::new();
    for (first_line, table) in split_tables(text) {
        let map = TomlParser::parse(&table).map_err(|e| ConfigError::Syntax {
            path: path.map(Path::to_path_buf),
            line: first_line + e.line + 1,
            message: e.msg.trim().to_string(),
        })?;
        for (key, mut value) in map {
            restore_empty_strings(&mut value);
            match merged.entry(key) {
                Entry::Vacant(slot) => {
                    slot.insert(value);
                }
                Entry::Occupied(mut slot) => match (slot.get_mut(), value) {
                    (Toml::Array(all), Toml::Array(more)) => all.extend(more),
                    _ => {
                        let what = format!("key {:?} is set more than once", slot.key());
                        return Err(ConfigError::Duplicate { what });
                    }
                },
            }
        }
    }
    Ok(merged)
}

/// Stands in for `""`, which nanoserde 0.2.1 cannot parse (it reads `""` as the
/// start of a `"""` string).
const EMPTY: &str = "\u{E000}";

/// Splits a document before each `[table]` / `[[table]]` header line (not inside a
/// multi-line array or `"""` string) and writes each `""` as `"`[`EMPTY`]`"`.
/// Yields (0-based first line, text) per table.
fn split_tables(text: &str) -> Vec<(usize, String)> {
    let (mut tables, mut table, mut start_line) = (Vec::new(), String::new(), 0);
    let (mut depth, mut in_long_string) = (0usize, false);
    for (n, line) in text.split_inclusive('\n').enumerate() {
        if depth == 0 && !in_long_string && line.trim_start().starts_with('[') {
            if !table.is_empty() {
                tables.push((start_line, std::mem::take(&mut table)));
            }
            start_line = n;
            table.push_str(line);
            continue;
        }
        let (b, mut i, mut copied) = (line.as_bytes(), 0, 0);
        while i < b.len() {
            match b[i] {
                b'\\' if in_long_string => i += 1,
                b'"' if b[i..].starts_with(br#"""""#) => {
                    in_long_string = !in_long_string;
                    i += 2;
                }
                _ if in_long_string => {}
                b'#' => break,
                b'[' => depth += 1,
                b']' => depth = depth.saturating_sub(1),
                b'"' if b[i..].starts_with(br#""""#) => {
                    table.push_str(&line[copied..=i]);
                    table.push_str(EMPTY);
                    (copied, i) = (i + 1, i + 1);
                }
                quote @ (b'"' | b'\'') => {
                    i += 1;
                    while i < b.len() && b[i] != quote && b[i] != b'\n' {
                        i += if quote == b'"' && b[i] == b'\\' { 2 } else { 1 };
                    }
                }
                _ => {}
            }
            i += 1;
        }
        table.push_str(&line[copied..]);
    }
    tables.push((start_line, table));
    tables
}

fn restore_empty_strings(value: &mut Toml) {
    match value {
        Toml::Str(s) if s == EMPTY => s.clear(),
        Toml::SimpleArray(items) => items.iter_mut().for_each(restore_empty_strings),
        Toml::Array(tables) => tables
            .iter_mut()
            .flat_map(|t| t.values_mut())
            .for_each(restore_empty_strings),
        _ => {}
    }
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

/// Sets `key` (a [`KEYS`] name); errors show the value under the name the user wrote.
fn set(config: &mut Config, key: &str, shown_as: &str, value: Raw) -> Result<(), ConfigError> {
    let Some(k) = KEYS.iter().find(|k| k.name == key) else {
        unreachable!("{key} is not in KEYS");
    };
    (k.set)(config, value).map_err(|expected| ConfigError::Invalid {
        key: shown_as.to_string(),
        value: value.to_string(),
        expected,
    })
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

const CHANNEL_KEYS: &[&str] = &[
    "login",
    "for_triggers",
    "against_triggers",
    "for_label",
    "against_label",
    "model",
    "memory_seconds",
    "decay_speed",
    "display_mode",
    "theme",
];

/// Reference spec §3.6 default for the decay model.
const DEFAULT_DECAY_SPEED: f64 = 0.5;

fn channel_seeds(tables: &[BTreeMap<String, Toml>]) -> Result<Vec<ChannelSeed>, ConfigError> {
    let mut seeds: Vec<ChannelSeed> = Vec::with_capacity(tables.len());
    for (index, table) in tables.iter().enumerate() {
        let seed = channel_seed(index, table)?;
        if let Some(first) = seeds.iter().position(|s| s.login == seed.login) {
            let what = format!(
                "channel login {:?} appears twice (channel[{first}] and channel[{index}])",
                seed.login
            );
            return Err(ConfigError::Duplicate { what });
        }
        seeds.push(seed);
    }
    Ok(seeds)
}

/// One `[[channel]]` table and its position, for error messages.
struct Table<'a> {
    index: usize,
    map: &'a BTreeMap<String, Toml>,
}

impl Table<'_> {
    fn key(&self, name: &str) -> String {
        format!("channel[{}].{name}", self.index)
    }

    fn invalid(&self, name: &str, value: &Toml, expected: impl Into<String>) -> ConfigError {
        let value = Raw::Toml(value).to_string();
        ConfigError::Invalid {
            key: self.key(name),
            value,
            expected: expected.into(),
        }
    }

    /// Parses `name` if present.
    fn get<T>(
        &self,
        name: &str,
        parse: impl FnOnce(Raw) -> Result<T, String>,
    ) -> Result<Option<T>, ConfigError> {
        let Some(value) = self.map.get(name) else {
            return Ok(None);
        };
        parse(Raw::Toml(value))
            .map(Some)
            .map_err(|expected| self.invalid(name, value, expected))
    }
}

/// One `[[channel]]` table; missing keys take [`OverlayConfig::default`].
fn channel_seed(index: usize, map: &BTreeMap<String, Toml>) -> Result<ChannelSeed, ConfigError> {
    let table = Table { index, map };
    if let Some(unknown) = map.keys().find(|k| !CHANNEL_KEYS.contains(&k.as_str())) {
        let suggestion = suggest(unknown, CHANNEL_KEYS.iter()).map(|s| table.key(&s));
        return Err(ConfigError::UnknownKey {
            key: table.key(unknown),
            suggestion,
        });
    }
    let login = table.get("login", |v| {
        let login = text(v)?.trim().to_ascii_lowercase();
        let valid = (1..=25).contains(&login.len())
            && login
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_');
        valid
            .then_some(login)
            .ok_or("a Twitch login: 1 to 25 letters, digits or underscores".into())
    })?;
    let login = login.ok_or_else(|| ConfigError::Missing {
        key: table.key("login"),
    })?;

    let mut config = OverlayConfig::default();
    if let Some(list) = table.get("for_triggers", strings)? {
        config.for_triggers = list;
    }
    if let Some(list) = table.get("against_triggers", strings)? {
        config.against_triggers = list;
    }
    if let Some(label) = table.get("for_label", |v| text(v).map(String::from))? {
        config.for_label = label;
    }
    if let Some(label) = table.get("against_label", |v| text(v).map(String::from))? {
        config.against_label = label;
    }
    let expected = r#""combined" or "split""#;
    if let Some(mode) = table.get("display_mode", |v| {
        text(v)
            .ok()
            .and_then(DisplayMode::parse)
            .ok_or(expected.into())
    })? {
        config.display_mode = mode;
    }
    let expected = r#""dark" or "light""#;
    if let Some(theme) = table.get("theme", |v| {
        text(v).ok().and_then(Theme::parse).ok_or(expected.into())
    })? {
        config.theme = theme;
    }
    config.model = channel_model(&table, config.model)?;
    config.normalize();
    config
        .validate()
        .map_err(|error| ConfigError::Channel { index, error })?;
    Ok(ChannelSeed { login, config })
}

/// `model` names the kind; without it, `decay_speed` implies decay, else window.
/// Range checks are left to [`OverlayConfig::validate`].
fn channel_model(table: &Table, default: Model) -> Result<Model, ConfigError> {
    let (memory, speed) = (
        table.map.get("memory_seconds"),
        table.map.get("decay_speed"),
    );
    let decay = match table.map.get("model") {
        Some(Toml::Str(s)) if s == "window" => false,
        Some(Toml::Str(s)) if s == "decay" => true,
        Some(other) => return Err(table.invalid("model", other, r#""window" or "decay""#)),
        None => speed.is_some(),
    };
    let default_memory = match default {
        Model::Window(memory) => memory,
        Model::Decay { .. } => Memory::Seconds(30),
    };
    match (decay, memory, speed) {
        (true, Some(m), _) => Err(table.invalid(
            "memory_seconds",
            m,
            r#"model = "window" (decay has no memory)"#,
        )),
        (false, _, Some(s)) => {
            Err(table.invalid("decay_speed", s, r#"model = "decay" (window has no speed)"#))
        }
        (true, None, Some(Toml::Num(speed))) => Ok(Model::Decay { speed: *speed }),
        (true, None, Some(s)) => Err(table.invalid("decay_speed", s, "a number in 0.1..=2.0")),
        (true, None, None) => Ok(Model::Decay {
            speed: DEFAULT_DECAY_SPEED,
        }),
        (false, Some(Toml::Num(n)), _)
            if n.fract() == 0.0 && *n >= 0.0 && *n <= u32::MAX as f64 =>
        {
            Ok(Model::Window(Memory::Seconds(*n as u32)))
        }
        (false, Some(Toml::Str(s)), _) if s == "infinite" => Ok(Model::Window(Memory::Infinite)),
        (false, Some(m), _) => Err(table.invalid(
            "memory_seconds",
            m,
            r#"an integer in 5..=120 or "infinite""#,
        )),
        (false, None, _) => Ok(Model::Window(default_memory)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(toml: &str) -> String {
        from_toml_str(toml).unwrap_err().to_string()
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn env_err(pairs: &[(&str, &str)]) -> String {
        load(&Overrides::default(), &env(pairs))
            .unwrap_err()
            .to_string()
    }

    /// A config file in the temp dir, removed when dropped.
    struct TempFile(PathBuf);

    impl TempFile {
        fn new(name: &str, text: &str) -> TempFile {
            let path =
                std::env::temp_dir().join(format!("chatpulse-{}-{name}.toml", std::process::id()));
            std::fs::write(&path, text).unwrap();
            TempFile(path)
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    #[test]
    fn defaults_without_file_or_env() {
        let c = load(
            &Overrides::default(),
            &env(&[("PATH", "/bin"), ("RUST_LOG", "chatpulse=debug")]),
        )
        .unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(from_toml_str("").unwrap(), c);
        assert_eq!(c.server.listen.to_string(), "0.0.0.0:8080");
        assert_eq!(c.data_dir, Path::new("chatpulse-data"));
        assert_eq!(
            (c.log.level, c.log.format),
            (LevelFilter::Info, LogFormat::Text)
        );
        assert_eq!(c.limits.http_head_timeout, Duration::from_secs(10));
        assert_eq!(c.votes.debounce, Duration::from_secs(1));
        assert_eq!(
            (c.shutdown.drain_delay, c.shutdown.timeout),
            (Duration::ZERO, Duration::from_secs(10))
        );
    }

    #[test]
    fn every_section() {
        let c = from_toml_str(
            r#"
            data_dir = "/var/lib/chatpulse"
            [server]
            listen = "[::]:9000"
            public_url = "HTTPS://Overlay.Example.com:443/"
            trusted_proxies = ["10.0.0.0/8", "::1"]
            dev = true
            [log]
            level = "debug"
            format = "json"
            [limits]
            max_connections = 500
            max_connections_per_ip = 5
            connection_rate_per_ip = 2.5
            connection_burst_per_ip = 3
            max_overlays_per_broadcaster = 7
            outbox_messages = 32
            ws_max_message_bytes = 1024
            http_head_timeout = "500ms"
            [votes]
            debounce = 0
            bucket_capacity = 10
            bucket_refill_per_minute = 60
            [shutdown]
            drain_delay = "15s"
            timeout = 30
            "#,
        )
        .unwrap();
        let s = &c.server;
        assert_eq!(s.listen, "[::]:9000".parse().unwrap());
        assert_eq!(s.public_url.as_deref(), Some("https://overlay.example.com"));
        assert_eq!(
            s.trusted_proxies,
            [
                IpNet::parse("10.0.0.0/8").unwrap(),
                IpNet::parse("::1").unwrap()
            ]
        );
        assert!(s.dev);
        assert_eq!(c.data_dir, Path::new("/var/lib/chatpulse"));
        assert_eq!(
            c.log,
            LogConfig {
                level: LevelFilter::Debug,
                format: LogFormat::Json
            }
        );
        let l = &c.limits;
        assert_eq!(
            (
                l.max_connections,
                l.max_connections_per_ip,
                l.connection_rate_per_ip
            ),
            (500, 5, 2.5)
        );
        assert_eq!(
            (l.connection_burst_per_ip, l.max_overlays_per_broadcaster),
            (3, 7)
        );
        assert_eq!((l.outbox_messages, l.ws_max_message_bytes), (32, 1024));
        assert_eq!(l.http_head_timeout, Duration::from_millis(500));
        let v = &c.votes;
        assert_eq!(
            (v.debounce, v.bucket_capacity, v.bucket_refill_per_minute),
            (Duration::ZERO, 10, 60)
        );
        assert_eq!(c.shutdown.drain_delay, Duration::from_secs(15));
        assert_eq!(c.shutdown.timeout, Duration::from_secs(30));
    }

    #[test]
    fn bad_values_name_key_value_and_range() {
        let cases = [
            (
                "[limits]\nmax_connections = -3",
                "limits.max_connections = -3: expected an integer in 1..=1000000",
            ),
            (
                "[limits]\nmax_connections = 1.5",
                "limits.max_connections = 1.5: expected an integer in 1..=1000000",
            ),
            (
                "[limits]\noutbox_messages = 5000",
                "limits.outbox_messages = 5000: expected an integer in 1..=4096",
            ),
            (
                "[limits]\nmax_connections = \"100\"",
                "limits.max_connections = \"100\": expected an integer in 1..=1000000",
            ),
            (
                "[limits]\nconnection_rate_per_ip = nan",
                "limits.connection_rate_per_ip = NaN: expected a number",
            ),
            (
                "[server]\nlisten = \"8080\"",
                "server.listen = \"8080\": expected an address and port",
            ),
            (
                "[server]\ndev = \"yes\"",
                "server.dev = \"yes\": expected true or false",
            ),
            (
                "[server]\npublic_url = \"https://x.com/overlay\"",
                "server.public_url = \"https://x.com/overlay\"",
            ),
            (
                "[server]\ntrusted_proxies = [\"10.0.0/8\"]",
                "(\"10.0.0/8\" is neither)",
            ),
            (
                "[log]\nlevel = \"loud\"",
                "log.level = \"loud\": expected one of error, warn, info, debug, trace, off",
            ),
            (
                "[log]\nformat = \"xml\"",
                "log.format = \"xml\": expected text or json",
            ),
            (
                "[shutdown]\ntimeout = \"1d\"",
                "shutdown.timeout = \"1d\": expected a duration in 100ms..=10m like",
            ),
            (
                "[votes]\ndebounce = \"2m\"",
                "votes.debounce = \"2m\": expected a duration in 0s..=1m",
            ),
            (
                "[votes]\ndebounce = -1",
                "votes.debounce = -1: expected a duration",
            ),
            (
                "data_dir = \"\"",
                "data_dir = \"\": expected a directory path",
            ),
        ];
        for (toml, expected) in cases {
            let e = err(toml);
            assert!(
                e.starts_with("config: ") && e.contains(expected),
                "{toml:?}: {e}"
            );
        }
    }

    #[test]
    fn unknown_keys_and_syntax_errors() {
        let e = err("[limits]\nmax_conections = 5");
        assert_eq!(
            e,
            r#"config: unknown key "limits.max_conections" (did you mean "limits.max_connections"?)"#
        );
        assert_eq!(
            err("[limits]\nfoo = 5"),
            r#"config: unknown key "limits.foo""#
        );
        assert!(err("[channel]\nlogin = \"a\"").contains(r#"(did you mean "[[channel]]"?)"#));
        assert_eq!(
            err("a = 1\n\nb = = 2\n"),
            "config: line 3: Unexpected token Equals"
        );
        let e = err("[server]\ndev = true\n[log]\nlevel = 'info'\n");
        assert!(e.starts_with("config: line 4: Cannot parse toml"), "{e}");
        let e = err("[server]\ndev = true\n[server]\ndev = false\n");
        assert_eq!(e, r#"config: key "server.dev" is set more than once"#);
    }

    #[test]
    fn file_errors_name_the_file() {
        let file = TempFile::new("syntax", "[limits]\nmax_connections = = 1\n");
        let overrides = Overrides {
            config_path: Some(file.0.clone()),
            ..Overrides::default()
        };
        let e = load(&overrides, &[]).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "config: file {}: line 2: Unexpected token Equals",
                file.0.display()
            )
        );
        let missing = Overrides {
            config_path: Some("/nonexistent/chatpulse.toml".into()),
            ..Overrides::default()
        };
        let e = load(&missing, &[]).unwrap_err();
        assert!(
            matches!(e, ConfigError::Read { .. })
                && e.to_string().starts_with("config: file /nonexistent/")
        );
    }

    #[test]
    fn env_overrides_file_and_command_line_overrides_env() {
        let file = TempFile::new(
            "precedence",
            "data_dir = \"from-file\"\n[limits]\nmax_connections = 5\n",
        );
        let vars = env(&[
            ("CHATPULSE_CONFIG", file.0.to_str().unwrap()),
            ("CHATPULSE_LIMITS_MAX_CONNECTIONS", "6"),
            ("CHATPULSE_LISTEN", "127.0.0.1:1"),
            ("CHATPULSE_SHUTDOWN_DRAIN_DELAY", "5s"),
            ("CHATPULSE_SERVER_TRUSTED_PROXIES", "127.0.0.1, 10.0.0.0/8"),
            ("CHATPULSE_SERVER_DEV", "1"),
            ("CHATPULSE_LOG_FORMAT", "json"),
            ("CHATPULSE_PUBLIC_URL", "http://localhost:8080"),
            ("CHATPULSE_TEST_ANYTHING", "ignored"),
            ("CHATPULSE_BENCH_CLIENTS", "ignored"),
        ]);
        let c = load(&Overrides::default(), &vars).unwrap();
        assert_eq!(c.data_dir, Path::new("from-file"));
        assert_eq!(c.limits.max_connections, 6);
        assert_eq!(c.server.listen.to_string(), "127.0.0.1:1");
        assert_eq!(c.shutdown.drain_delay, Duration::from_secs(5));
        assert_eq!(c.server.trusted_proxies.len(), 2);
        assert!(c.server.dev);
        assert_eq!(c.log.format, LogFormat::Json);
        assert_eq!(
            c.server.public_url.as_deref(),
            Some("http://localhost:8080")
        );

        let cli = Overrides {
            config_path: None,
            listen: Some("127.0.0.1:2".into()),
            data_dir: Some("cli".into()),
        };
        let c = load(&cli, &vars).unwrap();
        assert_eq!(c.limits.max_connections, 6);
        assert_eq!(
            (c.server.listen.to_string(), c.data_dir),
            ("127.0.0.1:2".into(), PathBuf::from("cli"))
        );
        let other = TempFile::new("precedence-cli", "[limits]\nmax_connections = 7\n");
        let cli = Overrides {
            config_path: Some(other.0.clone()),
            ..Overrides::default()
        };
        let c = load(&cli, &vars[..1]).unwrap();
        assert_eq!(
            (c.limits.max_connections, c.data_dir),
            (7, Config::default().data_dir),
            "--config wins"
        );
        let bad = Overrides {
            listen: Some("nope".into()),
            ..Overrides::default()
        };
        let e = load(&bad, &[]).unwrap_err().to_string();
        assert!(
            e.starts_with(r#"config: --listen = "nope": expected an address and port"#),
            "{e}"
        );
    }

    #[test]
    fn env_errors() {
        let e = env_err(&[("CHATPULSE_LIMITS_MAX_CONNECTIONS", "-3")]);
        assert_eq!(
            e,
            r#"config: CHATPULSE_LIMITS_MAX_CONNECTIONS = "-3": expected an integer in 1..=1000000"#
        );
        let e = env_err(&[("CHATPULSE_LIMITS_MAX_CONECTIONS", "3")]);
        assert_eq!(
            e,
            "config: unknown environment variable CHATPULSE_LIMITS_MAX_CONECTIONS \
             (did you mean \"CHATPULSE_LIMITS_MAX_CONNECTIONS\"?)"
        );
        assert!(
            env_err(&[("CHATPULSE_CONFG", "x")]).ends_with(r#"(did you mean "CHATPULSE_CONFIG"?)"#)
        );
        assert!(env_err(&[("CHATPULSE_FOO", "x")]).ends_with("CHATPULSE_FOO"));
        let e = env_err(&[
            ("CHATPULSE_LISTEN", "127.0.0.1:1"),
            ("CHATPULSE_SERVER_LISTEN", "127.0.0.1:2"),
        ]);
        assert_eq!(
            e,
            "config: server.listen is set by both CHATPULSE_LISTEN and CHATPULSE_SERVER_LISTEN"
        );
    }

    #[test]
    fn log_level_from_rust_log_and_chatpulse_log_level() {
        let level =
            |pairs: &[(&str, &str)]| load(&Overrides::default(), &env(pairs)).unwrap().log.level;
        assert_eq!(level(&[("RUST_LOG", "debug")]), LevelFilter::Debug);
        assert_eq!(level(&[("RUST_LOG", "WARN")]), LevelFilter::Warn);
        assert_eq!(level(&[("RUST_LOG", "chatpulse=trace")]), LevelFilter::Info);
        assert_eq!(
            level(&[("RUST_LOG", "debug"), ("CHATPULSE_LOG_LEVEL", "error")]),
            LevelFilter::Error
        );
        assert_eq!(level(&[("CHATPULSE_LOG_LEVEL", "off")]), LevelFilter::Off);
    }

    #[test]
    fn durations() {
        let ms = |s: &str| parse_duration(s).map(|d| d.as_millis());
        assert_eq!(ms("10s"), Some(10_000));
        assert_eq!(ms("500ms"), Some(500));
        assert_eq!(ms("2m"), Some(120_000));
        assert_eq!(ms("1h"), Some(3_600_000));
        assert_eq!(ms("15"), Some(15_000));
        assert_eq!(ms(" 1.5s "), Some(1500));
        assert_eq!(ms("0.25"), Some(250));
        for bad in ["", "s", "10 d", "-1s", "1e3", "1.2.3s", "ten", "10sec"] {
            assert_eq!(ms(bad), None, "{bad:?}");
        }
        for (d, s) in [
            (0, "0s"),
            (500, "500ms"),
            (1500, "1500ms"),
            (10_000, "10s"),
            (120_000, "2m"),
        ] {
            assert_eq!(format_duration(Duration::from_millis(d)), s);
        }
        let c = from_toml_str("[limits]\nhttp_head_timeout = 2.5").unwrap();
        assert_eq!(c.limits.http_head_timeout, Duration::from_millis(2500));
    }

    #[test]
    fn public_urls_are_stored_as_origins() {
        let cases = [
            (
                "https://Overlay.Example.com/",
                Some("https://overlay.example.com"),
            ),
            ("http://localhost:8080", Some("http://localhost:8080")),
            ("http://x.org:80", Some("http://x.org")),
            ("https://[::1]:8443", Some("https://[::1]:8443")),
            ("https://[::1]", Some("https://[::1]")),
            ("https://x.org/path", None),
            ("https://x.org?q", None),
            ("https://user@x.org", None),
            ("https://x.org:0", None),
            ("https://x.org:99999", None),
            ("https://::1", None),
            ("ftp://x.org", None),
            ("x.org", None),
            ("https://", None),
        ];
        for (url, origin) in cases {
            assert_eq!(origin_of(url).as_deref(), origin, "{url}");
        }
        let c = load(&Overrides::default(), &env(&[("CHATPULSE_PUBLIC_URL", "")])).unwrap();
        assert_eq!(c.server.public_url, None);
    }

    #[test]
    fn ip_networks() {
        let net = |s| IpNet::parse(s).unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(net("10.0.0.0/8").contains(&ip("10.255.0.1")));
        assert!(!net("10.0.0.0/8").contains(&ip("11.0.0.1")));
        assert!(net("10.1.2.3/8").contains(&ip("10.9.9.9")));
        assert!(net("127.0.0.1").contains(&ip("127.0.0.1")));
        assert!(!net("127.0.0.1").contains(&ip("127.0.0.2")));
        assert!(net("0.0.0.0/0").contains(&ip("8.8.8.8")));
        assert!(!net("0.0.0.0/0").contains(&ip("::1")));
        assert!(net("::1/128").contains(&ip("::1")));
        assert!(net("fd00::/8").contains(&ip("fdab::1")));
        assert!(net("::/0").contains(&ip("2001:db8::1")));
        // A dual-stack listener reports IPv4 peers as IPv4-mapped IPv6.
        assert!(net("10.0.0.0/8").contains(&ip("::ffff:10.0.0.1")));
        assert!(net("::ffff:10.0.0.0/104").contains(&ip("10.0.0.1")));
        assert!(!net("::ffff:10.0.0.0/104").contains(&ip("11.0.0.1")));
        assert_eq!(net("::ffff:10.0.0.0/104").to_string(), "10.0.0.0/8");
        assert_eq!((net("::1").addr(), net("::1").prefix()), (ip("::1"), 128));
        for bad in [
            "10.0.0.0/33",
            "::1/129",
            "10.0.0/8",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "host",
            "",
        ] {
            assert_eq!(IpNet::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn channels_with_lists_strings_and_models() {
        let c = from_toml_str(
            r#"
            [shutdown]
            timeout = "5s"

            [[channel]]
            login = "Some_Streamer"
            for_triggers = [" yes", "Y", "yes"]
            against_triggers = "no, n,, 2"
            memory_seconds = "infinite"
            display_mode = "split"
            theme = "light"

            [[channel]]
            login = "decayer"
            decay_speed = 1.5
            for_label = ""

            [[channel]]
            login = "plain"
            model = "decay"

            [log]
            level = "warn"
            "#,
        )
        .unwrap();
        assert_eq!(c.shutdown.timeout, Duration::from_secs(5));
        assert_eq!(
            c.log.level,
            LevelFilter::Warn,
            "a section after [[channel]] is not swallowed"
        );
        let [a, b, p] = &c.channels[..] else {
            panic!("{:?}", c.channels)
        };
        assert_eq!(a.login, "some_streamer");
        assert_eq!(a.config.for_triggers, ["yes", "Y"]);
        assert_eq!(a.config.against_triggers, ["no", "n", "2"]);
        assert_eq!(a.config.model, Model::Window(Memory::Infinite));
        assert_eq!(
            (a.config.display_mode, a.config.theme),
            (DisplayMode::Split, Theme::Light)
        );
        assert_eq!(b.config.model, Model::Decay { speed: 1.5 });
        assert_eq!(
            (b.config.for_label.as_str(), b.config.against_label.as_str()),
            ("", "Against")
        );
        assert_eq!(p.config.model, Model::Decay { speed: 0.5 });
        let window = from_toml_str("[[channel]]\nlogin = \"w\"\nmemory_seconds = 90").unwrap();
        assert_eq!(
            window.channels[0].config.model,
            Model::Window(Memory::Seconds(90))
        );
        let default = from_toml_str("[[channel]]\nlogin = \"d\"").unwrap();
        assert_eq!(default.channels[0].config, OverlayConfig::default());
    }

    #[test]
    fn bad_channels() {
        let ch = |body: &str| err(&format!("[[channel]]\nlogin = \"a\"\n{body}"));
        assert_eq!(
            ch("for_triggers = []"),
            "config: channel[0].for_triggers: for trigger cannot be empty"
        );
        assert_eq!(
            ch("against_triggers = [\"YES\"]"),
            r#"config: channel[0].for_triggers: for and against triggers must be different (shared: "yes")"#
        );
        let e = ch("memory_seconds = 121");
        assert_eq!(
            e,
            "config: channel[0].memory_seconds: memory seconds must be between 5 and 120"
        );
        let e = ch("decay_speed = nan");
        assert_eq!(
            e,
            "config: channel[0].decay_speed: decay speed must be between 0.1 and 2.0"
        );
        assert!(
            ch("memory_seconds = \"forever\"")
                .contains(r#"expected an integer in 5..=120 or "infinite""#)
        );
        assert!(
            ch("model = \"window\"\ndecay_speed = 1")
                .starts_with("config: channel[0].decay_speed = 1:")
        );
        assert!(
            ch("memory_seconds = 30\ndecay_speed = 1")
                .starts_with("config: channel[0].memory_seconds = 30:")
        );
        assert!(ch("model = \"linear\"").contains(r#"expected "window" or "decay""#));
        assert!(
            ch("theme = \"Dark\"")
                .contains(r#"channel[0].theme = "Dark": expected "dark" or "light""#)
        );
        assert!(ch("display_mode = 1").contains(r#"expected "combined" or "split""#));
        assert!(
            ch("for_triggers = [1]")
                .contains("channel[0].for_triggers = [1]: expected an array of strings")
        );
        let e = ch("them = \"dark\"");
        assert_eq!(
            e,
            r#"config: unknown key "channel[0].them" (did you mean "channel[0].theme"?)"#
        );
        assert_eq!(
            err("[[channel]]\ntheme = \"dark\""),
            "config: channel[0].login is required"
        );
        assert!(err("[[channel]]\nlogin = \"not a login\"").contains("expected a Twitch login"));
        assert!(
            err(&format!("[[channel]]\nlogin = \"{}\"", "a".repeat(26)))
                .contains("expected a Twitch login")
        );
        let e = err(
            "[[channel]]\nlogin = \"Dup\"\n[[channel]]\nlogin = \"x\"\n[[channel]]\nlogin = \"dup\"",
        );
        assert_eq!(
            e,
            r#"config: channel login "dup" appears twice (channel[0] and channel[2])"#
        );
    }

    #[test]
    fn tables_split_outside_strings_and_arrays() {
        let doc = "a = [\n  \"x\",\n  [1],\n]\nb = \"\"\"\n[not]\n\"\"\"\n# [c]\n[t]\nk = \"[\" # ]\n[[u]]\n";
        let lines: Vec<usize> = split_tables(doc).iter().map(|(line, _)| *line).collect();
        assert_eq!(lines, [0, 8, 10]);
        assert_eq!(
            split_tables("[t]\nk = 1\n"),
            [(0, "[t]\nk = 1\n".to_string())]
        );
        assert_eq!(split_tables(""), [(0, String::new())]);
    }

    #[test]
    fn empty_strings() {
        let c = from_toml_str(
            "[server]\npublic_url = \"\"\n[[channel]]\nlogin = \"a\"\nfor_label = \"\" # none",
        )
        .unwrap();
        assert_eq!(
            (c.server.public_url, c.channels[0].config.for_label.as_str()),
            (None, "")
        );
        assert_eq!(
            err("data_dir = \"\""),
            r#"config: data_dir = "": expected a directory path"#
        );
        let e = err("[[channel]]\nlogin = \"a\"\nagainst_triggers = [\"no\", \"\"]");
        assert_eq!(
            e,
            "config: channel[0].against_triggers: against trigger cannot be empty"
        );
        // Escaped quotes are not an empty string.
        assert_eq!(
            from_toml_str(r#"data_dir = "a\"\"""#).unwrap().data_dir,
            Path::new(r#"a"""#)
        );
    }

    #[test]
    fn example_file_is_the_defaults_plus_one_channel() {
        let text = include_str!("../config.example.toml");
        let c = from_toml_str(text).unwrap();
        let overlay = OverlayConfig {
            for_triggers: vec!["yes".into(), "y".into(), "1".into()],
            against_triggers: vec!["no".into(), "n".into(), "2".into()],
            ..OverlayConfig::default()
        };
        let seed = ChannelSeed {
            login: "your_channel".into(),
            config: overlay,
        };
        assert_eq!(
            c,
            Config {
                channels: vec![seed],
                ..Config::default()
            }
        );
        // Every key is documented, in the table's order.
        let mut at = 0;
        for key in KEYS {
            let leaf = key.name.rsplit('.').next().unwrap();
            let found = text[at..]
                .find(&format!("\n{leaf} ="))
                .or_else(|| text[at..].find(&format!("# {leaf} =")));
            at += found.unwrap_or_else(|| panic!("{} is not documented in order", key.name));
        }
    }
}
