//! An in-process fake of Twitch's EventSub WebSocket server on `127.0.0.1:0`,
//! driven by the test. Every connection gets a `session_welcome` with a new
//! session id (`sess-N`) and the configured keepalive, then keepalives at half
//! that interval until the test silences it. The test sends notifications
//! (Twitch's documented `channel.chat.message` envelope and payload),
//! `session_reconnect` (its URL points back at this fake), revocations, pings
//! and close codes, and reads what each connection saw: its path, whether it
//! is open, pongs, and anything else the client sent (which must be nothing).
//! Subscriptions live in the fake Helix; tests match them by session id.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_tungstenite::tungstenite::Message;
use async_tungstenite::tungstenite::handshake::server::{Request, Response};
use async_tungstenite::tungstenite::protocol::CloseFrame;
use futures_util::StreamExt;
use smol::channel::{Receiver, Sender};
use smol::future::FutureExt;
use smol::net::{TcpListener, TcpStream};

/// Twitch's `channel.chat.message` v1 example (reference §1(b)), byte for byte.
pub const DOC_PAYLOAD: &str = r##"{
  "subscription": {
    "id": "0b7f3361-672b-4d39-b307-dd5b576c9b27",
    "status": "enabled",
    "type": "channel.chat.message",
    "version": "1",
    "condition": { "broadcaster_user_id": "1971641", "user_id": "2914196" },
    "transport": { "method": "websocket", "session_id": "AgoQHR3s6Mb4T8GFB1l3DlPfiRIGY2VsbC1h" },
    "created_at": "2023-11-06T18:11:47.492253549Z",
    "cost": 0
  },
  "event": {
    "broadcaster_user_id": "1971641",
    "broadcaster_user_login": "streamer",
    "broadcaster_user_name": "streamer",
    "chatter_user_id": "4145994",
    "chatter_user_login": "viewer32",
    "chatter_user_name": "viewer32",
    "message_id": "cc106a89-1814-919d-454c-f4f2f970aae7",
    "message": {
      "text": "Hi chat",
      "fragments": [
        { "type": "text", "text": "Hi chat", "cheermote": null, "emote": null, "mention": null }
      ]
    },
    "color": "#00FF7F",
    "badges": [
      { "set_id": "moderator",  "id": "1",  "info": "" },
      { "set_id": "subscriber", "id": "12", "info": "16" },
      { "set_id": "sub-gifter", "id": "1",  "info": "" }
    ],
    "message_type": "text",
    "cheer": null,
    "reply": null,
    "channel_points_custom_reward_id": null
  }
}"##;

/// The documented payload with the chatter, message id and text replaced.
pub fn chat_payload(chatter_id: &str, message_id: &str, text: &str) -> String {
    DOC_PAYLOAD
        .replace("4145994", chatter_id)
        .replace("cc106a89-1814-919d-454c-f4f2f970aae7", message_id)
        .replace("Hi chat", text)
}

/// What a connection saw, for assertions.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// Request path and query (`/ws`, or `/ws?reconnect=sess-1`).
    pub path: String,
    pub session_id: String,
    pub open: bool,
    pub pongs: usize,
    /// Frames from the client other than pongs and its close reply.
    pub inbound: Vec<String>,
}

enum Cmd {
    Send(Message),
    Close(u16),
    Silence,
}

struct Conn {
    info: ConnInfo,
    tx: Sender<Cmd>,
}

struct State {
    conns: Vec<Conn>,
    keepalive_secs: u64,
}

type Shared = Arc<Mutex<State>>;

pub struct FakeEventSub {
    pub addr: SocketAddr,
    state: Shared,
    next_message: AtomicU64,
    _accept: smol::Task<()>,
}

impl FakeEventSub {
    /// `keepalive_secs` goes into every welcome.
    pub async fn start(keepalive_secs: u64) -> FakeEventSub {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake eventsub");
        let addr = listener.local_addr().expect("fake eventsub addr");
        let state = Arc::new(Mutex::new(State {
            conns: Vec::new(),
            keepalive_secs,
        }));
        let accept = smol::spawn(accept_loop(listener, Arc::clone(&state)));
        FakeEventSub {
            addr,
            state,
            next_message: AtomicU64::new(1),
            _accept: accept,
        }
    }

    /// `twitch.eventsub_ws_url` for a node under test.
    pub fn url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn connections(&self) -> Vec<ConnInfo> {
        self.lock().conns.iter().map(|c| c.info.clone()).collect()
    }

    pub fn connection(&self, i: usize) -> Option<ConnInfo> {
        self.lock().conns.get(i).map(|c| c.info.clone())
    }

    fn command(&self, i: usize, cmd: Cmd) {
        let tx = self.lock().conns[i].tx.clone();
        tx.try_send(cmd).expect("connection task alive");
    }

    fn metadata(&self, kind: &str, sub_type: Option<&str>) -> String {
        let n = self.next_message.fetch_add(1, Ordering::SeqCst);
        let sub = sub_type
            .map(|t| format!(r#","subscription_type":"{t}","subscription_version":"1""#))
            .unwrap_or_default();
        format!(
            r#"{{"message_id":"fake-msg-{n}","message_type":"{kind}","message_timestamp":"2023-11-06T18:11:47.492253549Z"{sub}}}"#
        )
    }

    pub fn send_text(&self, i: usize, text: String) {
        self.command(i, Cmd::Send(Message::Text(text.into())));
    }

    /// A `notification` envelope around `payload`.
    pub fn notify(&self, i: usize, payload: &str) {
        let meta = self.metadata("notification", Some("channel.chat.message"));
        self.send_text(i, format!(r#"{{"metadata":{meta},"payload":{payload}}}"#));
    }

    /// One chat line in channel "streamer" (the documented payload, edited).
    pub fn chat(&self, i: usize, chatter_id: &str, message_id: &str, text: &str) {
        self.notify(i, &chat_payload(chatter_id, message_id, text));
    }

    /// `session_reconnect` whose URL leads to a new connection on this fake.
    pub fn reconnect(&self, i: usize) {
        let session = self.lock().conns[i].info.session_id.clone();
        let url = format!("ws://{}/ws?reconnect={session}", self.addr);
        let meta = self.metadata("session_reconnect", None);
        self.send_text(
            i,
            format!(
                r#"{{"metadata":{meta},"payload":{{"session":{{"id":"{session}","status":"reconnecting","keepalive_timeout_seconds":null,"reconnect_url":"{url}","connected_at":"2022-11-16T10:11:12.634234626Z"}}}}}}"#
            ),
        );
    }

    /// A `revocation` of `sub_id` (channel `broadcaster_id`) with `status`.
    pub fn revoke(&self, i: usize, sub_id: &str, broadcaster_id: &str, status: &str) {
        let meta = self.metadata("revocation", Some("channel.chat.message"));
        let session = self.lock().conns[i].info.session_id.clone();
        self.send_text(
            i,
            format!(
                r#"{{"metadata":{meta},"payload":{{"subscription":{{"id":"{sub_id}","status":"{status}","type":"channel.chat.message","version":"1","cost":0,"condition":{{"broadcaster_user_id":"{broadcaster_id}","user_id":"2914196"}},"transport":{{"method":"websocket","session_id":"{session}"}},"created_at":"2022-11-16T10:11:12.464757833Z"}}}}}}"#
            ),
        );
    }

    pub fn ping(&self, i: usize) {
        self.command(i, Cmd::Send(Message::Ping(b"fake".to_vec().into())));
    }

    /// Sends a close frame with `code` and drops the connection.
    pub fn close(&self, i: usize, code: u16) {
        self.command(i, Cmd::Close(code));
    }

    /// No more keepalives or anything else on this connection; it stays open.
    pub fn silence(&self, i: usize) {
        self.command(i, Cmd::Silence);
    }
}

async fn accept_loop(listener: TcpListener, state: Shared) {
    while let Ok((stream, _)) = listener.accept().await {
        smol::spawn(serve(stream, Arc::clone(&state))).detach();
    }
}

/// One connection: handshake, welcome, then commands, keepalives and reads.
async fn serve(stream: TcpStream, state: Shared) {
    let mut path = String::new();
    // The signature is tungstenite's handshake callback; its error type is not ours to shrink.
    #[allow(clippy::result_large_err)]
    let record_path = |req: &Request, resp: Response| {
        path = req.uri().to_string();
        Ok(resp)
    };
    let Ok(mut ws) = async_tungstenite::accept_hdr_async(stream, record_path).await else {
        return;
    };
    let (tx, rx) = smol::channel::unbounded();
    let (index, session_id, keepalive) = {
        let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
        let session_id = format!("sess-{}", s.conns.len() + 1);
        s.conns.push(Conn {
            info: ConnInfo {
                path,
                session_id: session_id.clone(),
                open: true,
                pongs: 0,
                inbound: Vec::new(),
            },
            tx,
        });
        (s.conns.len() - 1, session_id, s.keepalive_secs)
    };
    let welcome = format!(
        r#"{{"metadata":{{"message_id":"welcome-{session_id}","message_type":"session_welcome","message_timestamp":"2023-07-19T14:56:51.634234626Z"}},"payload":{{"session":{{"id":"{session_id}","status":"connected","connected_at":"2023-07-19T14:56:51.616329898Z","keepalive_timeout_seconds":{keepalive},"reconnect_url":null}}}}}}"#
    );
    if ws.send(Message::Text(welcome.into())).await.is_ok() {
        run(&mut ws, &rx, &state, index, keepalive).await;
    }
    let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
    s.conns[index].info.open = false;
}

enum Step {
    Cmd(Option<Cmd>),
    Read(Option<Message>),
    Keepalive,
}

async fn run(
    ws: &mut async_tungstenite::WebSocketStream<TcpStream>,
    rx: &Receiver<Cmd>,
    state: &Shared,
    index: usize,
    keepalive_secs: u64,
) {
    let every = Duration::from_millis(keepalive_secs * 1000 / 2);
    let mut silent = false;
    let mut n = 0u64;
    loop {
        let step = async { Step::Cmd(rx.recv().await.ok()) }
            .or(async { Step::Read(ws.next().await.and_then(Result::ok)) })
            .or(async {
                if silent {
                    std::future::pending::<()>().await;
                }
                smol::Timer::after(every).await;
                Step::Keepalive
            })
            .await;
        let sent = match step {
            Step::Cmd(Some(Cmd::Send(m))) if !silent => ws.send(m).await,
            Step::Cmd(Some(Cmd::Send(_))) => Ok(()),
            Step::Cmd(Some(Cmd::Silence)) => {
                silent = true;
                Ok(())
            }
            Step::Cmd(Some(Cmd::Close(code))) => {
                let frame = CloseFrame {
                    code: code.into(),
                    reason: "fake close".into(),
                };
                let _ = ws.close(Some(frame)).await;
                return;
            }
            Step::Cmd(None) | Step::Read(None) | Step::Read(Some(Message::Close(_))) => return,
            Step::Read(Some(m)) => {
                let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
                let info = &mut s.conns[index].info;
                match m {
                    Message::Pong(_) => info.pongs += 1,
                    other => info.inbound.push(format!("{other:?}")),
                }
                Ok(())
            }
            Step::Keepalive => {
                n += 1;
                let k = format!(
                    r#"{{"metadata":{{"message_id":"keepalive-{index}-{n}","message_type":"session_keepalive","message_timestamp":"2023-07-19T10:11:12.634234626Z"}},"payload":{{}}}}"#
                );
                ws.send(Message::Text(k.into())).await
            }
        };
        if sent.is_err() {
            return;
        }
    }
}
