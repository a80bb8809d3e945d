//! Overlay settings as the dashboard submits them, onto the current settings:
//! a JSON object (`POST /api/config`) or the reference's form fields
//! (`POST /dashboard/config`). Absent fields keep their current value; what the
//! text cannot even say (a theme that is no theme, a number that is no number)
//! is refused here with the reference's message, the rules about values by
//! [`OverlayConfig::validate`] when the result is saved. Pure.

use nanoserde::DeJson;

use super::form::parse_urlencoded;
use crate::channel::{DisplayMode, OverlayConfig, Theme, parse_trigger_list};
use crate::chat::eventsub::json::top_level_fields;
use crate::sentiment::{Memory, Model};

/// `memory_seconds` the reference stores for "infinite" (12 h).
const REFERENCE_INFINITE: f64 = 43_200.0;
/// Defaults of the model not in use, when switching models.
const DEFAULT_MEMORY: Memory = Memory::Seconds(30);
const DEFAULT_SPEED: f64 = 0.5;

/// A field the dashboard shows the message next to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingsError {
    pub field: &'static str,
    pub message: String,
}

fn invalid(field: &'static str, message: &str) -> SettingsError {
    SettingsError {
        field,
        message: message.into(),
    }
}

/// One submitted value, whatever its JSON type (form values are all text).
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Text(String),
    List(Vec<String>),
    Number(f64),
    Null,
    Other,
}

impl Value {
    fn from_json(raw: &str) -> Value {
        let raw = raw.trim();
        if raw == "null" {
            return Value::Null;
        }
        if raw.starts_with('"') {
            return String::deserialize_json(raw).map_or(Value::Other, Value::Text);
        }
        if raw.starts_with('[') {
            return Vec::<String>::deserialize_json(raw).map_or(Value::Other, Value::List);
        }
        raw.parse::<f64>().map_or(Value::Other, Value::Number)
    }

    fn number(&self) -> Option<f64> {
        match self {
            Value::Number(n) => Some(*n),
            Value::Text(t) => t.trim().parse().ok(),
            _ => None,
        }
        .filter(|n| n.is_finite())
    }
}

/// The settings being built, with the model's parts kept apart until the end.
struct Draft {
    config: OverlayConfig,
    decay: Option<bool>,
    memory: Option<Memory>,
    speed: Option<f64>,
}

impl Draft {
    fn new(config: OverlayConfig) -> Draft {
        Draft {
            config,
            decay: None,
            memory: None,
            speed: None,
        }
    }

    fn set(&mut self, field: &str, value: Value) -> Result<(), SettingsError> {
        let c = &mut self.config;
        match field {
            "for_triggers" | "for_trigger" => c.for_triggers = triggers("for_triggers", value)?,
            "against_triggers" | "against_trigger" => {
                c.against_triggers = triggers("against_triggers", value)?
            }
            "for_label" => c.for_label = label("for_label", value)?,
            "against_label" => c.against_label = label("against_label", value)?,
            "model" => {
                self.decay = Some(match value {
                    Value::Text(t) if t == "window" => false,
                    Value::Text(t) if t == "decay" => true,
                    _ => return Err(invalid("model", "model must be 'window' or 'decay'")),
                })
            }
            "memory_seconds" => self.memory = Some(memory(value)?),
            "decay_speed" => {
                let bad = || invalid("decay_speed", "invalid decay speed format");
                self.speed = Some(value.number().ok_or_else(bad)?);
            }
            "display_mode" => {
                let bad = || invalid("display_mode", "display mode must be 'combined' or 'split'");
                c.display_mode = text(&value).and_then(DisplayMode::parse).ok_or_else(bad)?;
            }
            "theme" => {
                let bad = || invalid("theme", "theme must be 'dark' or 'light'");
                c.theme = text(&value).and_then(Theme::parse).ok_or_else(bad)?;
            }
            // csrf_token, version and anything a newer page sends are not settings.
            _ => {}
        }
        Ok(())
    }

    fn finish(mut self) -> OverlayConfig {
        let (was_decay, memory, speed) = match self.config.model {
            Model::Window(m) => (false, m, DEFAULT_SPEED),
            Model::Decay { speed } => (true, DEFAULT_MEMORY, speed),
        };
        // A memory without a model means the window; a model without values keeps them.
        let decay = self.decay.unwrap_or(was_decay && self.memory.is_none());
        self.config.model = match decay {
            true => Model::Decay {
                speed: self.speed.unwrap_or(speed),
            },
            false => Model::Window(self.memory.unwrap_or(memory)),
        };
        self.config
    }
}

fn text(value: &Value) -> Option<&str> {
    match value {
        Value::Text(t) => Some(t.trim()),
        _ => None,
    }
}

fn triggers(field: &'static str, value: Value) -> Result<Vec<String>, SettingsError> {
    match value {
        Value::List(items) => Ok(items),
        Value::Text(t) => Ok(parse_trigger_list(&t)),
        Value::Null => Ok(Vec::new()),
        _ => Err(invalid(field, "triggers must be a list of words")),
    }
}

fn label(field: &'static str, value: Value) -> Result<String, SettingsError> {
    match value {
        Value::Text(t) => Ok(t),
        Value::Null => Ok(String::new()),
        _ => Err(invalid(field, "a label must be text")),
    }
}

/// A number of seconds, or infinite: `null`, `"infinite"`, `"∞"`, or the
/// reference's 43200.
fn memory(value: Value) -> Result<Memory, SettingsError> {
    if matches!(&value, Value::Null)
        || text(&value).is_some_and(|t| matches!(t, "infinite" | "∞" | "inf"))
    {
        return Ok(Memory::Infinite);
    }
    let bad = || invalid("memory_seconds", "invalid memory seconds format");
    let n = value
        .number()
        .filter(|n| n.fract() == 0.0)
        .ok_or_else(bad)?;
    if n == REFERENCE_INFINITE {
        return Ok(Memory::Infinite);
    }
    // Out-of-range whole numbers reach `validate`, which names the range.
    Ok(Memory::Seconds(n.clamp(0.0, f64::from(u32::MAX)) as u32))
}

/// A JSON object onto `current`; also returns its `version`, if it has one.
pub fn from_json(
    text: &str,
    current: OverlayConfig,
) -> Result<(OverlayConfig, Option<i64>), SettingsError> {
    let fields = top_level_fields(text)
        .map_err(|e| invalid("body", &format!("the body is not a JSON object ({e})")))?;
    let mut draft = Draft::new(current);
    let mut version = None;
    for (key, raw) in fields {
        let value = Value::from_json(raw);
        if key == "version" {
            version = match value {
                Value::Null => None,
                Value::Number(n) if n.fract() == 0.0 && n >= 0.0 => Some(n as i64),
                _ => return Err(invalid("version", "version must be a whole number")),
            };
        } else {
            draft.set(key, value)?;
        }
    }
    Ok((draft.finish(), version))
}

/// Form fields onto `current`.
pub fn from_form(text: &str, current: OverlayConfig) -> Result<OverlayConfig, SettingsError> {
    let mut draft = Draft::new(current);
    for (key, value) in parse_urlencoded(text) {
        draft.set(&key, Value::Text(value))?;
    }
    Ok(draft.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(text: &str) -> Result<(OverlayConfig, Option<i64>), SettingsError> {
        from_json(text, OverlayConfig::default())
    }

    #[test]
    fn full_json_as_the_dashboard_sends_it() {
        let (c, v) = json(
            r#"{"version":3,"for_triggers":["yes","y"],"against_triggers":"no, n",
               "for_label":"Yay","against_label":"Nay","model":"window","memory_seconds":null,
               "decay_speed":0.5,"display_mode":"split","theme":"light"}"#,
        )
        .unwrap();
        assert_eq!(v, Some(3));
        assert_eq!(
            (c.for_triggers, c.against_triggers),
            (
                vec!["yes".into(), "y".into()],
                vec!["no".into(), "n".into()]
            )
        );
        assert_eq!(
            (c.for_label.as_str(), c.against_label.as_str()),
            ("Yay", "Nay")
        );
        assert_eq!(c.model, Model::Window(Memory::Infinite));
        assert_eq!(
            (c.display_mode, c.theme),
            (DisplayMode::Split, Theme::Light)
        );
    }

    #[test]
    fn models_and_partial_updates() {
        let (c, v) = json(r#"{"model":"decay","decay_speed":1.5}"#).unwrap();
        assert_eq!((c.model, v), (Model::Decay { speed: 1.5 }, None));
        let (c, _) = from_json(r#"{"memory_seconds":60}"#, c).unwrap();
        assert_eq!(
            c.model,
            Model::Window(Memory::Seconds(60)),
            "a memory means the window"
        );
        let (c, _) = from_json(r#"{"theme":"light"}"#, c).unwrap();
        assert_eq!(c.model, Model::Window(Memory::Seconds(60)), "kept");
        let (c, _) = json(r#"{"memory_seconds":43200}"#).unwrap();
        assert_eq!(c.model, Model::Window(Memory::Infinite));
        let (c, _) = json(r#"{"memory_seconds":"infinite","version":null}"#).unwrap();
        assert_eq!(c.model, Model::Window(Memory::Infinite));
        let (c, _) = json(r#"{"memory_seconds":500}"#).unwrap();
        assert_eq!(
            c.model,
            Model::Window(Memory::Seconds(500)),
            "range is validate's"
        );
    }

    #[test]
    fn type_errors_name_the_field() {
        for (body, field, message) in [
            (
                r#"{"theme":"blue"}"#,
                "theme",
                "theme must be 'dark' or 'light'",
            ),
            (
                r#"{"display_mode":1}"#,
                "display_mode",
                "display mode must be 'combined' or 'split'",
            ),
            (
                r#"{"memory_seconds":"soon"}"#,
                "memory_seconds",
                "invalid memory seconds format",
            ),
            (
                r#"{"memory_seconds":5.5}"#,
                "memory_seconds",
                "invalid memory seconds format",
            ),
            (
                r#"{"decay_speed":"fast"}"#,
                "decay_speed",
                "invalid decay speed format",
            ),
            (
                r#"{"model":"magic"}"#,
                "model",
                "model must be 'window' or 'decay'",
            ),
            (
                r#"{"for_triggers":[1]}"#,
                "for_triggers",
                "triggers must be a list of words",
            ),
            (
                r#"{"version":"x"}"#,
                "version",
                "version must be a whole number",
            ),
        ] {
            let e = json(body).unwrap_err();
            assert_eq!((e.field, e.message.as_str()), (field, message), "{body}");
        }
        assert_eq!(json("not json").unwrap_err().field, "body");
        assert_eq!(json(r#"{"x":"#).unwrap_err().field, "body");
    }

    #[test]
    fn reference_form_fields() {
        let c = from_form(
            "for_trigger=yes%2C+y&against_trigger=no&for_label=For+sure&against_label=&\
             memory_seconds=45&display_mode=combined&theme=dark&csrf_token=abc",
            OverlayConfig::default(),
        )
        .unwrap();
        assert_eq!(c.for_triggers, ["yes", "y"]);
        assert_eq!(
            (c.for_label.as_str(), c.against_label.as_str()),
            ("For sure", "")
        );
        assert_eq!(c.model, Model::Window(Memory::Seconds(45)));
        let e = from_form("memory_seconds=abc", OverlayConfig::default()).unwrap_err();
        assert_eq!(e.message, "invalid memory seconds format");
    }
}
