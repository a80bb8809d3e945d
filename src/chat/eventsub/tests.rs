//! Tests of the EventSub payload, envelope and JSON syntax walk, starting from
//! Twitch's documented examples (reference notes §1(b), §1(c)).

use super::json::{MAX_DEPTH, top_level_fields};
use super::*;

/// Twitch's `channel.chat.message` v1 example, byte for byte.
const DOC_PAYLOAD: &str = r##"{
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

const WELCOME: &str = r#"{"metadata":{"message_id":"96a3f3b5-5dec-4eed-908e-e11ee657416c","message_type":"session_welcome","message_timestamp":"2023-07-19T14:56:51.634234626Z"},"payload":{"session":{"id":"AQoQILE98gtqShGmLD7AM6yJThAB","status":"connected","connected_at":"2023-07-19T14:56:51.616329898Z","keepalive_timeout_seconds":10,"reconnect_url":null}}}"#;
const KEEPALIVE: &str = r#"{"metadata":{"message_id":"84c1e79a-2a4b-4c13-ba0b-4312293e9308","message_type":"session_keepalive","message_timestamp":"2023-07-19T10:11:12.634234626Z"},"payload":{}}"#;
const RECONNECT: &str = r#"{"metadata":{"message_id":"84c1e79a-2a4b-4c13-ba0b-4312293e9308","message_type":"session_reconnect","message_timestamp":"2022-11-18T09:10:11.634234626Z"},"payload":{"session":{"id":"AQoQexAWVYKSTIu4ec_2VAxyuhAB","status":"reconnecting","keepalive_timeout_seconds":null,"reconnect_url":"wss://eventsub.wss.twitch.tv?...","connected_at":"2022-11-16T10:11:12.634234626Z"}}}"#;
const REVOCATION: &str = r#"{"metadata":{"message_id":"84c1e79a-2a4b-4c13-ba0b-4312293e9308","message_type":"revocation","message_timestamp":"2022-11-16T10:11:12.464757833Z","subscription_type":"channel.follow","subscription_version":"1"},"payload":{"subscription":{"id":"f1c2a387-161a-49f9-a165-0f21d7a4e1c4","status":"authorization_revoked","type":"channel.follow","version":"1","cost":1,"condition":{"broadcaster_user_id":"12826"},"transport":{"method":"websocket","session_id":"AQoQexAWVYKSTIu4ec_2VAxyuhAB"},"created_at":"2022-11-16T10:11:12.464757833Z"}}}"#;

fn parse(payload: &str) -> Result<ChatMessage, EventSubError> {
    chat_message_from_payload(payload, ChatSource::EventSubWs)
}

#[test]
fn documented_chat_payload() {
    let m = parse(DOC_PAYLOAD).unwrap();
    assert_eq!(m.source, ChatSource::EventSubWs);
    assert_eq!(
        (m.channel.as_str(), m.chatter_id.as_str(), m.text.as_str()),
        ("streamer", "4145994", "Hi chat")
    );
    assert_eq!(
        m.message_id.as_deref(),
        Some("cc106a89-1814-919d-454c-f4f2f970aae7")
    );
    assert_eq!(m.sent_ms, None);
    let w = chat_message_from_payload(DOC_PAYLOAD, ChatSource::EventSubWebhook).unwrap();
    assert_eq!(w.source, ChatSource::EventSubWebhook);
}

#[test]
fn chat_payload_variants_twitch_sends() {
    // Empty colour, more null fields, shared-chat `source_*` fields, an emote
    // fragment, a reply object, escapes, a mixed-case login.
    let variant = DOC_PAYLOAD
        .replace(r##""#00FF7F""##, r#""""#)
        .replace(r#""reply": null,"#, "")
        .replace(
            r#""channel_points_custom_reward_id": null"#,
            r#""channel_points_custom_reward_id": null, "channel_points_animation_id": null,
               "source_broadcaster_user_id": "99", "source_broadcaster_user_login": "other",
               "source_broadcaster_user_name": "Other", "source_message_id": "x-1",
               "source_badges": [{"set_id": "vip", "id": "1", "info": ""}], "is_source_only": false,
               "reply": {"parent_message_id": "p", "parent_message_body": "q \"r\"", "thread_user_login": "t"}"#,
        )
        .replace(
            r#""text": "Hi chat","#,
            r#""text": "yes \u00e9\ud83d\ude00 \"q\"","#,
        )
        .replace(
            r#""emote": null, "mention": null"#,
            r#""emote": {"id": "25", "emote_set_id": "0", "owner_id": "1", "format": ["static"]}, "mention": null"#,
        )
        .replace(
            r#""broadcaster_user_login": "streamer""#,
            r#""broadcaster_user_login": "StreamER""#,
        );
    for gone in ["#00FF7F", r#""reply": null"#, "Hi chat,"] {
        assert!(!variant.contains(gone), "{gone}");
    }
    let m = parse(&variant).unwrap();
    assert_eq!(m.channel, "streamer");
    assert_eq!(m.text, "yes é😀 \"q\"");

    // Without the subscription object, and with a null colour.
    let event_only = r#"{"event":{"broadcaster_user_id":"1","broadcaster_user_login":"a","chatter_user_id":"2","message_id":"m","message":{"text":"no","fragments":[]},"color":null}}"#;
    assert_eq!(parse(event_only).unwrap().text, "no");
}

#[test]
fn bad_chat_payloads_are_errors_not_panics() {
    for (text, want) in [
        ("", "Syntax"),
        ("{", "Syntax"),
        (r#"{"event":{"x":"#, "Syntax"),
        (r#"{"event":{"x":]}}"#, "Syntax"),
        (r#"{"event":,}"#, "Syntax"),
        (r#"{"event":{}} x"#, "Syntax"),
        ("[1,2]", "Syntax"),
        (r#"{"event":{"broadcaster_user_login":"a"}}"#, "Shape"),
        (r#"{"subscription":null}"#, "Shape"),
        (r#"{"event":{"broadcaster_user_id":1}}"#, "Shape"),
    ] {
        let got = format!("{:?}", parse(text).unwrap_err());
        assert!(got.starts_with(want), "{text}: {got}");
    }
    let follow = DOC_PAYLOAD.replace(
        r#""type": "channel.chat.message""#,
        r#""type": "channel.follow""#,
    );
    assert_eq!(
        parse(&follow).unwrap_err(),
        EventSubError::WrongType("channel.follow".into())
    );
    let no_chatter = DOC_PAYLOAD.replace(
        r#""chatter_user_id": "4145994""#,
        r#""chatter_user_id": """#,
    );
    let err = parse(&no_chatter).unwrap_err();
    assert_eq!(err, EventSubError::BadField("event.chatter_user_id"));
    assert!(err.to_string().contains("chatter_user_id"));
}

#[test]
fn documented_ws_messages() {
    let (meta, msg) = parse_ws_message(WELCOME).unwrap();
    assert_eq!(meta.message_type, "session_welcome");
    assert_eq!(meta.message_timestamp, "2023-07-19T14:56:51.634234626Z");
    let WsMessage::Welcome(s) = msg else {
        panic!("{msg:?}")
    };
    assert_eq!(
        (s.id.as_str(), s.keepalive_timeout_seconds, s.reconnect_url),
        ("AQoQILE98gtqShGmLD7AM6yJThAB", Some(10), None)
    );

    assert_eq!(parse_ws_message(KEEPALIVE).unwrap().1, WsMessage::Keepalive);

    let (_, msg) = parse_ws_message(RECONNECT).unwrap();
    let WsMessage::Reconnect(s) = msg else {
        panic!("{msg:?}")
    };
    assert_eq!(s.keepalive_timeout_seconds, None);
    assert_eq!(
        s.reconnect_url.as_deref(),
        Some("wss://eventsub.wss.twitch.tv?...")
    );

    let (meta, msg) = parse_ws_message(REVOCATION).unwrap();
    assert_eq!(meta.subscription_type.as_deref(), Some("channel.follow"));
    let WsMessage::Revocation(sub) = msg else {
        panic!("{msg:?}")
    };
    assert_eq!(sub.status, "authorization_revoked");
    assert_eq!(sub.id, "f1c2a387-161a-49f9-a165-0f21d7a4e1c4");
    assert_eq!(
        sub.condition.and_then(|c| c.broadcaster_user_id).as_deref(),
        Some("12826")
    );
}

#[test]
fn ws_notification_hands_over_the_payload_byte_for_byte() {
    let text = format!(
        r#"{{"metadata":{{"message_id":"rPG-d8pxdPv4BJpNS4ltzpUpK8Akwu5Qto1r8biLCPY=","message_type":"notification","message_timestamp":"2023-11-06T18:11:47.492253549Z","subscription_type":"channel.chat.message","subscription_version":"1"}},"payload":{DOC_PAYLOAD} }}"#
    );
    let (meta, msg) = parse_ws_message(&text).unwrap();
    assert_eq!(
        meta.message_id,
        "rPG-d8pxdPv4BJpNS4ltzpUpK8Akwu5Qto1r8biLCPY="
    );
    assert_eq!(msg, WsMessage::Notification(DOC_PAYLOAD));
}

#[test]
fn ws_odd_messages() {
    let future = r#"{"metadata":{"message_id":"1","message_type":"session_party","message_timestamp":""},"payload":{"x":[1]}}"#;
    assert_eq!(
        parse_ws_message(future).unwrap().1,
        WsMessage::Other("session_party".into())
    );
    for bad in [
        r#"{"metadata":{"message_id":"1","message_type":"session_keepalive"}}"#,
        r#"{"payload":{}}"#,
        r#"{"metadata":{"message_id":"1","message_type":"session_welcome"},"payload":{"session":{"id":""}}}"#,
        r#"{"metadata":{"message_id":"1","message_type":"session_welcome"},"payload":{}}"#,
        r#"{"metadata":{"message_id":"1","message_type":"revocation"},"payload":{"subscription":{}}}"#,
        r#"{"metadata":{"message_id":"1","message_type":"notification"},"payload":{"#,
        "not json",
    ] {
        assert!(parse_ws_message(bad).is_err(), "{bad}");
    }
}

#[test]
fn json_walk() {
    let f =
        top_level_fields(r#" {"a" : [1, -2.5e+3, {"b": null}], "c":"x\"}", "d":{} } "#).unwrap();
    assert_eq!(
        f,
        vec![
            ("a", r#"[1, -2.5e+3, {"b": null}]"#),
            ("c", r#""x\"}""#),
            ("d", "{}")
        ]
    );
    for ok in [
        "{}",
        r#"{"a":true,"b":false,"c":null,"d":0,"e":-0.5,"f":1E9,"g":"\u00e9\n","h":[]}"#,
        "{\"tab\":\"a\tb\"}",
    ] {
        assert!(top_level_fields(ok).is_ok(), "{ok}");
    }
    for bad in [
        "",
        "[]",
        "{",
        "}",
        r#"{"a"}"#,
        r#"{"a":}"#,
        r#"{"a":1,}"#,
        r#"{"a":[1,]}"#,
        r#"{"a":01}"#,
        r#"{"a":1.}"#,
        r#"{"a":-}"#,
        r#"{"a":1e}"#,
        r#"{"a":tru}"#,
        r#"{"a":"\x"}"#,
        r#"{"a":"\u12"}"#,
        r#"{"a":"open}"#,
        r#"{a:1}"#,
        r#"{"a":1} {"#,
        r#"{"a":[}]}"#,
        r#"{"a":{]}"#,
        r#"{"a" 1}"#,
    ] {
        assert!(top_level_fields(bad).is_err(), "{bad:?}");
    }
    let deep = |n: usize| format!(r#"{{"a":{}1{}}}"#, "[".repeat(n), "]".repeat(n));
    assert!(top_level_fields(&deep(MAX_DEPTH - 1)).is_ok());
    assert_eq!(
        top_level_fields(&deep(MAX_DEPTH)).unwrap_err().what,
        "nested too deep"
    );
    assert!(
        top_level_fields(&deep(100_000)).is_err(),
        "no stack overflow"
    );
}
