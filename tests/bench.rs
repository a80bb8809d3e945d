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
