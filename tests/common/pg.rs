//! A throwaway PostgreSQL 15 server for one test: `initdb` into a temp dir (as
//! the `postgres` user when the test runs as root), `pg_ctl start` on a free
//! loopback port, trust authentication, fsync off. Stopped and removed on drop.
//! Without Debian's postgresql-15 binaries it skips loudly, or fails with
//! CHATPULSE_TEST_REQUIRE_TOOLS=1.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::temp_dir;

const BIN: &str = "/usr/lib/postgresql/15/bin";

pub struct Postgres {
    dir: PathBuf,
    pub port: u16,
}

fn as_postgres(program: &str) -> Command {
    let path = Path::new(BIN).join(program);
    // initdb and postgres refuse to run as root.
    if std::fs::read_to_string("/proc/self/status")
        .is_ok_and(|s| s.lines().any(|l| l.starts_with("Uid:\t0\t")))
    {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(path);
        c
    } else {
        Command::new(path)
    }
}

fn run(mut cmd: Command, what: &str) {
    let out = cmd.stdin(Stdio::null()).output().expect(what);
    assert!(
        out.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Postgres {
    /// A fresh server with the database `chatpulse`, or `None` (skipped).
    pub fn start() -> Option<Postgres> {
        if !Path::new(BIN).join("initdb").exists() {
            assert!(
                std::env::var("CHATPULSE_TEST_REQUIRE_TOOLS").is_err(),
                "PostgreSQL 15 required (CHATPULSE_TEST_REQUIRE_TOOLS; Debian package postgresql-15)"
            );
            eprintln!("SKIPPED: PostgreSQL 15 not installed (Debian package postgresql-15)");
            return None;
        }
        let dir = temp_dir("pg");
        let _ = Command::new("chown")
            .arg("postgres:postgres")
            .arg(&dir)
            .status();
        let data = dir.join("data");
        let mut init = as_postgres("initdb");
        init.args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
            .arg(&data);
        run(init, "initdb");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let pg = Postgres { dir, port };
        pg.pg_ctl_start();
        let mut create = Command::new(Path::new(BIN).join("createdb"));
        create.args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "postgres",
            "chatpulse",
        ]);
        run(create, "createdb");
        Some(pg)
    }

    fn pg_ctl_start(&self) {
        let opts = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off -c max_connections=50",
            self.port,
            self.dir.display()
        );
        let mut start = as_postgres("pg_ctl");
        start
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-o", &opts, "-l"])
            .arg(self.dir.join("log"))
            .args(["-w", "start"]);
        run(start, "pg_ctl start");
    }

    /// A URL for the `chatpulse` database (trust auth, plain TCP on loopback).
    pub fn url(&self) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/chatpulse?sslmode=disable",
            self.port
        )
    }

    /// Stops the server, as an outage would (fast shutdown: connections cut).
    pub fn stop(&self) {
        let mut stop = as_postgres("pg_ctl");
        stop.arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "fast", "-w", "stop"]);
        run(stop, "pg_ctl stop");
    }

    /// Starts it again on the same port and data.
    pub fn restart(&self) {
        self.pg_ctl_start();
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let mut stop = as_postgres("pg_ctl");
        stop.arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "immediate", "-w", "stop"]);
        let _ = stop.stdout(Stdio::null()).stderr(Stdio::null()).status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
