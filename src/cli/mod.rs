//! The command line: `serve`, `demo`, `check-config`, `admin set-password`,
//! `mesh status` ([`mesh_status`]), `--version`, `--help`, each taking
//! `--config`, `--listen` and `--data-dir`.
//! Also the signal handling of a running node (first SIGTERM/SIGINT drains,
//! second exits) and the admin password shown once at a home node's first start.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

pub mod mesh_status;

use crate::config::{self, Config, Overrides};
use crate::server::{Mode, Server};
use crate::{BUILD, Error};

pub const HELP: &str = "\
chatpulse — a Twitch chat vote bar for OBS

USAGE:
    chatpulse [COMMAND] [OPTIONS]

COMMANDS:
    serve          run the server (default)
    demo           run the server with synthetic chat (no Twitch account needed)
    check-config   validate the configuration and exit
    admin set-password
                   set the dashboard's admin password (home mode): one line on
                   stdin, or --password-file PATH; at least 10 characters
    doctor URL     check a deployment the way the load-balancer guide does:
                   health, latency, WebSocket upgrade, TLS, and with --token an
                   idle overlay (up to 70 s, skip with --quick) and with two or
                   more --backend URLs the spread; prints fixes, exits 1 on a
                   problem
    mesh status    the cluster as the node on this machine sees it: members,
                   states, round trips (reads <data-dir>/cli.token: run it as
                   the node's user, with the node's --config/--data-dir)

OPTIONS:
    --config PATH     TOML config file (env CHATPULSE_CONFIG)
    --listen ADDR     listen address, default 0.0.0.0:8080 (env CHATPULSE_LISTEN)
    --data-dir DIR    data directory, default ./chatpulse-data (env CHATPULSE_DATA_DIR)
    --password-file PATH
                      admin set-password: read the password from this file's first line
    --token TOKEN     doctor: an overlay URL's token (its last path segment)
    --backend URL     doctor: one node behind the URL, directly (repeat per node)
    --quick           doctor: skip the idle-socket check
    --ca-file PATH    doctor: also trust this CA for https:// URLs
    -V, --version     print the version
    -h, --help        print this help
";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Serve,
    Demo,
    CheckConfig,
    /// `admin set-password [--password-file PATH]`
    SetPassword {
        password_file: Option<PathBuf>,
    },
    /// `mesh status`
    MeshStatus,
    /// `doctor URL [--token T] [--backend URL]... [--quick] [--ca-file PATH]`
    Doctor(crate::doctor::Options),
    Version,
    Help,
}

/// Parses arguments (without the program name).
pub fn parse(
    args: impl IntoIterator<Item = std::ffi::OsString>,
) -> Result<(Command, Overrides), Error> {
    use lexopt::prelude::*;
    let usage = |e: lexopt::Error| Error::Usage(format!("{e}\n\n{HELP}"));
    let mut parser = lexopt::Parser::from_args(args);
    let mut command = None;
    let mut o = Overrides::default();
    let mut password_file = None;
    let mut doctor = crate::doctor::Options::default();
    let mut doctor_flags = false;
    while let Some(arg) = parser.next().map_err(usage)? {
        match arg {
            Long("token") => {
                doctor.token = Some(parser.value().map_err(usage)?.string().map_err(usage)?);
                doctor_flags = true;
            }
            Long("backend") => {
                let b = parser.value().map_err(usage)?.string().map_err(usage)?;
                doctor.backends.push(b);
                doctor_flags = true;
            }
            Long("quick") => {
                doctor.quick = true;
                doctor_flags = true;
            }
            Long("ca-file") => {
                doctor.ca_file = Some(PathBuf::from(parser.value().map_err(usage)?));
                doctor_flags = true;
            }
            Long("config") => o.config_path = Some(PathBuf::from(parser.value().map_err(usage)?)),
            Long("listen") => {
                o.listen = Some(parser.value().map_err(usage)?.string().map_err(usage)?)
            }
            Long("data-dir") => o.data_dir = Some(PathBuf::from(parser.value().map_err(usage)?)),
            Long("password-file") => {
                password_file = Some(PathBuf::from(parser.value().map_err(usage)?))
            }
            Short('V') | Long("version") => command = Some(Command::Version),
            Short('h') | Long("help") => command = Some(Command::Help),
            Value(v) if command.is_none() => {
                command = Some(match v.string().map_err(usage)?.as_str() {
                    "serve" => Command::Serve,
                    "demo" => Command::Demo,
                    "check-config" => Command::CheckConfig,
                    "admin" => {
                        let sub = parser.value().map_err(usage)?.string().map_err(usage)?;
                        if sub != "set-password" {
                            let msg = format!("unknown admin command '{sub}'\n\n{HELP}");
                            return Err(Error::Usage(msg));
                        }
                        Command::SetPassword {
                            password_file: None,
                        }
                    }
                    "doctor" => {
                        doctor.url = parser.value().map_err(usage)?.string().map_err(usage)?;
                        Command::Doctor(Default::default())
                    }
                    "mesh" => {
                        let sub = parser.value().map_err(usage)?.string().map_err(usage)?;
                        if sub != "status" {
                            let msg = format!("unknown mesh command '{sub}'\n\n{HELP}");
                            return Err(Error::Usage(msg));
                        }
                        Command::MeshStatus
                    }
                    other => {
                        return Err(Error::Usage(format!("unknown command '{other}'\n\n{HELP}")));
                    }
                });
            }
            other => return Err(usage(other.unexpected())),
        }
    }
    let command = match (command.unwrap_or(Command::Serve), password_file) {
        (Command::SetPassword { .. }, file) => Command::SetPassword {
            password_file: file,
        },
        (_, Some(_)) => {
            let msg = format!("--password-file goes with `admin set-password`\n\n{HELP}");
            return Err(Error::Usage(msg));
        }
        (command, None) => command,
    };
    let command = match command {
        Command::Doctor(_) => Command::Doctor(doctor),
        _ if doctor_flags => {
            let msg =
                format!("--token, --backend, --quick and --ca-file go with `doctor`\n\n{HELP}");
            return Err(Error::Usage(msg));
        }
        command => command,
    };
    Ok((command, o))
}

pub fn load_config(o: &Overrides) -> Result<Config, Error> {
    let env: Vec<(String, String)> = std::env::vars().collect();
    Ok(config::load(o, &env)?)
}

/// Runs a serving command until a signal stops it.
pub fn run(command: Command, mut config: Config) -> Result<(), Error> {
    match command {
        Command::Version => println!("chatpulse {} ({})", BUILD.version, BUILD.commit),
        Command::Help => print!("{HELP}"),
        Command::CheckConfig => println!(
            "config OK: {} channel(s), listen {}",
            config.channels.len(),
            config.server.listen
        ),
        Command::SetPassword { password_file } => set_password(&config, password_file.as_deref())?,
        Command::MeshStatus => mesh_status::run(&config)?,
        Command::Doctor(options) => {
            let findings =
                smol::block_on(crate::doctor::examine(&options)).map_err(Error::Usage)?;
            print!("{}", crate::doctor::report(&options.url, &findings));
            let failed = findings
                .iter()
                .filter(|f| f.level == crate::doctor::Level::Fail)
                .count();
            if failed > 0 {
                return Err(Error::Check(format!("doctor: {failed} problem(s) found")));
            }
        }
        Command::Serve | Command::Demo => {
            let mode = if command == Command::Demo {
                Mode::Demo
            } else {
                Mode::Serve
            };
            if mode == Mode::Demo {
                // The demo is synthetic chat only: no Twitch connection.
                config.twitch.source = crate::config::ChatSourceKind::None;
            }
            if mode == Mode::Demo && config.channels.is_empty() {
                config.channels.push(config::ChannelSeed {
                    login: "demo".into(),
                    config: Default::default(),
                });
            }
            let home = config.auth.mode == crate::config::AuthMode::Home;
            let server = Server::start(config, mode)?;
            let addr = server.local_addr();
            for s in server.app().hub.streamers() {
                let host = if addr.ip().is_unspecified() {
                    format!("127.0.0.1:{}", addr.port())
                } else {
                    addr.to_string()
                };
                println!(
                    "{}",
                    server.app().overlay_url(&s.overlay_token, Some(&host))
                );
            }
            watch_signals(&server)?;
            if home {
                show_first_password(&server);
            }
            server.wait()?;
        }
    }
    Ok(())
}

/// `admin set-password`: reads the password, hashes it, stores it (audited).
fn set_password(config: &Config, file: Option<&Path>) -> Result<(), Error> {
    let line = match file {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| Error::Io(format!("reading {}", path.display()), e))?
            .lines()
            .next()
            .unwrap_or_default()
            .to_string(),
        None => {
            if std::io::stdin().is_terminal() {
                eprint!("New admin password (shown as you type; --password-file avoids that): ");
                let _ = std::io::stderr().flush();
            }
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .map_err(|e| Error::Io("reading stdin".into(), e))?;
            line
        }
    };
    let password = line.trim_end_matches(['\r', '\n']);
    crate::auth::password::check_new(password).map_err(Error::Usage)?;
    if config.auth.mode != crate::config::AuthMode::Home {
        eprintln!("note: auth.mode is \"twitch\"; the admin password is used in home mode only");
    }
    std::fs::create_dir_all(&config.data_dir).map_err(|e| {
        let what = format!("creating data dir {}", config.data_dir.display());
        Error::Io(what, e)
    })?;
    let path = config.data_dir.join(crate::store::sqlite::FILE_NAME);
    smol::block_on(async {
        let db = crate::store::sqlite::Db::open(&path).await?;
        let iterations = crate::auth::password::ITERATIONS;
        let set = crate::auth::set_admin_password(&db, password, iterations, "cli").await;
        db.close().await;
        set.map_err(Error::from)
    })?;
    println!("admin password set");
    Ok(())
}

/// Home mode without an admin password: one is generated, stored, and shown
/// here once (on stdout, never in the log).
fn show_first_password(server: &Server) {
    match smol::block_on(crate::auth::ensure_admin_password(&server.app().db)) {
        Ok(Some(password)) => {
            // Not println!: a reader that went away (a pipe closed) must not panic the node.
            let _ = writeln!(
                std::io::stdout(),
                "Dashboard admin password (shown once; change it with `chatpulse admin set-password`): {password}"
            );
        }
        Ok(None) => {}
        Err(e) => log::error!("auth: could not set a first admin password: {e}"),
    }
}

/// First SIGTERM/SIGINT starts a graceful shutdown; a second exits at once.
/// SIGHUP re-reads the `[tls]` certificate and key (a failure is logged and the
/// old certificate kept).
fn watch_signals(server: &Server) -> Result<(), Error> {
    use async_signal::{Signal, Signals};
    use futures_util::StreamExt;
    let mut signals = Signals::new([Signal::Term, Signal::Int, Signal::Hup])
        .map_err(|e| Error::Io("installing signal handlers".into(), e))?;
    let stop = server.stopper();
    let app = std::sync::Arc::clone(server.app());
    std::thread::Builder::new()
        .name("chatpulse-signals".into())
        .spawn(move || {
            smol::block_on(async {
                let mut stopping = false;
                while let Some(Ok(sig)) = signals.next().await {
                    match sig {
                        Signal::Hup => {
                            log::info!("received SIGHUP: reloading the TLS certificate");
                            let _ = app.reload_tls();
                        }
                        _ if stopping => {
                            log::warn!("second signal: exiting now");
                            std::process::exit(130);
                        }
                        _ => {
                            log::info!(
                                "received {sig:?}: shutting down gracefully (again to exit at once)"
                            );
                            stopping = true;
                            stop.stop();
                        }
                    }
                }
            })
        })
        .map_err(|e| Error::Io("spawning signal thread".into(), e))?;
    Ok(())
}
