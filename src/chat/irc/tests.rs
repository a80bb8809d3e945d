//! Unit tests of the pure IRC parts: line framing, message parsing, tag
//! unescaping, PRIVMSG extraction and the reconnect backoff.

use std::borrow::Cow;
use std::time::Duration;

use super::Backoff;
use super::client::command_lines;
use super::parse::{LineBuffer, LineError, MAX_LINE_BYTES, ParseError, parse_line, unescape};

/// Twitch's IRC Concepts example (reference §1(e)), byte for byte.
const DOC_PRIVMSG: &str = "@badge-info=;badges=broadcaster/1;client-nonce=28e05b1c83f1e916ca1710c44b014515;color=#0000FF;display-name=foofoo;emotes=62835:0-10;first-msg=0;flags=;id=f80a19d6-e35a-4273-82d0-cd87f614e767;mod=0;room-id=713936733;subscriber=0;tmi-sent-ts=1642696567751;turbo=0;user-id=713936733;user-type= :foofoo!foofoo@foofoo.tmi.twitch.tv PRIVMSG #bar :bleedPurple";
/// Twitch's tag-reference example (reference §1(e)), byte for byte.
const TAGS_PRIVMSG: &str = "@badge-info=;badges=global_mod/1,turbo/1;color=#0D4200;display-name=ronni;emotes=25:0-4,12-16/1902:6-10;id=b34ccfc7-4977-403a-8a94-33c6bac34fb8;mod=0;room-id=1337;subscriber=0;tmi-sent-ts=1507246572675;turbo=1;user-id=1337;user-type=global_mod :ronni!ronni@ronni.tmi.twitch.tv PRIVMSG #ronni :Kappa Keepo Kappa";

#[test]
fn documented_privmsg_lines() {
    let m = parse_line(DOC_PRIVMSG).unwrap();
    assert_eq!(m.command, "PRIVMSG");
    assert_eq!(m.prefix, Some("foofoo!foofoo@foofoo.tmi.twitch.tv"));
    assert_eq!(m.nick(), Some("foofoo"));
    assert_eq!(m.params().collect::<Vec<_>>(), ["#bar"]);
    assert_eq!(m.trailing, Some("bleedPurple"));
    assert_eq!(m.tags.get("emotes"), Some("62835:0-10"));
    assert_eq!(m.tags.get("badge-info"), Some(""));
    assert_eq!(m.tags.get("user-type"), Some(""));
    assert_eq!(m.tags.get("missing"), None);
    let p = m.privmsg().unwrap();
    assert_eq!(p.channel, "bar");
    assert_eq!(p.text, "bleedPurple");
    assert_eq!(p.user_id, Some("713936733"));
    assert_eq!(p.room_id, Some("713936733"));
    assert_eq!(p.id, Some("f80a19d6-e35a-4273-82d0-cd87f614e767"));
    assert_eq!(p.sent_ms, Some(1_642_696_567_751));
    assert_eq!(p.display_name.as_deref(), Some("foofoo"));

    let p = parse_line(TAGS_PRIVMSG).unwrap().privmsg().unwrap();
    assert_eq!(
        (p.channel.as_ref(), p.text, p.user_id, p.room_id),
        ("ronni", "Kappa Keepo Kappa", Some("1337"), Some("1337"))
    );
    assert_eq!(p.id, Some("b34ccfc7-4977-403a-8a94-33c6bac34fb8"));
    assert_eq!(p.sent_ms, Some(1_507_246_572_675));
    assert_eq!(p.nick, Some("ronni"));
}

#[test]
fn tag_values_unescape_only_when_asked() {
    assert_eq!(unescape("plain"), Cow::Borrowed("plain"));
    assert_eq!(unescape(r"a\sb\:c\\d\re\nf"), "a b;c\\d\re\nf");
    assert_eq!(unescape(r"trailing\"), "trailing", "lone backslash dropped");
    assert_eq!(unescape(r"\x"), "x", "unknown escape keeps the character");
    assert_eq!(unescape(r"é\sü"), "é ü");
    let line = r"@display-name=Foo\sBar\:\\;decoy=user-id=9;flag;user-id=42 :foo!foo@foo PRIVMSG #Bar :yes";
    let m = parse_line(line).unwrap();
    assert_eq!(m.tags.get("display-name"), Some(r"Foo\sBar\:\\"));
    assert_eq!(m.tags.value("display-name").unwrap(), "Foo Bar;\\");
    assert_eq!(m.tags.get("flag"), Some(""), "key without =");
    let p = m.privmsg().unwrap();
    assert_eq!(
        p.user_id,
        Some("42"),
        "a value holding `user-id=` is no key"
    );
    assert_eq!(p.channel, "bar", "channel lower-cased");
    assert_eq!(p.display_name.as_deref(), Some("Foo Bar;\\"));
}

#[test]
fn missing_tags_and_plain_lines() {
    let p = parse_line(":viewer!viewer@viewer.tmi.twitch.tv PRIVMSG #bar :no")
        .unwrap()
        .privmsg()
        .unwrap();
    assert_eq!(
        (p.user_id, p.id, p.sent_ms, p.nick),
        (None, None, None, Some("viewer"))
    );
    let p = parse_line("@user-id=;tmi-sent-ts=soon PRIVMSG #bar yes").unwrap();
    let p = p.privmsg().unwrap();
    assert_eq!(
        (p.user_id, p.sent_ms, p.nick, p.text),
        (None, None, None, "yes")
    );
    let p = parse_line(":a!a@a PRIVMSG #bar :\u{1}ACTION yes\u{1}").unwrap();
    assert_eq!(p.privmsg().unwrap().text, "yes", "/me counts");

    let ping = parse_line("PING :tmi.twitch.tv\r\n").unwrap();
    assert_eq!((ping.command, ping.args), ("PING", ":tmi.twitch.tv"));
    assert_eq!(ping.trailing, Some("tmi.twitch.tv"));
    let welcome = parse_line(":tmi.twitch.tv 001 justinfan1 :Welcome, GLHF!").unwrap();
    assert_eq!(welcome.command, "001");
    assert_eq!(welcome.params().collect::<Vec<_>>(), ["justinfan1"]);
    assert_eq!(
        parse_line(":tmi.twitch.tv RECONNECT").unwrap().command,
        "RECONNECT"
    );
    assert!(
        parse_line(":tmi.twitch.tv NOTICE * :x")
            .unwrap()
            .privmsg()
            .is_none(),
        "not a PRIVMSG"
    );
    assert!(
        parse_line("PRIVMSG bar :no channel")
            .unwrap()
            .privmsg()
            .is_none()
    );
    assert!(
        parse_line("PRIVMSG #bar").unwrap().privmsg().is_none(),
        "no text"
    );
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    assert_eq!(parse_line(""), Err(ParseError::BadCommand));
    assert_eq!(parse_line("@a=b"), Err(ParseError::Truncated));
    assert_eq!(parse_line(":prefix-only"), Err(ParseError::Truncated));
    assert_eq!(parse_line("@a=b :p"), Err(ParseError::Truncated));
    assert_eq!(parse_line("12 x"), Err(ParseError::BadCommand));
    assert_eq!(parse_line("PRIV-MSG x"), Err(ParseError::BadCommand));
    assert_eq!(parse_line(" PING"), Err(ParseError::BadCommand));
    // Every prefix of the documented line, and some noise, parse or fail cleanly.
    for end in (0..=DOC_PRIVMSG.len()).filter(|&i| DOC_PRIVMSG.is_char_boundary(i)) {
        let _ = parse_line(&DOC_PRIVMSG[..end]).map(|m| m.privmsg());
    }
    for junk in [
        "@;;;= :: PRIVMSG",
        "@\\ :\\ PRIVMSG #\\ :\\",
        "PRIVMSG # :",
        ":::: ::",
    ] {
        let _ = parse_line(junk).map(|m| (m.privmsg(), m.tags.value("a")));
    }
}

/// Everything a buffer yields for `chunks`, as owned values.
fn frame(chunks: &[&[u8]]) -> Vec<Result<String, LineError>> {
    let mut lb = LineBuffer::new();
    let mut out = Vec::new();
    for chunk in chunks {
        lb.extend(chunk);
        while let Some(line) = lb.next_line() {
            out.push(line.map(str::to_string));
        }
    }
    out
}

#[test]
fn lines_split_at_every_byte_position() {
    let stream = format!("{DOC_PRIVMSG}\r\nPING :tmi.twitch.tv\n\r\n{TAGS_PRIVMSG}\r\n");
    let bytes = stream.as_bytes();
    let want = vec![
        Ok(DOC_PRIVMSG.to_string()),
        Ok("PING :tmi.twitch.tv".to_string()),
        Ok(TAGS_PRIVMSG.to_string()),
    ];
    assert_eq!(frame(&[bytes]), want, "several messages in one read");
    for i in 0..=bytes.len() {
        assert_eq!(frame(&[&bytes[..i], &bytes[i..]]), want, "split at {i}");
    }
    let singles: Vec<&[u8]> = bytes.chunks(1).collect();
    assert_eq!(frame(&singles), want, "one byte per read");
}

#[test]
fn too_long_lines_are_dropped_once_and_framing_resyncs() {
    let long = vec![b'x'; MAX_LINE_BYTES + 1];
    let exact = "y".repeat(MAX_LINE_BYTES);
    let out = frame(&[&long, b"more\r\nPING :a\r\n", exact.as_bytes(), b"\r\n"]);
    assert_eq!(
        out,
        vec![
            Err(LineError::TooLong),
            Ok("PING :a".into()),
            Ok(exact.clone())
        ]
    );
    // Arriving complete in one read, and spread over many reads.
    let mut whole = long.clone();
    whole.extend_from_slice(b"\r\nPING :b\r\n");
    assert_eq!(
        frame(&[&whole]),
        vec![Err(LineError::TooLong), Ok("PING :b".into())]
    );
    let pieces: Vec<&[u8]> = whole.chunks(1000).collect();
    assert_eq!(
        frame(&pieces),
        vec![Err(LineError::TooLong), Ok("PING :b".into())]
    );
}

#[test]
fn invalid_utf8_is_reported_and_skipped() {
    let out = frame(&[b"\xff\xfe PRIVMSG #bar :x\r\nPING :a\r\n\r\n\n"]);
    assert_eq!(out, vec![Err(LineError::NotUtf8), Ok("PING :a".into())]);
    assert_eq!(frame(&[b"no newline yet"]), vec![]);
}

#[test]
fn backoff_doubles_to_the_cap_with_jitter_and_resets() {
    let mut b = Backoff::new();
    let mut expected = Duration::from_secs(1);
    for seed in 0..10u64 {
        let d = b.next_delay(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        assert!(d >= expected / 2 && d <= expected, "{d:?} vs {expected:?}");
        expected = (expected * 2).min(Duration::from_secs(60));
    }
    assert!(b.next_delay(u64::MAX) >= Duration::from_secs(30));
    b.reset();
    assert!(b.next_delay(0) <= Duration::from_secs(1));
}

#[test]
fn join_lines_hold_at_most_20_channels_and_500_bytes() {
    let few: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
    assert_eq!(command_lines("JOIN", &few, 20), ["JOIN #a,#b,#c\r\n"]);
    assert_eq!(
        command_lines("PART", &few, 2),
        ["PART #a,#b\r\n", "PART #c\r\n"]
    );
    assert!(command_lines("JOIN", &[], 20).is_empty());
    let many: Vec<String> = (0..45).map(|i| format!("channel_{i:02}")).collect();
    let lines = command_lines("JOIN", &many, 20);
    let counts: Vec<usize> = lines.iter().map(|l| l.matches('#').count()).collect();
    assert_eq!(counts, [20, 20, 5]);
    let long: Vec<String> = (0..40)
        .map(|i| format!("{i:02}{}", "x".repeat(23)))
        .collect();
    let lines = command_lines("JOIN", &long, usize::MAX);
    assert!(
        lines.len() > 1 && lines.iter().all(|l| l.len() <= 502),
        "{lines:?}"
    );
    assert_eq!(
        lines.iter().map(|l| l.matches('#').count()).sum::<usize>(),
        40
    );
}
