//! An in-process fake of Twitch IRC on `127.0.0.1:0`, plain or TLS (serving
//! `certs/cert.pem`; clients trust `certs/ca.pem`). It records every line a
//! client sends, answers the login handshake like Twitch (CAP ACK, `001`, JOIN
//! echoes, or a login NOTICE when told to refuse tokens), and lets the test
//! push lines, raw bytes, PINGs and RECONNECTs, or cut every connection.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_rustls::TlsAcceptor;
use smol::channel::{Receiver, Sender};
use smol::future::FutureExt;
use smol::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use smol::net::{TcpListener, TcpStream};

use super::eventually;

/// One line a client sent, without its line ending.
#[derive(Debug, Clone)]
pub struct Received {
    /// Which connection (1 = the first accepted).
    pub conn: usize,
    pub line: String,
}

enum Command {
    Send(Vec<u8>),
    Disconnect,
}

#[derive(Default)]
struct State {
    received: Vec<Received>,
    /// Open connections and their command queues.
    clients: Vec<(usize, Sender<Command>)>,
    accepted: usize,
    refuse_tokens: bool,
}

type Shared = Arc<Mutex<State>>;

pub struct FakeIrc {
    pub addr: SocketAddr,
    pub tls: bool,
    state: Shared,
    _accept: smol::Task<()>,
}

pub fn cert_path(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/common/certs")
        .join(name)
        .display()
        .to_string()
}

/// The test leaf's key as the node accepts a key: a copy only its owner may
/// read (git checks files out 0644, which the node refuses for a private key).
pub fn private_key_path() -> String {
    use std::os::unix::fs::PermissionsExt;
    let path = super::temp_dir("key").join("key.pem");
    std::fs::copy(cert_path("key.pem"), &path).expect("copy test key");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path.display().to_string()
}

impl FakeIrc {
    pub async fn start(tls: bool) -> FakeIrc {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake irc");
        let addr = listener.local_addr().expect("fake irc addr");
        let acceptor = tls.then(|| {
            let config = chatpulse::tls::server_config(
                Path::new(&cert_path("cert.pem")),
                Path::new(&private_key_path()),
            )
            .expect("test certificate");
            TlsAcceptor::from(config)
        });
        let state = Shared::default();
        let accept = smol::spawn(accept_loop(listener, acceptor, Arc::clone(&state)));
        FakeIrc {
            addr,
            tls,
            state,
            _accept: accept,
        }
    }

    /// A TestServer config reading `channels` from this fake.
    pub fn toml(&self, channels: &[&str]) -> String {
        let mut toml = format!(
            "[twitch]\nsource = \"irc\"\nirc_addr = \"{}\"\nirc_tls = {}\nca_file = \"{}\"\n",
            self.addr,
            self.tls,
            cert_path("ca.pem")
        );
        for login in channels {
            toml += &format!("\n[[channel]]\nlogin = \"{login}\"\n");
        }
        toml
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// From now on, answer a login with a token (`PASS`) the way Twitch refuses one.
    pub fn refuse_tokens(&self) {
        self.lock().refuse_tokens = true;
    }

    /// Sends `line` plus CRLF to every connected client.
    pub fn send_line(&self, line: &str) {
        self.send_raw(format!("{line}\r\n").as_bytes());
    }

    /// Sends bytes as one write to every connected client.
    pub fn send_raw(&self, bytes: &[u8]) {
        for (_, tx) in &self.lock().clients {
            let _ = tx.try_send(Command::Send(bytes.to_vec()));
        }
    }

    pub fn ping(&self) {
        self.send_line("PING :tmi.twitch.tv");
    }

    pub fn send_reconnect(&self) {
        self.send_line(":tmi.twitch.tv RECONNECT");
    }

    /// Closes every connection after what was already queued for it.
    pub fn drop_clients(&self) {
        for (_, tx) in &self.lock().clients {
            let _ = tx.try_send(Command::Disconnect);
        }
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.lock().accepted
    }

    /// Ids of the connections open now.
    pub fn open_conns(&self) -> Vec<usize> {
        self.lock().clients.iter().map(|(id, _)| *id).collect()
    }

    /// Connections open now.
    pub fn connected(&self) -> usize {
        self.lock().clients.len()
    }

    pub fn received(&self) -> Vec<Received> {
        self.lock().received.clone()
    }

    /// The first received line matching `pred`; panics after `limit`.
    pub async fn wait_for_line(
        &self,
        pred: impl Fn(&Received) -> bool,
        limit: Duration,
    ) -> Received {
        eventually("a matching IRC line from the client", limit, || {
            self.lock().received.iter().find(|r| pred(r)).cloned()
        })
        .await
    }

    /// Waits until connection `conn` has joined `#channel`.
    pub async fn wait_for_join(&self, conn: usize, channel: &str) {
        let wanted = format!("#{channel}");
        self.wait_for_line(
            |r| {
                r.conn == conn
                    && r.line
                        .strip_prefix("JOIN ")
                        .is_some_and(|list| list.split(',').any(|c| c == wanted))
            },
            Duration::from_secs(10),
        )
        .await;
    }
}

impl Drop for FakeIrc {
    fn drop(&mut self) {
        // Closing the command queues ends every connection task.
        self.lock().clients.clear();
    }
}

async fn accept_loop(listener: TcpListener, acceptor: Option<TlsAcceptor>, state: Shared) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let (tx, rx) = smol::channel::bounded(64);
        let conn = {
            let mut s = state.lock().unwrap();
            s.accepted += 1;
            let conn = s.accepted;
            s.clients.push((conn, tx));
            conn
        };
        let state = Arc::clone(&state);
        let acceptor = acceptor.clone();
        smol::spawn(async move {
            match acceptor {
                Some(acceptor) => {
                    if let Ok(tls) = acceptor.accept(tcp).await {
                        serve(&state, conn, tls, rx).await;
                    }
                }
                None => serve::<TcpStream>(&state, conn, tcp, rx).await,
            }
            state.lock().unwrap().clients.retain(|(c, _)| *c != conn);
        })
        .detach();
    }
}

enum Event {
    Read(std::io::Result<usize>),
    Command(Option<Command>),
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    state: &Shared,
    conn: usize,
    mut stream: S,
    rx: Receiver<Command>,
) {
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 4096];
    loop {
        let read = async { Event::Read(stream.read(&mut chunk).await) };
        let command = async { Event::Command(rx.recv().await.ok()) };
        let out = match read.or(command).await {
            Event::Read(Ok(0) | Err(_)) | Event::Command(None | Some(Command::Disconnect)) => {
                return;
            }
            Event::Command(Some(Command::Send(bytes))) => bytes,
            Event::Read(Ok(n)) => {
                buf.extend_from_slice(&chunk[..n]);
                let mut out = Vec::new();
                while let Some(nl) = buf.iter().position(|&b| b == b'\n') {
                    let raw: Vec<u8> = buf.drain(..=nl).collect();
                    let line = String::from_utf8_lossy(&raw).trim_end().to_string();
                    out.extend(respond(state, conn, &line).into_bytes());
                }
                out
            }
        };
        if !out.is_empty()
            && (stream.write_all(&out).await.is_err() || stream.flush().await.is_err())
        {
            return;
        }
    }
}

/// Records `line` and answers it the way Twitch would.
fn respond(state: &Shared, conn: usize, line: &str) -> String {
    let mut s = state.lock().unwrap();
    s.received.push(Received {
        conn,
        line: line.to_string(),
    });
    if let Some(caps) = line.strip_prefix("CAP REQ :") {
        return format!(":tmi.twitch.tv CAP * ACK :{caps}\r\n");
    }
    if let Some(nick) = line.strip_prefix("NICK ") {
        let gave_token = s
            .received
            .iter()
            .any(|r| r.conn == conn && r.line.starts_with("PASS "));
        if gave_token && s.refuse_tokens {
            if let Some((_, tx)) = s.clients.iter().find(|(c, _)| *c == conn) {
                let _ = tx.try_send(Command::Disconnect);
            }
            return ":tmi.twitch.tv NOTICE * :Login authentication failed\r\n".into();
        }
        return format!(
            ":tmi.twitch.tv 001 {nick} :Welcome, GLHF!\r\n:tmi.twitch.tv 376 {nick} :>\r\n"
        );
    }
    if let Some(list) = line.strip_prefix("JOIN ") {
        let nick = s
            .received
            .iter()
            .rev()
            .find(|r| r.conn == conn && r.line.starts_with("NICK "))
            .map_or("justinfan1", |r| &r.line[5..]);
        return list
            .split(',')
            .map(|c| format!(":{nick}!{nick}@{nick}.tmi.twitch.tv JOIN {c}\r\n"))
            .collect();
    }
    String::new()
}
