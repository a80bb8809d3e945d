//! Twitch OAuth (`/validate`, client-credentials `/token`) and the Helix calls
//! ChatPulse needs: users by login, EventSub subscriptions, conduits and their
//! shards. One method per call, no retries inside; [`with_retry`] wraps a call
//! with the retry policy (transient failures back off 1 s, 2 s, 4 s; 429 waits
//! for `Ratelimit-Reset`; in `retry`, with the error type). Response JSON is
//! decoded with `nanoserde`, which skips unknown fields; request JSON is built
//! by hand with escaping (both in `wire`).

mod retry;
mod wire;

pub use retry::{HelixError, with_retry};
pub(crate) use wire::decode;

use nanoserde::DeJson;

use super::http::{HttpClient, HttpResponse};
use retry::check;
use wire::{json_str, url_encode};

/// Helix takes at most 100 `login` parameters per `GET /users`.
const USERS_PER_CALL: usize = 100;
/// Pages of subscriptions we follow at most (100 each): a runaway cursor must end.
const MAX_PAGES: usize = 100;

/// What `/validate` says about a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    pub client_id: String,
    /// Absent for app access tokens.
    pub login: Option<String>,
    pub user_id: Option<String>,
    pub scopes: Vec<String>,
    /// Seconds left.
    pub expires_in: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppToken {
    pub access_token: String,
    pub expires_in: u64,
}

/// Where Twitch delivers a subscription's events (or a conduit shard's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport<'a> {
    WebSocket {
        session_id: &'a str,
    },
    /// Subscriptions only; not a shard transport.
    Conduit {
        conduit_id: &'a str,
    },
    Webhook {
        callback: &'a str,
        secret: &'a str,
    },
}

/// A `POST eventsub/subscriptions` with a broadcaster + user condition
/// (`channel.chat.message` and friends).
#[derive(Debug, Clone, Copy)]
pub struct SubscriptionRequest<'a> {
    pub kind: &'a str,
    pub version: &'a str,
    pub broadcaster_user_id: &'a str,
    pub user_id: &'a str,
    pub transport: Transport<'a>,
}

/// One EventSub subscription as Helix lists it, flattened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub id: String,
    pub status: String,
    pub kind: String,
    pub broadcaster_user_id: Option<String>,
    pub user_id: Option<String>,
    pub method: String,
    pub session_id: Option<String>,
    pub conduit_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, DeJson)]
pub struct Conduit {
    pub id: String,
    pub shard_count: u64,
}

/// One shard's new transport for [`Helix::update_shards`].
#[derive(Debug, Clone, Copy)]
pub struct ShardUpdate<'a> {
    pub id: &'a str,
    pub transport: Transport<'a>,
}

/// A shard Twitch accepted: `status` is `enabled` or
/// `webhook_callback_verification_pending`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shard {
    pub id: String,
    pub status: String,
    pub method: String,
    pub callback: Option<String>,
    pub session_id: Option<String>,
}

/// A shard Twitch refused, with its reason.
#[derive(Debug, Clone, PartialEq, Eq, DeJson)]
pub struct ShardError {
    pub id: String,
    pub message: String,
    pub code: String,
}

/// Result of a shard update: accepted and refused shards.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ShardsUpdated {
    pub shards: Vec<Shard>,
    pub errors: Vec<ShardError>,
}

/// Twitch OAuth + Helix for one client id. Cheap to clone.
#[derive(Clone)]
pub struct Helix {
    http: HttpClient,
    helix: String,
    auth: String,
    client_id: String,
}

impl Helix {
    pub fn new(http: HttpClient, helix_url: &str, auth_url: &str, client_id: &str) -> Helix {
        Helix {
            http,
            helix: helix_url.trim_end_matches('/').to_string(),
            auth: auth_url.trim_end_matches('/').to_string(),
            client_id: client_id.to_string(),
        }
    }

    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// `GET {auth}/validate`; a 401 means the token is no longer valid.
    pub async fn validate(&self, token: &str) -> Result<TokenInfo, HelixError> {
        let auth = format!("OAuth {token}");
        let url = format!("{}/validate", self.auth);
        let resp = self
            .http
            .request("GET", &url, &[("Authorization", &auth)], None)
            .await?;
        let raw: wire::Validate = decode(check(resp)?.body.as_slice())?;
        Ok(TokenInfo {
            client_id: raw.client_id,
            login: raw.login,
            user_id: raw.user_id,
            scopes: raw.scopes.unwrap_or_default(),
            expires_in: raw.expires_in,
        })
    }

    /// `POST {auth}/token` with `grant_type=client_credentials`: an app access token.
    pub async fn app_token(&self, client_secret: &str) -> Result<AppToken, HelixError> {
        let form = format!(
            "client_id={}&client_secret={}&grant_type=client_credentials",
            url_encode(&self.client_id),
            url_encode(client_secret)
        );
        let url = format!("{}/token", self.auth);
        let body = Some(("application/x-www-form-urlencoded", form.as_bytes()));
        let resp = self.http.request("POST", &url, &[], body).await?;
        let raw: wire::Token = decode(check(resp)?.body.as_slice())?;
        Ok(AppToken {
            access_token: raw.access_token,
            expires_in: raw.expires_in,
        })
    }

    /// `(login, id)` for each login Twitch knows (unknown ones are left out),
    /// in batches of [`USERS_PER_CALL`].
    pub async fn users_by_login(
        &self,
        token: &str,
        logins: &[String],
    ) -> Result<Vec<(String, String)>, HelixError> {
        let mut found = Vec::with_capacity(logins.len());
        for batch in logins.chunks(USERS_PER_CALL) {
            let query: Vec<String> = batch
                .iter()
                .map(|l| format!("login={}", url_encode(l)))
                .collect();
            let path = format!("users?{}", query.join("&"));
            let resp = self.call(token, "GET", &path, None).await?;
            let page: wire::Data<wire::User> = decode(&resp.body)?;
            found.extend(page.data.into_iter().map(|u| (u.login, u.id)));
        }
        Ok(found)
    }

    /// `POST eventsub/subscriptions`; the new subscription's id. An existing
    /// identical subscription answers [`HelixError::Conflict`].
    pub async fn create_subscription(
        &self,
        token: &str,
        req: &SubscriptionRequest<'_>,
    ) -> Result<String, HelixError> {
        let body = req.to_json();
        let resp = self
            .call(token, "POST", "eventsub/subscriptions", Some(&body))
            .await?;
        let page: wire::Data<wire::Subscription> = decode(&resp.body)?;
        page.data
            .into_iter()
            .next()
            .map(|s| s.id)
            .ok_or_else(|| HelixError::Decode("no subscription in response".into()))
    }

    /// Every subscription of this client id (optionally of one `type`),
    /// following the pagination cursor.
    pub async fn list_subscriptions(
        &self,
        token: &str,
        kind: Option<&str>,
    ) -> Result<Vec<Subscription>, HelixError> {
        let mut all = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut query = Vec::new();
            if let Some(kind) = kind {
                query.push(format!("type={}", url_encode(kind)));
            }
            if let Some(c) = &cursor {
                query.push(format!("after={}", url_encode(c)));
            }
            let mut path = "eventsub/subscriptions".to_string();
            if !query.is_empty() {
                path = format!("{path}?{}", query.join("&"));
            }
            let resp = self.call(token, "GET", &path, None).await?;
            let page: wire::SubscriptionPage = decode(&resp.body)?;
            all.extend(page.data.into_iter().map(wire::Subscription::flatten));
            cursor = page
                .pagination
                .and_then(|p| p.cursor)
                .filter(|c| !c.is_empty());
            if cursor.is_none() {
                return Ok(all);
            }
        }
        Err(HelixError::Decode(format!(
            "more than {MAX_PAGES} pages of subscriptions"
        )))
    }

    /// `DELETE eventsub/subscriptions?id=…`; a 404 is [`HelixError::Status`].
    pub async fn delete_subscription(&self, token: &str, id: &str) -> Result<(), HelixError> {
        let path = format!("eventsub/subscriptions?id={}", url_encode(id));
        self.call(token, "DELETE", &path, None).await?;
        Ok(())
    }

    /// `GET eventsub/conduits` (app token): this client id's conduits.
    pub async fn list_conduits(&self, token: &str) -> Result<Vec<Conduit>, HelixError> {
        let resp = self.call(token, "GET", "eventsub/conduits", None).await?;
        let page: wire::Data<Conduit> = decode(&resp.body)?;
        Ok(page.data)
    }

    /// `POST eventsub/conduits` (app token) with `shard_count` shards (ids from "0").
    pub async fn create_conduit(
        &self,
        token: &str,
        shard_count: u32,
    ) -> Result<Conduit, HelixError> {
        let body = format!(r#"{{"shard_count":{shard_count}}}"#);
        let resp = self
            .call(token, "POST", "eventsub/conduits", Some(&body))
            .await?;
        let page: wire::Data<Conduit> = decode(&resp.body)?;
        page.data
            .into_iter()
            .next()
            .ok_or_else(|| HelixError::Decode("no conduit in response".into()))
    }

    /// `PATCH eventsub/conduits/shards` (app token). Webhook shards come back
    /// `webhook_callback_verification_pending` until the callback answers the challenge.
    pub async fn update_shards(
        &self,
        token: &str,
        conduit_id: &str,
        shards: &[ShardUpdate<'_>],
    ) -> Result<ShardsUpdated, HelixError> {
        let items: Vec<String> = shards
            .iter()
            .map(|s| {
                format!(
                    r#"{{"id":{},"transport":{}}}"#,
                    json_str(s.id),
                    s.transport.to_json()
                )
            })
            .collect();
        let body = format!(
            r#"{{"conduit_id":{},"shards":[{}]}}"#,
            json_str(conduit_id),
            items.join(",")
        );
        let resp = self
            .call(token, "PATCH", "eventsub/conduits/shards", Some(&body))
            .await?;
        let raw: wire::ShardsResponse = decode(&resp.body)?;
        Ok(ShardsUpdated {
            shards: raw.data.into_iter().map(wire::Shard::flatten).collect(),
            errors: raw.errors.unwrap_or_default(),
        })
    }

    /// One Helix request with `Client-Id` and the bearer token; non-2xx → error.
    async fn call(
        &self,
        token: &str,
        method: &str,
        path: &str,
        json: Option<&str>,
    ) -> Result<HttpResponse, HelixError> {
        let url = format!("{}/{path}", self.helix);
        let bearer = format!("Bearer {token}");
        let headers = [
            ("Client-Id", self.client_id.as_str()),
            ("Authorization", bearer.as_str()),
        ];
        let body = json.map(|j| ("application/json", j.as_bytes()));
        let resp = self.http.request(method, &url, &headers, body).await?;
        check(resp)
    }
}

#[cfg(test)]
mod tests;
