#![no_main]
//! Bytes an overlay sends after the upgrade, read with the node's own socket
//! limits (`ws::socket_config`, the default 4 KiB message cap): frames with
//! lengths that lie, fragments, masks, control frames, close codes. Reading
//! never panics and never buffers past the cap.
use std::io::{Cursor, Read, Write};

use libfuzzer_sys::fuzz_target;
use tungstenite::protocol::{Role, WebSocket};

/// The client's bytes to read; whatever the server writes is dropped.
struct Wire(Cursor<Vec<u8>>);

impl Read for Wire {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}

impl Write for Wire {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let config = chatpulse::ws::socket_config(4096);
    let mut ws = WebSocket::from_raw_socket(Wire(Cursor::new(data.to_vec())), Role::Server, Some(config));
    for _ in 0..1024 {
        match ws.read() {
            Ok(msg) => assert!(msg.len() <= 4096, "a message over the cap was buffered"),
            Err(_) => break,
        }
    }
});
