#![no_main]
//! IRC lines from Twitch (or anyone in the middle): parsing never panics.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(line) = std::str::from_utf8(data) {
        let _ = chatpulse::chat::irc::parse::parse_line(line);
    }
});
