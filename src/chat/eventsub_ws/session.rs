//! One EventSub session, from connect to its end: wait for the welcome,
//! subscribe (once per fresh session), hand chat to the hub, watch the
//! keepalive, and follow `session_reconnect` without losing a message. It
//! returns why it ended; `socket` decides what happens next.
//!
//! A session holds up to three sockets, all read in one loop: the `live` one,
//! a `next` one connecting or waiting for its welcome (first connect or the
//! `reconnect_url`), and the `old` one after a hand-over, read until Twitch
//! closes it. Notifications from any of them count once (ids are remembered).
//! We never send anything: tungstenite answers pings with pongs while reading.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use async_tungstenite::tungstenite::{Error as WsError, Message};
use futures_util::StreamExt;
use smol::Timer;
use smol::future::{FutureExt, race};

use super::socket::{CONNECT_TIMEOUT, End, Ws, connect, describe};
use super::{Channel, Ctx, subscribe};
use crate::app::now_ms;
use crate::chat::ChatSource;
use crate::chat::eventsub::{Session, WsMessage, chat_message_from_payload, parse_ws_message};
use crate::chat::webhook::verify::{SeenIds, parse_rfc3339_ms};
use crate::metrics::EventSubWsMessage as Kind;

/// Twitch sends the welcome right after the handshake.
const WELCOME_TIMEOUT: Duration = Duration::from_secs(10);
/// Twitch sends a keepalive *at* the timeout; allow for the network on top.
const KEEPALIVE_GRACE: Duration = Duration::from_secs(3);
/// Used when a welcome names no keepalive (Twitch's default).
const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(10);
/// Twitch allows 10–600 s; a larger value from the wire is cut to this.
const MAX_KEEPALIVE_SECS: u64 = 600;
/// After a hand-over the old socket is read this long at most; Twitch closes
/// it once the new one is welcomed.
const OLD_SOCKET_LIMIT: Duration = Duration::from_secs(30);

type Pending<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Which of a session's sockets something came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sock {
    Live,
    Next,
    Old,
}

enum Event {
    Read(Sock, Option<Result<Message, WsError>>),
    Connected(Result<Box<Ws>, String>),
    Subscribed(Result<usize, String>),
    Deadline,
    OldExpired,
}

/// One session's state; see the module doc.
pub(super) struct Run<'a> {
    ctx: &'a Ctx,
    socket: usize,
    channels: &'a [Channel],
    seen: &'a mut SeenIds,
    session: Option<Session>,
    live: Option<Ws>,
    next: Option<Ws>,
    old: Option<(Ws, Instant)>,
    connecting: Option<Pending<'a, Result<Box<Ws>, String>>>,
    subscribing: Option<Pending<'a, Result<usize, String>>>,
    /// Keepalive deadline of `live`, or the welcome deadline of `next`.
    deadline: Instant,
}

impl<'a> Run<'a> {
    pub(super) fn new(
        ctx: &'a Ctx,
        socket: usize,
        channels: &'a [Channel],
        seen: &'a mut SeenIds,
    ) -> Self {
        let url = ctx.app.config.twitch.eventsub_ws_url.clone();
        Run {
            ctx,
            socket,
            channels,
            seen,
            session: None,
            live: None,
            next: None,
            old: None,
            connecting: Some(Box::pin(connect(ctx, url))),
            subscribing: None,
            deadline: Instant::now() + CONNECT_TIMEOUT + WELCOME_TIMEOUT,
        }
    }

    /// Runs the session to its end.
    pub(super) async fn go(mut self) -> End {
        loop {
            let event = self.wait().await;
            if let Err(end) = self.handle(event) {
                return end;
            }
        }
    }

    /// The next thing that happens on any socket, future or timer.
    async fn wait(&mut self) -> Event {
        let Run {
            live,
            next,
            old,
            connecting,
            subscribing,
            deadline,
            ..
        } = self;
        let read_live = async { Event::Read(Sock::Live, read(live.as_mut()).await) };
        let read_next = async { Event::Read(Sock::Next, read(next.as_mut()).await) };
        let read_old = async {
            match old {
                Some((ws, until)) => {
                    async { Event::Read(Sock::Old, ws.next().await) }
                        .or(async {
                            Timer::at(*until).await;
                            Event::OldExpired
                        })
                        .await
                }
                None => std::future::pending().await,
            }
        };
        let connected = async {
            match connecting {
                Some(c) => Event::Connected(c.await),
                None => std::future::pending().await,
            }
        };
        let subscribed = async {
            match subscribing {
                Some(s) => Event::Subscribed(s.await),
                None => std::future::pending().await,
            }
        };
        let timer = async {
            Timer::at(*deadline).await;
            Event::Deadline
        };
        // `race` picks fairly, so a flood of chat cannot starve the subscribing;
        // the clock only matters when nothing else happens.
        race(
            race(read_live, read_next),
            race(read_old, race(connected, subscribed)),
        )
        .or(timer)
        .await
    }

    fn handle(&mut self, event: Event) -> Result<(), End> {
        match event {
            Event::Read(from, Some(Ok(Message::Text(text)))) => self.on_text(from, &text),
            Event::Read(from, Some(Ok(Message::Close(frame)))) => {
                let (code, reason) = frame.map_or((1005, String::new()), |f| {
                    (u16::from(f.code), f.reason.to_string())
                });
                self.on_gone(from, End::Closed(code, reason))
            }
            // Pings are answered by tungstenite and do not count as activity.
            Event::Read(_, Some(Ok(_))) => Ok(()),
            Event::Read(from, Some(Err(e))) => self.on_gone(from, End::Lost(format!("read: {e}"))),
            Event::Read(from, None) => self.on_gone(from, End::Lost("connection closed".into())),
            Event::Connected(result) => {
                self.connecting = None;
                match result {
                    Ok(ws) => self.next = Some(*ws),
                    Err(e) => return self.on_gone(Sock::Next, End::Lost(e)),
                }
                Ok(())
            }
            Event::Subscribed(result) => {
                self.subscribing = None;
                let n = result.map_err(End::Auth)?;
                log::info!(
                    "{}: {n} of {} channel subscription(s) on session {}",
                    self.tag(),
                    self.channels.len(),
                    self.session_id()
                );
                Ok(())
            }
            Event::Deadline if self.live.is_some() => Err(End::Lost(format!(
                "no message within the keepalive time + {KEEPALIVE_GRACE:?}"
            ))),
            Event::Deadline => Err(End::Lost("no welcome in time".into())),
            Event::OldExpired => {
                self.old = None;
                Ok(())
            }
        }
    }

    /// A socket closed or failed. The session survives while another socket
    /// can carry it (a hand-over in flight, or the old socket after one).
    fn on_gone(&mut self, from: Sock, end: End) -> Result<(), End> {
        match from {
            Sock::Old => self.old = None,
            Sock::Next if self.live.is_some() => {
                log::warn!(
                    "{}: reconnect socket failed: {}",
                    self.tag(),
                    describe(&end)
                );
                self.next = None;
            }
            Sock::Live if self.next.is_some() || self.connecting.is_some() => {
                self.live = None;
                self.deadline = Instant::now() + WELCOME_TIMEOUT;
            }
            Sock::Next | Sock::Live => return Err(end),
        }
        Ok(())
    }

    fn on_text(&mut self, from: Sock, text: &str) -> Result<(), End> {
        let metrics = &self.ctx.app.metrics;
        let (meta, message) = match parse_ws_message(text) {
            Ok(parsed) => parsed,
            Err(e) => {
                metrics.eventsub_ws_messages.inc(Kind::Invalid);
                log::warn!("{}: unreadable message ({e})", self.tag());
                return Ok(());
            }
        };
        if from == Sock::Live && !matches!(message, WsMessage::Welcome(_)) {
            self.deadline = Instant::now() + self.keepalive();
        }
        match message {
            WsMessage::Welcome(session) => {
                metrics.eventsub_ws_messages.inc(Kind::Welcome);
                self.on_welcome(from, session);
            }
            WsMessage::Keepalive => metrics.eventsub_ws_messages.inc(Kind::Keepalive),
            WsMessage::Notification(payload) => {
                let sent_ms = parse_rfc3339_ms(&meta.message_timestamp);
                self.on_notification(payload, sent_ms);
            }
            WsMessage::Reconnect(session) => {
                metrics.eventsub_ws_messages.inc(Kind::Reconnect);
                self.on_reconnect(session);
            }
            WsMessage::Revocation(sub) => {
                metrics.eventsub_ws_messages.inc(Kind::Revocation);
                let broadcaster = sub.condition.and_then(|c| c.broadcaster_user_id);
                let login = self
                    .channels
                    .iter()
                    .find(|c| Some(&c.id) == broadcaster.as_ref())
                    .map_or("?", |c| c.login.as_str());
                log::error!(
                    "{}: Twitch revoked the {} subscription {} of channel {login}: {} \
                     (chat of {login} stops until the next reconnect)",
                    self.tag(),
                    sub.kind,
                    sub.id,
                    sub.status
                );
                if sub.status == "authorization_revoked" {
                    self.ctx.revalidate_soon();
                }
            }
            WsMessage::Other(kind) => {
                metrics.eventsub_ws_messages.inc(Kind::Other);
                log::debug!("{}: ignoring message type {kind:?}", self.tag());
            }
        }
        Ok(())
    }

    /// First welcome: subscribe. Welcome on the reconnect socket: switch to it;
    /// the subscriptions moved with the session, so nothing is created.
    fn on_welcome(&mut self, from: Sock, session: Session) {
        if from != Sock::Next {
            log::warn!("{}: unexpected welcome; ignored", self.tag());
            return;
        }
        let handover = self.session.is_some();
        if let Some(old) = self.live.take() {
            self.old = Some((old, Instant::now() + OLD_SOCKET_LIMIT));
        }
        self.live = self.next.take();
        self.session = Some(session);
        self.deadline = Instant::now() + self.keepalive();
        self.ctx.set_connected(self.socket, true);
        if handover {
            log::info!("{}: moved to session {}", self.tag(), self.session_id());
            return;
        }
        log::info!(
            "{}: session {} (keepalive {:?}); subscribing {} channel(s)",
            self.tag(),
            self.session_id(),
            self.keepalive() - KEEPALIVE_GRACE,
            self.channels.len()
        );
        let id = self.session_id().to_string();
        self.subscribing = Some(Box::pin(subscribe::subscribe_all(
            self.ctx,
            id,
            self.channels,
        )));
    }

    fn on_reconnect(&mut self, session: Session) {
        let Some(url) = session.reconnect_url.filter(|u| !u.is_empty()) else {
            log::warn!(
                "{}: session_reconnect without a URL; waiting for the close",
                self.tag()
            );
            return;
        };
        log::info!(
            "{}: Twitch asked for a reconnect; connecting to the new URL",
            self.tag()
        );
        self.next = None;
        self.connecting = Some(Box::pin(connect(self.ctx, url)));
    }

    fn on_notification(&mut self, payload: &str, sent_ms: Option<u64>) {
        let metrics = &self.ctx.app.metrics;
        let mut msg = match chat_message_from_payload(payload, ChatSource::EventSubWs) {
            Ok(msg) => msg,
            Err(e) => {
                metrics.eventsub_ws_messages.inc(Kind::Invalid);
                log::warn!("{}: unreadable notification ({e})", self.tag());
                return;
            }
        };
        let now = now_ms();
        // Per channel: in shared chat one message reaches several channels.
        let key = format!(
            "{}/{}",
            msg.channel,
            msg.message_id.as_deref().unwrap_or("")
        );
        if !self.seen.insert(&key, now) {
            metrics.eventsub_ws_messages.inc(Kind::Duplicate);
            return;
        }
        metrics.eventsub_ws_messages.inc(Kind::Notification);
        msg.sent_ms = sent_ms;
        self.ctx.app.hub.chat(&msg, now);
        metrics
            .chat_source_last_message
            .set(ChatSource::EventSubWs, (now / 1000) as i64);
    }

    fn keepalive(&self) -> Duration {
        let secs = self
            .session
            .as_ref()
            .and_then(|s| s.keepalive_timeout_seconds);
        secs.filter(|s| *s > 0).map_or(DEFAULT_KEEPALIVE, |s| {
            Duration::from_secs(s.min(MAX_KEEPALIVE_SECS))
        }) + KEEPALIVE_GRACE
    }

    fn session_id(&self) -> &str {
        self.session.as_ref().map_or("-", |s| s.id.as_str())
    }

    fn tag(&self) -> String {
        format!("twitch eventsub-ws[{}]", self.socket)
    }
}

async fn read(ws: Option<&mut Ws>) -> Option<Result<Message, WsError>> {
    match ws {
        Some(ws) => ws.next().await,
        None => std::future::pending().await,
    }
}
