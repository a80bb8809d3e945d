//! One integration-test binary: every test starts real nodes on 127.0.0.1:0.

mod bench;
mod browser;
mod catalogue;
mod common;
mod cross;
mod dashboard;
mod dashboard_browser;
mod deploy;
mod doctor;
mod eventsub_ws;
mod faults;
mod http;
mod irc;
mod lifecycle;
mod mesh;
mod mesh_cluster;
mod mesh_replica;
mod mesh_sources;
mod mesh_tls;
mod nginx;
mod overlay;
mod overload;
mod partition;
#[cfg(feature = "postgres")]
mod postgres;
mod secrets;
mod tls;
mod webhook;
