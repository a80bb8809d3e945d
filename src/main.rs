//! `chatpulse`: parse the command line, load config, start logging, run,
//! and map the result to an exit code.

use std::process::ExitCode;

use chatpulse::cli::{self, Command};

fn main() -> ExitCode {
    chatpulse::malloc::limit_arenas();
    let (command, overrides) = match cli::parse(std::env::args_os().skip(1)) {
        Ok(parsed) => parsed,
        Err(e) => {
            eprintln!("chatpulse: {e}");
            return ExitCode::from(2);
        }
    };
    if matches!(command, Command::Version | Command::Help) {
        let _ = cli::run(command, Default::default());
        return ExitCode::SUCCESS;
    }
    let config = match cli::load_config(&overrides) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("chatpulse: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = chatpulse::logger::init(config.log.level, config.log.format) {
        eprintln!("chatpulse: logging: {e}");
    }
    match cli::run(command, config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            eprintln!("chatpulse: {e}");
            ExitCode::FAILURE
        }
    }
}
