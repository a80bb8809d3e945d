//! A config as SQLite sees it: the columns of the `configs` row (written with its
//! history entry by [`write_config`], read back by [`channel_from_row`] with a fallback
//! for each unreadable value) and the canonical JSON of the `seed` column and history
//! snapshots.

// nanoserde's DeJson derive (ConfigJson) expands to code clippy reads as `?`-able.
#![allow(clippy::question_mark)]

use log::warn;
use nanoserde::{DeJson, SerJson};
use rusqlite::{Row, Transaction, params};

use super::StoreError;
use crate::channel::{DisplayMode, OverlayConfig, Streamer, Theme};
use crate::sentiment::{Memory, Model};

/// `decay_speed` is NOT NULL but unused while the model is a window; this keeps the column
/// a valid speed (0.1..=2.0) should the model be switched by hand.
const IDLE_DECAY_SPEED: f64 = 1.0;

/// The canonical JSON of a config: the `seed` column and history snapshots. Field order
/// is fixed, so equal configs give equal text. Changing this shape makes every home
/// channel re-apply its file config once (dropping dashboard edits): do it knowingly.
#[derive(SerJson, DeJson)]
struct ConfigJson {
    for_triggers: Vec<String>,
    against_triggers: Vec<String>,
    for_label: String,
    against_label: String,
    model: String,
    memory_seconds: Option<u32>,
    decay_speed: Option<f64>,
    display_mode: String,
    theme: String,
}

pub(super) fn canonical_json(config: &OverlayConfig) -> String {
    let (model, memory_seconds, speed) = model_columns(&config.model);
    ConfigJson {
        for_triggers: config.for_triggers.clone(),
        against_triggers: config.against_triggers.clone(),
        for_label: config.for_label.clone(),
        against_label: config.against_label.clone(),
        model: model.to_owned(),
        memory_seconds,
        decay_speed: matches!(config.model, Model::Decay { .. }).then_some(speed),
        display_mode: config.display_mode.as_str().to_owned(),
        theme: config.theme.as_str().to_owned(),
    }
    .serialize_json()
}

/// The inverse of [`canonical_json`] (a config from another node); `None` when it
/// does not read as a valid config.
pub(super) fn config_from_canonical(json: &str) -> Option<OverlayConfig> {
    // nanoserde panics or loops on some malformed JSON: only well-formed text reaches it.
    crate::chat::eventsub::json::top_level_fields(json).ok()?;
    let j = std::panic::catch_unwind(|| ConfigJson::deserialize_json(json))
        .ok()?
        .ok()?;
    let model = match (j.model.as_str(), j.memory_seconds, j.decay_speed) {
        ("window", None, _) => Model::Window(Memory::Infinite),
        ("window", Some(s), _) => Model::Window(Memory::Seconds(s)),
        ("decay", _, Some(speed)) => Model::Decay { speed },
        _ => return None,
    };
    let config = OverlayConfig {
        for_triggers: j.for_triggers,
        against_triggers: j.against_triggers,
        for_label: j.for_label,
        against_label: j.against_label,
        model,
        display_mode: DisplayMode::parse(&j.display_mode)?,
        theme: Theme::parse(&j.theme)?,
    };
    config.validate().ok()?;
    Some(config)
}

/// `(model, memory_seconds, decay_speed)` columns.
fn model_columns(model: &Model) -> (&'static str, Option<u32>, f64) {
    match *model {
        Model::Window(Memory::Seconds(s)) => ("window", Some(s), IDLE_DECAY_SPEED),
        Model::Window(Memory::Infinite) => ("window", None, IDLE_DECAY_SPEED),
        Model::Decay { speed } => ("decay", None, speed),
    }
}

/// Writes `config` as the current row (keeping the stored `seed` when `seed` is None)
/// and appends it to the history.
pub(super) fn write_config(
    tx: &Transaction,
    streamer_id: i64,
    version: i64,
    config: &OverlayConfig,
    seed: Option<&str>,
    now: i64,
) -> Result<(), StoreError> {
    let (model, memory_seconds, decay_speed) = model_columns(&config.model);
    tx.execute(
        "INSERT INTO configs (streamer_id, version, for_triggers, against_triggers,
             for_label, against_label, model, memory_seconds, decay_speed, display_mode,
             theme, seed, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
         ON CONFLICT (streamer_id) DO UPDATE SET version = excluded.version,
             for_triggers = excluded.for_triggers, against_triggers = excluded.against_triggers,
             for_label = excluded.for_label, against_label = excluded.against_label,
             model = excluded.model, memory_seconds = excluded.memory_seconds,
             decay_speed = excluded.decay_speed, display_mode = excluded.display_mode,
             theme = excluded.theme, seed = COALESCE(excluded.seed, configs.seed),
             updated_at = excluded.updated_at",
        params![
            streamer_id,
            version,
            config.for_triggers.serialize_json(),
            config.against_triggers.serialize_json(),
            config.for_label,
            config.against_label,
            model,
            memory_seconds,
            decay_speed,
            config.display_mode.as_str(),
            config.theme.as_str(),
            seed,
            now,
        ],
    )?;
    tx.execute(
        // OR REPLACE: a version saved concurrently on two nodes keeps the winner's text.
        "INSERT OR REPLACE INTO config_history (streamer_id, version, saved_at, snapshot)
         VALUES (?1, ?2, ?3, ?4)",
        params![streamer_id, version, now, canonical_json(config)],
    )?;
    Ok(())
}

/// A streamer joined with its current config; `channel_from_row` reads it. Add filters.
pub(super) const SELECT_CHANNEL: &str = "SELECT s.id, s.login, s.display_name, s.twitch_user_id,
        s.overlay_token, s.rev, s.rev_node, s.config_node, s.token_rev, s.token_node, c.version, c.for_triggers, c.against_triggers, c.for_label,
        c.against_label, c.model, c.memory_seconds, c.decay_speed, c.display_mode, c.theme
    FROM streamers s JOIN configs c ON c.streamer_id = s.id";

pub(super) fn channel_from_row(row: &Row) -> rusqlite::Result<(Streamer, OverlayConfig)> {
    let streamer = Streamer {
        id: row.get("id")?,
        login: row.get("login")?,
        display_name: row.get("display_name")?,
        twitch_user_id: row.get("twitch_user_id")?,
        overlay_token: row.get("overlay_token")?,
        config_version: row.get("version")?,
    };
    let config = config_from_row(row, &streamer.login)?;
    Ok((streamer, config))
}

/// Unknown or undecodable values fall back to the default with a warning: one bad row
/// must not keep a node from starting, and the next save rewrites it.
fn config_from_row(row: &Row, login: &str) -> rusqlite::Result<OverlayConfig> {
    let default = OverlayConfig::default();
    let triggers = |column: &str, default: Vec<String>| -> rusqlite::Result<Vec<String>> {
        let text: String = row.get(column)?;
        Ok(Vec::<String>::deserialize_json(&text)
            .unwrap_or_else(|_| fallback(login, column, &text, default)))
    };
    let model: String = row.get("model")?;
    let memory: Option<i64> = row.get("memory_seconds")?;
    let model = match (model.as_str(), memory.map(u32::try_from)) {
        ("window", None) => Model::Window(Memory::Infinite),
        ("window", Some(Ok(seconds))) => Model::Window(Memory::Seconds(seconds)),
        ("decay", _) => Model::Decay {
            speed: row.get("decay_speed")?,
        },
        _ => fallback(
            login,
            "model",
            &format!("{model}/{memory:?}"),
            default.model,
        ),
    };
    let display_mode: String = row.get("display_mode")?;
    let theme: String = row.get("theme")?;
    Ok(OverlayConfig {
        for_triggers: triggers("for_triggers", default.for_triggers)?,
        against_triggers: triggers("against_triggers", default.against_triggers)?,
        for_label: row.get("for_label")?,
        against_label: row.get("against_label")?,
        model,
        display_mode: DisplayMode::parse(&display_mode).unwrap_or_else(|| {
            fallback(login, "display_mode", &display_mode, default.display_mode)
        }),
        theme: Theme::parse(&theme)
            .unwrap_or_else(|| fallback(login, "theme", &theme, default.theme)),
    })
}

fn fallback<T>(login: &str, column: &str, found: &str, default: T) -> T {
    warn!("sqlite: channel {login}: unreadable {column} {found:?}; using the default");
    default
}
