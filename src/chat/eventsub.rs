//! EventSub messages as both EventSub sources receive them: the
//! `channel.chat.message` v1 payload (`{"subscription":…,"event":…}`, a webhook
//! body or a WebSocket `payload`) → [`ChatMessage`], and the WebSocket envelope
//! (`metadata` + `payload`) → [`WsMessage`]. Pure: no I/O, no clock.
//!
//! Every text passes a strict JSON syntax walk (`json`) before nanoserde reads
//! it (nanoserde hangs or panics on some malformed input). The structs name only
//! the fields we use: nanoserde skips unknown fields (badges, fragments, shared
//! chat `source_*`, fields Twitch adds later) and reads `null` as `None`.

// nanoserde's derive expands `Option` fields into a match clippy would write with `?`.
#![allow(clippy::question_mark)]

pub(crate) mod json;
#[cfg(test)]
mod tests;

use nanoserde::DeJson;

use crate::chat::{ChatMessage, ChatSource};

/// The only subscription type the chat sources create.
pub const CHAT_MESSAGE: &str = "channel.chat.message";
/// Ids and logins longer than this are refused: Twitch's are ≤ 64 bytes.
const MAX_ID_BYTES: usize = 256;

/// Why an EventSub message could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventSubError {
    /// Not JSON (syntax), with where and why.
    Syntax(String),
    /// JSON of the wrong shape (a required field missing or of another type).
    Shape(String),
    /// A notification of a subscription type we never ask for.
    WrongType(String),
    /// A required id or login that is empty or oversized.
    BadField(&'static str),
}

impl std::fmt::Display for EventSubError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EventSubError::Syntax(e) => write!(f, "not JSON: {e}"),
            EventSubError::Shape(e) => write!(f, "unexpected JSON: {e}"),
            EventSubError::WrongType(t) => write!(f, "unexpected subscription type {t:?}"),
            EventSubError::BadField(name) => write!(f, "empty or oversized {name}"),
        }
    }
}

impl std::error::Error for EventSubError {}

/// A subscription as notifications and revocations carry it.
#[derive(DeJson, Debug, Clone, PartialEq, Eq, Default)]
pub struct Subscription {
    pub id: String,
    /// `enabled`, or on revocation the reason (`authorization_revoked`, `user_removed`, …).
    #[nserde(default)]
    pub status: String,
    #[nserde(rename = "type")]
    pub kind: String,
    #[nserde(default)]
    pub version: String,
    pub condition: Option<Condition>,
}

#[derive(DeJson, Debug, Clone, PartialEq, Eq, Default)]
pub struct Condition {
    pub broadcaster_user_id: Option<String>,
    pub user_id: Option<String>,
}

#[derive(DeJson)]
struct ChatPayload {
    subscription: Option<Subscription>,
    event: ChatEvent,
}

#[derive(DeJson)]
struct ChatEvent {
    broadcaster_user_id: String,
    broadcaster_user_login: String,
    chatter_user_id: String,
    message_id: String,
    message: ChatText,
}

#[derive(DeJson)]
struct ChatText {
    text: String,
}

/// Reads a `channel.chat.message` payload. The channel is the broadcaster whose
/// chat the subscription is for (in shared chat, messages from the other
/// channels arrive with that broadcaster and `source_*` fields; we count them
/// there, as the broadcaster's chat shows them). `message_id` is Twitch's chat
/// message id; `sent_ms` is left for the caller (the envelope has the time).
pub fn chat_message_from_payload(
    payload: &str,
    source: ChatSource,
) -> Result<ChatMessage, EventSubError> {
    json::top_level_fields(payload).map_err(|e| EventSubError::Syntax(e.to_string()))?;
    let p = ChatPayload::deserialize_json(payload).map_err(|e| shape(&e))?;
    if let Some(sub) = &p.subscription
        && sub.kind != CHAT_MESSAGE
    {
        return Err(EventSubError::WrongType(sub.kind.clone()));
    }
    let e = p.event;
    for (name, value) in [
        ("event.broadcaster_user_id", &e.broadcaster_user_id),
        ("event.broadcaster_user_login", &e.broadcaster_user_login),
        ("event.chatter_user_id", &e.chatter_user_id),
        ("event.message_id", &e.message_id),
    ] {
        if value.is_empty() || value.len() > MAX_ID_BYTES {
            return Err(EventSubError::BadField(name));
        }
    }
    Ok(ChatMessage {
        source,
        channel: e.broadcaster_user_login.to_ascii_lowercase(),
        chatter_id: e.chatter_user_id,
        text: e.message.text,
        message_id: Some(e.message_id),
        sent_ms: None,
    })
}

fn shape(e: &nanoserde::DeJsonErr) -> EventSubError {
    EventSubError::Shape(e.to_string())
}

/// `metadata` of a WebSocket message.
#[derive(DeJson, Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    pub message_id: String,
    pub message_type: String,
    /// RFC 3339, nanosecond precision.
    #[nserde(default)]
    pub message_timestamp: String,
    /// Notifications and revocations only.
    pub subscription_type: Option<String>,
}

/// `payload.session` of a welcome or reconnect message.
#[derive(DeJson, Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub id: String,
    #[nserde(default)]
    pub status: String,
    /// Welcome only (null on reconnect).
    pub keepalive_timeout_seconds: Option<u64>,
    /// Reconnect only (null on welcome).
    pub reconnect_url: Option<String>,
}

/// One WebSocket message, by `metadata.message_type`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsMessage<'a> {
    Welcome(Session),
    Keepalive,
    /// The raw `payload` text, for [`chat_message_from_payload`].
    Notification(&'a str),
    Reconnect(Session),
    Revocation(Subscription),
    /// A type Twitch may add later; ignored.
    Other(String),
}

#[derive(DeJson)]
struct Envelope {
    metadata: Metadata,
}

#[derive(DeJson)]
struct SessionPayload {
    session: Session,
}

#[derive(DeJson)]
struct RevocationPayload {
    subscription: Subscription,
}

/// Reads one WebSocket text message: its metadata and what it says.
pub fn parse_ws_message(text: &str) -> Result<(Metadata, WsMessage<'_>), EventSubError> {
    let fields = json::top_level_fields(text).map_err(|e| EventSubError::Syntax(e.to_string()))?;
    let metadata = Envelope::deserialize_json(text)
        .map_err(|e| shape(&e))?
        .metadata;
    let payload = fields
        .iter()
        .find(|(k, _)| *k == "payload")
        .map(|(_, v)| *v)
        .ok_or_else(|| EventSubError::Shape("no payload".into()))?;
    let session = || -> Result<Session, EventSubError> {
        let s = SessionPayload::deserialize_json(payload).map_err(|e| shape(&e))?;
        match s.session.id.is_empty() {
            true => Err(EventSubError::BadField("payload.session.id")),
            false => Ok(s.session),
        }
    };
    let message = match metadata.message_type.as_str() {
        "session_welcome" => WsMessage::Welcome(session()?),
        "session_keepalive" => WsMessage::Keepalive,
        "notification" => WsMessage::Notification(payload),
        "session_reconnect" => WsMessage::Reconnect(session()?),
        "revocation" => WsMessage::Revocation(
            RevocationPayload::deserialize_json(payload)
                .map_err(|e| shape(&e))?
                .subscription,
        ),
        other => WsMessage::Other(other.to_string()),
    };
    Ok((metadata, message))
}
