//! Stand-in parse of a `channel.chat.message` notification payload
//! (`{"subscription":…,"event":…}`) into a [`ChatMessage`].
//!
//! NOTE: `crate::chat::eventsub::chat_message_from_payload` (owned by the EventSub
//! WebSocket source, shared by both transports) replaces this file once it lands.

// nanoserde's derive expands `Option` fields into a match clippy would write with `?`.
#![allow(clippy::question_mark)]

use nanoserde::DeJson;

use crate::chat::{ChatMessage, ChatSource};
use crate::twitch::helix::{HelixError, decode};

#[derive(DeJson)]
struct ChatPayload {
    event: ChatEvent,
}

#[derive(DeJson)]
struct ChatEvent {
    broadcaster_user_login: String,
    chatter_user_id: String,
    message_id: Option<String>,
    message: ChatText,
}

#[derive(DeJson)]
struct ChatText {
    text: String,
}

/// Channel = broadcaster login, chatter = chatter user id, Twitch's message id.
pub(super) fn parse_chat(payload: &str) -> Result<ChatMessage, HelixError> {
    let p: ChatPayload = decode(payload.as_bytes())?;
    Ok(ChatMessage {
        source: ChatSource::EventSubWebhook,
        channel: p.event.broadcaster_user_login.to_ascii_lowercase(),
        chatter_id: p.event.chatter_user_id,
        text: p.event.message.text,
        message_id: p.event.message_id,
        sent_ms: None,
    })
}
