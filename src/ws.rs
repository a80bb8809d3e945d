//! One overlay WebSocket: the upgrade answer, then a single task that reads
//! (pongs, and anything the overlay sends, capped at 4 KiB), writes frames from
//! the bounded outbox, pings every 30 s (first ping at a random offset so many
//! sockets are not pinged in one burst) and closes with 1001 on shutdown.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use async_tungstenite::tungstenite::{Bytes, Message};
use futures_util::StreamExt;
use smol::Timer;
use smol::future::FutureExt;

use crate::app::App;
use crate::hub::{Outbound, Subscription};
use crate::limits::Permit;
use crate::metrics::InboundDropReason;
use crate::tls::Conn;

/// Ping interval (browsers answer pings; proxies see traffic well inside 60 s).
const PING_EVERY: Duration = Duration::from_secs(30);
/// No frame (pong or other) from the overlay for this long: the peer is gone.
const DEAD_AFTER: Duration = Duration::from_secs(60);
/// A single write that takes longer than this means a stuck client.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Initial read buffer: overlays send only pongs, so keep idle sockets small.
const READ_BUFFER: usize = 256;

pub fn socket_config(max_message: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_write_buffer_size(256 * 1024)
        .max_message_size(Some(max_message))
        .max_frame_size(Some(max_message))
}

enum Event {
    Inbound(Option<Result<Message, async_tungstenite::tungstenite::Error>>),
    Outbound(Option<Outbound>),
    Ping,
}

/// Runs an upgraded overlay connection until either side ends it.
pub async fn serve_overlay(
    app: Arc<App>,
    stream: Conn,
    leftover: Vec<u8>,
    sub: Subscription,
    permit: Permit,
) {
    let cfg = socket_config(app.config.limits.ws_max_message_bytes as usize);
    let mut ws =
        WebSocketStream::from_partially_read(stream, leftover, Role::Server, Some(cfg)).await;
    let metrics = &app.metrics;
    metrics.ws_connections_current.inc();
    let started = Instant::now();
    let mut last_seen = Instant::now();
    // One timer for the socket's life, re-armed after each ping: creating a
    // timer per loop turn would re-register it with the reactor for every frame.
    let mut ping_timer = Timer::at(Instant::now() + jitter(PING_EVERY));
    let close = loop {
        // Outbox first: a wake-up for a frame is answered without a read
        // attempt on the socket (one syscall less per delivered frame).
        let event = async { Event::Outbound(sub.rx.recv().await) }
            .or(async { Event::Inbound(ws.next().await) })
            .or(async {
                (&mut ping_timer).await;
                Event::Ping
            })
            .await;
        match event {
            Event::Inbound(Some(Ok(msg))) => {
                last_seen = Instant::now();
                if let Message::Close(_) = msg {
                    break None;
                }
            }
            Event::Inbound(Some(Err(err))) => {
                use async_tungstenite::tungstenite::Error as E;
                match err {
                    E::Capacity(_) => {
                        metrics.ws_inbound_dropped.inc(InboundDropReason::TooLarge);
                        break Some((CloseCode::Size, "message too large"));
                    }
                    E::Protocol(_) | E::Utf8(_) => {
                        metrics.ws_inbound_dropped.inc(InboundDropReason::Protocol);
                        break Some((CloseCode::Protocol, "protocol error"));
                    }
                    _ => break None,
                }
            }
            Event::Inbound(None) => break None,
            Event::Outbound(Some(Outbound::Frame(text))) => {
                // Boxed: the send path's state is not kept in every idle socket's task.
                if !Box::pin(send(&mut ws, Message::Text(text))).await {
                    break None;
                }
                metrics.ws_messages_sent.inc();
            }
            Event::Outbound(Some(Outbound::Close(code, reason))) => {
                break Some((CloseCode::from(code), reason));
            }
            // Evicted as a slow client (or the node is going away).
            Event::Outbound(None) if app.is_draining() => {
                break Some((CloseCode::Away, "server shutting down"));
            }
            Event::Outbound(None) => break Some((CloseCode::Again, "too slow, reconnect")),
            Event::Ping => {
                if last_seen.elapsed() > DEAD_AFTER {
                    metrics.ws_pong_timeouts.inc();
                    break None;
                }
                ping_timer.set_at(Instant::now() + PING_EVERY);
                if !Box::pin(send(&mut ws, Message::Ping(Bytes::new()))).await {
                    break None;
                }
                metrics.ws_pings_sent.inc();
            }
        }
    };
    app.hub.unsubscribe(&sub.login, sub.id);
    if let Some((code, reason)) = close {
        Box::pin(close_with(&mut ws, code, reason)).await;
    }
    metrics.ws_connections_current.dec();
    metrics
        .ws_connection_duration
        .observe(started.elapsed().as_secs_f64());
    drop(permit);
}

async fn close_with(ws: &mut WebSocketStream<Conn>, code: CloseCode, reason: &'static str) {
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    let _ = ws
        .close(Some(frame))
        .or(async {
            Timer::after(WRITE_TIMEOUT).await;
            Ok(())
        })
        .await;
}

async fn send(ws: &mut WebSocketStream<Conn>, msg: Message) -> bool {
    let write = async { ws.send(msg).await.is_ok() };
    write
        .or(async {
            Timer::after(WRITE_TIMEOUT).await;
            false
        })
        .await
}

/// A uniformly random duration in [0, max) from the process-wide RNG.
fn jitter(max: Duration) -> Duration {
    let mut b = [0u8; 8];
    let r = getrandom::fill(&mut b)
        .map(|_| u64::from_le_bytes(b))
        .unwrap_or(0);
    Duration::from_millis(r % max.as_millis().max(1) as u64)
}

/// Completes the handshake for an unknown or rotated token and closes at once
/// with `code`, so the overlay page can say so and stop retrying.
pub async fn close_invalid(app: Arc<App>, stream: Conn, code: u16) {
    let cfg = socket_config(app.config.limits.ws_max_message_bytes as usize);
    let mut ws = WebSocketStream::from_raw_socket(stream, Role::Server, Some(cfg)).await;
    let frame = CloseFrame {
        code: CloseCode::from(code),
        reason: "overlay URL no longer valid".into(),
    };
    let _ = ws
        .close(Some(frame))
        .or(async {
            Timer::after(WRITE_TIMEOUT).await;
            Ok(())
        })
        .await;
}
