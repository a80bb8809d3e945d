#![no_main]
//! Vote logs from other nodes (and from redb): decoding never panics, and what
//! decodes merges and re-encodes.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(log) = chatpulse::sentiment::VoteLog::decode(data) {
        let mut merged = chatpulse::sentiment::VoteLog::default();
        merged.merge(&log);
        let _ = chatpulse::sentiment::VoteLog::decode(&merged.encode()).expect("re-decodes");
    }
});
