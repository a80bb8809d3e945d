//! The command line: `serve`, `demo`, `check-config`, `--version`, `--help`,
//! each taking `--config`, `--listen` and `--data-dir`. Also the signal
//! handling of a running node (first SIGTERM/SIGINT drains, second exits).

use std::path::PathBuf;

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

OPTIONS:
    --config PATH     TOML config file (env CHATPULSE_CONFIG)
    --listen ADDR     listen address, default 0.0.0.0:8080 (env CHATPULSE_LISTEN)
    --data-dir DIR    data directory, default ./chatpulse-data (env CHATPULSE_DATA_DIR)
    -V, --version     print the version
    -h, --help        print this help
";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Serve,
    Demo,
    CheckConfig,
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
    while let Some(arg) = parser.next().map_err(usage)? {
        match arg {
            Long("config") => o.config_path = Some(PathBuf::from(parser.value().map_err(usage)?)),
            Long("listen") => {
                o.listen = Some(parser.value().map_err(usage)?.string().map_err(usage)?)
            }
            Long("data-dir") => o.data_dir = Some(PathBuf::from(parser.value().map_err(usage)?)),
            Short('V') | Long("version") => command = Some(Command::Version),
            Short('h') | Long("help") => command = Some(Command::Help),
            Value(v) if command.is_none() => {
                command = Some(match v.string().map_err(usage)?.as_str() {
                    "serve" => Command::Serve,
                    "demo" => Command::Demo,
                    "check-config" => Command::CheckConfig,
                    other => {
                        return Err(Error::Usage(format!("unknown command '{other}'\n\n{HELP}")));
                    }
                });
            }
            other => return Err(usage(other.unexpected())),
        }
    }
    Ok((command.unwrap_or(Command::Serve), o))
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
            server.wait()?;
        }
    }
    Ok(())
}

/// First SIGTERM/SIGINT starts a graceful shutdown; a second exits at once.
fn watch_signals(server: &Server) -> Result<(), Error> {
    use async_signal::{Signal, Signals};
    use futures_util::StreamExt;
    let mut signals = Signals::new([Signal::Term, Signal::Int])
        .map_err(|e| Error::Io("installing signal handlers".into(), e))?;
    let stop = server.stopper();
    std::thread::Builder::new()
        .name("chatpulse-signals".into())
        .spawn(move || {
            smol::block_on(async {
                if let Some(Ok(sig)) = signals.next().await {
                    log::info!(
                        "received {sig:?}: shutting down gracefully (again to exit at once)"
                    );
                    stop.stop();
                }
                if let Some(Ok(_)) = signals.next().await {
                    log::warn!("second signal: exiting now");
                    std::process::exit(130);
                }
            })
        })
        .map_err(|e| Error::Io("spawning signal thread".into(), e))?;
    Ok(())
}
