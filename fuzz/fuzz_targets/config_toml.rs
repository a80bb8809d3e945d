#![no_main]
//! Config files: any text gives a config or a clear error, never a panic.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = chatpulse::config::from_toml_str(text);
    }
});
