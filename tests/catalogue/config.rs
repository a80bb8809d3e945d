//! The command line and config files (C01–C14): `chatpulse check-config` with
//! a missing, malformed, misspelt or world-readable file, bad environment
//! variables and flags; the exit code and the first line of stderr, never a secret.

use std::path::Path;

use super::Check;
use crate::common::temp_dir;

/// Environment variables of a run.
type Env<'a> = &'a [(&'a str, &'a str)];

/// Runs `chatpulse args` in `dir` with only `env`; (exit code, first stderr line, all stderr).
fn chatpulse(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_chatpulse"))
        .current_dir(dir)
        .env_clear()
        .envs(env.iter().copied())
        .args(args)
        .output()
        .expect("run chatpulse");
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    let first = err.lines().next().unwrap_or_default().to_string();
    (out.status.code().unwrap_or(-1), first, err)
}

/// Writes a config file readable by its owner only (unless `mode` says otherwise).
fn config_file(dir: &Path, name: &str, text: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn config_errors() {
    let dir = temp_dir("catalogue-config");
    let mut c = Check::new("config::config_errors");
    let files = [
        ("C02", "[limits]\nmax_connections = = 5\n"),
        ("C03", "[limits]\nmax_conections = 5\n"),
        ("C05", "[limits]\nmax_connections = -3\n"),
        ("C08", "[mesh]\nlisten = \"127.0.0.1:7946\"\n"),
        (
            "C09",
            "[limits]\nmax_connections = 5\n\n[limits]\nmax_connections = 6\n",
        ),
        (
            "C10",
            "[[channel]]\nlogin = \"a\"\nagainst_triggers = [\"no\", \"\"]\n",
        ),
        ("C11", "[mesh]\nsecret = \"short-S3CRET\"\n"),
    ];
    let check = ["check-config", "--config", "bad.toml"];
    for (id, text) in files {
        config_file(&dir, "bad.toml", text, 0o600);
        let (code, first, all) = chatpulse(&dir, &check, &[]);
        c.plain(id, &format!("exit {code}"));
        assert_eq!(first, c.row(id).message, "{id}");
        assert!(!all.contains("S3CRET"), "{id} shows the secret: {all}");
    }
    config_file(
        &dir,
        "open.toml",
        "[mesh]\nsecret = \"0123456789abcdef\"\n",
        0o644,
    );
    let envs: [(&str, &[&str], Env); 6] = [
        (
            "C01",
            &["check-config", "--config", "/nonexistent/chatpulse.toml"],
            &[],
        ),
        (
            "C04",
            &["check-config"],
            &[("CHATPULSE_LIMITS_MAX_CONECTIONS", "5")],
        ),
        (
            "C06",
            &["check-config"],
            &[("CHATPULSE_LIMITS_MAX_CONNECTIONS", "lots")],
        ),
        ("C07", &["check-config", "--listen", "nowhere"], &[]),
        (
            "C12",
            &["check-config"],
            &[("CHATPULSE_TWITCH_WEBHOOK_SECRET", "S3CRET")],
        ),
        ("C13", &["check-config", "--config", "open.toml"], &[]),
    ];
    for (id, args, env) in envs {
        let (code, first, all) = chatpulse(&dir, args, env);
        c.plain(id, &format!("exit {code}"));
        assert_eq!(first, c.row(id).message, "{id}");
        assert!(!all.contains("S3CRET"), "{id} shows the secret: {all}");
    }
    let (code, first, all) = chatpulse(&dir, &["--bogus"], &[]);
    c.plain("C14", &format!("exit {code}"));
    assert_eq!(first, c.row("C14").message);
    assert!(all.contains("USAGE:"), "{all}");
    c.finish();
}
