#![no_main]
//! Dashboard request bodies: the JSON object of `POST /api/config` and the
//! form of `POST /dashboard/config`, onto the default settings, then the
//! validation a save runs. Never panics; what it accepts validates or is
//! refused with a field named.
use chatpulse::channel::OverlayConfig;
use chatpulse::http::form::parse_urlencoded;
use chatpulse::http::settings::{from_form, from_json};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok((config, _version)) = from_json(text, OverlayConfig::default()) {
        let _ = config.validate();
    }
    if let Ok(config) = from_form(text, OverlayConfig::default()) {
        let _ = config.validate();
    }
    let _ = parse_urlencoded(text);
});
