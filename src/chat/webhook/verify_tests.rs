//! Signature test vector, timestamp parsing, freshness and the seen-id set.

use super::*;

/// Twitch's documented vector (twitch-rs `verify_request`, reference §1(a)).
pub const VECTOR_SECRET: &str = "secretabcd";
pub const VECTOR_ID: &str = "ae2ff348-e102-16be-a3eb-6830c1bf38d2";
pub const VECTOR_TIMESTAMP: &str = "2021-02-19T23:47:00.8091512Z";
pub const VECTOR_BODY: &str = r#"{"subscription":{"id":"ae2ff348-e102-16be-a3eb-6830c1bf38d2","status":"enabled","type":"channel.follow","version":"1","condition":{"broadcaster_user_id":"44429626"},"transport":{"method":"webhook","callback":"null"},"created_at":"2021-02-19T23:47:00.7621315Z"},"event":{"user_id":"28408015","user_login":"testFromUser","user_name":"testFromUser","broadcaster_user_id":"44429626","broadcaster_user_login":"44429626","broadcaster_user_name":"testBroadcaster"}}"#;
pub const VECTOR_SIGNATURE: &str =
    "sha256=d10f5bd9474b7ac7bd7105eb79c2d52768b4d0cd2a135982c3bf5a1d59a78823";

#[test]
fn documented_signature_vector() {
    assert_eq!(VECTOR_BODY.len(), 458);
    let secret = VECTOR_SECRET.as_bytes();
    let body = VECTOR_BODY.as_bytes();
    assert!(signature_ok(
        secret,
        VECTOR_ID,
        VECTOR_TIMESTAMP,
        body,
        VECTOR_SIGNATURE
    ));
    assert_eq!(
        sign(secret, VECTOR_ID, VECTOR_TIMESTAMP, body),
        VECTOR_SIGNATURE
    );
    let upper = format!("sha256={}", VECTOR_SIGNATURE[7..].to_uppercase());
    assert!(signature_ok(
        secret,
        VECTOR_ID,
        VECTOR_TIMESTAMP,
        body,
        &upper
    ));
    // Any changed input, or a malformed header, fails.
    let bad = [
        (VECTOR_SECRET, VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_SIGNATURE),
        ("secretabce", VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_SIGNATURE),
        (VECTOR_SECRET, "x", VECTOR_TIMESTAMP, VECTOR_SIGNATURE),
        (
            VECTOR_SECRET,
            VECTOR_ID,
            "2021-02-19T23:47:00Z",
            VECTOR_SIGNATURE,
        ),
        (
            VECTOR_SECRET,
            VECTOR_ID,
            VECTOR_TIMESTAMP,
            &VECTOR_SIGNATURE[7..],
        ),
        (VECTOR_SECRET, VECTOR_ID, VECTOR_TIMESTAMP, "sha256=zz"),
        (VECTOR_SECRET, VECTOR_ID, VECTOR_TIMESTAMP, "sha256="),
        (VECTOR_SECRET, VECTOR_ID, VECTOR_TIMESTAMP, "sha1=d10f"),
    ];
    for (i, (secret, id, ts, sig)) in bad.iter().enumerate() {
        let body: &[u8] = if i == 0 { b"{}" } else { body };
        assert!(
            !signature_ok(secret.as_bytes(), id, ts, body, sig),
            "case {i}"
        );
    }
}

#[test]
fn rfc3339_timestamps() {
    let base = 1_613_778_420_000; // 2021-02-19T23:47:00Z
    assert_eq!(parse_rfc3339_ms("2021-02-19T23:47:00Z"), Some(base));
    assert_eq!(parse_rfc3339_ms(VECTOR_TIMESTAMP), Some(base + 809));
    assert_eq!(
        parse_rfc3339_ms("2023-11-06T18:11:47.492253549Z"),
        Some(1_699_294_307_492)
    );
    assert_eq!(parse_rfc3339_ms("2021-02-19T23:47:00.5Z"), Some(base + 500));
    assert_eq!(parse_rfc3339_ms("2021-02-20T01:47:00+02:00"), Some(base));
    assert_eq!(parse_rfc3339_ms("2021-02-19T22:47:00-01:00"), Some(base));
    assert_eq!(parse_rfc3339_ms("2021-02-19t23:47:00z"), Some(base));
    assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00Z"), Some(0));
    assert_eq!(
        parse_rfc3339_ms("2024-02-29T00:00:00Z"),
        Some(1_709_164_800_000)
    );
    assert_eq!(
        parse_rfc3339_ms("2000-03-01T00:00:00Z"),
        Some(951_868_800_000)
    );
    for bad in [
        "",
        "2021-02-19",
        "2021-02-19T23:47:00",
        "2021-02-19T23:47:00.Z",
        "2021-02-19T23:47:00.1234567890Z",
        "2021-02-30T00:00:00Z",
        "2023-02-29T00:00:00Z",
        "2021-13-01T00:00:00Z",
        "2021-02-19T24:00:00Z",
        "2021-02-19T23:60:00Z",
        "2021-02-19T23:47:00+0200",
        "2021-02-19T23:47:00Zjunk",
        "2021/02/19T23:47:00Z",
        "+021-02-19T23:47:00Z",
        "1969-12-31T23:59:59Z",
        "2021-02-19T23:47:00.８Z",
    ] {
        assert_eq!(parse_rfc3339_ms(bad), None, "{bad:?}");
    }
}

#[test]
fn freshness_window() {
    let now = 10_000_000_000;
    assert_eq!(freshness(now, now), Freshness::Fresh);
    assert_eq!(freshness(now - MAX_AGE_MS, now), Freshness::Fresh);
    assert_eq!(freshness(now - MAX_AGE_MS - 1, now), Freshness::TooOld);
    assert_eq!(freshness(now + MAX_AHEAD_MS, now), Freshness::Fresh);
    assert_eq!(freshness(now + MAX_AHEAD_MS + 1, now), Freshness::TooNew);
}

#[test]
fn seen_ids_expire_and_stay_bounded() {
    let mut seen = SeenIds::default();
    assert!(seen.insert("a", 0));
    assert!(!seen.insert("a", 1), "duplicate");
    assert!(seen.insert("b", 1000));
    assert!(!seen.insert("a", SEEN_TTL_MS - 1), "still remembered");
    assert!(seen.insert("a", SEEN_TTL_MS), "forgotten after the ttl");
    assert_eq!(seen.len(), 2, "b and the new a");
    let mut seen = SeenIds::default();
    for i in 0..SEEN_CAPACITY + 10 {
        assert!(seen.insert(&i.to_string(), 5));
    }
    assert_eq!(seen.len(), SEEN_CAPACITY);
    assert!(seen.insert("0", 5), "the oldest were dropped first");
    assert!(!seen.insert(&(SEEN_CAPACITY + 9).to_string(), 5));
}
