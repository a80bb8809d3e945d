//! The IRC chat source end to end: a real node reads chat from the in-process
//! fake Twitch IRC (TLS unless a test says plain) and an overlay sees the votes.
//! Login, CAP, JOIN batching, PING, framing across writes, escaped tags,
//! garbage, disconnects, RECONNECT, refused tokens and the source metrics.

use std::time::Duration;

use crate::common::fake_irc::{FakeIrc, Received};
use crate::common::{Overlay, TEST_TIMEOUT, TestServer, eventually, retries_with_backoff, run};

/// Twitch's IRC Concepts example (reference §1(e)) with the text set to a vote.
const DOC_PRIVMSG_YES: &str = "@badge-info=;badges=broadcaster/1;client-nonce=28e05b1c83f1e916ca1710c44b014515;color=#0000FF;display-name=foofoo;emotes=62835:0-10;first-msg=0;flags=;id=f80a19d6-e35a-4273-82d0-cd87f614e767;mod=0;room-id=713936733;subscriber=0;tmi-sent-ts=1642696567751;turbo=0;user-id=713936733;user-type= :foofoo!foofoo@foofoo.tmi.twitch.tv PRIVMSG #bar :yes";

const WAIT: Duration = Duration::from_secs(10);

/// A short tagged PRIVMSG to #bar from user `id`.
fn privmsg(id: u32, text: &str) -> String {
    format!(
        "@id=m{id};user-id={id};tmi-sent-ts=1642696567751 :u{id}!u{id}@u{id}.tmi.twitch.tv PRIVMSG #bar :{text}"
    )
}

/// A fake, a node reading #bar (plus `more` channels) from it, and a connected
/// overlay of #bar that has had its snapshot; the client has joined #bar. A
/// chatter votes once a minute, so a repeat is always debounced however slow
/// the machine.
async fn setup(tls: bool, more: &[&str]) -> (FakeIrc, TestServer, Overlay) {
    let irc = FakeIrc::start(tls).await;
    let mut channels = vec!["bar"];
    channels.extend_from_slice(more);
    let toml = format!("[votes]\ndebounce = \"1m\"\n\n{}", irc.toml(&channels));
    let srv = TestServer::start_with(&toml, None, None).await;
    let mut ov = Overlay::connect(srv.addr, &srv.token("bar")).await.unwrap();
    assert_eq!(ov.frame().await.kind, "snapshot");
    irc.wait_for_join(1, "bar").await;
    (irc, srv, ov)
}

async fn votes(ov: &mut Overlay, n: u64) {
    ov.frame_where(&format!("{n} votes"), |f| f.total_votes == n)
        .await;
}

fn metric_line(srv: &TestServer, name: &str) -> Option<String> {
    srv.metrics()
        .lines()
        .find(|l| l.starts_with(name))
        .map(str::to_string)
}

async fn wait_metric(srv: &TestServer, name: &str, value: &str) {
    let want = format!("{name} {value}");
    eventually(&want, WAIT, || {
        (metric_line(srv, name).as_deref() == Some(want.as_str())).then_some(())
    })
    .await;
}

#[test]
fn anonymous_tls_login_and_the_documented_privmsg_votes() {
    run(TEST_TIMEOUT, async {
        let (irc, srv, mut ov) = setup(true, &[]).await;
        let lines: Vec<String> = irc.received().into_iter().map(|r| r.line).collect();
        assert_eq!(lines[0], "CAP REQ :twitch.tv/tags twitch.tv/commands");
        let nick = lines[1]
            .strip_prefix("NICK justinfan")
            .expect("anonymous nick");
        assert!(
            nick.len() == 5 && nick.bytes().all(|b| b.is_ascii_digit()),
            "{nick}"
        );
        assert!(!lines.iter().any(|l| l.starts_with("PASS")), "no password");

        irc.send_line(DOC_PRIVMSG_YES);
        let f = ov.frame_where("1 for-vote", |f| f.for_votes == 1).await;
        assert_eq!((f.total_votes, f.against_votes), (1, 0));
        wait_metric(&srv, "chat_source_connected{source=\"irc\"}", "1").await;
        let m = srv.metrics();
        assert!(
            m.contains("chat_messages_received_total{source=\"irc\"} 1"),
            "{m}"
        );
        assert!(
            m.contains("chat_source_reconnects_total{source=\"irc\"} 0"),
            "{m}"
        );
        assert!(!m.contains("chat_source_last_message_timestamp_seconds{source=\"irc\"} 0"));
        assert_eq!(irc.connections(), 1);
        srv.stop().await;
    });
}

#[test]
fn joins_every_channel_in_one_batch() {
    run(TEST_TIMEOUT, async {
        let (irc, srv, _ov) = setup(true, &["qux", "baz"]).await;
        let joins: Vec<String> = irc
            .received()
            .into_iter()
            .filter(|r| r.line.starts_with("JOIN"))
            .map(|r| r.line)
            .collect();
        assert_eq!(joins, ["JOIN #bar,#baz,#qux"]);
        srv.stop().await;
    });
}

#[test]
fn ping_gets_a_pong_echoing_its_argument() {
    run(TEST_TIMEOUT, async {
        let (irc, srv, _ov) = setup(true, &[]).await;
        irc.ping();
        irc.wait_for_line(|r| r.line == "PONG :tmi.twitch.tv", WAIT)
            .await;
        irc.send_line("PING :abc 123");
        irc.wait_for_line(|r| r.line == "PONG :abc 123", WAIT).await;
        srv.stop().await;
    });
}

#[test]
fn a_line_split_across_writes_and_several_lines_in_one_write() {
    run(TEST_TIMEOUT, async {
        let (irc, srv, mut ov) = setup(true, &[]).await;
        let line = format!("{}\r\n", privmsg(1, "yes"));
        let (a, b) = line.as_bytes().split_at(line.len() / 2);
        irc.send_raw(a);
        irc.send_raw(b);
        votes(&mut ov, 1).await;

        let batch = format!(
            "{}\r\nPING :batch\r\n{}\r\n{}\n",
            privmsg(2, "yes"),
            privmsg(3, "no"),
            privmsg(4, "no")
        );
        irc.send_raw(batch.as_bytes());
        let f = ov.frame_where("4 votes", |f| f.total_votes == 4).await;
        assert_eq!((f.for_votes, f.against_votes), (2, 2));
        irc.wait_for_line(|r| r.line == "PONG :batch", WAIT).await;
        srv.stop().await;
    });
}

#[test]
fn escaped_and_missing_tags() {
    run(TEST_TIMEOUT, async {
        let (irc, srv, mut ov) = setup(true, &[]).await;
        // A value that reads like another tag must not be taken for it.
        irc.send_line(r"@display-name=Foo\sBar\:\\;reply-parent-msg-body=user-id=1\s\:;user-id=7 :foo!foo@foo.tmi.twitch.tv PRIVMSG #BAR :yes");
        votes(&mut ov, 1).await;
        // Same chatter id within the debounce interval: not counted again.
        irc.send_line(&privmsg(7, "no"));
        // No tags at all: the login from the prefix tells chatters apart.
        irc.send_line(":plain!plain@plain.tmi.twitch.tv PRIVMSG #bar :no");
        let f = ov.frame_where("2 votes", |f| f.total_votes == 2).await;
        assert_eq!((f.for_votes, f.against_votes), (1, 1));
        let m = srv.metrics();
        assert!(
            m.contains("vote_processing_total{result=\"debounced\"} 1"),
            "{m}"
        );
        srv.stop().await;
    });
}

#[test]
fn garbage_is_counted_and_the_session_survives() {
    run(TEST_TIMEOUT, async {
        let (irc, srv, mut ov) = setup(true, &[]).await;
        irc.send_line(":prefix-only");
        irc.send_raw(b"\xff\xfe PRIVMSG #bar :yes\r\n");
        irc.send_raw(&[b'x'; 9000]);
        irc.send_line("still the same too-long line");
        irc.send_line("PRIVMSG #bar");
        irc.send_line(&privmsg(1, "yes"));
        votes(&mut ov, 1).await;
        wait_metric(&srv, "chat_lines_dropped_total{reason=\"malformed\"}", "3").await;
        wait_metric(&srv, "chat_lines_dropped_total{reason=\"too_long\"}", "1").await;
        assert_eq!(irc.connections(), 1, "no reconnect");
        srv.stop().await;
    });
}

#[test]
fn disconnect_mid_line_reconnects_rejoins_and_votes_still_arrive() {
    run(TEST_TIMEOUT, async {
        let (irc, srv, mut ov) = setup(true, &[]).await;
        wait_metric(&srv, "chat_source_connected{source=\"irc\"}", "1").await;
        irc.send_raw(privmsg(1, "yes").split_at(40).0.as_bytes());
        irc.drop_clients();
        irc.wait_for_join(2, "bar").await;
        let is_nick = |r: &Received| r.conn == 2 && r.line.starts_with("NICK justinfan");
        irc.wait_for_line(is_nick, WAIT).await;
        wait_metric(&srv, "chat_source_reconnects_total{source=\"irc\"}", "1").await;
        wait_metric(&srv, "chat_source_connected{source=\"irc\"}", "1").await;

        irc.send_line(&privmsg(2, "no"));
        let f = ov.frame_where("1 vote", |f| f.total_votes == 1).await;
        assert_eq!(f.against_votes, 1, "the cut line was not counted");
        srv.stop().await;
    });
}

#[test]
fn reconnect_command_reconnects() {
    run(TEST_TIMEOUT, async {
        let (irc, srv, mut ov) = setup(true, &[]).await;
        irc.send_reconnect();
        irc.wait_for_join(2, "bar").await;
        eventually("the old connection closed", WAIT, || {
            (irc.connected() == 1).then_some(())
        })
        .await;
        irc.send_line(&privmsg(1, "yes"));
        votes(&mut ov, 1).await;
        assert_eq!(irc.connections(), 2);
        srv.stop().await;
    });
}

#[test]
fn plain_tcp_mode() {
    run(TEST_TIMEOUT, async {
        let (irc, srv, mut ov) = setup(false, &[]).await;
        irc.send_line(DOC_PRIVMSG_YES);
        votes(&mut ov, 1).await;
        srv.stop().await;
    });
}

#[test]
fn a_token_is_sent_as_pass_and_a_refused_login_is_retried() {
    run(TEST_TIMEOUT, async {
        let irc = FakeIrc::start(true).await;
        irc.refuse_tokens();
        // The token's login comes from /oauth2/validate (here: the fake Twitch).
        let fake = crate::common::fake_helix::FakeHelix::start().await;
        fake.add_user_token("abc123", "777", "tokenuser", &["chat:read"]);
        let toml = irc.toml(&["bar"]).replacen(
            "[twitch]\n",
            &format!(
                "[twitch]\nuser_token = \"oauth:abc123\"\nauth_url = \"{}\"\nhelix_url = \"{}\"\n",
                fake.auth_url(),
                fake.helix_url()
            ),
            1,
        );
        let srv = TestServer::start_with(&toml, None, None).await;
        irc.wait_for_line(|r| r.conn == 1 && r.line == "PASS oauth:abc123", WAIT)
            .await;
        irc.wait_for_line(|r| r.conn == 1 && r.line == "NICK tokenuser", WAIT)
            .await;
        irc.wait_for_line(|r| r.conn == 2 && r.line.starts_with("PASS "), WAIT)
            .await;
        assert!(!irc.received().iter().any(|r| r.line.starts_with("JOIN")));
        let m = srv.metrics();
        assert!(m.contains("chat_source_connected{source=\"irc\"} 0"), "{m}");
        srv.stop().await;
    });
}

#[test]
fn shutdown_cancels_the_source_and_closes_the_connection() {
    run(TEST_TIMEOUT, async {
        let (irc, srv, _ov) = setup(true, &[]).await;
        assert_eq!(irc.connected(), 1);
        srv.stop().await;
        eventually("the client disconnected", WAIT, || {
            (irc.connected() == 0).then_some(())
        })
        .await;
    });
}

/// Twitch unreachable — its name does not resolve, or its certificate is not
/// one we trust: the source retries on a doubling delay (never a busy loop),
/// readiness stays 200 and shows the source down, overlays keep being served.
#[test]
fn unreachable_or_untrusted_twitch_is_retried_with_backoff_and_shown() {
    run(TEST_TIMEOUT, async {
        let irc = FakeIrc::start(true).await;
        let trusted = irc.toml(&["bar"]);
        // The fake's certificate without its CA: every TLS handshake fails.
        let untrusted: String = trusted
            .lines()
            .filter(|l| !l.starts_with("ca_file"))
            .map(|l| format!("{l}\n"))
            .collect();
        let unresolvable = trusted.replace(
            &format!("irc_addr = \"{}\"", irc.addr),
            "irc_addr = \"irc.chatpulse-test.invalid:6697\"",
        );
        let cases = [
            ("untrusted", untrusted, Some(&irc)),
            ("unresolvable", unresolvable, None),
        ];
        for (what, toml, reached) in cases {
            let srv = TestServer::start_with(&toml, None, None).await;
            retries_with_backoff(&srv, what, "irc", "bar", reached).await;
            srv.stop().await;
        }
    });
}
