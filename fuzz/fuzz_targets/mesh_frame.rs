#![no_main]
//! Mesh frames: bytes from a stranger fail authentication; bytes from a peer
//! that holds the secret (signed here with it) decode or fail cleanly — the
//! decoder behind the tag is what this exercises.
use chatpulse::mesh::MeshKey;
use chatpulse::mesh::wire::{PROTOCOL_VERSION, open, seal};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let key = MeshKey::derive("fuzzing-secret-0123456789");
    let _ = open(&key, 0, data);
    let mut encoded = vec![PROTOCOL_VERSION];
    encoded.extend_from_slice(data);
    let mut sealed = Vec::new();
    seal(&key, 0, &encoded, &mut sealed);
    let _ = open(&key, 0, &sealed[chatpulse::mesh::wire::LEN_PREFIX..]);
});
