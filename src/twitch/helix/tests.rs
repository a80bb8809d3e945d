//! Decoding Twitch's documented response shapes and building request JSON.

use std::time::Duration;

use super::retry::{RATE_LIMIT_WAIT_CAP, check, rate_limit_wait};
use super::wire::{self, url_encode};
use super::*;
use crate::twitch::http::HttpResponse;

#[test]
fn validate_user_and_app_tokens() {
    // https://dev.twitch.tv/docs/authentication/validate-tokens (user token).
    let body = br#"{"client_id":"wbmytr93xzw8zbg0p1izqyzzc5mbiz","login":"twitchdev","scopes":["channel:read:subscriptions"],"user_id":"141981764","expires_in":5520838}"#;
    let v: wire::Validate = decode(body).unwrap();
    assert_eq!(v.login.as_deref(), Some("twitchdev"));
    assert_eq!(v.user_id.as_deref(), Some("141981764"));
    assert_eq!(v.scopes.unwrap(), vec!["channel:read:subscriptions"]);
    assert_eq!(v.expires_in, 5520838);
    // App tokens: no login/user_id, scopes may be null.
    let body = br#"{"client_id":"abc","scopes":null,"expires_in":4000}"#;
    let v: wire::Validate = decode(body).unwrap();
    assert_eq!((v.login, v.scopes, v.expires_in), (None, None, 4000));
}

#[test]
fn token_and_users() {
    let body = br#"{"access_token":"jostpf5q0uzmxmkba9iyug38kjtgh","expires_in":5011271,"token_type":"bearer"}"#;
    let t: wire::Token = decode(body).unwrap();
    assert_eq!(
        (t.access_token.as_str(), t.expires_in),
        ("jostpf5q0uzmxmkba9iyug38kjtgh", 5011271)
    );
    // https://dev.twitch.tv/docs/api/reference/#get-users
    let body = br#"{"data":[{"id":"141981764","login":"twitchdev","display_name":"TwitchDev","type":"","broadcaster_type":"partner","description":"Supporting third-party developers","profile_image_url":"https://x/a.png","offline_image_url":"https://x/b.png","view_count":5980557,"email":"not-real@email.com","created_at":"2016-12-14T20:32:28Z"}]}"#;
    let u: wire::Data<wire::User> = decode(body).unwrap();
    assert_eq!(
        (u.data[0].login.as_str(), u.data[0].id.as_str()),
        ("twitchdev", "141981764")
    );
}

#[test]
fn subscription_pages() {
    // https://dev.twitch.tv/docs/api/reference/#get-eventsub-subscriptions
    let body = br#"{"total":2,"data":[
      {"id":"26b1c993-bfcf-44d9-b876-379dacafe75a","status":"enabled","type":"channel.chat.message","version":"1",
       "condition":{"broadcaster_user_id":"1971641","user_id":"2914196"},"created_at":"2020-11-10T20:08:33.12345678Z",
       "transport":{"method":"conduit","conduit_id":"bfcfc993-26b1-b876-44d9-afe75a379dac"},"cost":0},
      {"id":"35016908-41ff-33ce-7879-61b8dfc2ee16","status":"webhook_callback_verification_pending","type":"user.update","version":"1",
       "condition":{"user_id":"1234"},"created_at":"2020-11-10T14:32:18.730260295Z",
       "transport":{"method":"webhook","callback":"https://this-is-a-callback.com"},"cost":0},
      {"id":"x","status":"websocket_disconnected","type":"channel.chat.message","version":"1","condition":{},
       "transport":{"method":"websocket","session_id":"AgoQ","connected_at":"2023-01-01T00:00:00Z","disconnected_at":"2023-01-01T00:01:00Z"},"cost":0}
    ],"total_cost":1,"max_total_cost":10000,"pagination":{"cursor":"abc"}}"#;
    let page: wire::SubscriptionPage = decode(body).unwrap();
    assert_eq!(page.pagination.unwrap().cursor.as_deref(), Some("abc"));
    let subs: Vec<Subscription> = page.data.into_iter().map(|s| s.flatten()).collect();
    assert_eq!(
        subs[0],
        Subscription {
            id: "26b1c993-bfcf-44d9-b876-379dacafe75a".into(),
            status: "enabled".into(),
            kind: "channel.chat.message".into(),
            broadcaster_user_id: Some("1971641".into()),
            user_id: Some("2914196".into()),
            method: "conduit".into(),
            session_id: None,
            conduit_id: Some("bfcfc993-26b1-b876-44d9-afe75a379dac".into()),
        }
    );
    assert_eq!(subs[1].broadcaster_user_id, None);
    assert_eq!(subs[2].session_id.as_deref(), Some("AgoQ"));
    let last: wire::SubscriptionPage = decode(br#"{"total":0,"data":[],"pagination":{}}"#).unwrap();
    assert!(last.pagination.unwrap().cursor.is_none());
}

#[test]
fn conduits_and_shards() {
    // https://dev.twitch.tv/docs/api/reference/#create-conduits
    let body = br#"{"data":[{"id":"bfcfc993-26b1-b876-44d9-afe75a379dac","shard_count":5}]}"#;
    let c: wire::Data<Conduit> = decode(body).unwrap();
    assert_eq!(c.data[0].shard_count, 5);
    // https://dev.twitch.tv/docs/api/reference/#update-conduit-shards
    let body = br#"{"data":[
      {"id":"0","status":"enabled","transport":{"method":"websocket","session_id":"9fd5164a-a958-4c60-b7f4-6a7202506ca0","connected_at":"2020-11-10T14:32:18.730260295Z"}},
      {"id":"1","status":"webhook_callback_verification_pending","transport":{"method":"webhook","callback":"https://this-is-a-callback-3.com"}}],
      "errors":[{"id":"3","message":"The shard id is outside the conduit's range","code":"invalid_parameter"}]}"#;
    let r: wire::ShardsResponse = decode(body).unwrap();
    let shards: Vec<Shard> = r.data.into_iter().map(|s| s.flatten()).collect();
    assert_eq!(
        shards[1].callback.as_deref(),
        Some("https://this-is-a-callback-3.com")
    );
    assert_eq!(r.errors.unwrap()[0].code, "invalid_parameter");
}

#[test]
fn errors_map_to_kinds() {
    let resp = |status, headers: Vec<(String, String)>, body: &str| HttpResponse {
        status,
        headers,
        body: body.as_bytes().to_vec(),
    };
    let e = check(resp(
        401,
        vec![],
        r#"{"error":"Unauthorized","status":401,"message":"Invalid OAuth token"}"#,
    ))
    .unwrap_err();
    assert!(matches!(&e, HelixError::Unauthorized(m) if m == "Invalid OAuth token"));
    assert!(!e.is_transient());
    let e = check(resp(409, vec![], "{}")).unwrap_err();
    assert!(matches!(e, HelixError::Conflict));
    let e = check(resp(
        429,
        vec![("ratelimit-reset".into(), "1700000000".into())],
        "",
    ))
    .unwrap_err();
    assert!(matches!(
        e,
        HelixError::RateLimited {
            reset_unix: Some(1700000000)
        }
    ));
    assert!(e.is_transient());
    let e = check(resp(503, vec![], "oops")).unwrap_err();
    assert!(matches!(&e, HelixError::Status(503, m) if m == "oops"));
    assert!(e.is_transient());
    assert!(!check(resp(400, vec![], "{}")).unwrap_err().is_transient());
}

#[test]
fn malformed_json_is_an_error_not_a_panic() {
    assert!(decode::<wire::Token>(br#"{"access_token":}"#).is_err());
    assert!(decode::<wire::Token>(br#"{"x":,"#).is_err());
    assert!(decode::<wire::Token>(b"\xff").is_err());
    assert!(decode::<wire::Token>(br#"{"expires_in":1}"#).is_err());
}

#[test]
fn request_json_is_escaped() {
    let req = SubscriptionRequest {
        kind: "channel.chat.message",
        version: "1",
        broadcaster_user_id: "12826",
        user_id: "141981764",
        transport: Transport::Webhook {
            callback: "https://h/x",
            secret: "a\"b\\c\n\u{1}",
        },
    };
    assert_eq!(
        req.to_json(),
        r#"{"type":"channel.chat.message","version":"1","condition":{"broadcaster_user_id":"12826","user_id":"141981764"},"transport":{"method":"webhook","callback":"https://h/x","secret":"a\"b\\c\n\u0001"}}"#
    );
    assert_eq!(url_encode("a b&c/é"), "a%20b%26c%2F%C3%A9");
}

#[test]
fn rate_limit_wait_is_capped() {
    assert_eq!(rate_limit_wait(100, 99_500), Duration::from_millis(500));
    assert_eq!(rate_limit_wait(100, 200_000), Duration::ZERO);
    assert_eq!(rate_limit_wait(10_000, 0), RATE_LIMIT_WAIT_CAP);
}

#[test]
fn retry_policy() {
    use std::cell::Cell;
    smol::block_on(async {
        let calls = Cell::new(0);
        let r: Result<u8, _> = with_retry("t", || {
            calls.set(calls.get() + 1);
            async { Err(HelixError::Conflict) }
        })
        .await;
        assert!(matches!(r, Err(HelixError::Conflict)));
        assert_eq!(calls.get(), 1, "409 is not retried");
        calls.set(0);
        let r = with_retry("t", || {
            calls.set(calls.get() + 1);
            let n = calls.get();
            async move {
                if n == 1 {
                    Err(HelixError::RateLimited {
                        reset_unix: Some(0),
                    })
                } else {
                    Ok(n)
                }
            }
        })
        .await;
        assert_eq!(r.unwrap(), 2, "429 with a past reset retries at once");
    });
}
