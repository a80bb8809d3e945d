//! Tests of the whole config path: defaults, every key, the layers and their errors,
//! `[[channel]]` tables, and `config.example.toml` against the defaults.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::keys::{KEYS, origin_of};
use super::*;
use crate::channel::{DisplayMode, Theme};
use crate::sentiment::{Memory, Model};

fn err(toml: &str) -> String {
    from_toml_str(toml).unwrap_err().to_string()
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn env_err(pairs: &[(&str, &str)]) -> String {
    load(&Overrides::default(), &env(pairs))
        .unwrap_err()
        .to_string()
}

/// A config file in the temp dir, removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, text: &str) -> TempFile {
        let path =
            std::env::temp_dir().join(format!("chatpulse-{}-{name}.toml", std::process::id()));
        std::fs::write(&path, text).unwrap();
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn defaults_without_file_or_env() {
    let c = load(
        &Overrides::default(),
        &env(&[("PATH", "/bin"), ("RUST_LOG", "chatpulse=debug")]),
    )
    .unwrap();
    assert_eq!(c, Config::default());
    assert_eq!(from_toml_str("").unwrap(), c);
    assert_eq!(c.server.listen.to_string(), "0.0.0.0:8080");
    assert_eq!(c.data_dir, Path::new("chatpulse-data"));
    assert_eq!(
        (c.log.level, c.log.format),
        (LevelFilter::Info, LogFormat::Text)
    );
    assert_eq!(c.limits.http_head_timeout, Duration::from_secs(10));
    assert_eq!(c.votes.debounce, Duration::from_secs(1));
    assert_eq!(
        (c.shutdown.drain_delay, c.shutdown.timeout),
        (Duration::ZERO, Duration::from_secs(10))
    );
}

#[test]
fn every_section() {
    let c = from_toml_str(
        r#"
        data_dir = "/var/lib/chatpulse"
        [server]
        listen = "[::]:9000"
        public_url = "HTTPS://Overlay.Example.com:443/"
        trusted_proxies = ["10.0.0.0/8", "::1"]
        dev = true
        [log]
        level = "debug"
        format = "json"
        [limits]
        max_connections = 500
        max_connections_per_ip = 5
        connection_rate_per_ip = 2.5
        connection_burst_per_ip = 3
        max_overlays_per_broadcaster = 7
        outbox_messages = 32
        ws_max_message_bytes = 1024
        http_head_timeout = "500ms"
        [votes]
        debounce = 0
        bucket_capacity = 10
        bucket_refill_per_minute = 60
        [shutdown]
        drain_delay = "15s"
        timeout = 30
        "#,
    )
    .unwrap();
    let s = &c.server;
    assert_eq!(s.listen, "[::]:9000".parse().unwrap());
    assert_eq!(s.public_url.as_deref(), Some("https://overlay.example.com"));
    assert_eq!(
        s.trusted_proxies,
        [
            IpNet::parse("10.0.0.0/8").unwrap(),
            IpNet::parse("::1").unwrap()
        ]
    );
    assert!(s.dev);
    assert_eq!(c.data_dir, Path::new("/var/lib/chatpulse"));
    assert_eq!(
        c.log,
        LogConfig {
            level: LevelFilter::Debug,
            format: LogFormat::Json
        }
    );
    let l = &c.limits;
    assert_eq!(
        (
            l.max_connections,
            l.max_connections_per_ip,
            l.connection_rate_per_ip
        ),
        (500, 5, 2.5)
    );
    assert_eq!(
        (l.connection_burst_per_ip, l.max_overlays_per_broadcaster),
        (3, 7)
    );
    assert_eq!((l.outbox_messages, l.ws_max_message_bytes), (32, 1024));
    assert_eq!(l.http_head_timeout, Duration::from_millis(500));
    let v = &c.votes;
    assert_eq!(
        (v.debounce, v.bucket_capacity, v.bucket_refill_per_minute),
        (Duration::ZERO, 10, 60)
    );
    assert_eq!(c.shutdown.drain_delay, Duration::from_secs(15));
    assert_eq!(c.shutdown.timeout, Duration::from_secs(30));
}

#[test]
fn bad_values_name_key_value_and_range() {
    let cases = [
        (
            "[limits]\nmax_connections = -3",
            "limits.max_connections = -3: expected an integer in 1..=1000000",
        ),
        (
            "[limits]\nmax_connections = 1.5",
            "limits.max_connections = 1.5: expected an integer in 1..=1000000",
        ),
        (
            "[limits]\noutbox_messages = 5000",
            "limits.outbox_messages = 5000: expected an integer in 1..=4096",
        ),
        (
            "[limits]\nmax_connections = \"100\"",
            "limits.max_connections = \"100\": expected an integer in 1..=1000000",
        ),
        (
            "[limits]\nconnection_rate_per_ip = nan",
            "limits.connection_rate_per_ip = NaN: expected a number",
        ),
        (
            "[server]\nlisten = \"8080\"",
            "server.listen = \"8080\": expected an address and port",
        ),
        (
            "[server]\ndev = \"yes\"",
            "server.dev = \"yes\": expected true or false",
        ),
        (
            "[server]\npublic_url = \"https://x.com/overlay\"",
            "server.public_url = \"https://x.com/overlay\"",
        ),
        (
            "[server]\ntrusted_proxies = [\"10.0.0/8\"]",
            "(\"10.0.0/8\" is neither)",
        ),
        (
            "[log]\nlevel = \"loud\"",
            "log.level = \"loud\": expected one of error, warn, info, debug, trace, off",
        ),
        (
            "[log]\nformat = \"xml\"",
            "log.format = \"xml\": expected text or json",
        ),
        (
            "[shutdown]\ntimeout = \"1d\"",
            "shutdown.timeout = \"1d\": expected a duration in 100ms..=10m like",
        ),
        (
            "[votes]\ndebounce = \"2m\"",
            "votes.debounce = \"2m\": expected a duration in 0s..=1m",
        ),
        (
            "[votes]\ndebounce = -1",
            "votes.debounce = -1: expected a duration",
        ),
        (
            "data_dir = \"\"",
            "data_dir = \"\": expected a directory path",
        ),
    ];
    for (toml, expected) in cases {
        let e = err(toml);
        assert!(
            e.starts_with("config: ") && e.contains(expected),
            "{toml:?}: {e}"
        );
    }
}

#[test]
fn unknown_keys_and_syntax_errors() {
    let e = err("[limits]\nmax_conections = 5");
    assert_eq!(
        e,
        r#"config: unknown key "limits.max_conections" (did you mean "limits.max_connections"?)"#
    );
    assert_eq!(
        err("[limits]\nfoo = 5"),
        r#"config: unknown key "limits.foo""#
    );
    assert!(err("[channel]\nlogin = \"a\"").contains(r#"(did you mean "[[channel]]"?)"#));
    assert_eq!(
        err("a = 1\n\nb = = 2\n"),
        "config: line 3: Unexpected token Equals"
    );
    let e = err("[server]\ndev = true\n[log]\nlevel = 'info'\n");
    assert!(e.starts_with("config: line 4: Cannot parse toml"), "{e}");
    let e = err("[server]\ndev = true\n[server]\ndev = false\n");
    assert_eq!(e, r#"config: key "server.dev" is set more than once"#);
}

#[test]
fn file_errors_name_the_file() {
    let file = TempFile::new("syntax", "[limits]\nmax_connections = = 1\n");
    let overrides = Overrides {
        config_path: Some(file.0.clone()),
        ..Overrides::default()
    };
    let e = load(&overrides, &[]).unwrap_err().to_string();
    assert_eq!(
        e,
        format!(
            "config: file {}: line 2: Unexpected token Equals",
            file.0.display()
        )
    );
    let missing = Overrides {
        config_path: Some("/nonexistent/chatpulse.toml".into()),
        ..Overrides::default()
    };
    let e = load(&missing, &[]).unwrap_err();
    assert!(
        matches!(e, ConfigError::Read { .. })
            && e.to_string().starts_with("config: file /nonexistent/")
    );
}

#[test]
fn env_overrides_file_and_command_line_overrides_env() {
    let file = TempFile::new(
        "precedence",
        "data_dir = \"from-file\"\n[limits]\nmax_connections = 5\n",
    );
    let vars = env(&[
        ("CHATPULSE_CONFIG", file.0.to_str().unwrap()),
        ("CHATPULSE_LIMITS_MAX_CONNECTIONS", "6"),
        ("CHATPULSE_LISTEN", "127.0.0.1:1"),
        ("CHATPULSE_SHUTDOWN_DRAIN_DELAY", "5s"),
        ("CHATPULSE_SERVER_TRUSTED_PROXIES", "127.0.0.1, 10.0.0.0/8"),
        ("CHATPULSE_SERVER_DEV", "1"),
        ("CHATPULSE_LOG_FORMAT", "json"),
        ("CHATPULSE_PUBLIC_URL", "http://localhost:8080"),
        ("CHATPULSE_TEST_ANYTHING", "ignored"),
        ("CHATPULSE_BENCH_CLIENTS", "ignored"),
    ]);
    let c = load(&Overrides::default(), &vars).unwrap();
    assert_eq!(c.data_dir, Path::new("from-file"));
    assert_eq!(c.limits.max_connections, 6);
    assert_eq!(c.server.listen.to_string(), "127.0.0.1:1");
    assert_eq!(c.shutdown.drain_delay, Duration::from_secs(5));
    assert_eq!(c.server.trusted_proxies.len(), 2);
    assert!(c.server.dev);
    assert_eq!(c.log.format, LogFormat::Json);
    assert_eq!(
        c.server.public_url.as_deref(),
        Some("http://localhost:8080")
    );

    let cli = Overrides {
        config_path: None,
        listen: Some("127.0.0.1:2".into()),
        data_dir: Some("cli".into()),
    };
    let c = load(&cli, &vars).unwrap();
    assert_eq!(c.limits.max_connections, 6);
    assert_eq!(
        (c.server.listen.to_string(), c.data_dir),
        ("127.0.0.1:2".into(), PathBuf::from("cli"))
    );
    let other = TempFile::new("precedence-cli", "[limits]\nmax_connections = 7\n");
    let cli = Overrides {
        config_path: Some(other.0.clone()),
        ..Overrides::default()
    };
    let c = load(&cli, &vars[..1]).unwrap();
    assert_eq!(
        (c.limits.max_connections, c.data_dir),
        (7, Config::default().data_dir),
        "--config wins"
    );
    let bad = Overrides {
        listen: Some("nope".into()),
        ..Overrides::default()
    };
    let e = load(&bad, &[]).unwrap_err().to_string();
    assert!(
        e.starts_with(r#"config: --listen = "nope": expected an address and port"#),
        "{e}"
    );
}

#[test]
fn env_errors() {
    let e = env_err(&[("CHATPULSE_LIMITS_MAX_CONNECTIONS", "-3")]);
    assert_eq!(
        e,
        r#"config: CHATPULSE_LIMITS_MAX_CONNECTIONS = "-3": expected an integer in 1..=1000000"#
    );
    let e = env_err(&[("CHATPULSE_LIMITS_MAX_CONECTIONS", "3")]);
    assert_eq!(
        e,
        "config: unknown environment variable CHATPULSE_LIMITS_MAX_CONECTIONS \
         (did you mean \"CHATPULSE_LIMITS_MAX_CONNECTIONS\"?)"
    );
    assert!(
        env_err(&[("CHATPULSE_CONFG", "x")]).ends_with(r#"(did you mean "CHATPULSE_CONFIG"?)"#)
    );
    assert!(env_err(&[("CHATPULSE_FOO", "x")]).ends_with("CHATPULSE_FOO"));
    let e = env_err(&[
        ("CHATPULSE_LISTEN", "127.0.0.1:1"),
        ("CHATPULSE_SERVER_LISTEN", "127.0.0.1:2"),
    ]);
    assert_eq!(
        e,
        "config: server.listen is set by both CHATPULSE_LISTEN and CHATPULSE_SERVER_LISTEN"
    );
}

#[test]
fn log_level_from_rust_log_and_chatpulse_log_level() {
    let level =
        |pairs: &[(&str, &str)]| load(&Overrides::default(), &env(pairs)).unwrap().log.level;
    assert_eq!(level(&[("RUST_LOG", "debug")]), LevelFilter::Debug);
    assert_eq!(level(&[("RUST_LOG", "WARN")]), LevelFilter::Warn);
    assert_eq!(level(&[("RUST_LOG", "chatpulse=trace")]), LevelFilter::Info);
    assert_eq!(
        level(&[("RUST_LOG", "debug"), ("CHATPULSE_LOG_LEVEL", "error")]),
        LevelFilter::Error
    );
    assert_eq!(level(&[("CHATPULSE_LOG_LEVEL", "off")]), LevelFilter::Off);
}

#[test]
fn durations() {
    let ms = |s: &str| parse_duration(s).map(|d| d.as_millis());
    assert_eq!(ms("10s"), Some(10_000));
    assert_eq!(ms("500ms"), Some(500));
    assert_eq!(ms("2m"), Some(120_000));
    assert_eq!(ms("1h"), Some(3_600_000));
    assert_eq!(ms("7d"), Some(604_800_000));
    assert_eq!(ms("15"), Some(15_000));
    assert_eq!(ms(" 1.5s "), Some(1500));
    assert_eq!(ms("0.25"), Some(250));
    for bad in ["", "s", "10 w", "-1s", "1e3", "1.2.3s", "ten", "10sec"] {
        assert_eq!(ms(bad), None, "{bad:?}");
    }
    for (d, s) in [
        (0, "0s"),
        (500, "500ms"),
        (1500, "1500ms"),
        (10_000, "10s"),
        (120_000, "2m"),
        (86_400_000, "1d"),
        (90_000_000, "25h"),
    ] {
        assert_eq!(format_duration(Duration::from_millis(d)), s);
    }
    let c = from_toml_str("[limits]\nhttp_head_timeout = 2.5").unwrap();
    assert_eq!(c.limits.http_head_timeout, Duration::from_millis(2500));
}

#[test]
fn public_urls_are_stored_as_origins() {
    let cases = [
        (
            "https://Overlay.Example.com/",
            Some("https://overlay.example.com"),
        ),
        ("http://localhost:8080", Some("http://localhost:8080")),
        ("http://x.org:80", Some("http://x.org")),
        ("https://[::1]:8443", Some("https://[::1]:8443")),
        ("https://[::1]", Some("https://[::1]")),
        ("https://x.org/path", None),
        ("https://x.org?q", None),
        ("https://user@x.org", None),
        ("https://x.org:0", None),
        ("https://x.org:99999", None),
        ("https://::1", None),
        ("ftp://x.org", None),
        ("x.org", None),
        ("https://", None),
    ];
    for (url, origin) in cases {
        assert_eq!(origin_of(url).as_deref(), origin, "{url}");
    }
    let c = load(&Overrides::default(), &env(&[("CHATPULSE_PUBLIC_URL", "")])).unwrap();
    assert_eq!(c.server.public_url, None);
}

#[test]
fn channels_with_lists_strings_and_models() {
    let c = from_toml_str(
        r#"
        [shutdown]
        timeout = "5s"

        [[channel]]
        login = "Some_Streamer"
        for_triggers = [" yes", "Y", "yes"]
        against_triggers = "no, n,, 2"
        memory_seconds = "infinite"
        display_mode = "split"
        theme = "light"

        [[channel]]
        login = "decayer"
        decay_speed = 1.5
        for_label = ""

        [[channel]]
        login = "plain"
        model = "decay"

        [log]
        level = "warn"
        "#,
    )
    .unwrap();
    assert_eq!(c.shutdown.timeout, Duration::from_secs(5));
    assert_eq!(
        c.log.level,
        LevelFilter::Warn,
        "a section after [[channel]] is not swallowed"
    );
    let [a, b, p] = &c.channels[..] else {
        panic!("{:?}", c.channels)
    };
    assert_eq!(a.login, "some_streamer");
    assert_eq!(a.config.for_triggers, ["yes", "Y"]);
    assert_eq!(a.config.against_triggers, ["no", "n", "2"]);
    assert_eq!(a.config.model, Model::Window(Memory::Infinite));
    assert_eq!(
        (a.config.display_mode, a.config.theme),
        (DisplayMode::Split, Theme::Light)
    );
    assert_eq!(b.config.model, Model::Decay { speed: 1.5 });
    assert_eq!(
        (b.config.for_label.as_str(), b.config.against_label.as_str()),
        ("", "Against")
    );
    assert_eq!(p.config.model, Model::Decay { speed: 0.5 });
    let window = from_toml_str("[[channel]]\nlogin = \"w\"\nmemory_seconds = 90").unwrap();
    assert_eq!(
        window.channels[0].config.model,
        Model::Window(Memory::Seconds(90))
    );
    let default = from_toml_str("[[channel]]\nlogin = \"d\"").unwrap();
    assert_eq!(default.channels[0].config, OverlayConfig::default());
}

#[test]
fn bad_channels() {
    let ch = |body: &str| err(&format!("[[channel]]\nlogin = \"a\"\n{body}"));
    assert_eq!(
        ch("for_triggers = []"),
        "config: channel[0].for_triggers: for trigger cannot be empty"
    );
    assert_eq!(
        ch("against_triggers = [\"YES\"]"),
        r#"config: channel[0].for_triggers: for and against triggers must be different (shared: "yes")"#
    );
    let e = ch("memory_seconds = 121");
    assert_eq!(
        e,
        "config: channel[0].memory_seconds: memory seconds must be between 5 and 120"
    );
    let e = ch("decay_speed = nan");
    assert_eq!(
        e,
        "config: channel[0].decay_speed: decay speed must be between 0.1 and 2.0"
    );
    assert!(
        ch("memory_seconds = \"forever\"")
            .contains(r#"expected an integer in 5..=120 or "infinite""#)
    );
    assert!(
        ch("model = \"window\"\ndecay_speed = 1")
            .starts_with("config: channel[0].decay_speed = 1:")
    );
    assert!(
        ch("memory_seconds = 30\ndecay_speed = 1")
            .starts_with("config: channel[0].memory_seconds = 30:")
    );
    assert!(ch("model = \"linear\"").contains(r#"expected "window" or "decay""#));
    assert!(
        ch("theme = \"Dark\"").contains(r#"channel[0].theme = "Dark": expected "dark" or "light""#)
    );
    assert!(ch("display_mode = 1").contains(r#"expected "combined" or "split""#));
    assert!(
        ch("for_triggers = [1]")
            .contains("channel[0].for_triggers = [1]: expected an array of strings")
    );
    let e = ch("them = \"dark\"");
    assert_eq!(
        e,
        r#"config: unknown key "channel[0].them" (did you mean "channel[0].theme"?)"#
    );
    assert_eq!(
        err("[[channel]]\ntheme = \"dark\""),
        "config: channel[0].login is required"
    );
    assert!(err("[[channel]]\nlogin = \"not a login\"").contains("expected a Twitch login"));
    assert!(
        err(&format!("[[channel]]\nlogin = \"{}\"", "a".repeat(26)))
            .contains("expected a Twitch login")
    );
    let e = err(
        "[[channel]]\nlogin = \"Dup\"\n[[channel]]\nlogin = \"x\"\n[[channel]]\nlogin = \"dup\"",
    );
    assert_eq!(
        e,
        r#"config: channel login "dup" appears twice (channel[0] and channel[2])"#
    );
}

#[test]
fn empty_strings() {
    let c = from_toml_str(
        "[server]\npublic_url = \"\"\n[[channel]]\nlogin = \"a\"\nfor_label = \"\" # none",
    )
    .unwrap();
    assert_eq!(
        (c.server.public_url, c.channels[0].config.for_label.as_str()),
        (None, "")
    );
    assert_eq!(
        err("data_dir = \"\""),
        r#"config: data_dir = "": expected a directory path"#
    );
    let e = err("[[channel]]\nlogin = \"a\"\nagainst_triggers = [\"no\", \"\"]");
    assert_eq!(
        e,
        "config: channel[0].against_triggers: against trigger cannot be empty"
    );
    // Escaped quotes are not an empty string.
    assert_eq!(
        from_toml_str(r#"data_dir = "a\"\"""#).unwrap().data_dir,
        Path::new(r#"a"""#)
    );
}

#[test]
fn example_file_is_the_defaults_plus_one_channel() {
    let text = include_str!("../../config.example.toml");
    let c = from_toml_str(text).unwrap();
    let overlay = OverlayConfig {
        for_triggers: vec!["yes".into(), "y".into(), "1".into()],
        against_triggers: vec!["no".into(), "n".into(), "2".into()],
        ..OverlayConfig::default()
    };
    let seed = ChannelSeed {
        login: "your_channel".into(),
        config: overlay,
    };
    assert_eq!(
        c,
        Config {
            channels: vec![seed],
            ..Config::default()
        }
    );
    // Every key is documented, in the table's order.
    let mut at = 0;
    for key in KEYS {
        let leaf = key.name.rsplit('.').next().unwrap();
        let found = text[at..]
            .find(&format!("\n{leaf} ="))
            .or_else(|| text[at..].find(&format!("# {leaf} =")));
        at += found.unwrap_or_else(|| panic!("{} is not documented in order", key.name));
    }
}

#[test]
fn auth_section() {
    let twitch = "[twitch]\nclient_id = \"id\"\nclient_secret = \"secret\"\n";
    let c = from_toml_str(&format!(
        "{twitch}[auth]\nmode = \"twitch\"\nsession_max_age = \"2d\"\n\
         session_secret = \"{}\"\nencryption_key = \"{}\"\n\
         redirect_uri = \"https://o.example/auth/callback\"\nsecure_cookies = \"always\"\n",
        "s".repeat(32),
        "0f".repeat(32)
    ))
    .unwrap();
    let a = &c.auth;
    assert_eq!(a.mode, AuthMode::Twitch);
    assert_eq!(a.session_max_age, Duration::from_secs(2 * 86_400));
    assert_eq!(a.encryption_key, Some([0x0f; 32]));
    assert_eq!(
        a.redirect_uri.as_deref(),
        Some("https://o.example/auth/callback")
    );
    assert_eq!(a.secure_cookies, SecureCookies::Always);
    let shown = format!("{a:?}");
    assert!(
        !shown.contains("ssss") && !shown.contains("0f0f"),
        "{shown}"
    );

    assert_eq!(
        err("[auth]\nmode = \"twitch\"\n"),
        "config: twitch.client_id (auth.mode = \"twitch\") is required"
    );
    let not_hex = format!("encryption_key = \"{}\"", "zz".repeat(32));
    for (toml, expected) in [
        (
            "session_secret = \"short\"",
            "at least 32 printable ASCII characters",
        ),
        ("encryption_key = \"abcd\"", "64 hex characters"),
        (not_hex.as_str(), "64 hex characters"),
        (
            "redirect_uri = \"https://o.example/callback\"",
            "ending in /auth/callback",
        ),
        ("session_max_age = \"0s\"", "a duration in 1s..=365d"),
        ("mode = \"open\"", "home or twitch"),
        ("secure_cookies = \"yes\"", "one of auto, always, never"),
    ] {
        let e = err(&format!("[auth]\n{toml}\n"));
        assert!(e.contains(expected), "{toml}: {e}");
    }
    let c = load(
        &Overrides::default(),
        &env(&[
            ("CHATPULSE_AUTH_SESSION_MAX_AGE", "12h"),
            ("CHATPULSE_LIMITS_AUTH_BURST", "2"),
        ]),
    )
    .unwrap();
    assert_eq!(c.auth.session_max_age, Duration::from_secs(12 * 3600));
    assert_eq!(c.limits.auth_burst, 2);
}

#[test]
fn mesh_section() {
    let c = from_toml_str(
        "[mesh]\nlisten = \"0.0.0.0:7946\"\nadvertise = \"10.0.0.2:7946\"\n\
         seeds = [\"10.0.0.3:7946\", \"[::1]:7000\", \"chatpulse-mesh.default.svc:7946\"]\n\
         secret = \"0123456789abcdef\"\n",
    )
    .unwrap();
    assert_eq!(c.mesh.listen, Some("0.0.0.0:7946".parse().unwrap()));
    assert_eq!(c.mesh.advertise, Some("10.0.0.2:7946".parse().unwrap()));
    assert_eq!(c.mesh.seeds.len(), 3);
    assert!(!format!("{c:?}").contains("0123456789abcdef"));
    assert_eq!(
        err("[mesh]\nlisten = \"0.0.0.0:7946\"\n"),
        "config: mesh.secret (mesh.listen is set) is required"
    );
    assert!(err("[mesh]\nsecret = \"short\"\n").contains("at least 16"));
    assert!(err("[mesh]\nseeds = [\"nowhere\"]\n").contains("\"nowhere\" is not one"));
    assert!(err("[mesh]\nseeds = [\"no_way:1\"]\n").contains("is not one"));
    assert!(err("[mesh]\nseeds = [\"host:0\"]\n").contains("is not one"));
    assert_eq!(Config::default().mesh.listen, None);
}

#[test]
fn debug_output_never_shows_a_secret() {
    let c = from_toml_str(
        "[twitch]\nclient_id = \"id\"\nclient_secret = \"cs-SECRET-1\"\n\
         user_token = \"ut-SECRET-2\"\nwebhook_secret = \"wh-SECRET-3\"\n\
         [mesh]\nsecret = \"mesh-SECRET-4-xxxxxx\"\n\
         [postgres]\nurl = \"postgres://u:pw-SECRET-5@db/x\"\n",
    )
    .unwrap();
    let shown = format!("{c:?}");
    assert!(!shown.contains("SECRET"), "{shown}");
    assert!(shown.contains("client_secret: \"<set>\""), "{shown}");
}
