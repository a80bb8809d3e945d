//! The fake's side of a streamer's sign-in (authorization-code flow):
//! `GET /oauth2/authorize` answers as if the streamer consented at once (a 302
//! to `redirect_uri` with `code` and `state`) or declined (`error=access_denied`);
//! `POST /oauth2/token` with `grant_type=authorization_code` trades the code for
//! a user token (client, secret and redirect_uri must match); `GET /helix/users`
//! without parameters answers with the token's own user.

use std::time::{Duration, Instant};

use super::{CLIENT_ID, CLIENT_SECRET, Reply, State, Token, error, next_id};

/// The Twitch account that consents at the fake's authorize page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consent {
    pub id: String,
    pub login: String,
    pub display_name: String,
}

/// An issued, not yet redeemed code.
pub(super) struct Code {
    code: String,
    user: Consent,
    redirect_uri: String,
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if s.get(i + 1..i + 3).is_some() => {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap_or(b'?'));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn pairs(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

fn redirect(location: String) -> Reply {
    (302, vec![("Location".into(), location)], String::new())
}

/// `GET /oauth2/authorize?…`
pub(super) fn authorize(s: &mut State, query: &str) -> Reply {
    let q = pairs(query);
    let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    if get("client_id") != Some(CLIENT_ID) || get("response_type") != Some("code") {
        return error(400, "invalid client or response type");
    }
    let (Some(uri), Some(state)) = (get("redirect_uri"), get("state")) else {
        return error(400, "missing redirect_uri or state");
    };
    let sep = if uri.contains('?') { '&' } else { '?' };
    let state_enc = state.replace('&', "%26");
    if s.deny_consent {
        return redirect(format!(
            "{uri}{sep}error=access_denied&error_description=The+user+denied+you+access&state={state_enc}"
        ));
    }
    let Some(user) = s.consent.clone() else {
        return error(400, "no consenting user configured");
    };
    let code = next_id(s, "code");
    s.codes.push(Code {
        code: code.clone(),
        user,
        redirect_uri: uri.to_string(),
    });
    redirect(format!(
        "{uri}{sep}code={code}&scope=channel%3Abot&state={state_enc}"
    ))
}

/// `POST /oauth2/token` with `grant_type=authorization_code`.
pub(super) fn exchange(s: &mut State, body: &str) -> Reply {
    let form = pairs(body);
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    if get("client_id") != Some(CLIENT_ID) || get("client_secret") != Some(CLIENT_SECRET) {
        return (
            403,
            vec![],
            r#"{"status":403,"message":"invalid client"}"#.into(),
        );
    }
    let code = get("code").unwrap_or_default();
    let Some(i) = s.codes.iter().position(|c| c.code == code) else {
        return (
            400,
            vec![],
            r#"{"status":400,"message":"Invalid authorization code"}"#.into(),
        );
    };
    // A code is good for one exchange, with the redirect_uri it was issued for.
    let issued = s.codes.remove(i);
    if get("redirect_uri") != Some(issued.redirect_uri.as_str()) {
        return (
            400,
            vec![],
            r#"{"status":400,"message":"Parameter redirect_uri does not match registered URI"}"#
                .into(),
        );
    }
    s.tokens_issued += 1;
    let value = format!("usertoken{}", s.tokens_issued);
    let u = issued.user;
    s.display_names.push((u.id.clone(), u.display_name.clone()));
    s.tokens.push(Token {
        value: value.clone(),
        user: Some((u.id, u.login)),
        scopes: vec!["channel:bot".into()],
        expires: Instant::now() + Duration::from_secs(s.token_lifetime),
    });
    let json = format!(
        r#"{{"access_token":"{value}","expires_in":{},"refresh_token":"refresh{}","scope":["channel:bot"],"token_type":"bearer"}}"#,
        s.token_lifetime, s.tokens_issued
    );
    (200, vec![], json)
}

/// `GET /helix/users` with no parameters: the user token's own account.
pub(super) fn own_user(s: &State, user: &(String, String)) -> Reply {
    let (id, login) = user;
    let name = s
        .display_names
        .iter()
        .find(|(i, _)| i == id)
        .map_or(login.as_str(), |(_, n)| n.as_str());
    let json = format!(
        r#"{{"data":[{{"id":"{id}","login":"{login}","display_name":"{name}","type":"","broadcaster_type":"","description":"","profile_image_url":"","offline_image_url":"","view_count":0,"created_at":"2016-12-14T20:32:28Z"}}]}}"#
    );
    (200, vec![], json)
}
