//! The EventSub webhook chat source: `POST /webhooks/eventsub` ([`handle`])
//! and the conduit that routes Twitch's chat events to it ([`conduit_loop`],
//! in `conduit`). The pure checks (signature, timestamp, seen ids) are in
//! `verify`.
//!
//! A request is answered in this order: signature (403), timestamp format and
//! freshness (400), then by message type. Notifications and revocations are
//! de-duplicated by message id (Twitch delivers at least once; a replay within
//! the freshness window is answered 204 and not counted again). Chat goes to
//! [`crate::hub::Hub::chat`], which only takes a short lock and never waits on
//! I/O, so the 2xx is not delayed by vote processing. The route is never
//! rate limited per IP: every chat line of every channel comes from Twitch.

mod conduit;
pub mod verify;

pub use conduit::conduit_loop;

use std::sync::Arc;

use nanoserde::DeJson;

use crate::app::{App, now_ms};
use crate::chat::ChatSource;
use crate::http::request::Request;
use crate::http::response::{Response, json_escape};
use crate::metrics::{ChatDropReason, WebhookResult};
use verify::Freshness;
pub use verify::SeenIds;

/// Largest body we read; Twitch's notifications are a few KB.
pub const MAX_BODY: usize = 1024 * 1024;
/// The only subscription type this source asks for.
pub const CHAT_MESSAGE: &str = "channel.chat.message";

/// Entry point of the route: answers one webhook request and counts its outcome.
pub fn handle(app: &Arc<App>, req: &Request, body: Vec<u8>) -> Response {
    let (result, resp) = answer(app, req, &body, now_ms());
    app.metrics.eventsub_webhook_requests.inc(result);
    resp
}

fn answer(app: &Arc<App>, req: &Request, body: &[u8], now: u64) -> (WebhookResult, Response) {
    let header = |name| req.header(name).filter(|v| !v.is_empty());
    let (Some(id), Some(timestamp), Some(signature), Some(secret)) = (
        header("twitch-eventsub-message-id"),
        header("twitch-eventsub-message-timestamp"),
        header("twitch-eventsub-message-signature"),
        app.config.twitch.webhook_secret.as_deref(),
    ) else {
        return refuse(WebhookResult::BadSignature, 403, "missing signature");
    };
    if !verify::signature_ok(secret.as_bytes(), id, timestamp, body, signature) {
        return refuse(WebhookResult::BadSignature, 403, "invalid signature");
    }
    let Some(sent_ms) = verify::parse_rfc3339_ms(timestamp) else {
        return refuse(WebhookResult::BadRequest, 400, "invalid message timestamp");
    };
    match verify::freshness(sent_ms, now) {
        Freshness::Fresh => {}
        Freshness::TooOld => {
            return refuse(WebhookResult::Stale, 400, "message timestamp too old");
        }
        Freshness::TooNew => {
            return refuse(WebhookResult::Stale, 400, "message timestamp in the future");
        }
    }
    if id.len() > verify::MAX_ID_LEN {
        return refuse(WebhookResult::BadRequest, 400, "message id too long");
    }
    match header("twitch-eventsub-message-type").unwrap_or("") {
        "webhook_callback_verification" => challenge(body),
        kind @ ("notification" | "revocation") => {
            if !first_sighting(app, id, now) {
                log::debug!("twitch webhook: duplicate message {id}; acknowledged again");
                return no_content(WebhookResult::Duplicate);
            }
            if kind == "notification" {
                notification(app, req, body, sent_ms, now)
            } else {
                revocation(app, body)
            }
        }
        _ => refuse(WebhookResult::BadRequest, 400, "unknown message type"),
    }
}

/// A JSON error in the shape of [`crate::http::response::ApiError`]'s.
fn refuse(result: WebhookResult, status: u16, message: &str) -> (WebhookResult, Response) {
    let kind = if status == 403 {
        "forbidden"
    } else {
        "bad_request"
    };
    let mut body = String::from("{\"error\":\"");
    json_escape(message, &mut body);
    body.push_str("\",\"type\":\"");
    body.push_str(kind);
    body.push_str("\"}");
    (result, Response::json(status, body))
}

fn no_content(result: WebhookResult) -> (WebhookResult, Response) {
    (result, Response::new(204, "text/plain", &b""[..]))
}

#[derive(DeJson)]
struct ChallengeBody {
    challenge: String,
}

/// Subscription and conduit-shard verification: 200, `text/plain`, the
/// challenge verbatim (anything else and Twitch refuses the callback).
fn challenge(body: &[u8]) -> (WebhookResult, Response) {
    match crate::twitch::helix::decode::<ChallengeBody>(body) {
        Ok(c) => {
            log::info!("twitch webhook: callback verification answered");
            let resp = Response::new(200, "text/plain", c.challenge.into_bytes());
            (WebhookResult::Verification, resp)
        }
        Err(_) => refuse(
            WebhookResult::Malformed,
            400,
            "verification without a challenge",
        ),
    }
}

fn notification(
    app: &Arc<App>,
    req: &Request,
    body: &[u8],
    sent_ms: u64,
    now: u64,
) -> (WebhookResult, Response) {
    let kind = req.header("twitch-eventsub-subscription-type");
    if kind != Some(CHAT_MESSAGE) {
        log::debug!("twitch webhook: ignoring a {kind:?} notification");
        return no_content(WebhookResult::Ignored);
    }
    match std::str::from_utf8(body)
        .map_err(|e| e.to_string())
        .and_then(|t| {
            crate::chat::eventsub::chat_message_from_payload(t, ChatSource::EventSubWebhook)
                .map_err(|e| e.to_string())
        }) {
        Ok(mut msg) => {
            msg.sent_ms.get_or_insert(sent_ms);
            app.metrics
                .chat_source_last_message
                .set(ChatSource::EventSubWebhook, (now / 1000) as i64);
            app.hub.chat(&msg, now);
            no_content(WebhookResult::Notification)
        }
        Err(e) => {
            // Answered 2xx anyway: a payload we cannot read will not improve on
            // redelivery, and failures would get the subscription revoked.
            log::warn!("twitch webhook: unreadable chat notification: {e}");
            app.metrics
                .chat_lines_dropped
                .inc(ChatDropReason::Malformed);
            no_content(WebhookResult::Malformed)
        }
    }
}

#[derive(DeJson)]
struct RevokedSubscription {
    id: String,
    status: String,
    #[nserde(rename = "type")]
    kind: String,
}

#[derive(DeJson)]
struct RevocationBody {
    subscription: RevokedSubscription,
}

/// Twitch revoked a subscription: log why, mark the stored row, count it.
/// The next conduit round re-creates it if the channel is still served.
fn revocation(app: &Arc<App>, body: &[u8]) -> (WebhookResult, Response) {
    let Ok(RevocationBody { subscription: sub }) = crate::twitch::helix::decode(body) else {
        log::warn!("twitch webhook: unreadable revocation");
        return no_content(WebhookResult::Malformed);
    };
    log::warn!(
        "twitch webhook: subscription {} ({}) revoked by Twitch: {}",
        sub.id,
        sub.kind,
        sub.status
    );
    let app2 = Arc::clone(app);
    app.spawn(async move {
        match app2
            .db
            .revoke_eventsub_subscription(&sub.id, &sub.status)
            .await
        {
            Ok(true) => {}
            Ok(false) => log::info!(
                "twitch webhook: revoked subscription {} was not stored",
                sub.id
            ),
            Err(e) => log::error!("twitch webhook: marking {} revoked failed: {e}", sub.id),
        }
    });
    no_content(WebhookResult::Revocation)
}

/// Records `id` for this node; false when it was seen within the freshness window.
fn first_sighting(app: &Arc<App>, id: &str, now: u64) -> bool {
    app.webhook_seen
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(id, now)
}
