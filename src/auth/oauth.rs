//! Twitch sign-in (OAuth 2.0 authorization-code flow, reference §5.1): the
//! authorize URL (scope `channel:bot`, so our bot may read the streamer's chat),
//! the server-side code exchange at `{auth_url}/token` (form body, never the
//! query string: the secret stays out of proxy logs), and the signed-in user
//! from `GET {helix_url}/users` with the new user token.

// nanoserde's derive expands `Option` fields into a match clippy would write with `?`.
#![allow(clippy::question_mark)]

use nanoserde::DeJson;

use crate::http::form::percent_encode;
use crate::twitch::helix::{HelixError, decode};
use crate::twitch::http::{HttpClient, HttpResponse};

/// The only scope asked for: lets the bot account read this channel's chat.
pub const SCOPE: &str = "channel:bot";

/// What the code exchange returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserTokens {
    pub access_token: String,
    pub refresh_token: Option<String>,
    /// Seconds the access token lives, when Twitch says.
    pub expires_in: Option<u64>,
}

/// The Twitch account that signed in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TwitchUser {
    pub id: String,
    pub login: String,
    pub display_name: String,
}

#[derive(DeJson)]
struct TokenJson {
    access_token: String,
    refresh_token: Option<String>,
    expires_in: Option<u64>,
}

#[derive(DeJson)]
struct UserJson {
    id: String,
    login: String,
    display_name: Option<String>,
}

#[derive(DeJson)]
struct UsersJson {
    data: Vec<UserJson>,
}

/// Twitch OAuth for one application. Cheap to clone.
#[derive(Clone)]
pub struct OAuthClient {
    http: HttpClient,
    auth_url: String,
    helix_url: String,
    client_id: String,
    client_secret: String,
}

impl OAuthClient {
    pub fn new(
        http: HttpClient,
        auth_url: &str,
        helix_url: &str,
        client_id: &str,
        client_secret: &str,
    ) -> OAuthClient {
        OAuthClient {
            http,
            auth_url: auth_url.trim_end_matches('/').into(),
            helix_url: helix_url.trim_end_matches('/').into(),
            client_id: client_id.into(),
            client_secret: client_secret.into(),
        }
    }

    /// Where the browser goes to consent.
    pub fn authorize_url(&self, redirect_uri: &str, state: &str) -> String {
        format!(
            "{}/authorize?response_type=code&client_id={}&redirect_uri={}&scope={}&state={}",
            self.auth_url,
            percent_encode(&self.client_id),
            percent_encode(redirect_uri),
            percent_encode(SCOPE),
            percent_encode(state)
        )
    }

    /// `POST {auth_url}/token` with `grant_type=authorization_code`.
    pub async fn exchange_code(
        &self,
        code: &str,
        redirect_uri: &str,
    ) -> Result<UserTokens, HelixError> {
        let form = format!(
            "client_id={}&client_secret={}&code={}&grant_type=authorization_code&redirect_uri={}",
            percent_encode(&self.client_id),
            percent_encode(&self.client_secret),
            percent_encode(code),
            percent_encode(redirect_uri)
        );
        let url = format!("{}/token", self.auth_url);
        let body = Some(("application/x-www-form-urlencoded", form.as_bytes()));
        let resp = ok(self.http.request("POST", &url, &[], body).await?)?;
        let raw: TokenJson = decode(&resp.body)?;
        Ok(UserTokens {
            access_token: raw.access_token,
            refresh_token: raw.refresh_token.filter(|t| !t.is_empty()),
            expires_in: raw.expires_in,
        })
    }

    /// `GET {helix_url}/users` as the token's own user.
    pub async fn current_user(&self, access_token: &str) -> Result<TwitchUser, HelixError> {
        let bearer = format!("Bearer {access_token}");
        let headers = [
            ("Client-Id", self.client_id.as_str()),
            ("Authorization", bearer.as_str()),
        ];
        let url = format!("{}/users", self.helix_url);
        let resp = ok(self.http.request("GET", &url, &headers, None).await?)?;
        let users: UsersJson = decode(&resp.body)?;
        let user = users
            .data
            .into_iter()
            .next()
            .ok_or_else(|| HelixError::Decode("no user for this token".into()))?;
        let valid_login = !user.login.is_empty()
            && user.login.len() <= 25
            && user
                .login
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_');
        let valid_id = !user.id.is_empty() && user.id.bytes().all(|b| b.is_ascii_digit());
        if !valid_login || !valid_id {
            return Err(HelixError::Decode("unexpected user id or login".into()));
        }
        let login = user.login.to_ascii_lowercase();
        Ok(TwitchUser {
            display_name: user
                .display_name
                .filter(|d| !d.trim().is_empty())
                .unwrap_or_else(|| login.clone()),
            id: user.id,
            login,
        })
    }
}

/// Non-2xx → [`HelixError::Status`] with the start of Twitch's answer.
fn ok(resp: HttpResponse) -> Result<HttpResponse, HelixError> {
    match resp.status {
        200..=299 => Ok(resp),
        401 => Err(HelixError::Unauthorized(
            resp.text().chars().take(200).collect(),
        )),
        status => Err(HelixError::Status(
            status,
            resp.text().chars().take(200).collect(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorize_url_is_escaped() {
        let tls = crate::tls::client_config(None).unwrap();
        let c = OAuthClient::new(
            HttpClient::new(tls),
            "https://id.twitch.tv/oauth2/",
            "https://api.twitch.tv/helix",
            "abc",
            "secret",
        );
        assert_eq!(
            c.authorize_url("https://x.example/auth/callback", "s1"),
            "https://id.twitch.tv/oauth2/authorize?response_type=code&client_id=abc\
             &redirect_uri=https%3A%2F%2Fx.example%2Fauth%2Fcallback&scope=channel%3Abot&state=s1"
        );
    }
}
