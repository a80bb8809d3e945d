//! What the fake sends like Twitch does: a signed `webhook_callback_verification`
//! to each webhook shard waiting for verification, and the helpers that sign
//! a message and write Twitch's timestamps.

use std::net::SocketAddr;

use super::{FakeShard, Shared};

/// Twitch verifies a webhook shard by POSTing a signed challenge to it.
pub(super) async fn deliver_challenges(addr: SocketAddr, state: &Shared) {
    let pending: Vec<(String, FakeShard)> = {
        let s = state.lock().unwrap_or_else(|e| e.into_inner());
        s.conduits
            .iter()
            .flat_map(|c| c.shards.iter().map(move |sh| (c.id.clone(), sh.clone())))
            .filter(|(_, sh)| sh.status == "webhook_callback_verification_pending")
            .collect()
    };
    for (conduit, shard) in pending {
        let challenge = format!("challenge-{conduit}-{}", shard.id);
        let body = format!(
            r#"{{"challenge":"{challenge}","conduit_shard":{{"conduit_id":"{conduit}","shard":"{}"}}}}"#,
            shard.id
        );
        let secret = shard.secret.clone().unwrap_or_default();
        let reply = post_signed(addr, &secret, "webhook_callback_verification", &body).await;
        let ok = reply
            .as_ref()
            .is_some_and(|(status, text)| *status == 200 && *text == challenge);
        let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
        s.challenges.push(reply.unwrap_or((0, String::new())));
        let found = s.conduits.iter_mut().find(|c| c.id == conduit);
        if let Some(sh) = found.and_then(|c| c.shards.iter_mut().find(|sh| sh.id == shard.id)) {
            sh.status = if ok {
                "enabled"
            } else {
                "webhook_callback_verification_failed"
            }
            .into();
        }
    }
}

/// POSTs a signed EventSub message to `addr`'s `/webhooks/eventsub`; (status, body).
pub async fn post_signed(
    addr: SocketAddr,
    secret: &str,
    kind: &str,
    body: &str,
) -> Option<(u16, String)> {
    let id = format!("msg-{}", chatpulse::app::now_ms());
    let ts = rfc3339(chatpulse::app::now_ms());
    let sig = chatpulse::chat::webhook::verify::sign(secret.as_bytes(), &id, &ts, body.as_bytes());
    let raw = format!(
        "POST /webhooks/eventsub HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\
         Twitch-Eventsub-Message-Id: {id}\r\nTwitch-Eventsub-Message-Timestamp: {ts}\r\n\
         Twitch-Eventsub-Message-Signature: {sig}\r\nTwitch-Eventsub-Message-Type: {kind}\r\n\r\n{body}",
        body.len()
    );
    let (status, _, text) = crate::common::http_raw(addr, raw.as_bytes()).await?;
    Some((status, text))
}

/// Unix ms → `YYYY-MM-DDTHH:MM:SS.mmm000000Z` (nanosecond form, like Twitch).
pub fn rfc3339(unix_ms: u64) -> String {
    let (days, rem) = ((unix_ms / 86_400_000) as i64, unix_ms % 86_400_000);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let (h, mi, sec, ms) = (
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000,
    );
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{sec:02}.{ms:03}000000Z")
}
