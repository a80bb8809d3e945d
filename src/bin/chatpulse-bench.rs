//! `chatpulse-bench`: bounded load test of a ChatPulse node on loopback.
//! See `chatpulse::bench` and BENCHMARKS.md.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use chatpulse::bench::{self, Options};

const HELP: &str = "chatpulse-bench — load-test a ChatPulse node it starts on 127.0.0.1

USAGE:
    chatpulse-bench [fanout] [OPTIONS]   sockets + votes through IRC (default)
    chatpulse-bench micro                micro-benchmarks of the hot pure paths
    chatpulse-bench partition [OPTIONS]  (root) K nodes in network namespaces: votes
                                         on both sides of a split, time to converge
                                         after it heals
    chatpulse-bench soak [OPTIONS]       the fan-out load held for minutes: the node's
                                         RSS and open fds sampled; exits 2 unless RSS
                                         stays flat and every socket's fd is returned
    chatpulse-bench floor [N] [RATE] [SECS]
                                         cost of one small loopback write on this
                                         machine: RATE writes/s over N sockets
                                         (defaults 9000, 20000, 10; both ends of each
                                         socket live in this process: 2 fds each)

OPTIONS (fanout):
    --server-bin PATH     node binary (default: target/release/chatpulse)
    --sockets N           overlay WebSockets to hold (default 1000, max 50000)
    --broadcasters M      channels the sockets and votes spread over (default 100)
    --votes-per-sec R     votes injected through the IRC feed (default 200)
    --duration SECS       measured window (default 10, max 600)
    --warmup SECS         votes before measuring (default 2)
    --connect-rate R      new sockets per second (default 2000)
    --nodes K             1..=5; K > 1 meshes K nodes: votes enter the first,
                          overlays hang on the last (cross-node latency)
    --json PATH           also write the report as JSON

OPTIONS (soak): as fanout (no --nodes), with other defaults:
    --sockets N (default 10000), --votes-per-sec R (default 2000),
    --duration SECS (default 600, max 600), --warmup SECS (default 10, max 60:
    votes before the first, warm, sample), --broadcasters M (default 100),
    --connect-rate R (default 2000), --server-bin PATH, --json PATH
    --sample-every SECS   RSS and fd sampling interval (default 10, min 1)

OPTIONS (partition):
    --server-bin PATH, --nodes K (default 3), --broadcasters M (default 20),
    --votes-per-sec R (default 200: 2/3 into node 1, 1/3 into the last), --json PATH
    --split SECS          how long each partition lasts (default 8)
    --rounds N            partitions to heal, one after another (default 5)
    --kill                instead of a split, SIGKILL the last node for --split
                          seconds (votes into node 1), then restart it on its data
";

fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some("micro") {
        print!(
            "{}",
            bench::micro::table(&bench::micro::run_all(Vec::new()))
        );
        return ExitCode::SUCCESS;
    }
    if std::env::args().nth(1).as_deref() == Some("floor") {
        return floor();
    }
    if std::env::args().nth(1).as_deref() == Some("partition") {
        return partition();
    }
    if std::env::args().nth(1).as_deref() == Some("soak") {
        return soak();
    }
    match parse().and_then(|(opts, json)| {
        let report = smol::block_on(bench::run(&opts))?;
        print!("{}", report.table());
        if let Some(path) = json {
            std::fs::write(&path, report.json()).map_err(|e| format!("{}: {e}", path.display()))?;
        }
        Ok(())
    }) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chatpulse-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `partition [OPTIONS]`: convergence after a healed split.
fn partition() -> ExitCode {
    use lexopt::prelude::*;
    let run = || -> Result<(), String> {
        let mut o = bench::partition::PartitionOptions {
            fault: bench::partition::Fault::Split,
            server_bin: PathBuf::from("target/release/chatpulse"),
            nodes: 3,
            broadcasters: 20,
            votes_per_sec: 200.0,
            split: Duration::from_secs(8),
            rounds: 5,
        };
        let mut json = None;
        let mut p = lexopt::Parser::from_iter(std::env::args().skip(1));
        while let Some(arg) = p.next().map_err(|e| e.to_string())? {
            match arg {
                Long("server-bin") => o.server_bin = path(&mut p)?,
                Long("nodes") => o.nodes = num(&mut p)? as usize,
                Long("broadcasters") => o.broadcasters = num(&mut p)? as usize,
                Long("votes-per-sec") => o.votes_per_sec = num(&mut p)?,
                Long("split") => o.split = Duration::from_secs_f64(num(&mut p)?),
                Long("rounds") => o.rounds = num(&mut p)? as usize,
                Long("kill") => o.fault = bench::partition::Fault::Kill,
                Long("json") => json = Some(path(&mut p)?),
                other => return Err(other.unexpected().to_string()),
            }
        }
        let report = smol::block_on(bench::partition::run(&o))?;
        print!("{}", report.table());
        if let Some(path) = json {
            std::fs::write(&path, report.json()).map_err(|e| format!("{}: {e}", path.display()))?;
        }
        Ok(())
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chatpulse-bench partition: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `soak [OPTIONS]`: flat RSS and no fd leak under a long fan-out load.
/// Exit 1: the run failed; 2: it ran, and the verdict is a failure.
fn soak() -> ExitCode {
    use lexopt::prelude::*;
    let run = || -> Result<bool, String> {
        let mut o = bench::soak::SoakOptions {
            load: Options {
                server_bin: PathBuf::from("target/release/chatpulse"),
                sockets: 10_000,
                broadcasters: 100,
                votes_per_sec: 2000.0,
                duration: Duration::from_secs(600),
                warmup: Duration::from_secs(10),
                connect_rate: 2000.0,
                nodes: 1,
            },
            sample_every: Duration::from_secs(10),
        };
        let mut json = None;
        let mut p = lexopt::Parser::from_iter(std::env::args().skip(1));
        let secs = |p: &mut lexopt::Parser| -> Result<Duration, String> {
            Duration::try_from_secs_f64(num(p)?).map_err(|e| e.to_string())
        };
        let l = &mut o.load;
        while let Some(arg) = p.next().map_err(|e| e.to_string())? {
            match arg {
                Long("server-bin") => l.server_bin = path(&mut p)?,
                Long("sockets") => l.sockets = num(&mut p)? as usize,
                Long("broadcasters") => l.broadcasters = num(&mut p)? as usize,
                Long("votes-per-sec") => l.votes_per_sec = num(&mut p)?,
                Long("duration") => l.duration = secs(&mut p)?,
                Long("warmup") => l.warmup = secs(&mut p)?,
                Long("connect-rate") => l.connect_rate = num(&mut p)?,
                Long("sample-every") => o.sample_every = secs(&mut p)?,
                Long("json") => json = Some(path(&mut p)?),
                Short('h') | Long("help") => {
                    print!("{HELP}");
                    return Ok(true);
                }
                other => return Err(other.unexpected().to_string()),
            }
        }
        let report = smol::block_on(bench::soak::run(&o))?;
        print!("{}", report.table());
        if let Some(path) = json {
            std::fs::write(&path, report.json()).map_err(|e| format!("{}: {e}", path.display()))?;
        }
        Ok(report.passed())
    };
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(2),
        Err(e) => {
            eprintln!("chatpulse-bench soak: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `floor [N] [RATE] [SECS]`: positional, bounded like the fan-out run.
fn floor() -> ExitCode {
    let arg = |i: usize, default: f64| {
        std::env::args().nth(i).map_or(Ok(default), |v| {
            v.parse::<f64>().map_err(|e| format!("{v}: {e}"))
        })
    };
    let run = || -> Result<(), String> {
        let (n, rate, secs) = (arg(2, 9_000.0)?, arg(3, 20_000.0)?, arg(4, 10.0)?);
        let report = smol::block_on(bench::floor::run(
            n as usize,
            rate,
            Duration::from_secs_f64(secs),
        ))?;
        print!("{}", report.table());
        Ok(())
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chatpulse-bench floor: {e}");
            ExitCode::FAILURE
        }
    }
}

fn parse() -> Result<(Options, Option<PathBuf>), String> {
    use lexopt::prelude::*;
    let mut o = Options {
        server_bin: PathBuf::from("target/release/chatpulse"),
        sockets: 1000,
        broadcasters: 100,
        votes_per_sec: 200.0,
        duration: Duration::from_secs(10),
        warmup: Duration::from_secs(2),
        connect_rate: 2000.0,
        nodes: 1,
    };
    let mut json = None;
    let mut p = lexopt::Parser::from_env();
    while let Some(arg) = p.next().map_err(|e| e.to_string())? {
        match arg {
            Long("server-bin") => o.server_bin = path(&mut p)?,
            Long("sockets") => o.sockets = num(&mut p)? as usize,
            Long("broadcasters") => o.broadcasters = num(&mut p)? as usize,
            Long("votes-per-sec") => o.votes_per_sec = num(&mut p)?,
            Long("duration") => o.duration = Duration::from_secs_f64(num(&mut p)?),
            Long("warmup") => o.warmup = Duration::from_secs_f64(num(&mut p)?),
            Long("connect-rate") => o.connect_rate = num(&mut p)?,
            Long("nodes") => o.nodes = (num(&mut p)? as usize).clamp(1, 5),
            Value(v) if v == "fanout" => {}
            Long("json") => json = Some(path(&mut p)?),
            Short('h') | Long("help") => {
                print!("{HELP}");
                std::process::exit(0);
            }
            other => return Err(other.unexpected().to_string()),
        }
    }
    Ok((o, json))
}

/// The number after an option.
fn num(p: &mut lexopt::Parser) -> Result<f64, String> {
    use lexopt::ValueExt;
    let v = p.value().map_err(|e| e.to_string())?;
    let v = v.string().map_err(|e| e.to_string())?;
    v.parse::<f64>().map_err(|e| format!("{v}: {e}"))
}

/// The path after an option.
fn path(p: &mut lexopt::Parser) -> Result<PathBuf, String> {
    p.value().map(PathBuf::from).map_err(|e| e.to_string())
}
