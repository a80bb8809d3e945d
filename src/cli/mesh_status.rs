//! `chatpulse mesh status`: the cluster as the node on this machine sees it —
//! every member, its state and its probe round trip — read from the node's
//! `GET /api/mesh`. The request is authorized by a token the node writes to
//! `<data_dir>/cli.token` (mode 0600) at every start, so whoever can read the
//! node's data dir (its own user, root) can ask without a dashboard password.

// nanoserde's DeJson derive expands `Option` fields into code clippy reads as `?`-able.
#![allow(clippy::question_mark)]

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use nanoserde::DeJson;

use crate::Error;
use crate::config::Config;

/// In the data directory; rewritten at every start.
pub const TOKEN_FILE: &str = "cli.token";

/// Writes a fresh random token (readable by the node's user only) and returns it.
pub fn write_token(data_dir: &Path) -> std::io::Result<String> {
    use std::os::unix::fs::OpenOptionsExt;
    let bytes = crate::auth::encoding::random::<32>().map_err(std::io::Error::other)?;
    let token = crate::auth::encoding::base64url(&bytes);
    std::fs::create_dir_all(data_dir)?;
    let path = data_dir.join(TOKEN_FILE);
    // A token left by an earlier run (maybe with looser permissions) goes first.
    let _ = std::fs::remove_file(&path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)?;
    file.write_all(token.as_bytes())?;
    Ok(token)
}

#[derive(DeJson, Debug)]
pub struct Status {
    pub enabled: bool,
    pub node: Option<String>,
    pub members: Vec<Member>,
}

#[derive(DeJson, Debug)]
pub struct Member {
    pub node: String,
    pub addr: String,
    pub state: String,
    pub rtt_ms: Option<f64>,
}

/// Where the local node answers: plain HTTP on its listen address (loopback
/// when it listens everywhere), or its public URL when it serves TLS itself.
fn base_url(config: &Config) -> String {
    let listen = config.server.listen;
    if config.tls.cert.is_some()
        && let Some(public) = &config.server.public_url
    {
        return public.trim_end_matches('/').to_string();
    }
    let scheme = if config.tls.cert.is_some() {
        "https"
    } else {
        "http"
    };
    let host = if listen.ip().is_unspecified() {
        std::net::SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), listen.port())
    } else {
        listen
    };
    format!("{scheme}://{host}")
}

fn failed(what: String, e: impl std::fmt::Display) -> Error {
    Error::Io(what, std::io::Error::other(e.to_string()))
}

/// Asks the local node and returns its answer.
pub fn fetch(config: &Config) -> Result<Status, Error> {
    let path = config.data_dir.join(TOKEN_FILE);
    let token = std::fs::read_to_string(&path).map_err(|e| {
        Error::Io(
            format!(
                "reading {} (is the node running, and are you its user?)",
                path.display()
            ),
            e,
        )
    })?;
    let url = format!("{}/api/mesh", base_url(config));
    let tls = crate::tls::client_config(config.twitch.ca_file.as_deref())
        .map_err(|e| failed("TLS client".into(), e))?;
    let client = crate::twitch::http::HttpClient::new(tls);
    let auth = format!("Bearer {}", token.trim());
    let resp = smol::block_on(client.request("GET", &url, &[("Authorization", &auth)], None))
        .map_err(|e| failed(format!("asking {url}"), e))?;
    let body = resp.text();
    if resp.status != 200 {
        return Err(failed(url.clone(), format!("HTTP {}: {body}", resp.status)));
    }
    crate::chat::eventsub::json::top_level_fields(&body)
        .map_err(|e| failed(format!("{url} answered"), e))?;
    std::panic::catch_unwind(|| Status::deserialize_json(&body))
        .map_err(|_| failed(format!("{url} answered"), "malformed JSON"))?
        .map_err(|e| failed(format!("{url} answered"), e))
}

/// The status as a table.
pub fn table(s: &Status) -> String {
    if !s.enabled {
        return "this node is not in a cluster ([mesh] listen is not set)\n".into();
    }
    let me = s.node.as_deref().unwrap_or("?");
    let alive = s.members.iter().filter(|m| m.state == "alive").count();
    let mut out = format!(
        "node {me}: {} members, {alive} alive\n{:<18} {:<24} {:<8} {:>8}\n",
        s.members.len(),
        "NODE",
        "ADDRESS",
        "STATE",
        "RTT ms"
    );
    for m in &s.members {
        let rtt = m.rtt_ms.map_or("-".to_string(), |r| format!("{r:.2}"));
        let tag = if m.node == me { " (this node)" } else { "" };
        let _ = writeln!(
            out,
            "{:<18} {:<24} {:<8} {:>8}{tag}",
            m.node, m.addr, m.state, rtt
        );
    }
    out
}

/// `chatpulse mesh status`.
pub fn run(config: &Config) -> Result<(), Error> {
    print!("{}", table(&fetch(config)?));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_file_is_fresh_and_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("chatpulse-cli-token-{}", std::process::id()));
        let a = write_token(&dir).unwrap();
        let b = write_token(&dir).unwrap();
        assert_ne!(a, b);
        let path = dir.join(TOKEN_FILE);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), b);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn the_table_marks_this_node() {
        let s = Status {
            enabled: true,
            node: Some("00000000000000aa".into()),
            members: vec![
                Member {
                    node: "00000000000000aa".into(),
                    addr: "10.0.0.1:7946".into(),
                    state: "alive".into(),
                    rtt_ms: None,
                },
                Member {
                    node: "00000000000000bb".into(),
                    addr: "10.0.0.2:7946".into(),
                    state: "suspect".into(),
                    rtt_ms: Some(0.42),
                },
            ],
        };
        let t = table(&s);
        assert!(
            t.starts_with("node 00000000000000aa: 2 members, 1 alive"),
            "{t}"
        );
        assert!(t.contains("(this node)"));
        assert!(t.contains("suspect") && t.contains("0.42"));
    }
}
