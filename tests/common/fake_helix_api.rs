//! The fake's endpoints: OAuth (`validate`, client-credentials `token`), then,
//! after the token and `Client-Id` checks, Helix `users`,
//! `eventsub/subscriptions` (POST/GET/DELETE) and `eventsub/conduits`
//! (GET/POST, PATCH shards), with Twitch's response shapes.

use std::time::{Duration, Instant};

use nanoserde::DeJson;

use super::{
    CLIENT_ID, CLIENT_SECRET, FakeShard, FakeSub, Reply, State, Token, error, new_conduit, next_id,
    oauth,
};

pub(super) fn route(
    s: &mut State,
    method: &str,
    target: &str,
    headers: &[(String, String)],
    body: &str,
) -> Reply {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let params: Vec<(&str, &str)> = query.split('&').filter_map(|p| p.split_once('=')).collect();
    if let Some(i) = s
        .failures
        .iter()
        .position(|f| f.method == method && f.path == path)
    {
        let f = s.failures.remove(i);
        let mut reply = error(f.status, "injected failure");
        if let Some(reset) = f.reset_unix {
            reply.1 = vec![
                ("Ratelimit-Limit".into(), "800".into()),
                ("Ratelimit-Remaining".into(), "0".into()),
                ("Ratelimit-Reset".into(), reset.to_string()),
            ];
        }
        return reply;
    }
    let now = Instant::now();
    s.tokens.retain(|t| t.expires > now);
    let header = |k: &str| {
        headers
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    };
    match (method, path) {
        ("GET", "/oauth2/validate") => {
            let token = header("authorization").and_then(|a| a.strip_prefix("OAuth "));
            match token.and_then(|v| s.tokens.iter().find(|t| t.value == v)) {
                Some(t) => (200, vec![], validate_json(t, now)),
                None => (
                    401,
                    vec![],
                    r#"{"status":401,"message":"invalid access token"}"#.into(),
                ),
            }
        }
        ("GET", "/oauth2/authorize") => oauth::authorize(s, query),
        ("POST", "/oauth2/token") if body.contains("grant_type=authorization_code") => {
            oauth::exchange(s, body)
        }
        ("POST", "/oauth2/token") => token(s, body),
        _ if path.starts_with("/helix/") => {
            let bearer = header("authorization").and_then(|a| a.strip_prefix("Bearer "));
            let Some(t) = bearer.and_then(|v| s.tokens.iter().find(|t| t.value == v)) else {
                return error(401, "Invalid OAuth token");
            };
            if header("client-id") != Some(CLIENT_ID) {
                return error(401, "Client ID and OAuth token do not match");
            }
            let app_token = t.user.is_none();
            if let (Some(user), ("GET", "/helix/users", "")) = (&t.user, (method, path, query)) {
                let user = user.clone();
                return oauth::own_user(s, &user);
            }
            helix(s, method, &path[7..], &params, body, app_token)
        }
        _ => error(404, "no such endpoint"),
    }
}

fn validate_json(t: &Token, now: Instant) -> String {
    let scopes: Vec<String> = t.scopes.iter().map(|s| format!("\"{s}\"")).collect();
    let user = match &t.user {
        Some((id, login)) => format!(r#""login":"{login}","user_id":"{id}","#),
        None => String::new(),
    };
    format!(
        r#"{{"client_id":"{CLIENT_ID}",{user}"scopes":[{}],"expires_in":{}}}"#,
        scopes.join(","),
        t.expires.saturating_duration_since(now).as_secs()
    )
}

fn token(s: &mut State, body: &str) -> Reply {
    let form: Vec<(&str, &str)> = body.split('&').filter_map(|p| p.split_once('=')).collect();
    let get = |k: &str| form.iter().find(|(n, _)| *n == k).map(|(_, v)| *v);
    if get("grant_type") != Some("client_credentials") {
        return (
            400,
            vec![],
            r#"{"status":400,"message":"unsupported grant type"}"#.into(),
        );
    }
    if get("client_id") != Some(CLIENT_ID) {
        return (
            400,
            vec![],
            r#"{"status":400,"message":"invalid client"}"#.into(),
        );
    }
    if get("client_secret") != Some(CLIENT_SECRET) {
        return (
            403,
            vec![],
            r#"{"status":403,"message":"invalid client secret"}"#.into(),
        );
    }
    s.tokens_issued += 1;
    let value = format!("apptoken{}", s.tokens_issued);
    s.tokens.push(Token {
        value: value.clone(),
        user: None,
        scopes: Vec::new(),
        expires: Instant::now() + Duration::from_secs(s.token_lifetime),
    });
    let json = format!(
        r#"{{"access_token":"{value}","expires_in":{},"token_type":"bearer"}}"#,
        s.token_lifetime
    );
    (200, vec![], json)
}

#[derive(DeJson)]
struct Condition {
    broadcaster_user_id: Option<String>,
    user_id: Option<String>,
}

#[derive(DeJson)]
struct Transport {
    method: String,
    callback: Option<String>,
    secret: Option<String>,
    session_id: Option<String>,
    conduit_id: Option<String>,
}

#[derive(DeJson)]
struct CreateSub {
    #[nserde(rename = "type")]
    kind: String,
    version: String,
    condition: Condition,
    transport: Transport,
}

#[derive(DeJson)]
struct CreateConduit {
    shard_count: usize,
}

#[derive(DeJson)]
struct ShardReq {
    id: String,
    transport: Transport,
}

#[derive(DeJson)]
struct UpdateShards {
    conduit_id: String,
    shards: Vec<ShardReq>,
}

fn helix(
    s: &mut State,
    method: &str,
    path: &str,
    params: &[(&str, &str)],
    body: &str,
    app_token: bool,
) -> Reply {
    let param = |k: &str| params.iter().find(|(n, _)| *n == k).map(|(_, v)| *v);
    match (method, path) {
        ("GET", "users") => {
            let data: Vec<String> = params
                .iter()
                .filter(|(k, _)| *k == "login")
                .filter_map(|(_, login)| s.users.iter().find(|(_, l)| l.eq_ignore_ascii_case(login)))
                .map(|(id, login)| {
                    format!(
                        r#"{{"id":"{id}","login":"{login}","display_name":"{login}","type":"","broadcaster_type":"","description":"","profile_image_url":"","offline_image_url":"","view_count":0,"created_at":"2016-12-14T20:32:28Z"}}"#
                    )
                })
                .collect();
            (200, vec![], format!(r#"{{"data":[{}]}}"#, data.join(",")))
        }
        ("POST", "eventsub/subscriptions") => create_sub(s, body, app_token),
        ("GET", "eventsub/subscriptions") => {
            let kind = param("type");
            let all: Vec<&FakeSub> = s
                .subs
                .iter()
                .filter(|x| kind.is_none_or(|k| x.kind == k))
                .collect();
            let start: usize = param("after").and_then(|a| a.parse().ok()).unwrap_or(0);
            let page: Vec<String> = all
                .iter()
                .skip(start)
                .take(s.page_size)
                .map(|x| sub_json(x))
                .collect();
            let next = start + page.len();
            let pagination = if next < all.len() {
                format!(r#"{{"cursor":"{next}"}}"#)
            } else {
                "{}".into()
            };
            let json = format!(
                r#"{{"total":{},"data":[{}],"total_cost":0,"max_total_cost":10000,"pagination":{pagination}}}"#,
                all.len(),
                page.join(",")
            );
            (200, vec![], json)
        }
        ("DELETE", "eventsub/subscriptions") => {
            let before = s.subs.len();
            s.subs.retain(|x| Some(x.id.as_str()) != param("id"));
            if s.subs.len() < before {
                (204, vec![], String::new())
            } else {
                error(404, "subscription not found")
            }
        }
        (_, "eventsub/conduits" | "eventsub/conduits/shards") if !app_token => {
            error(401, "app access token required")
        }
        ("GET", "eventsub/conduits") => {
            let data: Vec<String> = s
                .conduits
                .iter()
                .map(|c| conduit_json(&c.id, c.shard_count))
                .collect();
            (200, vec![], format!(r#"{{"data":[{}]}}"#, data.join(",")))
        }
        ("POST", "eventsub/conduits") => match CreateConduit::deserialize_json(body) {
            Ok(req) if (1..=20_000).contains(&req.shard_count) => {
                let id = next_id(s, "conduit");
                s.conduits.push(new_conduit(id.clone(), req.shard_count));
                (
                    200,
                    vec![],
                    format!(r#"{{"data":[{}]}}"#, conduit_json(&id, req.shard_count)),
                )
            }
            _ => error(400, "invalid shard_count"),
        },
        ("PATCH", "eventsub/conduits/shards") => update_shards(s, body),
        _ => error(404, "no such endpoint"),
    }
}

fn create_sub(s: &mut State, body: &str, app_token: bool) -> Reply {
    let Ok(req) = CreateSub::deserialize_json(body) else {
        return error(400, "malformed body");
    };
    let t = &req.transport;
    let auth_ok = match t.method.as_str() {
        "websocket" => !app_token && t.session_id.is_some(),
        "conduit" => app_token && t.conduit_id.is_some(),
        "webhook" => {
            app_token
                && t.callback
                    .as_deref()
                    .is_some_and(|c| c.starts_with("https://"))
        }
        _ => false,
    };
    if !auth_ok {
        return error(400, "invalid transport and auth combination");
    }
    if let Some(conduit) = &t.conduit_id
        && !s.conduits.iter().any(|c| &c.id == conduit)
    {
        return error(400, "conduit not found");
    }
    let (Some(broadcaster), Some(user)) =
        (&req.condition.broadcaster_user_id, &req.condition.user_id)
    else {
        return error(400, "condition incomplete");
    };
    let duplicate = s
        .subs
        .iter()
        .any(|x| x.kind == req.kind && &x.broadcaster_user_id == broadcaster && &x.user_id == user);
    if duplicate {
        return error(409, "subscription already exists");
    }
    let _ = req.version;
    let sub = FakeSub {
        id: next_id(s, "sub"),
        status: if t.method == "webhook" {
            "webhook_callback_verification_pending"
        } else {
            "enabled"
        }
        .into(),
        kind: req.kind.clone(),
        broadcaster_user_id: broadcaster.clone(),
        user_id: user.clone(),
        method: t.method.clone(),
        conduit_id: t.conduit_id.clone(),
        session_id: t.session_id.clone(),
        callback: t.callback.clone(),
    };
    let json = format!(
        r#"{{"data":[{}],"total":{},"total_cost":0,"max_total_cost":10000}}"#,
        sub_json(&sub),
        s.subs.len() + 1
    );
    s.subs.push(sub);
    (202, vec![], json)
}

fn update_shards(s: &mut State, body: &str) -> Reply {
    let Ok(req) = UpdateShards::deserialize_json(body) else {
        return error(400, "malformed body");
    };
    let Some(conduit) = s.conduits.iter_mut().find(|c| c.id == req.conduit_id) else {
        return error(404, "conduit not found");
    };
    let (mut data, mut errors) = (Vec::new(), Vec::new());
    for sh in req.shards {
        let Some(shard) = conduit.shards.iter_mut().find(|x| x.id == sh.id) else {
            errors.push(format!(
                r#"{{"id":"{}","message":"The shard id is outside the conduit's range","code":"invalid_parameter"}}"#,
                sh.id
            ));
            continue;
        };
        let t = sh.transport;
        *shard = FakeShard {
            id: sh.id,
            status: if t.method == "webhook" {
                "webhook_callback_verification_pending"
            } else {
                "enabled"
            }
            .into(),
            method: t.method,
            callback: t.callback,
            secret: t.secret,
            session_id: t.session_id,
        };
        let transport = match &shard.callback {
            Some(cb) => format!(r#"{{"method":"webhook","callback":"{cb}"}}"#),
            None => format!(
                r#"{{"method":"{}","session_id":"{}","connected_at":"2020-11-10T14:32:18.730260295Z"}}"#,
                shard.method,
                shard.session_id.as_deref().unwrap_or("")
            ),
        };
        data.push(format!(
            r#"{{"id":"{}","status":"{}","transport":{transport}}}"#,
            shard.id, shard.status
        ));
    }
    let json = format!(
        r#"{{"data":[{}],"errors":[{}]}}"#,
        data.join(","),
        errors.join(",")
    );
    (202, vec![], json)
}

fn conduit_json(id: &str, shard_count: usize) -> String {
    format!(r#"{{"id":"{id}","shard_count":{shard_count}}}"#)
}

fn sub_json(x: &FakeSub) -> String {
    let transport = match x.method.as_str() {
        "conduit" => format!(
            r#"{{"method":"conduit","conduit_id":"{}"}}"#,
            x.conduit_id.as_deref().unwrap_or("")
        ),
        "websocket" => format!(
            r#"{{"method":"websocket","session_id":"{}","connected_at":"2023-11-06T18:11:47.492253549Z"}}"#,
            x.session_id.as_deref().unwrap_or("")
        ),
        _ => format!(
            r#"{{"method":"webhook","callback":"{}"}}"#,
            x.callback.as_deref().unwrap_or("")
        ),
    };
    format!(
        r#"{{"id":"{}","status":"{}","type":"{}","version":"1","condition":{{"broadcaster_user_id":"{}","user_id":"{}"}},"created_at":"2023-11-06T18:11:47.492253549Z","transport":{transport},"cost":0}}"#,
        x.id, x.status, x.kind, x.broadcaster_user_id, x.user_id
    )
}
