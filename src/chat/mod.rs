//! Chat sources. Every source turns what it receives into a [`ChatMessage`]
//! and hands it to the one entry point, [`crate::hub::Hub::chat`]: `demo`
//! (synthetic chat), `irc` (anonymous or token IRC over TLS), `eventsub_ws`
//! (EventSub WebSocket, user token) and `webhook` (EventSub webhooks through a
//! conduit); `eventsub` parses the payload the two EventSub sources share.
//! One source per deployment (`[twitch] source`), started by [`spawn_source`].

pub mod demo;
pub mod eventsub;
pub mod eventsub_ws;
pub mod irc;
pub mod webhook;

use std::sync::Arc;

use crate::app::App;
use crate::config::ChatSourceKind;
pub use crate::metrics::ChatSource;

/// One chat line, as every source delivers it.
#[derive(Debug, Clone)]
pub struct ChatMessage {
    pub source: ChatSource,
    /// Broadcaster login (lower-case), the key of the channel.
    pub channel: String,
    /// Stable chatter id (Twitch user id, or a synthetic one for the demo).
    pub chatter_id: String,
    pub text: String,
    /// Source message id when the source has one (for de-duplication later).
    pub message_id: Option<String>,
    /// When the source says the message was sent (Unix ms), if it says.
    pub sent_ms: Option<u64>,
}

/// Longest chat text we look at; Twitch caps messages at 500 characters.
pub const MAX_TEXT_BYTES: usize = 2048;

/// Starts the configured Twitch source as a task (it reconnects on its own and
/// ends only when cancelled at shutdown).
pub fn spawn_source(ex: &smol::Executor<'static>, app: &Arc<App>) -> Option<smol::Task<()>> {
    let app = Arc::clone(app);
    match app.config.twitch.source {
        ChatSourceKind::None => None,
        ChatSourceKind::Irc => Some(ex.spawn(irc::irc_loop(app))),
        ChatSourceKind::EventSubWebhook => Some(ex.spawn(webhook::conduit_loop(app))),
        ChatSourceKind::EventSubWs => Some(ex.spawn(eventsub_ws::eventsub_ws_loop(app))),
    }
}
