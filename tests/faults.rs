//! Storage faults against the real binary (`chatpulse demo`, whose synthetic chat
//! votes by itself): a data dir that is read-only or full at start; a disk that
//! fills, and a filesystem the kernel turns read-only, while the node runs;
//! `kill -9` in the middle of config saves. Each time: a clear error (never a
//! panic or a hang), readiness 503 while the stores cannot write, overlays served
//! from memory, and after a restart every acknowledged save is there and
//! SQLite's integrity check passes.
//!
//! The faulty filesystems live in a private mount namespace held open by a
//! `sleep` (so a node can stop and start again on the same one); the test reaches
//! their files through `/proc/<holder>/root`. That needs root: without it those
//! tests skip loudly, or fail when CHATPULSE_TEST_REQUIRE_TOOLS is set.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::common::web::{Web, csrf_of, json_num};
use crate::common::{Overlay, get, http_raw, run, temp_dir};

const BIN: &str = env!("CARGO_BIN_EXE_chatpulse");
/// Generous: a debug binary on a shared 2-core machine.
const WAIT: Duration = Duration::from_secs(30);
/// The overall limit of one test's async part.
const LIMIT: Duration = Duration::from_secs(240);
/// Roomy request limits (the tests save in a loop); memory "infinite", so the
/// totals only grow while votes flow.
const CONFIG: &str = "[limits]\nauth_per_minute = 100000\nauth_burst = 100000\n\
    dashboard_per_minute = 100000\ndashboard_burst = 100000\n\n\
    [twitch]\nsource = \"none\"\n\n\
    [[channel]]\nlogin = \"alice\"\nmemory_seconds = \"infinite\"\n";
/// What a save answers when the store fails (docs/bad-input.md, H34).
const INTERNAL: &str = r#"{"error":"internal server error","type":"internal"}"#;

/// Root, working mount namespaces and `tools`; else a loud skip (a failure
/// when CHATPULSE_TEST_REQUIRE_TOOLS is set).
fn can_mount(tools: &[&str]) -> bool {
    use std::os::unix::fs::MetadataExt;
    let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    let unshare = Command::new("unshare").args(["--mount", "true"]).status();
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|t| Command::new(t).arg("-V").output().is_err())
        .collect();
    let required = std::env::var("CHATPULSE_TEST_REQUIRE_TOOLS").is_ok();
    if !root || !unshare.is_ok_and(|s| s.success()) {
        assert!(!required, "root and mount namespaces required");
        eprintln!("SKIPPED: needs root (mount namespaces)");
        return false;
    }
    if !missing.is_empty() {
        assert!(!required, "{missing:?} required (Debian package e2fsprogs)");
        eprintln!("SKIPPED: {missing:?} not installed (Debian package e2fsprogs)");
    }
    missing.is_empty()
}

/// A child process, killed (SIGKILL) and reaped on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    fn pid(&self) -> u32 {
        self.0.id()
    }

    fn terminate(&mut self) -> ExitStatus {
        let pid = self.pid().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(sent.is_ok_and(|s| s.success()), "kill -TERM {pid}");
        self.exit()
    }

    fn exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.0.try_wait().expect("try_wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "pid {} did not exit", self.pid());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The lines `r` produces, read on a thread of their own.
fn lines(r: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// A private mount namespace in which `mount` (a shell command mounting onto
/// "$D") has mounted `dir`; it lives as long as this value.
struct Ns {
    holder: Proc,
    dir: PathBuf,
}

impl Ns {
    fn new(dir: &Path, mount: &str) -> Ns {
        std::fs::create_dir_all(dir).unwrap();
        let mut child = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg(format!("{mount} && echo mounted && exec sleep 600"))
            .env("D", dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("unshare");
        let out = lines(child.stdout.take().unwrap());
        let holder = Proc(child);
        let line = out.recv_timeout(WAIT);
        assert_eq!(line.as_deref(), Ok("mounted"), "{mount}");
        Ns {
            holder,
            dir: dir.into(),
        }
    }

    /// `name` in the mounted dir, as the test's own namespace reaches it.
    fn path(&self, name: &str) -> PathBuf {
        let inner = self.dir.strip_prefix("/").unwrap();
        Path::new(&format!("/proc/{}/root", self.holder.pid()))
            .join(inner)
            .join(name)
    }

    /// `program` run inside the namespace.
    fn command(&self, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        let pid = self.holder.pid().to_string();
        c.args(["-t", &pid, "-m", "--", program]);
        c
    }
}

/// Writes `path` until the filesystem is full.
fn fill(path: &Path) {
    let mut f = File::create(path).unwrap();
    let chunk = vec![0x5au8; 64 * 1024];
    let err = loop {
        if let Err(e) = f.write_all(&chunk) {
            break e;
        }
    };
    assert_eq!(err.kind(), std::io::ErrorKind::StorageFull, "{err}");
}

/// A `chatpulse demo` process serving alice.
struct Node {
    proc: Proc,
    addr: SocketAddr,
    token: String,
    out: mpsc::Receiver<String>,
}

/// `chatpulse ARGS --data-dir DIR --config WORK/chatpulse.toml` (inside `ns` when
/// given); its log is appended to WORK/node.log.
fn command(ns: Option<&Ns>, args: &[&str], dir: &Path, work: &Path) -> Command {
    std::fs::write(work.join("chatpulse.toml"), CONFIG).unwrap();
    let log = File::options()
        .create(true)
        .append(true)
        .open(work.join("node.log"))
        .unwrap();
    let mut cmd = ns.map_or_else(|| Command::new(BIN), |ns| ns.command(BIN));
    cmd.args(args)
        .arg("--data-dir")
        .arg(dir)
        .arg("--config")
        .arg(work.join("chatpulse.toml"))
        .env("CHATPULSE_LOG_LEVEL", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log);
    cmd
}

fn log_of(work: &Path) -> String {
    std::fs::read_to_string(work.join("node.log")).unwrap_or_default()
}

/// Starts a node on `dir` and waits for its overlay URL.
fn start(ns: Option<&Ns>, dir: &Path, work: &Path) -> Node {
    let args = ["demo", "--listen", "127.0.0.1:0"];
    let mut child = command(ns, &args, dir, work).spawn().expect("chatpulse");
    let out = lines(child.stdout.take().unwrap());
    let proc = Proc(child);
    let url = out
        .recv_timeout(WAIT)
        .unwrap_or_else(|e| panic!("no overlay URL ({e}); log:\n{}", log_of(work)));
    let rest = url.strip_prefix("http://").expect("an http URL");
    let (host, token) = rest.split_once("/overlay/").expect("an overlay URL");
    Node {
        proc,
        addr: host.parse().expect("an address"),
        token: token.into(),
        out,
    }
}

impl Node {
    /// The admin password a first start prints once.
    fn first_password(&self) -> String {
        loop {
            let line = self.out.recv_timeout(WAIT).expect("the first password");
            if line.contains("admin password") {
                let (_, password) = line.rsplit_once(": ").expect("a password");
                return password.into();
            }
        }
    }
}

/// Signs in with the admin password: the client and the dashboard's CSRF token.
async fn sign_in(addr: SocketAddr, password: &str) -> (Web, String) {
    let mut web = Web::new(addr);
    let page = web.get("/login").await;
    let form = format!("password={password}&csrf_token={}", csrf_of(&page.body));
    let r = web.post_form("/login", &form).await;
    assert_eq!(r.status, 302, "{}", r.body);
    let dash = web.get("/dashboard").await;
    let csrf = csrf_of(&dash.body);
    (web, csrf)
}

/// Saves `label` as alice's for-label: `Ok(version)` on 200, else the status and
/// body; `Err((0, _))` when the node answered nothing. Never waits forever.
async fn save(web: &Web, csrf: &str, label: &str) -> Result<i64, (u16, String)> {
    let body = format!("{{\"for_label\":\"{label}\"}}");
    let cookies: Vec<String> = web
        .cookies
        .iter()
        .map(|(n, v)| format!("{n}={v}"))
        .collect();
    let req = format!(
        "POST /api/config?channel=alice HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\
         Cookie: {}\r\nX-CSRF-Token: {csrf}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        web.addr,
        cookies.join("; "),
        body.len()
    );
    let answer = crate::common::with_timeout(WAIT, http_raw(web.addr, req.as_bytes())).await;
    match answer {
        Some((200, _, body)) => Ok(json_num(&body, "version").expect("a version")),
        Some((status, _, body)) => Err((status, body)),
        None => Err((0, String::new())),
    }
}

/// Polls `/health/ready` until it answers `status`; returns the body.
async fn readiness(addr: SocketAddr, status: u16) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let (s, _, body) = get(addr, "/health/ready").await;
        if s == status {
            return body;
        }
        assert!(Instant::now() < deadline, "readiness stays {s}: {body}");
        smol::Timer::after(Duration::from_millis(100)).await;
    }
}

/// Readiness turns 503 naming a store's check.
async fn store_check_fails(addr: SocketAddr) {
    let body = readiness(addr, 503).await;
    let named = |check| body.contains(&format!("\"failed_check\":\"{check}\""));
    assert!(named("sqlite") || named("state"), "{body}");
}

/// Waits until the overlay's total grows past what it showed first; returns it.
async fn votes_flow(ov: &mut Overlay) -> u64 {
    let first = ov.frame().await.total_votes;
    let grown = ov.frame_where("more votes", |f| f.total_votes > first);
    grown.await.total_votes
}

/// Readiness stays 503 for longer than one round of the node's health loop
/// (5 s), so no check of that loop clears the fault while the disk is still bad.
async fn stays_unready(addr: SocketAddr) {
    let until = Instant::now() + Duration::from_secs(7);
    while Instant::now() < until {
        let (status, _, body) = get(addr, "/health/ready").await;
        assert_eq!(status, 503, "{body}");
        smol::Timer::after(Duration::from_millis(200)).await;
    }
}

/// Seconds of failing flushes (one a second) are one line when they start and
/// one when they end, not one each.
fn told_once(log: &str) {
    let count = |s: &str| log.lines().filter(|l| l.contains(s)).count();
    let failed =
        count("health: writing to state failed") + count("health: writing to sqlite failed");
    assert!((1..=2).contains(&failed), "{log}");
    assert_eq!(count("still fails"), 0, "{log}");
    assert_eq!(count("takes writes again"), failed, "{log}");
    // The fault lasted more than 7 s (`stays_unready`) with a flush a second:
    // the store failures, the one failed save's answer, and nothing per flush.
    assert!(count(" ERROR ") <= 4, "{log}");
}

/// The stopped node's SQLite file in `dir`, copied out with its WAL (SQLite
/// resolves `/proc/<pid>/root` to `/`): integrity ok, every acknowledged save in
/// the history with its label; returns alice's stored (version, for-label).
fn check_db(dir: &Path, acked: &[(i64, String)]) -> (i64, String) {
    let copy = temp_dir("faults-copy");
    for name in ["chatpulse.db", "chatpulse.db-wal"] {
        if dir.join(name).exists() {
            std::fs::copy(dir.join(name), copy.join(name)).unwrap();
        }
    }
    let conn = rusqlite::Connection::open(copy.join("chatpulse.db")).unwrap();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let (id, version, label): (i64, i64, String) = conn
        .query_row(
            "SELECT s.id, c.version, c.for_label FROM streamers s
             JOIN configs c ON c.streamer_id = s.id WHERE s.login = 'alice'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    for (v, l) in acked {
        let sql = "SELECT snapshot FROM config_history WHERE streamer_id = ?1 AND version = ?2";
        let snapshot: String = conn
            .query_row(sql, [id, *v], |r| r.get(0))
            .unwrap_or_else(|e| panic!("acknowledged save v{v} ({l}) is gone: {e}"));
        assert!(
            snapshot.contains(&format!("\"for_label\":\"{l}\"")),
            "{snapshot}"
        );
    }
    drop(conn);
    let _ = std::fs::remove_dir_all(copy);
    (version, label)
}

/// No store file was set aside as unreadable.
fn assert_nothing_set_aside(dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name();
        assert!(!name.to_string_lossy().contains(".corrupt-"), "{name:?}");
    }
}

fn assert_no_panic(work: &Path) {
    let log = log_of(work);
    assert!(
        !log.contains("panicked") && !log.contains("backtrace"),
        "{log}"
    );
}

#[test]
fn a_read_only_or_full_data_dir_at_start_is_a_clear_one_line_error() {
    if !can_mount(&[]) {
        return;
    }
    let work = temp_dir("faults-start");
    for (name, options, expected) in [
        ("ro", "ro,size=4m", "Read-only file system"),
        ("full", "size=1m", "database or disk is full"),
    ] {
        let dir = work.join(name);
        let ns = Ns::new(&dir, &format!("mount -t tmpfs -o {options} none \"$D\""));
        if name == "full" {
            fill(&ns.path("filler"));
        }
        let args = ["serve", "--listen", "127.0.0.1:0"];
        let mut node = Proc(command(Some(&ns), &args, &dir, &work).spawn().unwrap());
        assert_eq!(node.exit().code(), Some(1), "{}", log_of(&work));
        let log = log_of(&work);
        let line = log.lines().rfind(|l| l.starts_with("chatpulse: "));
        let line = line.expect("an error line");
        let file = dir.join("chatpulse.db").display().to_string();
        assert!(line.contains(&file) && line.contains(expected), "{line}");
    }
    assert_no_panic(&work);
    let _ = std::fs::remove_dir_all(work);
}

#[test]
fn a_full_disk_fails_saves_and_readiness_until_space_returns_and_loses_nothing() {
    if !can_mount(&[]) {
        return;
    }
    let work = temp_dir("faults-full");
    let dir = work.join("data");
    let ns = Ns::new(&dir, "mount -t tmpfs -o size=3m none \"$D\"");
    let mut node = start(Some(&ns), &dir, &work);
    let password = node.first_password();
    let mut acked = Vec::new();
    run(LIMIT, async {
        let (web, csrf) = sign_in(node.addr, &password).await;
        let mut ov = Overlay::connect(node.addr, &node.token).await.unwrap();
        for i in 0..3 {
            let label = format!("before-{i}");
            acked.push((save(&web, &csrf, &label).await.unwrap(), label));
        }
        fill(&ns.path("filler"));
        // A few saves may still fit in pages SQLite has; then one fails, clearly.
        let mut failed = None;
        for i in 0..50 {
            let label = format!("full-{i}");
            match save(&web, &csrf, &label).await {
                Ok(version) => acked.push((version, label)),
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        assert_eq!(failed, Some((500, INTERNAL.into())), "{}", log_of(&work));
        store_check_fails(node.addr).await;
        assert_eq!(get(node.addr, "/health/live").await.0, 200);
        votes_flow(&mut ov).await;
        stays_unready(node.addr).await;
        std::fs::remove_file(ns.path("filler")).unwrap();
        readiness(node.addr, 200).await;
        told_once(&log_of(&work));
        let label = "after".to_string();
        acked.push((save(&web, &csrf, &label).await.unwrap(), label));
        votes_flow(&mut ov).await;
    });
    assert!(node.proc.terminate().success(), "{}", log_of(&work));
    let mut node = start(Some(&ns), &dir, &work);
    run(LIMIT, async {
        readiness(node.addr, 200).await;
        let mut ov = Overlay::connect(node.addr, &node.token).await.unwrap();
        let snap = ov.frame().await;
        assert!(snap.total_votes > 0, "the votes survived");
        assert_eq!(snap.for_votes + snap.against_votes, snap.total_votes);
    });
    assert!(node.proc.terminate().success());
    assert_eq!(
        check_db(&ns.path(""), &acked),
        acked.last().cloned().unwrap()
    );
    assert_nothing_set_aside(&ns.path(""));
    assert_no_panic(&work);
    drop(ns);
    let _ = std::fs::remove_dir_all(work);
}

/// The loop device (`loopN`) mounted on `ns`'s dir.
fn loop_device(ns: &Ns) -> String {
    let mountinfo = format!("/proc/{}/mountinfo", ns.holder.pid());
    let mountinfo = std::fs::read_to_string(mountinfo).unwrap();
    let dir = ns.dir.display().to_string();
    let line = mountinfo
        .lines()
        .find(|l| l.split(' ').nth(4) == Some(&dir));
    let source = line.and_then(|l| l.split(" - ").nth(1)?.split(' ').nth(1));
    let dev = source.and_then(|s| s.strip_prefix("/dev/"));
    dev.expect("a loop device").into()
}

/// Waits until no loop device holds `img` (after its namespace is gone).
fn wait_detached(img: &Path) {
    let deadline = Instant::now() + WAIT;
    let attached = || Command::new("losetup").arg("-j").arg(img).output().unwrap();
    while !attached().stdout.is_empty() {
        assert!(Instant::now() < deadline, "a loop device keeps {img:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// ext4 on a loop device with `errors=remount-ro`, made read-only under the
/// running node by a filesystem error. A plain `mount -o remount,ro` cannot do
/// it: the kernel refuses while the node holds its stores open for writing. The
/// filesystem stays read-only until it is unmounted and checked, so the node
/// recovers by a restart on the repaired filesystem.
#[test]
fn a_filesystem_turned_read_only_under_the_node_fails_clearly_and_keeps_what_was_saved() {
    if !can_mount(&["mkfs.ext4", "e2fsck", "losetup"]) {
        return;
    }
    let work = temp_dir("faults-ro");
    let img = work.join("fs.img");
    File::create(&img).unwrap().set_len(32 << 20).unwrap();
    let mkfs = Command::new("mkfs.ext4")
        .args(["-q", "-F"])
        .arg(&img)
        .status();
    assert!(mkfs.is_ok_and(|s| s.success()));
    let dir = work.join("data");
    let mount = format!("mount -o loop,errors=remount-ro '{}' \"$D\"", img.display());
    let ns = Ns::new(&dir, &mount);
    let mut node = start(Some(&ns), &dir, &work);
    let password = node.first_password();
    let mut acked = Vec::new();
    let refused = Err((500, INTERNAL.to_string()));
    run(LIMIT, async {
        let (web, csrf) = sign_in(node.addr, &password).await;
        let mut ov = Overlay::connect(node.addr, &node.token).await.unwrap();
        for i in 0..3 {
            let label = format!("before-{i}");
            acked.push((save(&web, &csrf, &label).await.unwrap(), label));
        }
        let mut remount = ns.command("mount");
        let remount = remount
            .args(["-o", "remount,ro"])
            .arg(&dir)
            .output()
            .unwrap();
        assert!(!remount.status.success(), "read-only under open files");
        assert!(String::from_utf8_lossy(&remount.stderr).contains("busy"));
        readiness(node.addr, 200).await;
        // synchronous=NORMAL: a commit still in the page cache would go with the
        // error as in a power cut; the acknowledged saves are written back first.
        assert!(Command::new("sync").status().unwrap().success());
        let trigger = format!("/sys/fs/ext4/{}/trigger_fs_error", loop_device(&ns));
        std::fs::write(trigger, "1").unwrap();
        assert_eq!(save(&web, &csrf, "refused").await, refused);
        store_check_fails(node.addr).await;
        assert_eq!(get(node.addr, "/health/live").await.0, 200);
        votes_flow(&mut ov).await;
        stays_unready(node.addr).await;
        assert_eq!(save(&web, &csrf, "refused").await, refused);
    });
    // Its last flush fails too (logged); it still stops cleanly.
    assert!(node.proc.terminate().success(), "{}", log_of(&work));
    drop(ns);
    wait_detached(&img);
    let fsck = Command::new("e2fsck")
        .arg("-fy")
        .arg(&img)
        .output()
        .unwrap();
    assert!(fsck.status.code().is_some_and(|c| c <= 2), "{fsck:?}");
    let ns = Ns::new(&dir, &mount);
    let mut node = start(Some(&ns), &dir, &work);
    run(LIMIT, async {
        readiness(node.addr, 200).await;
        let (web, csrf) = sign_in(node.addr, &password).await;
        let label = "after".to_string();
        acked.push((save(&web, &csrf, &label).await.unwrap(), label));
        let mut ov = Overlay::connect(node.addr, &node.token).await.unwrap();
        let snap = ov.frame().await;
        assert_eq!(snap.for_votes + snap.against_votes, snap.total_votes);
    });
    assert!(node.proc.terminate().success(), "{}", log_of(&work));
    assert_eq!(
        check_db(&ns.path(""), &acked),
        acked.last().cloned().unwrap()
    );
    assert_nothing_set_aside(&ns.path(""));
    assert_no_panic(&work);
    drop(ns);
    wait_detached(&img);
    let _ = std::fs::remove_dir_all(work);
}

/// `kill -9` at a random-ish moment while a client saves in a tight loop and
/// votes flow, a few rounds on one data dir: each restart finds every
/// acknowledged save (the one in flight may or may not have landed), an intact
/// SQLite file, and a state file redb opens without setting it aside.
#[test]
fn kill_9_in_the_middle_of_saves_loses_no_acknowledged_save() {
    use std::os::unix::process::ExitStatusExt;
    let work = temp_dir("faults-kill");
    let dir = work.join("data");
    let clock = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    let seed = u64::from(clock.unwrap().subsec_nanos());
    let mut password = None;
    let mut acked: Vec<(i64, String)> = Vec::new();
    for round in 0..4u64 {
        let mut node = start(None, &dir, &work);
        assert_nothing_set_aside(&dir);
        let password = password
            .get_or_insert_with(|| node.first_password())
            .clone();
        let pid = node.proc.pid().to_string();
        let delay = Duration::from_millis(50 + (seed >> (round * 7)) % 800);
        eprintln!("round {round}: kill -9 {delay:?} into the saves");
        let in_flight = run(LIMIT, async {
            readiness(node.addr, 200).await;
            let mut ov = Overlay::connect(node.addr, &node.token).await.unwrap();
            let snap = ov.frame().await;
            assert_eq!(snap.for_votes + snap.against_votes, snap.total_votes);
            assert!(snap.total_votes < 100_000, "{snap:?}");
            let (web, csrf) = sign_in(node.addr, &password).await;
            let label = format!("r{round}");
            acked.push((save(&web, &csrf, &label).await.unwrap(), label));
            let killer = std::thread::spawn(move || {
                std::thread::sleep(delay);
                Command::new("kill").args(["-KILL", &pid]).status().unwrap();
            });
            let in_flight = loop {
                let label = format!("r{round}-{}", acked.len());
                match save(&web, &csrf, &label).await {
                    Ok(version) => acked.push((version, label)),
                    Err((0, _)) => break label,
                    Err(e) => panic!("{e:?}"),
                }
            };
            killer.join().unwrap();
            in_flight
        });
        assert_eq!(node.proc.exit().signal(), Some(9));
        let (version, label) = acked.last().cloned().unwrap();
        let stored = check_db(&dir, &acked);
        assert!(
            stored == (version, label.clone()) || stored == (version + 1, in_flight),
            "stored {stored:?}, last acknowledged v{version} {label}"
        );
    }
    let mut node = start(None, &dir, &work);
    assert_nothing_set_aside(&dir);
    run(LIMIT, async {
        readiness(node.addr, 200).await;
        let mut ov = Overlay::connect(node.addr, &node.token).await.unwrap();
        votes_flow(&mut ov).await;
    });
    assert!(node.proc.terminate().success(), "{}", log_of(&work));
    check_db(&dir, &acked);
    assert_no_panic(&work);
    let _ = std::fs::remove_dir_all(work);
}
