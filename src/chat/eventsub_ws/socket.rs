//! One socket's life across sessions: [`socket_loop`] runs sessions one after
//! another with backoff and jitter, logs how each ended (Twitch's close codes
//! 4000–4007 by meaning), keeps `chat_source_*` metrics, and returns only when
//! the token stopped working. Also connecting to an EventSub URL.

use std::time::{Duration, Instant};

use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::protocol::WebSocketConfig;
use smol::Timer;
use smol::future::FutureExt;

use super::session::Run;
use super::{Backoff, Channel, Ctx, Stop};
use crate::chat::ChatSource;
use crate::chat::webhook::verify::SeenIds;
use crate::tls::{self, MaybeTls};
use crate::twitch::http::Url;

/// TCP + TLS + WebSocket handshake.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Twitch's messages are a few KB; anything near this is not Twitch.
const MAX_MESSAGE: usize = 1 << 20;
/// Reconnects start here and double up to the cap.
const RECONNECT_BACKOFF: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(120));
/// A session that lived this long was healthy: the next reconnect starts the
/// backoff over.
const HEALTHY_SESSION: Duration = Duration::from_secs(60);

pub(super) type Ws = WebSocketStream<MaybeTls>;

/// Why a session ended.
pub(super) enum End {
    /// The token stopped working (Helix said 401).
    Auth(String),
    /// Closed by Twitch with a code.
    Closed(u16, String),
    /// Anything else: connect failure, timeout, reset.
    Lost(String),
}

/// Reconnects one socket's channels forever; returns only on a token failure.
pub(super) async fn socket_loop(ctx: &Ctx, socket: usize, channels: &[Channel]) -> Stop {
    let mut backoff = Backoff::new(RECONNECT_BACKOFF.0, RECONNECT_BACKOFF.1);
    let mut seen = SeenIds::default();
    let _down = DownOnDrop(ctx, socket);
    loop {
        let started = Instant::now();
        let end = Run::new(ctx, socket, channels, &mut seen).go().await;
        ctx.set_connected(socket, false);
        if let End::Auth(why) = end {
            return Stop::Auth(format!("Helix refused the token: {why}"));
        }
        ctx.app
            .metrics
            .chat_source_reconnects
            .inc(ChatSource::EventSubWs);
        if started.elapsed() >= HEALTHY_SESSION {
            backoff.reset();
        }
        let delay = backoff.next();
        let tag = format!("twitch eventsub-ws[{socket}]");
        match end {
            End::Auth(_) => {} // returned above
            End::Closed(code, reason) => {
                let (level, meaning) = close_meaning(code);
                log::log!(
                    level,
                    "{tag}: closed {code} ({meaning}) {reason:?}; reconnecting in {delay:?}"
                );
            }
            End::Lost(why) => log::warn!("{tag}: {why}; reconnecting in {delay:?}"),
        }
        Timer::after(delay).await;
    }
}

/// Clears the socket's connected flag when the loop is cancelled.
struct DownOnDrop<'a>(&'a Ctx, usize);

impl Drop for DownOnDrop<'_> {
    fn drop(&mut self) {
        self.0.set_connected(self.1, false);
    }
}

/// What Twitch's close codes mean, and how loud to log them. 4001 and 4003
/// are our bugs (we sent something; we did not subscribe in time).
pub(super) fn close_meaning(code: u16) -> (log::Level, &'static str) {
    use log::Level::{Error, Warn};
    match code {
        4000 => (Warn, "Twitch internal server error"),
        4001 => (Error, "client sent inbound traffic: a ChatPulse bug"),
        4002 => (Warn, "client failed ping-pong"),
        4003 => (
            Error,
            "connection unused: no subscription within 10 s of the welcome",
        ),
        4004 => (Warn, "reconnect grace time expired"),
        4005 => (Warn, "network timeout"),
        4006 => (Warn, "network error"),
        4007 => (Warn, "invalid reconnect"),
        _ => (Warn, "closed by the server"),
    }
}

pub(super) fn describe(end: &End) -> String {
    match end {
        End::Auth(why) | End::Lost(why) => why.clone(),
        End::Closed(code, reason) => format!("closed {code} {reason:?}"),
    }
}

/// Connects to an EventSub URL (`wss://` with TLS, `ws://` plain for tests).
pub(super) async fn connect(ctx: &Ctx, url: String) -> Result<Box<Ws>, String> {
    let attempt = async {
        let target = Url::parse(&url).map_err(|e| e.to_string())?;
        let tls = target.tls.then_some(&ctx.tls);
        let stream = tls::connect(&target.host, target.port, tls)
            .await
            .map_err(|e| format!("connect {}: {e}", target.authority()))?;
        let config = WebSocketConfig::default()
            .max_message_size(Some(MAX_MESSAGE))
            .max_frame_size(Some(MAX_MESSAGE));
        async_tungstenite::client_async_with_config(url.as_str(), stream, Some(config))
            .await
            .map(|(ws, _)| Box::new(ws))
            .map_err(|e| format!("handshake with {}: {e}", target.authority()))
    };
    attempt
        .or(async {
            Timer::after(CONNECT_TIMEOUT).await;
            Err(format!("connect timed out after {CONNECT_TIMEOUT:?}"))
        })
        .await
}
