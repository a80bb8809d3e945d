//! `[[channel]]` tables → [`ChannelSeed`]s: known keys only, a Twitch login each (unique),
//! the model implied by `model` / `memory_seconds` / `decay_speed`, and the result
//! normalized and validated as an [`OverlayConfig`].

use std::collections::BTreeMap;

use nanoserde::Toml;

use super::keys::{Raw, strings, text};
use super::{ChannelSeed, ConfigError, suggest};
use crate::channel::{DisplayMode, OverlayConfig, Theme};
use crate::sentiment::{Memory, Model};

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

pub(super) fn channel_seeds(
    tables: &[BTreeMap<String, Toml>],
) -> Result<Vec<ChannelSeed>, ConfigError> {
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
