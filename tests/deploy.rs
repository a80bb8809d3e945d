//! The shipped deploy files, checked by their own tools: the alert rules by
//! promtool, the systemd unit by systemd-analyze, the install script in a staging
//! root. A missing tool skips loudly, or fails with CHATPULSE_TEST_REQUIRE_TOOLS=1
//! (CI; `scripts/test.sh` installs them as root).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::temp_dir;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Runs `tool args`, or returns None (skipped) when the tool is not installed.
pub fn tool(name: &str, args: &[&std::ffi::OsStr]) -> Option<Output> {
    match Command::new(name).args(args).output() {
        Ok(out) => Some(out),
        Err(e) => {
            assert!(
                std::env::var("CHATPULSE_TEST_REQUIRE_TOOLS").is_err(),
                "{name} required (CHATPULSE_TEST_REQUIRE_TOOLS): {e}"
            );
            eprintln!("SKIPPED: {name} not available ({e})");
            None
        }
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn prometheus_alert_rules_pass_promtool() {
    let rules = repo("scripts/deploy/prometheus/alerts.yml");
    let Some(out) = tool(
        "promtool",
        &["check".as_ref(), "rules".as_ref(), rules.as_ref()],
    ) else {
        return;
    };
    assert!(out.status.success(), "promtool: {}", text(&out));
    let rules = std::fs::read_to_string(rules).unwrap();
    for metric in [
        "up{",
        "http_requests_total{",
        "http_request_duration_seconds_bucket{",
        "websocket_connections_current{",
        "broadcaster_slow_clients_evicted_total{",
        "chat_source_connected{",
    ] {
        assert!(rules.contains(metric), "an alert on {metric}");
    }
}

/// The unit with ExecStart pointing at this build's binary (verify refuses a
/// missing executable), in a temp dir.
fn unit_copy() -> PathBuf {
    let dir = temp_dir("unit");
    let bin = dir.join("chatpulse");
    std::fs::copy(env!("CARGO_BIN_EXE_chatpulse"), &bin).unwrap();
    let unit = std::fs::read_to_string(repo("scripts/chatpulse.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/local/bin/chatpulse serve"));
    let unit = unit.replace("/usr/local/bin/chatpulse", bin.to_str().unwrap());
    let path = dir.join("chatpulse.service");
    std::fs::write(&path, unit).unwrap();
    path
}

/// `systemd-analyze verify` works without systemd as PID 1 (it loads the unit
/// in a private manager), but reports unknown keys and bad values only as
/// warnings with exit 0: any output about the unit counts as a failure here.
#[test]
fn systemd_unit_verifies_and_is_hardened() {
    let unit = unit_copy();
    let Some(out) = tool("systemd-analyze", &["verify".as_ref(), unit.as_ref()]) else {
        return;
    };
    let said = text(&out);
    assert!(
        out.status.success() && !said.contains("chatpulse"),
        "systemd-analyze verify: {said}"
    );

    let out = tool(
        "systemd-analyze",
        &[
            "security".as_ref(),
            "--offline=true".as_ref(),
            "--no-pager".as_ref(),
            unit.as_ref(),
        ],
    )
    .unwrap();
    let said = text(&out);
    let exposure: f64 = said
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for chatpulse.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in: {said}"));
    assert!(exposure <= 2.5, "exposure {exposure} (was 1.7): {said}");

    // The stop timeout must outlast drain_delay + shutdown.timeout as the deploy
    // guides set them (15 s + 10 s), or systemd kills the node before its flush.
    let unit = std::fs::read_to_string(&unit).unwrap();
    let stop: u64 = unit
        .lines()
        .find_map(|l| l.strip_prefix("TimeoutStopSec="))
        .and_then(|v| v.trim_end_matches('s').parse().ok())
        .expect("TimeoutStopSec=<n>s");
    assert!(stop > 25, "TimeoutStopSec={stop}");
}

fn install(args: &[&std::ffi::OsStr]) -> Output {
    Command::new("bash")
        .arg(repo("scripts/install.sh"))
        .args(args)
        .output()
        .expect("bash")
}

#[test]
fn install_dry_run_prints_every_step_and_changes_nothing() {
    let root = temp_dir("install-dry");
    let bin = env!("CARGO_BIN_EXE_chatpulse");
    let out = install(&[
        "--dry-run".as_ref(),
        "--root".as_ref(),
        root.as_ref(),
        bin.as_ref(),
    ]);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    for step in [
        "/usr/local/bin/chatpulse",
        "/var/lib/chatpulse",
        "/etc/chatpulse/chatpulse.toml",
        "/etc/systemd/system/chatpulse.service",
        "Next steps",
    ] {
        assert!(said.contains(step), "dry run mentions {step}: {said}");
    }
    assert_eq!(std::fs::read_dir(&root).unwrap().count(), 0, "{said}");

    // Without a root prefix the dry run shows the user creation too.
    let out = install(&["--dry-run".as_ref(), bin.as_ref()]);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("useradd --system") || said.contains("user chatpulse exists"),
        "{said}"
    );

    let out = install(&["--dry-run".as_ref(), "/nonexistent/chatpulse".as_ref()]);
    assert!(!out.status.success());
    assert!(text(&out).contains("not an executable file"));
}

#[test]
fn install_into_a_staging_root_is_idempotent_and_keeps_the_config() {
    use std::os::unix::fs::PermissionsExt;
    let root = temp_dir("install-root");
    let bin = env!("CARGO_BIN_EXE_chatpulse");
    let args: [&std::ffi::OsStr; 3] = ["--root".as_ref(), root.as_ref(), bin.as_ref()];
    let out = install(&args);
    assert!(out.status.success(), "{}", text(&out));
    let mode = |p: &str| {
        std::fs::metadata(root.join(p))
            .unwrap_or_else(|e| panic!("{p}: {e}"))
            .permissions()
            .mode()
            & 0o7777
    };
    assert_eq!(mode("usr/local/bin/chatpulse"), 0o755);
    assert_eq!(mode("var/lib/chatpulse"), 0o700);
    assert_eq!(mode("etc/chatpulse/chatpulse.toml"), 0o640);
    assert_eq!(mode("etc/systemd/system/chatpulse.service"), 0o644);
    let config = root.join("etc/chatpulse/chatpulse.toml");
    assert_eq!(
        std::fs::read(&config).unwrap(),
        std::fs::read(repo("config.example.toml")).unwrap()
    );

    // The installed binary accepts the installed config.
    let out = Command::new(root.join("usr/local/bin/chatpulse"))
        .args(["check-config", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(out.status.success(), "check-config: {}", text(&out));

    // A second run (an upgrade) keeps the operator's edits.
    std::fs::write(&config, "[[channel]]\nlogin = \"mine\"\n").unwrap();
    let out = install(&args);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("exists: kept"));
    assert_eq!(
        std::fs::read_to_string(&config).unwrap(),
        "[[channel]]\nlogin = \"mine\"\n"
    );
}

/// No docker engine where the suite runs: check the Dockerfile's shape only.
#[test]
fn dockerfile_has_the_promised_instructions() {
    let file = std::fs::read_to_string(repo("scripts/Dockerfile")).unwrap();
    const KNOWN: &[&str] = &[
        "FROM",
        "RUN",
        "COPY",
        "WORKDIR",
        "USER",
        "VOLUME",
        "EXPOSE",
        "HEALTHCHECK",
        "STOPSIGNAL",
        "ENTRYPOINT",
        "CMD",
        "ENV",
        "ARG",
        "LABEL",
    ];
    let mut continued = false;
    let mut seen = Vec::new();
    for line in file.lines() {
        let l = line.trim();
        if !continued && !l.is_empty() && !l.starts_with('#') {
            let word = l.split_whitespace().next().unwrap();
            assert!(KNOWN.contains(&word), "unknown instruction: {line}");
            seen.push(l.to_string());
        }
        if !l.starts_with('#') {
            continued = l.ends_with('\\');
        }
    }
    for want in [
        "EXPOSE 8080",
        "STOPSIGNAL SIGTERM",
        "USER chatpulse",
        "HEALTHCHECK",
    ] {
        assert!(
            seen.iter().any(|l| l.starts_with(want)),
            "Dockerfile has {want}"
        );
    }
    assert!(file.contains("/health/ready"));
}

/// The Kubernetes ConfigMap's chatpulse.toml, with the environment the
/// Deployment gives each pod (mesh secret, pod IP as advertise), is a valid
/// config: a cluster whose seed is the headless Service's name.
#[test]
fn kubernetes_config_map_is_a_valid_mesh_config() {
    let yaml = std::fs::read_to_string(repo("scripts/deploy/kubernetes/chatpulse.yaml")).unwrap();
    let start = yaml
        .find("chatpulse.toml: |\n")
        .expect("ConfigMap with chatpulse.toml")
        + 18;
    let end = start + yaml[start..].find("\n---").expect("end of the ConfigMap");
    let toml: String = yaml[start..end]
        .lines()
        .map(|l| l.strip_prefix("    ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(toml.contains("seeds = [\"chatpulse-mesh:7946\"]"), "{toml}");
    assert!(yaml.contains("name: chatpulse-mesh") && yaml.contains("clusterIP: None"));
    assert!(yaml.contains("CHATPULSE_MESH_ADVERTISE") && yaml.contains("CHATPULSE_MESH_SECRET"));
    let dir = crate::common::temp_dir("k8s");
    let config = dir.join("chatpulse.toml");
    std::fs::write(&config, toml).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_chatpulse"))
        .args(["check-config", "--config"])
        .arg(&config)
        .env("CHATPULSE_MESH_SECRET", "0123456789abcdef0123456789abcdef")
        .env("CHATPULSE_MESH_ADVERTISE", "10.1.2.3:7946")
        .output()
        .unwrap();
    assert!(out.status.success(), "check-config: {}", text(&out));
}
