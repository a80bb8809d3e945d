#![no_main]
//! EventSub JSON (webhook bodies and WebSocket messages): never a panic or a hang.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = chatpulse::chat::eventsub::parse_ws_message(text);
        let _ = chatpulse::chat::eventsub::chat_message_from_payload(
            text,
            chatpulse::chat::ChatSource::EventSubWebhook,
        );
    }
});
