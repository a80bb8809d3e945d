//! Smoke run of the load tool against a real node: it must produce a complete
//! report (not a timing: numbers on this shared machine are not asserted).

use std::process::Command;

use crate::common::temp_dir;

#[test]
fn bench_tool_produces_a_complete_report() {
    let json = temp_dir("bench").join("report.json");
    let out = Command::new(env!("CARGO_BIN_EXE_chatpulse-bench"))
        .args(["fanout", "--server-bin", env!("CARGO_BIN_EXE_chatpulse")])
        .args([
            "--sockets",
            "40",
            "--broadcasters",
            "4",
            "--votes-per-sec",
            "100",
        ])
        .args(["--duration", "1", "--warmup", "0.3", "--json"])
        .arg(&json)
        .output()
        .expect("run chatpulse-bench");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{table}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for row in [
        "connect",
        "votes sent",
        "frames",
        "latency ms",
        "server cpu",
        "server rss",
    ] {
        assert!(table.contains(row), "missing {row:?} in\n{table}");
    }
    let report = std::fs::read_to_string(&json).expect("JSON report");
    for key in [
        "\"latency_us\"",
        "\"p99\"",
        "\"frames_per_sec\"",
        "\"cpu_s_per_1000_frames\"",
        "\"bytes_per_socket\"",
    ] {
        assert!(report.contains(key), "missing {key} in {report}");
    }
    let num = |key: &str| -> u64 {
        let at = report.find(&format!("\"{key}\":")).unwrap() + key.len() + 3;
        report[at..]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert!(num("votes_sent") >= 50, "{report}");
    assert!(
        num("frames") > 0,
        "votes reached the overlays through IRC: {report}"
    );
    assert!(num("count") > 0, "latency samples: {report}");
    assert_eq!(num("connect_errors"), 0, "{report}");
}

/// The write-floor mode delivers every byte it writes (its number is only
/// meaningful if the readers really drained the sockets).
#[test]
fn bench_floor_writes_reach_the_readers() {
    let out = Command::new(env!("CARGO_BIN_EXE_chatpulse-bench"))
        .args(["floor", "50", "2000", "0.5"])
        .output()
        .expect("run chatpulse-bench floor");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{table}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let field = |prefix: &str| -> u64 {
        let line = table
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} line in\n{table}"));
        line[prefix.len()..]
            .split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("bad {prefix:?} line in\n{table}"))
    };
    let writes = field("write floor:");
    assert!(writes >= 500, "{table}");
    assert_eq!(field("bytes written"), writes * 112, "{table}");
    assert_eq!(field("bytes read"), writes * 112, "{table}");
    assert!(table.contains("per 1000 writes"), "{table}");
}

/// A tiny soak: the report has its time series, the node's fds come back to
/// their idle count once the overlays close, and votes reached the overlays.
#[test]
fn bench_soak_reports_rss_and_fds() {
    let json = temp_dir("soak").join("soak.json");
    let out = Command::new(env!("CARGO_BIN_EXE_chatpulse-bench"))
        .args(["soak", "--server-bin", env!("CARGO_BIN_EXE_chatpulse")])
        .args(["--sockets", "50", "--broadcasters", "5"])
        .args(["--votes-per-sec", "50", "--duration", "3"])
        .args(["--warmup", "0.5", "--sample-every", "1", "--json"])
        .arg(&json)
        .output()
        .expect("run chatpulse-bench soak");
    let table = String::from_utf8_lossy(&out.stdout);
    // Exit 2 is a failed verdict; flat RSS over 3 s is not this test's business.
    assert!(
        matches!(out.status.code(), Some(0 | 2)),
        "{table}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for row in ["rss KiB", "rss slope", "fds", "flat RSS:", "fd leak:"] {
        assert!(table.contains(row), "missing {row:?} in\n{table}");
    }
    let report = std::fs::read_to_string(&json).expect("JSON report");
    let num = |key: &str| -> u64 {
        let at = report
            .find(&format!("\"{key}\":"))
            .unwrap_or_else(|| panic!("no {key} in {report}"))
            + key.len()
            + 3;
        report[at..]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let samples = report.matches("\"t_s\":").count();
    assert!(samples >= 4, "t = 0, 1, 2 and the end: {report}");
    assert_eq!(num("connect_errors"), 0, "{report}");
    assert!(num("frames") > 0, "{report}");
    assert!(num("rss_warm_kib") > 0 && num("rss_max_kib") >= num("rss_warm_kib"));
    let (idle, open, after) = (num("fds_idle"), num("fds_start"), num("fds_after_close"));
    assert!(open >= idle + 50, "one fd per socket: {report}");
    assert!(after <= idle + 4, "fds back to idle: {report}");
    assert_eq!(num("fd_leak"), 0, "{report}");
}
