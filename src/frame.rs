//! The overlay wire format: one JSON text frame per update (pure; written by
//! hand because it is the fan-out hot path and its shape is fixed).
//!
//! `{"type","seq","ts","forRatio","againstRatio","totalVotes","forVotes",
//! "againstVotes","value","model","decaySpeed","memorySeconds","displayMode",
//! "theme","forLabel","againstLabel","status"}` — `ts` is the server time (ms)
//! at which the newest vote in the frame was accepted.

use std::fmt::Write;

use crate::channel::OverlayConfig;
use crate::http::response::json_escape;
use crate::sentiment::{Memory, Model, Snapshot};

/// Encodes one frame. `kind` is "snapshot" (on connect) or "update".
pub fn encode(kind: &str, seq: u64, ts: u64, snap: &Snapshot, cfg: &OverlayConfig) -> String {
    let (for_ratio, against_ratio) = snap.tally.ratios();
    let (model, speed, memory) = match cfg.model {
        Model::Window(Memory::Seconds(s)) => ("window", 0.0, Some(s)),
        Model::Window(Memory::Infinite) => ("window", 0.0, None),
        Model::Decay { speed } => ("decay", speed, None),
    };
    let mut s = String::with_capacity(320);
    let _ = write!(
        s,
        "{{\"type\":\"{kind}\",\"seq\":{seq},\"ts\":{ts},\"forRatio\":{},\"againstRatio\":{},\
\"totalVotes\":{},\"forVotes\":{},\"againstVotes\":{},\"value\":{},\"model\":\"{model}\",\
\"decaySpeed\":{},\"memorySeconds\":",
        finite(for_ratio),
        finite(against_ratio),
        snap.tally.total(),
        snap.tally.for_votes,
        snap.tally.against_votes,
        finite(snap.value),
        finite(speed),
    );
    match memory {
        Some(m) => {
            let _ = write!(s, "{m}");
        }
        None => s.push_str("null"),
    }
    let _ = write!(
        s,
        ",\"displayMode\":\"{}\",\"theme\":\"{}\",\"forLabel\":\"",
        cfg.display_mode.as_str(),
        cfg.theme.as_str()
    );
    json_escape(&cfg.for_label, &mut s);
    s.push_str("\",\"againstLabel\":\"");
    json_escape(&cfg.against_label, &mut s);
    s.push_str("\",\"status\":\"active\"}");
    s
}

/// JSON has no NaN/Infinity; a bad number must never freeze an overlay.
fn finite(v: f64) -> f64 {
    if v.is_finite() { v } else { 0.0 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sentiment::Tally;

    #[test]
    fn encodes_every_field_and_escapes_labels() {
        let mut cfg = OverlayConfig {
            for_label: "Hype \"<b>\"".into(),
            ..OverlayConfig::default()
        };
        let snap = Snapshot {
            tally: Tally {
                for_votes: 3,
                against_votes: 1,
            },
            value: f64::NAN,
        };
        let f = encode("update", 7, 1764066276123, &snap, &cfg);
        assert_eq!(
            f,
            "{\"type\":\"update\",\"seq\":7,\"ts\":1764066276123,\"forRatio\":0.75,\"againstRatio\":0.25,\
\"totalVotes\":4,\"forVotes\":3,\"againstVotes\":1,\"value\":0,\"model\":\"window\",\"decaySpeed\":0,\
\"memorySeconds\":30,\"displayMode\":\"combined\",\"theme\":\"dark\",\"forLabel\":\"Hype \\\"\\u003cb>\\\"\",\
\"againstLabel\":\"Against\",\"status\":\"active\"}"
        );
        cfg.model = Model::Window(Memory::Infinite);
        assert!(encode("snapshot", 1, 1, &snap, &cfg).contains("\"memorySeconds\":null"));
    }
}
