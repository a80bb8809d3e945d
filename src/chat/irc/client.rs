//! One IRC session: connect (TLS or plain), request tags, log in, JOIN every
//! channel of the hub at Twitch's pace, answer PINGs, and hand each PRIVMSG to
//! [`crate::hub::Hub::chat`]. It returns why it ended; the reconnect policy
//! lives in the parent module. One task owns the socket; nothing is shared.

use std::collections::{BTreeSet, VecDeque};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_rustls::rustls::ClientConfig;
use smol::Timer;
use smol::future::FutureExt;
use smol::io::{AsyncReadExt, AsyncWriteExt};

use super::parse::{LineBuffer, LineError, Message, parse_line};
use crate::app::{App, now_ms};
use crate::chat::{ChatMessage, ChatSource};
use crate::metrics::ChatDropReason;
use crate::tls::{self, MaybeTls};

/// Twitch PINGs every ~5 minutes, so a connection silent for 6 is dead (a
/// half-open TCP connection would otherwise wait forever).
const READ_TIMEOUT: Duration = Duration::from_secs(6 * 60);
/// TCP + TLS handshake; Twitch answers in well under a second.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// From connect to the `001` welcome; a server that never welcomes us is broken.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(30);
/// A write that cannot drain for this long means the peer stopped reading.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Twitch allows 20 JOINs per 10 seconds per account: one batch of at most 20
/// channels per window, with a second of margin.
const JOIN_BATCH: usize = 20;
const JOIN_WINDOW: Duration = Duration::from_secs(11);
/// Keeps a JOIN/PART line under IRC's 512 bytes (with room for CRLF).
const MAX_COMMAND_LINE: usize = 500;
/// How often the joined set is compared with the channels this node reads
/// ([`App::chat_channels`]): a channel added at runtime, or handed to this node
/// when a cluster member joined or failed, is joined within this long (then
/// at Twitch's JOIN pace). Only a set comparison when nothing changed.
const CHANNEL_SYNC_EVERY: Duration = Duration::from_secs(2);
/// One socket read.
const READ_CHUNK: usize = 4096;

/// Who we log in as.
pub(super) struct Login {
    pub nick: String,
    /// Sent as `PASS oauth:<token>`; `None` reads anonymously.
    pub token: Option<String>,
}

/// Why a session ended.
#[derive(Debug)]
pub(super) enum End {
    Setup(String),
    Connect(std::io::Error),
    Io(std::io::Error),
    Closed,
    TimedOut(&'static str),
    /// The server sent `RECONNECT`.
    Reconnect,
    /// A `NOTICE *` before the welcome: the token was refused.
    LoginFailed(String),
}

impl std::fmt::Display for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            End::Setup(e) => write!(f, "setup failed: {e}"),
            End::Connect(e) => write!(f, "connect failed: {e}"),
            End::Io(e) => write!(f, "connection lost: {e}"),
            End::Closed => write!(f, "server closed the connection"),
            End::TimedOut(what) => write!(f, "timed out waiting for {what}"),
            End::Reconnect => write!(f, "server asked for a reconnect"),
            End::LoginFailed(text) => write!(f, "login refused: {text}"),
        }
    }
}

pub(super) struct Report {
    pub end: End,
    /// Time between the welcome and the end (zero if never welcomed).
    pub logged_in_for: Duration,
}

/// Runs one session to its end. `tls` caches the client config across sessions.
pub(super) async fn session(
    app: &App,
    login: &Login,
    tls: &mut Option<Arc<ClientConfig>>,
) -> Report {
    let mut s = Session {
        app,
        joins: Joins::default(),
        welcomed: None,
        last_read: Instant::now(),
    };
    let end = match connect(app, tls).await {
        Ok(mut stream) => {
            let Err(end) = s.run(&mut stream, login).await;
            end
        }
        Err(end) => end,
    };
    let logged_in_for = s.welcomed.map_or(Duration::ZERO, |t| t.elapsed());
    Report { end, logged_in_for }
}

async fn connect(app: &App, tls: &mut Option<Arc<ClientConfig>>) -> Result<MaybeTls, End> {
    let twitch = &app.config.twitch;
    if twitch.irc_tls && tls.is_none() {
        let config = tls::client_config(twitch.ca_file.as_deref());
        *tls = Some(config.map_err(|e| End::Setup(e.to_string()))?);
    }
    // The config checked `host:port` already.
    let (host, port) = twitch.irc_addr.rsplit_once(':').unwrap_or_default();
    let port = port.parse().unwrap_or(0);
    let config = if twitch.irc_tls { tls.as_ref() } else { None };
    let connect = async { tls::connect(host, port, config).await.map_err(End::Connect) };
    connect
        .or(async {
            Timer::after(CONNECT_TIMEOUT).await;
            Err(End::TimedOut("the connection"))
        })
        .await
}

struct Session<'a> {
    app: &'a App,
    joins: Joins,
    /// When the `001` welcome arrived.
    welcomed: Option<Instant>,
    last_read: Instant,
}

impl Session<'_> {
    /// Returns only with the reason the session ended.
    async fn run(&mut self, stream: &mut MaybeTls, login: &Login) -> Result<Infallible, End> {
        let started = Instant::now();
        let mut hello = String::from("CAP REQ :twitch.tv/tags twitch.tv/commands\r\n");
        if let Some(token) = &login.token {
            hello += &format!("PASS oauth:{token}\r\n");
        }
        hello += &format!("NICK {}\r\n", login.nick);
        send(stream, &hello).await?;
        let mut lines = LineBuffer::new();
        let mut chunk = vec![0u8; READ_CHUNK];
        loop {
            let (deadline, what) = match self.welcomed {
                Some(_) => (self.last_read + READ_TIMEOUT, "a line (Twitch pings)"),
                None => (started + LOGIN_TIMEOUT, "the welcome"),
            };
            let wake = deadline.min(self.joins.next_due(self.welcomed.is_some()));
            let read = async { Some(stream.read(&mut chunk).await) };
            let timer = async {
                Timer::at(wake).await;
                None
            };
            match read.or(timer).await {
                Some(Ok(0)) => return Err(End::Closed),
                Some(Ok(n)) => {
                    self.last_read = Instant::now();
                    lines.extend(&chunk[..n]);
                    while let Some(line) = lines.next_line() {
                        match line {
                            Ok(line) => self.handle(stream, line).await?,
                            Err(e) => self.dropped(e),
                        }
                    }
                }
                Some(Err(e)) => return Err(End::Io(e)),
                None if Instant::now() >= deadline => return Err(End::TimedOut(what)),
                None => self.joins.advance(stream, self.app).await?,
            }
        }
    }

    fn dropped(&self, e: LineError) {
        let reason = match e {
            LineError::TooLong => ChatDropReason::TooLong,
            LineError::NotUtf8 => ChatDropReason::Malformed,
        };
        log::debug!("irc: line dropped: {e:?}");
        self.app.metrics.chat_lines_dropped.inc(reason);
    }

    async fn handle(&mut self, stream: &mut MaybeTls, line: &str) -> Result<(), End> {
        let msg = match parse_line(line) {
            Ok(msg) => msg,
            Err(e) => {
                log::debug!("irc: unparsable line dropped ({e}): {line:.200}");
                self.app
                    .metrics
                    .chat_lines_dropped
                    .inc(ChatDropReason::Malformed);
                return Ok(());
            }
        };
        match msg.command {
            "PRIVMSG" => self.chat(&msg),
            "PING" if msg.args.is_empty() => send(stream, "PONG :tmi.twitch.tv\r\n").await?,
            "PING" => send(stream, &format!("PONG {}\r\n", msg.args)).await?,
            "001" => {
                self.welcomed = Some(Instant::now());
                self.app
                    .metrics
                    .chat_source_connected
                    .set(ChatSource::Irc, 1);
                let nick = msg.params().next().unwrap_or_default();
                log::info!("irc: logged in as {nick}; joining channels");
                self.joins.advance(stream, self.app).await?;
            }
            "RECONNECT" => return Err(End::Reconnect),
            "NOTICE" => self.notice(&msg)?,
            "CAP" if msg.params().nth(1) == Some("NAK") => log::warn!(
                "irc: Twitch refused capabilities {:?}; chatters are told apart by login",
                msg.trailing.unwrap_or_default()
            ),
            _ => {}
        }
        Ok(())
    }

    fn chat(&self, msg: &Message<'_>) {
        let Some(p) = msg.privmsg() else {
            self.app
                .metrics
                .chat_lines_dropped
                .inc(ChatDropReason::Malformed);
            return;
        };
        let now = now_ms();
        let chat = ChatMessage {
            source: ChatSource::Irc,
            channel: p.channel.into_owned(),
            // No tags (capability refused) leaves the login, which is stable too.
            chatter_id: p.user_id.or(p.nick).unwrap_or_default().to_string(),
            text: p.text.to_string(),
            message_id: p.id.map(str::to_string),
            sent_ms: p.sent_ms,
        };
        // Before the hub publishes, so whoever sees the vote sees the timestamp.
        self.app
            .metrics
            .chat_source_last_message
            .set(ChatSource::Irc, (now / 1000) as i64);
        self.app.hub.chat(&chat, now);
    }

    fn notice(&self, msg: &Message<'_>) -> Result<(), End> {
        let text = msg.trailing.unwrap_or_default();
        let target = msg.params().next().unwrap_or_default();
        if self.welcomed.is_none() && target == "*" {
            return Err(End::LoginFailed(text.to_string()));
        }
        let id = msg.tags.get("msg-id").unwrap_or("notice");
        log::info!("irc: Twitch says to {target}: {text} ({id})");
        Ok(())
    }
}

async fn send(stream: &mut MaybeTls, text: &str) -> Result<(), End> {
    let write = async {
        stream.write_all(text.as_bytes()).await?;
        stream.flush().await
    };
    let write = async { write.await.map_err(End::Io) };
    write
        .or(async {
            Timer::after(WRITE_TIMEOUT).await;
            Err(End::TimedOut("the server to read"))
        })
        .await
}

/// The channels this session reads, kept equal to the hub's channels: new ones
/// queue for a JOIN paced by [`JOIN_WINDOW`], dropped ones are PARTed at once.
#[derive(Default)]
struct Joins {
    /// JOIN sent.
    joined: BTreeSet<String>,
    queue: VecDeque<String>,
    next_batch: Option<Instant>,
    next_sync: Option<Instant>,
}

impl Joins {
    /// When [`Joins::advance`] has work; far future before the welcome.
    fn next_due(&self, welcomed: bool) -> Instant {
        let far = Instant::now() + READ_TIMEOUT;
        if !welcomed {
            return far;
        }
        let sync = self.next_sync.unwrap_or_else(Instant::now);
        match (self.queue.is_empty(), self.next_batch) {
            (false, Some(batch)) => sync.min(batch),
            (false, None) => Instant::now(),
            (true, _) => sync,
        }
    }

    /// Syncs with the hub when due and sends the next JOIN batch when allowed.
    async fn advance(&mut self, stream: &mut MaybeTls, app: &App) -> Result<(), End> {
        let now = Instant::now();
        if self.next_sync.is_none_or(|t| now >= t) {
            self.next_sync = Some(now + CHANNEL_SYNC_EVERY);
            let wanted: BTreeSet<String> = app.chat_channels();
            let gone: Vec<String> = self.joined.difference(&wanted).cloned().collect();
            for line in command_lines("PART", &gone, usize::MAX) {
                send(stream, &line).await?;
            }
            self.joined.retain(|c| wanted.contains(c));
            self.queue.retain(|c| wanted.contains(c));
            for login in wanted {
                if !self.joined.contains(&login) && !self.queue.contains(&login) {
                    self.queue.push_back(login);
                }
            }
        }
        if !self.queue.is_empty() && self.next_batch.is_none_or(|t| now >= t) {
            let batch: Vec<String> = self.queue.iter().take(JOIN_BATCH).cloned().collect();
            let lines = command_lines("JOIN", &batch, JOIN_BATCH);
            let Some(line) = lines.first() else {
                return Ok(());
            };
            send(stream, line).await?;
            let sent = line.matches('#').count();
            self.joined.extend(self.queue.drain(..sent));
            self.next_batch = Some(now + JOIN_WINDOW);
            log::debug!("irc: joined {sent} channels, {} queued", self.queue.len());
        }
        Ok(())
    }
}

/// `JOIN #a,#b` lines (CRLF included) of at most `per_line` channels and
/// [`MAX_COMMAND_LINE`] bytes each.
pub(super) fn command_lines(command: &str, channels: &[String], per_line: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    let mut count = 0;
    for channel in channels {
        if count == per_line || line.len() + channel.len() + 2 > MAX_COMMAND_LINE {
            lines.push(std::mem::take(&mut line) + "\r\n");
            count = 0;
        }
        line += if count == 0 { command } else { "," };
        line += if count == 0 { " #" } else { "#" };
        line += channel;
        count += 1;
    }
    if count > 0 {
        lines.push(line + "\r\n");
    }
    lines
}
