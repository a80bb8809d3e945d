//! Creating a fresh session's `channel.chat.message` subscriptions, one per
//! channel, with the token's user as the reader. Runs beside the socket's read
//! loop (Twitch closes a socket with no subscription 10 s after its welcome,
//! and notifications flow as soon as the first one exists).

use futures_util::StreamExt;

use super::{Channel, Ctx};
use crate::chat::eventsub::CHAT_MESSAGE;
use crate::twitch::helix::{HelixError, SubscriptionRequest, Transport, with_retry};

/// Creations in flight at once: 300 channels subscribe in a few seconds while
/// staying far below Helix's 800 requests per minute per token.
const CONCURRENCY: usize = 8;

/// Subscribes every channel on `session_id`; returns how many are subscribed.
/// Errors for single channels are logged and skipped; `Err` only when Helix
/// refuses the token (401), which no retry will fix.
pub(super) async fn subscribe_all(
    ctx: &Ctx,
    session_id: String,
    channels: &[Channel],
) -> Result<usize, String> {
    let sid = session_id.as_str();
    // Built before the stream: a closure inside it would not be `Send` for every lifetime.
    let creations: Vec<_> = channels
        .iter()
        .map(|ch| async move { (ch, create(ctx, sid, ch).await) })
        .collect();
    let results: Vec<_> = futures_util::stream::iter(creations)
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let mut done = 0;
    let mut conflicts = Vec::new();
    for (ch, result) in results {
        match result {
            Ok(_) => done += 1,
            Err(HelixError::Conflict) => conflicts.push(ch),
            Err(HelixError::Unauthorized(m)) => return Err(m),
            Err(e) => log_failure(ch, &e),
        }
    }
    if !conflicts.is_empty() {
        done += replace_stale(ctx, sid, &conflicts).await?;
    }
    Ok(done)
}

async fn create(ctx: &Ctx, session_id: &str, ch: &Channel) -> Result<String, HelixError> {
    let req = SubscriptionRequest {
        kind: CHAT_MESSAGE,
        version: "1",
        broadcaster_user_id: &ch.id,
        user_id: &ctx.user_id,
        transport: Transport::WebSocket { session_id },
    };
    with_retry("create subscription", || {
        ctx.helix.create_subscription(&ctx.token, &req)
    })
    .await
}

/// A 409 on a fresh session means Twitch still holds an enabled subscription
/// on a socket it has not yet noticed is gone (we gave up on it first, e.g.
/// after a missed keepalive), so it would deliver this channel's chat nowhere.
/// Deletes those and creates again; one already on this session counts as done.
async fn replace_stale(
    ctx: &Ctx,
    session_id: &str,
    conflicts: &[&Channel],
) -> Result<usize, String> {
    let list = with_retry("list subscriptions", || {
        ctx.helix.list_subscriptions(&ctx.token, Some(CHAT_MESSAGE))
    })
    .await;
    let subs = match list {
        Ok(subs) => subs,
        Err(HelixError::Unauthorized(m)) => return Err(m),
        Err(e) => {
            for ch in conflicts {
                log_failure(ch, &e);
            }
            return Ok(0);
        }
    };
    let mut done = 0;
    for ch in conflicts {
        let mine: Vec<_> = subs
            .iter()
            .filter(|s| {
                s.method == "websocket"
                    && s.broadcaster_user_id.as_deref() == Some(ch.id.as_str())
                    && s.user_id.as_deref() == Some(ctx.user_id.as_str())
            })
            .collect();
        if mine
            .iter()
            .any(|s| s.session_id.as_deref() == Some(session_id))
        {
            done += 1;
            continue;
        }
        for stale in mine {
            log::info!(
                "twitch eventsub-ws: deleting {}'s subscription {} of dead session {}",
                ch.login,
                stale.id,
                stale.session_id.as_deref().unwrap_or("?")
            );
            let deleted = with_retry("delete subscription", || {
                ctx.helix.delete_subscription(&ctx.token, &stale.id)
            })
            .await;
            match deleted {
                Ok(()) | Err(HelixError::Status(404, _)) => {}
                Err(HelixError::Unauthorized(m)) => return Err(m),
                Err(e) => log::warn!("twitch eventsub-ws: delete {} failed: {e}", stale.id),
            }
        }
        match create(ctx, session_id, ch).await {
            Ok(_) => done += 1,
            Err(HelixError::Unauthorized(m)) => return Err(m),
            Err(e) => log_failure(ch, &e),
        }
    }
    Ok(done)
}

fn log_failure(ch: &Channel, e: &HelixError) {
    log::error!(
        "twitch eventsub-ws: cannot subscribe to {}'s chat: {e}",
        ch.login
    );
}
