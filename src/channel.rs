//! A streamer's overlay settings ([`OverlayConfig`]) and the rules they must pass
//! before they are stored or shown: [`OverlayConfig::normalize`] then
//! [`OverlayConfig::validate`]. The messages are the catalogued ones of the
//! reference spec §3.5 (lengths are bytes, not characters), adapted to trigger lists.
use std::fmt;

use crate::sentiment::{Memory, Model};

/// Most triggers per side: each chat message is matched against every trigger.
pub const MAX_TRIGGERS: usize = 20;
/// Longest trigger, in bytes (after trimming).
pub const MAX_TRIGGER_BYTES: usize = 500;
/// Longest label, in bytes (after trimming); empty labels are allowed.
pub const MAX_LABEL_BYTES: usize = 50;
/// Window memory bounds, in seconds ([`Memory::Infinite`] is also allowed).
pub const MEMORY_SECONDS: std::ops::RangeInclusive<u32> = 5..=120;
/// Decay speed bounds, per second.
pub const DECAY_SPEED: std::ops::RangeInclusive<f64> = 0.1..=2.0;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DisplayMode {
    Combined,
    Split,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Theme {
    Dark,
    Light,
}

/// Everything a streamer can change about their overlay.
#[derive(Clone, Debug, PartialEq)]
pub struct OverlayConfig {
    pub for_triggers: Vec<String>,
    pub against_triggers: Vec<String>,
    pub for_label: String,
    pub against_label: String,
    pub model: Model,
    pub display_mode: DisplayMode,
    pub theme: Theme,
}

impl Default for OverlayConfig {
    fn default() -> Self {
        OverlayConfig {
            for_triggers: vec!["yes".into()],
            against_triggers: vec!["no".into()],
            for_label: "For".into(),
            against_label: "Against".into(),
            model: Model::Window(Memory::Seconds(30)),
            display_mode: DisplayMode::Combined,
            theme: Theme::Dark,
        }
    }
}

/// A streamer as stored: identity plus the secret overlay token.
#[derive(Clone, Debug, PartialEq)]
pub struct Streamer {
    /// SQLite row id (local to this node).
    pub id: i64,
    /// Lower-case Twitch login; the broadcaster key used everywhere else.
    pub login: String,
    pub display_name: String,
    pub twitch_user_id: Option<String>,
    /// 128-bit random, URL-safe base64 (22 chars).
    pub overlay_token: String,
    pub config_version: i64,
}

impl DisplayMode {
    pub fn as_str(self) -> &'static str {
        match self {
            DisplayMode::Combined => "combined",
            DisplayMode::Split => "split",
        }
    }

    /// Exact, lower-case names only (as stored and as sent by the dashboard).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "combined" => Some(DisplayMode::Combined),
            "split" => Some(DisplayMode::Split),
            _ => None,
        }
    }
}

impl Theme {
    pub fn as_str(self) -> &'static str {
        match self {
            Theme::Dark => "dark",
            Theme::Light => "light",
        }
    }

    /// Exact, lower-case names only.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "dark" => Some(Theme::Dark),
            "light" => Some(Theme::Light),
            _ => None,
        }
    }
}

/// One broken rule: which field, and the user-facing message. `Display` shows only
/// the message (that is what the dashboard gets back); `field` lets callers point at
/// the input, e.g. `channel[0].for_triggers` in config errors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// `for_triggers`, `against_triggers`, `for_label`, `against_label`,
    /// `memory_seconds` or `decay_speed`.
    pub field: &'static str,
    pub message: String,
}

impl FieldError {
    fn new(field: &'static str, message: impl Into<String>) -> Self {
        FieldError {
            field,
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for FieldError {}

impl OverlayConfig {
    /// Trims triggers and labels and drops triggers repeated (case-insensitively)
    /// within one side, keeping the first. Empty triggers are kept so that
    /// [`validate`](Self::validate) reports them.
    pub fn normalize(&mut self) {
        for list in [&mut self.for_triggers, &mut self.against_triggers] {
            let mut seen: Vec<String> = Vec::with_capacity(list.len());
            list.retain_mut(|t| {
                *t = t.trim().to_string();
                let key = t.to_lowercase();
                let new = !seen.contains(&key);
                seen.push(key);
                new
            });
        }
        self.for_label = self.for_label.trim().to_string();
        self.against_label = self.against_label.trim().to_string();
    }

    /// Checks every rule, first failure wins. Values are judged trimmed; call
    /// [`normalize`](Self::normalize) first so repeats within a side do not count
    /// against [`MAX_TRIGGERS`].
    pub fn validate(&self) -> Result<(), FieldError> {
        check_triggers("for", "for_triggers", &self.for_triggers)?;
        check_triggers("against", "against_triggers", &self.against_triggers)?;
        let against: Vec<String> = self
            .against_triggers
            .iter()
            .map(|t| t.trim().to_lowercase())
            .collect();
        if let Some(shared) = self
            .for_triggers
            .iter()
            .find(|t| against.contains(&t.trim().to_lowercase()))
        {
            let message = format!(
                "for and against triggers must be different (shared: {:?})",
                shared.trim()
            );
            return Err(FieldError::new("for_triggers", message));
        }
        check_label("for", "for_label", &self.for_label)?;
        check_label("against", "against_label", &self.against_label)?;
        match self.model {
            Model::Window(Memory::Seconds(s)) if !MEMORY_SECONDS.contains(&s) => Err(
                FieldError::new("memory_seconds", "memory seconds must be between 5 and 120"),
            ),
            // `contains` is false for NaN and the infinities.
            Model::Decay { speed } if !DECAY_SPEED.contains(&speed) => Err(FieldError::new(
                "decay_speed",
                "decay speed must be between 0.1 and 2.0",
            )),
            _ => Ok(()),
        }
    }
}

/// Splits a comma-separated form or config value into triggers: trimmed, empties
/// dropped (`"yes, y,,1"` → `["yes", "y", "1"]`).
pub fn parse_trigger_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(String::from)
        .collect()
}

fn check_triggers(side: &str, field: &'static str, triggers: &[String]) -> Result<(), FieldError> {
    if triggers.is_empty() || triggers.iter().any(|t| t.trim().is_empty()) {
        return Err(FieldError::new(
            field,
            format!("{side} trigger cannot be empty"),
        ));
    }
    if triggers.len() > MAX_TRIGGERS {
        let message = format!("too many {side} triggers (at most {MAX_TRIGGERS})");
        return Err(FieldError::new(field, message));
    }
    if triggers.iter().any(|t| t.trim().len() > MAX_TRIGGER_BYTES) {
        let message = format!("{side} trigger exceeds {MAX_TRIGGER_BYTES} characters");
        return Err(FieldError::new(field, message));
    }
    Ok(())
}

fn check_label(side: &str, field: &'static str, label: &str) -> Result<(), FieldError> {
    if label.trim().len() > MAX_LABEL_BYTES {
        let message = format!("{side} label exceeds {MAX_LABEL_BYTES} characters");
        return Err(FieldError::new(field, message));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(f: impl FnOnce(&mut OverlayConfig)) -> OverlayConfig {
        let mut c = OverlayConfig::default();
        f(&mut c);
        c
    }

    fn field_of(c: &OverlayConfig) -> (&'static str, String) {
        let e = c.validate().unwrap_err();
        (e.field, e.to_string())
    }

    #[test]
    fn default_is_valid() {
        assert_eq!(OverlayConfig::default().validate(), Ok(()));
    }

    #[test]
    fn names_round_trip() {
        for m in [DisplayMode::Combined, DisplayMode::Split] {
            assert_eq!(DisplayMode::parse(m.as_str()), Some(m));
        }
        for t in [Theme::Dark, Theme::Light] {
            assert_eq!(Theme::parse(t.as_str()), Some(t));
        }
        assert_eq!(DisplayMode::parse("Split"), None);
        assert_eq!(Theme::parse(""), None);
    }

    #[test]
    fn empty_trigger_lists_and_blank_triggers() {
        let c = with(|c| c.for_triggers.clear());
        assert_eq!(
            field_of(&c),
            ("for_triggers", "for trigger cannot be empty".into())
        );
        let c = with(|c| c.against_triggers = vec!["no".into(), "  ".into()]);
        assert_eq!(
            field_of(&c),
            ("against_triggers", "against trigger cannot be empty".into())
        );
    }

    #[test]
    fn at_most_twenty_triggers() {
        let c = with(|c| c.for_triggers = (0..20).map(|i| format!("y{i}")).collect());
        assert_eq!(c.validate(), Ok(()));
        let c = with(|c| c.against_triggers = (0..21).map(|i| format!("n{i}")).collect());
        assert_eq!(field_of(&c).0, "against_triggers");
    }

    #[test]
    fn trigger_length_is_bytes_after_trim() {
        let c = with(|c| c.for_triggers = vec![format!("  {}  ", "a".repeat(500))]);
        assert_eq!(c.validate(), Ok(()));
        // 250 two-byte characters: 500 bytes is fine, one more byte is not.
        let c = with(|c| c.for_triggers = vec![format!("{}a", "é".repeat(250))]);
        assert_eq!(
            field_of(&c),
            ("for_triggers", "for trigger exceeds 500 characters".into())
        );
        let c = with(|c| c.against_triggers = vec!["x".repeat(501)]);
        assert_eq!(
            field_of(&c),
            (
                "against_triggers",
                "against trigger exceeds 500 characters".into()
            )
        );
    }

    #[test]
    fn sides_must_not_share_a_trigger() {
        let c = with(|c| c.against_triggers = vec!["no".into(), " YES ".into()]);
        let expected = "for and against triggers must be different (shared: \"yes\")";
        assert_eq!(field_of(&c), ("for_triggers", expected.into()));
    }

    #[test]
    fn labels_at_most_fifty_bytes_and_may_be_empty() {
        let c = with(|c| c.for_label = String::new());
        assert_eq!(c.validate(), Ok(()));
        let c = with(|c| c.against_label = "a".repeat(50));
        assert_eq!(c.validate(), Ok(()));
        let c = with(|c| c.for_label = "a".repeat(51));
        assert_eq!(
            field_of(&c),
            ("for_label", "for label exceeds 50 characters".into())
        );
        let c = with(|c| c.against_label = "ü".repeat(26));
        assert_eq!(
            field_of(&c),
            (
                "against_label",
                "against label exceeds 50 characters".into()
            )
        );
    }

    #[test]
    fn memory_seconds_range_or_infinite() {
        for (s, ok) in [
            (4, false),
            (5, true),
            (120, true),
            (121, false),
            (43200, false),
        ] {
            let c = with(|c| c.model = Model::Window(Memory::Seconds(s)));
            assert_eq!(c.validate().is_ok(), ok, "{s}");
        }
        let c = with(|c| c.model = Model::Window(Memory::Seconds(0)));
        assert_eq!(
            field_of(&c),
            (
                "memory_seconds",
                "memory seconds must be between 5 and 120".into()
            )
        );
        let c = with(|c| c.model = Model::Window(Memory::Infinite));
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn decay_speed_range_rejects_nan_and_infinity() {
        for (speed, ok) in [
            (0.1, true),
            (2.0, true),
            (0.5, true),
            (0.09, false),
            (2.01, false),
        ] {
            let c = with(|c| c.model = Model::Decay { speed });
            assert_eq!(c.validate().is_ok(), ok, "{speed}");
        }
        for speed in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let c = with(|c| c.model = Model::Decay { speed });
            assert_eq!(
                field_of(&c),
                (
                    "decay_speed",
                    "decay speed must be between 0.1 and 2.0".into()
                )
            );
        }
    }

    #[test]
    fn normalize_trims_and_dedupes_within_a_side() {
        let mut c = with(|c| {
            c.for_triggers = vec![" yes".into(), "Y ".into(), "YES".into(), "y".into()];
            c.against_triggers = vec!["no".into(), "".into(), " ".into()];
            c.for_label = "  For ".into();
            c.against_label = "\tAgainst\n".into();
        });
        c.normalize();
        assert_eq!(c.for_triggers, ["yes", "Y"]);
        assert_eq!(c.against_triggers, ["no", ""]);
        assert_eq!(
            (c.for_label.as_str(), c.against_label.as_str()),
            ("For", "Against")
        );
    }

    #[test]
    fn trigger_list_from_comma_separated_text() {
        assert_eq!(parse_trigger_list(" yes, y,,1 ,"), ["yes", "y", "1"]);
        assert!(parse_trigger_list(" , ").is_empty());
        assert_eq!(parse_trigger_list("ok boomer"), ["ok boomer"]);
    }
}
