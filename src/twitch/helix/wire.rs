//! JSON both ways: request bodies built by hand (with escaping) and URL
//! encoding; response shapes as Twitch sends them, decoded with nanoserde
//! (unknown fields are skipped) without ever panicking.

// nanoserde's derive expands `Option` fields into a match clippy would write with `?`.
#![allow(clippy::question_mark)]

use nanoserde::DeJson;

use super::{HelixError, SubscriptionRequest, Transport};

/// Decodes a JSON body. nanoserde panics (`unimplemented!`) on some malformed
/// input instead of erring; a remote body must never take our task down, so
/// a panic becomes [`HelixError::Decode`].
pub(crate) fn decode<T: DeJson>(body: &[u8]) -> Result<T, HelixError> {
    let text = std::str::from_utf8(body).map_err(|e| HelixError::Decode(e.to_string()))?;
    // nanoserde also loops forever on some truncated input: only well-formed
    // JSON reaches it.
    crate::chat::eventsub::json::top_level_fields(text)
        .map_err(|e| HelixError::Decode(e.to_string()))?;
    match std::panic::catch_unwind(|| T::deserialize_json(text)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(HelixError::Decode(e.to_string())),
        Err(_) => Err(HelixError::Decode("malformed JSON".into())),
    }
}

impl Transport<'_> {
    pub(super) fn to_json(self) -> String {
        match self {
            Transport::WebSocket { session_id } => format!(
                r#"{{"method":"websocket","session_id":{}}}"#,
                json_str(session_id)
            ),
            Transport::Conduit { conduit_id } => format!(
                r#"{{"method":"conduit","conduit_id":{}}}"#,
                json_str(conduit_id)
            ),
            Transport::Webhook { callback, secret } => format!(
                r#"{{"method":"webhook","callback":{},"secret":{}}}"#,
                json_str(callback),
                json_str(secret)
            ),
        }
    }
}

impl SubscriptionRequest<'_> {
    pub(super) fn to_json(self) -> String {
        format!(
            r#"{{"type":{},"version":{},"condition":{{"broadcaster_user_id":{},"user_id":{}}},"transport":{}}}"#,
            json_str(self.kind),
            json_str(self.version),
            json_str(self.broadcaster_user_id),
            json_str(self.user_id),
            self.transport.to_json()
        )
    }
}

/// A JSON string literal (quotes included) with the required escapes.
pub(super) fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    crate::http::response::json_escape(s, &mut out);
    out.push('"');
    out
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub(super) fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[derive(DeJson)]
pub struct Data<T> {
    pub data: Vec<T>,
}

#[derive(DeJson)]
pub struct ErrorBody {
    pub error: Option<String>,
    pub message: Option<String>,
}

#[derive(DeJson)]
pub struct Validate {
    pub client_id: String,
    pub login: Option<String>,
    pub user_id: Option<String>,
    pub scopes: Option<Vec<String>>,
    pub expires_in: u64,
}

#[derive(DeJson)]
pub struct Token {
    pub access_token: String,
    pub expires_in: u64,
}

#[derive(DeJson)]
pub struct User {
    pub id: String,
    pub login: String,
}

#[derive(DeJson)]
pub struct Condition {
    pub broadcaster_user_id: Option<String>,
    pub user_id: Option<String>,
}

#[derive(DeJson)]
pub struct TransportShape {
    pub method: String,
    pub callback: Option<String>,
    pub session_id: Option<String>,
    pub conduit_id: Option<String>,
}

#[derive(DeJson)]
pub struct Subscription {
    pub id: String,
    pub status: String,
    #[nserde(rename = "type")]
    pub kind: String,
    pub condition: Option<Condition>,
    pub transport: TransportShape,
}

impl Subscription {
    pub fn flatten(self) -> super::Subscription {
        let (broadcaster_user_id, user_id) = match self.condition {
            Some(c) => (c.broadcaster_user_id, c.user_id),
            None => (None, None),
        };
        super::Subscription {
            id: self.id,
            status: self.status,
            kind: self.kind,
            broadcaster_user_id,
            user_id,
            method: self.transport.method,
            session_id: self.transport.session_id,
            conduit_id: self.transport.conduit_id,
        }
    }
}

#[derive(DeJson)]
pub struct Pagination {
    pub cursor: Option<String>,
}

#[derive(DeJson)]
pub struct SubscriptionPage {
    pub data: Vec<Subscription>,
    pub pagination: Option<Pagination>,
}

#[derive(DeJson)]
pub struct Shard {
    pub id: String,
    pub status: String,
    pub transport: TransportShape,
}

impl Shard {
    pub fn flatten(self) -> super::Shard {
        super::Shard {
            id: self.id,
            status: self.status,
            method: self.transport.method,
            callback: self.transport.callback,
            session_id: self.transport.session_id,
        }
    }
}

#[derive(DeJson)]
pub struct ShardsResponse {
    pub data: Vec<Shard>,
    pub errors: Option<Vec<super::ShardError>>,
}
