//! The `gitspy-chaos` binary: parse arguments, send logs to stderr, call the library, turn
//! errors into exit code 2. Everything else lives in the library (`src/lib.rs`).

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use gitspy_chaos::cli::{dispatch, Cli};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .init();
    match dispatch(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}
