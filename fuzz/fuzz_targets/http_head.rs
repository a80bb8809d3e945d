#![no_main]
//! HTTP request heads from the internet: parsing never panics.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = chatpulse::http::request::parse_head(data, std::net::Ipv4Addr::LOCALHOST.into());
});
