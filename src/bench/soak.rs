//! `chatpulse-bench soak`: the fan-out load ([`super::run`]'s node, IRC feed
//! and overlay clients) held for minutes while the node's RSS and open file
//! descriptors are sampled from /proc. It answers two questions: does memory
//! stay flat under a steady load, and does the node give back every socket's
//! descriptor once the overlays go away.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use smol::future::FutureExt as _;

use super::clients::{self, ClientStats};
use super::feed::Feed;
use super::stats::{self, Summary, percentile};
use super::{
    MAX_DURATION, MAX_SOCKETS, Options, proc_sample, scrape_evicted, scrape_gauge, start_node,
};

/// Votes before the first ("warm") sample are bounded like the run itself.
const MAX_WARMUP: Duration = Duration::from_secs(60);
/// Reading /proc/PID/fd of a node holding 50 000 sockets takes milliseconds;
/// once a second is plenty for a trend.
const MIN_SAMPLE_EVERY: Duration = Duration::from_secs(1);
/// Vote logs keep 120 s of 100 ms buckets before folding them, so under
/// steady votes RSS rises for two minutes: that is filling, not leaking.
/// Flatness is judged from the first sample this long after the warm one.
const STEADY_FROM: Duration = Duration::from_millis(crate::sentiment::FOLD_AFTER_MS);
/// Flat RSS: the end within this share of the steady sample, or `RSS_SLACK_MIN_KIB`.
const RSS_SLACK_PERCENT: u64 = 5;
const RSS_SLACK_MIN_KIB: u64 = 2048;
/// After the clients close, the node may keep a few more files than at idle
/// (SQLite journal, redb) without leaking a socket's descriptor.
const FD_SLACK: u64 = 4;
/// How long the node gets to close its side of every socket.
const CLOSE_LIMIT: Duration = Duration::from_secs(10);
const CLOSE_POLL: Duration = Duration::from_millis(100);
/// The "few seconds" after the close before the last look at fds and RSS.
const CLOSE_SETTLE: Duration = Duration::from_secs(2);
/// Descriptors beyond one per socket that the tool and the node each need.
const FD_HEADROOM: u64 = 1024;
/// Lets the last frames land before the end sample.
const LAST_FRAMES: Duration = Duration::from_millis(200);

#[derive(Debug, Clone)]
pub struct SoakOptions {
    /// Node binary, sockets, broadcasters, rate, duration, warm-up, connect
    /// rate; `nodes` is ignored (one node).
    pub load: Options,
    pub sample_every: Duration,
}

/// The node's RSS and open descriptors at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub struct Probe {
    pub rss_kib: u64,
    pub fds: u64,
}

/// One row of the time series; `t_s` counts from the end of the warm-up.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    pub t_s: f64,
    pub rss_kib: u64,
    /// The node's allocator: bytes in use (`process_heap_in_use_bytes`); 0
    /// where the node cannot tell (not glibc). Flat while RSS rises means the
    /// allocator holds freed pages, not that the node keeps more.
    pub heap_kib: u64,
    pub fds: u64,
    /// Frames received since t = 0, all clients.
    pub frames: u64,
    /// p99 latency of the frames since the previous sample.
    pub p99_us: u64,
}

#[derive(Debug, Clone, Default)]
pub struct SoakReport {
    pub sockets: usize,
    pub broadcasters: usize,
    pub votes_per_sec: f64,
    pub warmup_s: f64,
    pub sample_every_s: f64,
    pub connect_s: f64,
    pub connect_errors: u64,
    pub votes_sent: u64,
    pub latency_us: Summary,
    /// Clients whose socket ended during the run (eviction or error).
    pub clients_closed: u64,
    pub evicted: u64,
    /// After the node logged in to the feed, before any overlay.
    pub idle: Probe,
    /// All sockets open, no vote yet.
    pub connected: Probe,
    /// `CLOSE_SETTLE` after the node's fds came back (or `CLOSE_LIMIT` passed).
    pub after_close: Probe,
    /// Client close → the node's fds back within `FD_SLACK` of idle.
    pub close_s: f64,
    /// t = 0 (warm) first, the end sample last.
    pub samples: Vec<Sample>,
}

impl SoakReport {
    fn warm(&self) -> Sample {
        self.samples.first().copied().unwrap_or_default()
    }

    fn end(&self) -> Sample {
        self.samples.last().copied().unwrap_or_default()
    }

    /// The first sample once the vote logs are full (`STEADY_FROM`); the warm
    /// one in a run too short to reach it.
    pub fn steady(&self) -> Sample {
        let from = STEADY_FROM.as_secs_f64();
        let late = self.samples.iter().find(|s| s.t_s >= from);
        late.copied().unwrap_or_else(|| self.warm())
    }

    pub fn frames(&self) -> u64 {
        self.end().frames
    }

    pub fn rss_max_kib(&self) -> u64 {
        self.samples.iter().map(|s| s.rss_kib).max().unwrap_or(0)
    }

    /// How far above the steady sample the end may be and still count as flat.
    pub fn rss_slack_kib(&self) -> u64 {
        (self.steady().rss_kib * RSS_SLACK_PERCENT / 100).max(RSS_SLACK_MIN_KIB)
    }

    /// RSS trend in KiB per minute and the t it was fitted from: the samples
    /// from the steady one, or all of them when fewer than 3 are left.
    pub fn rss_slope(&self) -> (f64, f64) {
        self.slope_of(|s| s.rss_kib)
    }

    /// Heap-in-use trend in KiB per minute, fitted like [`Self::rss_slope`].
    pub fn heap_slope(&self) -> (f64, f64) {
        self.slope_of(|s| s.heap_kib)
    }

    fn slope_of(&self, kib: impl Fn(&Sample) -> u64) -> (f64, f64) {
        let from = self.steady().t_s;
        let points = |from: f64| -> Vec<(f64, f64)> {
            let late = self.samples.iter().filter(|s| s.t_s >= from);
            late.map(|s| (s.t_s / 60.0, kib(s) as f64)).collect()
        };
        match points(from) {
            late if late.len() >= 3 => (slope(&late), from),
            _ => (slope(&points(0.0)), 0.0),
        }
    }

    /// The end within the slack of the steady sample, and the trend would not
    /// use up the slack between the two.
    pub fn flat_rss(&self) -> bool {
        let (steady, end, slack) = (self.steady(), self.end(), self.rss_slack_kib());
        let minutes = (end.t_s - steady.t_s) / 60.0;
        end.rss_kib <= steady.rss_kib + slack && self.rss_slope().0 * minutes <= slack as f64
    }

    /// Descriptors the node still holds after the clients left, beyond idle
    /// and `FD_SLACK`; 0 means no leak.
    pub fn fd_leak(&self) -> u64 {
        let extra = self.after_close.fds.saturating_sub(self.idle.fds);
        if extra <= FD_SLACK { 0 } else { extra }
    }

    /// Every socket held, memory flat, descriptors returned.
    pub fn passed(&self) -> bool {
        self.connect_errors == 0 && self.flat_rss() && self.fd_leak() == 0
    }

    pub fn table(&self) -> String {
        let (warm, end) = (self.warm(), self.end());
        let ms = |us: u64| us as f64 / 1000.0;
        let l = &self.latency_us;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "soak: {} sockets over {} broadcasters, {} votes/s for {:.1} s after {:.0} s warm-up, sample every {:.0} s",
            self.sockets,
            self.broadcasters,
            self.votes_per_sec,
            end.t_s,
            self.warmup_s,
            self.sample_every_s
        );
        let _ = writeln!(
            s,
            "connect          {:.2} s ({} errors)",
            self.connect_s, self.connect_errors
        );
        let _ = writeln!(s, "votes sent       {}", self.votes_sent);
        let _ = writeln!(
            s,
            "frames           {} ({:.0}/s)",
            end.frames,
            per_sec(end.frames, end.t_s)
        );
        let _ = writeln!(s, "{}", l.line(""));
        let _ = writeln!(
            s,
            "clients closed   {} during the run (evicted by server: {})",
            self.clients_closed, self.evicted
        );
        let _ = writeln!(
            s,
            "\n     t s    rss KiB   heap KiB      fds   frames/s   so far/s   p99 ms"
        );
        let mut prev = Sample::default();
        for x in &self.samples {
            let _ = writeln!(
                s,
                "{:>8.0} {:>10} {:>10} {:>8} {:>10.0} {:>10.0} {:>8.2}",
                x.t_s,
                x.rss_kib,
                x.heap_kib,
                x.fds,
                per_sec(x.frames - prev.frames, x.t_s - prev.t_s),
                per_sec(x.frames, x.t_s),
                ms(x.p99_us)
            );
            prev = *x;
        }
        let (slope, from) = self.rss_slope();
        let steady = self.steady();
        let _ = writeln!(
            s,
            "\nrss KiB          idle {}  connected {}  warm {}  steady {} (t = {:.0} s)  end {}  max {}  after close {}",
            self.idle.rss_kib,
            self.connected.rss_kib,
            warm.rss_kib,
            steady.rss_kib,
            steady.t_s,
            end.rss_kib,
            self.rss_max_kib(),
            self.after_close.rss_kib
        );
        let _ = writeln!(
            s,
            "rss slope        {slope:+.1} KiB/min (least squares, samples from t = {from:.0} s)"
        );
        let _ = writeln!(
            s,
            "heap in use KiB  warm {}  steady {}  end {}  slope {:+.1} KiB/min",
            warm.heap_kib,
            steady.heap_kib,
            end.heap_kib,
            self.heap_slope().0
        );
        let _ = writeln!(
            s,
            "fds              idle {}  with sockets: start {} end {}  after close {} (back in {:.1} s)",
            self.idle.fds, warm.fds, end.fds, self.after_close.fds, self.close_s
        );
        let minutes = (end.t_s - steady.t_s) / 60.0;
        let _ = writeln!(
            s,
            "flat RSS: {} (end {} vs steady {} + slack {} KiB; slope × {:.1} min = {:+.0} KiB)",
            yes_no(self.flat_rss()),
            end.rss_kib,
            steady.rss_kib,
            self.rss_slack_kib(),
            minutes,
            slope * minutes
        );
        let leak = match self.fd_leak() {
            0 => "none".to_string(),
            n => n.to_string(),
        };
        let _ = writeln!(
            s,
            "fd leak: {leak} (after close {} vs idle {}, slack {FD_SLACK})",
            self.after_close.fds, self.idle.fds
        );
        s
    }

    pub fn json(&self) -> String {
        let (warm, end) = (self.warm(), self.end());
        let l = &self.latency_us;
        let (slope, from) = self.rss_slope();
        let samples: Vec<String> = self
            .samples
            .iter()
            .map(|x| {
                format!(
                    "{{\"t_s\":{:.1},\"rss_kib\":{},\"heap_kib\":{},\"fds\":{},\"frames\":{},\"p99_us\":{}}}",
                    x.t_s, x.rss_kib, x.heap_kib, x.fds, x.frames, x.p99_us
                )
            })
            .collect();
        format!(
            "{{\"sockets\":{},\"broadcasters\":{},\"votes_per_sec\":{},\"duration_s\":{:.1},\"warmup_s\":{:.1},\"sample_every_s\":{:.1},\
\"connect_s\":{:.3},\"connect_errors\":{},\"votes_sent\":{},\"frames\":{},\"frames_per_sec\":{:.1},\
\"latency_us\":{{\"count\":{},\"p50\":{},\"p90\":{},\"p99\":{},\"max\":{}}},\"clients_closed\":{},\"evicted\":{},\
\"rss_idle_kib\":{},\"rss_connected_kib\":{},\"rss_warm_kib\":{},\"rss_steady_kib\":{},\"rss_steady_t_s\":{:.1},\"rss_end_kib\":{},\"rss_max_kib\":{},\"rss_after_close_kib\":{},\
\"rss_slack_kib\":{},\"rss_slope_kib_per_min\":{:.2},\"rss_slope_from_s\":{:.0},\"heap_slope_kib_per_min\":{:.2},\
\"fds_idle\":{},\"fds_connected\":{},\"fds_start\":{},\"fds_end\":{},\"fds_after_close\":{},\"close_s\":{:.2},\
\"flat_rss\":{},\"fd_leak\":{},\"passed\":{},\"samples\":[{}]}}",
            self.sockets,
            self.broadcasters,
            self.votes_per_sec,
            end.t_s,
            self.warmup_s,
            self.sample_every_s,
            self.connect_s,
            self.connect_errors,
            self.votes_sent,
            end.frames,
            per_sec(end.frames, end.t_s),
            l.count,
            l.p50,
            l.p90,
            l.p99,
            l.max,
            self.clients_closed,
            self.evicted,
            self.idle.rss_kib,
            self.connected.rss_kib,
            warm.rss_kib,
            self.steady().rss_kib,
            self.steady().t_s,
            end.rss_kib,
            self.rss_max_kib(),
            self.after_close.rss_kib,
            self.rss_slack_kib(),
            slope,
            from,
            self.heap_slope().0,
            self.idle.fds,
            self.connected.fds,
            warm.fds,
            end.fds,
            self.after_close.fds,
            self.close_s,
            self.flat_rss(),
            self.fd_leak(),
            self.passed(),
            samples.join(",")
        )
    }
}

fn per_sec(n: u64, secs: f64) -> f64 {
    if secs > 0.0 { n as f64 / secs } else { 0.0 }
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// Least-squares slope of y over x; 0 with fewer than two distinct x.
pub fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let (mut cov, mut var) = (0.0, 0.0);
    for (x, y) in points {
        cov += (x - mean_x) * (y - mean_y);
        var += (x - mean_x) * (x - mean_x);
    }
    if var > 0.0 { cov / var } else { 0.0 }
}

/// Runs one bounded soak and returns its report (a failed verdict is a
/// report too; see [`SoakReport::passed`]).
pub async fn run(o: &SoakOptions) -> Result<SoakReport, String> {
    let load = &o.load;
    if load.sockets > MAX_SOCKETS
        || load.duration > MAX_DURATION
        || load.warmup > MAX_WARMUP
        || load.broadcasters == 0
        || o.sample_every < MIN_SAMPLE_EVERY
    {
        return Err(format!(
            "refusing: sockets ≤ {MAX_SOCKETS}, duration ≤ {MAX_DURATION:?}, warm-up ≤ {MAX_WARMUP:?}, \
broadcasters ≥ 1, sample every ≥ {MIN_SAMPLE_EVERY:?}"
        ));
    }
    raise_fd_limit(load.sockets as u64 + FD_HEADROOM)?;
    let feed = Feed::start().await.map_err(|e| e.to_string())?;
    let node = start_node(load, Some(feed.addr), None)?;
    let pid = node.child.id();
    await_login(&feed).await?;
    let idle = probe(pid)?;
    let stats = Arc::new(ClientStats::default());
    let (tasks, connect) = clients::open(
        node.addr,
        &node.tokens,
        load.sockets,
        load.connect_rate,
        &stats,
    )
    .await;
    let connected = probe(pid)?;
    let channels: Vec<String> = (0..load.broadcasters).map(|i| format!("b{i:06}")).collect();
    feed.send_votes(&channels, load.votes_per_sec, load.warmup)
        .await;
    stats.recording.store(true, Ordering::SeqCst);
    let mut series = Series::start(pid, node.addr, &stats).await?;
    let votes = async {
        Ok(feed
            .send_votes(&channels, load.votes_per_sec, load.duration)
            .await)
    };
    let sampling = async { Err(series.sample_loop(o.sample_every, load.duration).await) };
    let votes_sent = votes.or(sampling).await?;
    smol::Timer::after(LAST_FRAMES).await;
    series.sample().await?;
    stats.recording.store(false, Ordering::SeqCst);
    let evicted = scrape_evicted(node.addr).await;
    let clients_closed = stats.closed.load(Ordering::SeqCst);
    let closing = Instant::now();
    for task in tasks {
        task.cancel().await;
    }
    let close_s = await_fds(pid, idle.fds + FD_SLACK, closing).await?;
    smol::Timer::after(CLOSE_SETTLE).await;
    let after_close = probe(pid)?;
    let mut latencies = series.latencies;
    Ok(SoakReport {
        sockets: load.sockets,
        broadcasters: load.broadcasters,
        votes_per_sec: load.votes_per_sec,
        warmup_s: load.warmup.as_secs_f64(),
        sample_every_s: o.sample_every.as_secs_f64(),
        connect_s: connect.as_secs_f64(),
        connect_errors: stats.connect_errors.load(Ordering::SeqCst),
        votes_sent,
        latency_us: stats::summarize(&mut latencies),
        clients_closed,
        evicted,
        idle,
        connected,
        after_close,
        close_s,
        samples: series.samples,
    })
}

/// The time series under way: samples and every latency seen so far.
struct Series<'a> {
    pid: u32,
    addr: std::net::SocketAddr,
    stats: &'a ClientStats,
    started: Instant,
    samples: Vec<Sample>,
    latencies: Vec<u64>,
}

impl<'a> Series<'a> {
    /// Starts the clock and takes the t = 0 (warm) sample.
    async fn start(
        pid: u32,
        addr: std::net::SocketAddr,
        stats: &'a ClientStats,
    ) -> Result<Self, String> {
        let mut series = Series {
            pid,
            addr,
            stats,
            started: Instant::now(),
            samples: Vec::new(),
            latencies: Vec::new(),
        };
        series.sample().await?;
        Ok(series)
    }

    async fn sample(&mut self) -> Result<(), String> {
        let Probe { rss_kib, fds } = probe(self.pid)?;
        let heap_kib = scrape_gauge(self.addr, "process_heap_in_use_bytes").await / 1024;
        let mut fresh = std::mem::take(
            &mut *self
                .stats
                .latencies
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        fresh.sort_unstable();
        self.samples.push(Sample {
            t_s: self.started.elapsed().as_secs_f64(),
            rss_kib,
            heap_kib,
            fds,
            frames: self.stats.frames.load(Ordering::SeqCst),
            p99_us: percentile(&fresh, 99.0).unwrap_or(0),
        });
        self.latencies.append(&mut fresh);
        Ok(())
    }

    /// Samples on every multiple of `every` before `until` (the end sample is
    /// the caller's) until the node dies (its error is the result) or the
    /// caller drops the loop.
    async fn sample_loop(&mut self, every: Duration, until: Duration) -> String {
        loop {
            let next = every * self.samples.len() as u32;
            if next >= until {
                return smol::future::pending().await;
            }
            smol::Timer::at(self.started + next).await;
            if let Err(e) = self.sample().await {
                return e;
            }
        }
    }
}

/// The node's RSS and number of open descriptors (entries of /proc/PID/fd).
fn probe(pid: u32) -> Result<Probe, String> {
    let died = || format!("the node (pid {pid}) died");
    let (_, rss_kib) = proc_sample(pid).ok_or_else(died)?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map_err(|_| died())?
        .count() as u64;
    Ok(Probe { rss_kib, fds })
}

/// The first JOIN means the node logged in (it paces the rest, like Twitch wants).
async fn await_login(feed: &Feed) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while feed.joined() == 0 {
        if Instant::now() > deadline {
            return Err("the node never logged in to the feed".into());
        }
        smol::Timer::after(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Polls until the node holds at most `target` descriptors or `CLOSE_LIMIT`
/// passed; returns the seconds since `since`.
async fn await_fds(pid: u32, target: u64, since: Instant) -> Result<f64, String> {
    while probe(pid)?.fds > target && since.elapsed() < CLOSE_LIMIT {
        smol::Timer::after(CLOSE_POLL).await;
    }
    Ok(since.elapsed().as_secs_f64())
}

/// Raises this process's soft RLIMIT_NOFILE to its hard limit when it is below
/// `need` (the node, started afterwards, inherits it). 10 000 sockets need
/// 10 000 descriptors on each side, above the usual soft limit of 1024.
pub(crate) fn raise_fd_limit(need: u64) -> Result<(), String> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let (soft, hard) = (
        limit.current.unwrap_or(u64::MAX),
        limit.maximum.unwrap_or(u64::MAX),
    );
    if soft >= need {
        return Ok(());
    }
    if hard < need {
        return Err(format!(
            "needs {need} open files per process, the hard limit is {hard}: raise it (ulimit -Hn, LimitNOFILE)"
        ));
    }
    let raised = rustix::process::Rlimit {
        current: limit.maximum.or(Some(need)),
        maximum: limit.maximum,
    };
    setrlimit(Resource::Nofile, raised).map_err(|e| format!("raising RLIMIT_NOFILE: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slope_of_a_line() {
        let line: Vec<(f64, f64)> = (0..10).map(|x| (x as f64, 3.0 * x as f64 + 7.0)).collect();
        assert!((slope(&line) - 3.0).abs() < 1e-9);
        assert_eq!(slope(&[(1.0, 5.0)]), 0.0);
        assert_eq!(slope(&[]), 0.0);
        let flat = [(0.0, 10.0), (1.0, 12.0), (2.0, 10.0), (3.0, 12.0)];
        assert!(slope(&flat).abs() < 1.0);
    }

    fn report(rss: &[u64]) -> SoakReport {
        let samples = rss
            .iter()
            .enumerate()
            .map(|(i, &rss_kib)| Sample {
                t_s: i as f64 * 10.0,
                rss_kib,
                ..Sample::default()
            })
            .collect();
        SoakReport {
            idle: Probe {
                rss_kib: 0,
                fds: 20,
            },
            after_close: Probe {
                rss_kib: 0,
                fds: 22,
            },
            samples,
            ..SoakReport::default()
        }
    }

    #[test]
    fn verdicts() {
        // Two minutes of vote logs filling, then flat: passes, judged from t = 120 s.
        let mut rss: Vec<u64> = (0..12).map(|i| 40_000 + i * 250).collect();
        rss.extend((0..18).map(|i| 43_000 + (i % 2) * 100));
        let flat = report(&rss);
        assert_eq!(flat.steady().t_s, 120.0);
        assert_eq!(flat.rss_slope().1, 120.0);
        assert!(flat.end().rss_kib > flat.warm().rss_kib + flat.rss_slack_kib());
        assert!(flat.flat_rss(), "{}", flat.table());
        assert_eq!(flat.fd_leak(), 0);
        assert!(flat.passed());
        // 60 KiB every 10 s, then a drop: the end is within the slack, the trend is not.
        let mut rss: Vec<u64> = (0..60).map(|i| 40_000 + i * 60).collect();
        rss.push(41_000);
        let growing = report(&rss);
        assert!(growing.end().rss_kib <= growing.steady().rss_kib + growing.rss_slack_kib());
        assert!(!growing.flat_rss(), "{}", growing.table());
        let mut high = flat.clone();
        high.samples.last_mut().unwrap().rss_kib = 43_000 + 2_151;
        assert!(!high.flat_rss(), "{}", high.table());
        // A run shorter than the fill: judged from the warm sample.
        let short = report(&[40_000, 40_100, 40_050, 40_100]);
        assert_eq!(short.steady().t_s, 0.0);
        assert!(short.flat_rss(), "{}", short.table());
        let mut leaky = flat.clone();
        leaky.after_close.fds = 1020;
        assert_eq!(leaky.fd_leak(), 1000);
        assert!(!leaky.passed());
        let json = leaky.json();
        assert!(json.contains("\"fd_leak\":1000"), "{json}");
        assert!(json.contains("\"passed\":false"), "{json}");
    }
}
