//! Talking to Twitch's HTTP APIs: a small HTTP/1.1 client ([`http`]) today;
//! OAuth tokens and Helix (subscriptions, conduits, users) build on it.

pub mod helix;
pub mod http;
pub mod tokens;
