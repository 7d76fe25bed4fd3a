//! `gitspy`: parse the command line, initialise logging (stderr), run the command.

use std::process::ExitCode;

use clap::Parser as _;
use gitspy::config::{Cli, Command, HealthcheckArgs};

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("GITSPY_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_ansi(std::env::var_os("NO_COLOR").is_none())
        .init();
    // Crash points (FAILPOINTS) and sabotage (GITSPY_SABOTAGE): both refused by a build without
    // the feature, so a chaos run can never silently test something other than it asked for.
    if !matches!(cli.command, Command::Healthcheck(_)) {
        if let Err(e) =
            gitspy::failpoints::init_from_env().and_then(|()| gitspy::sabotage::init_from_env())
        {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    if let Command::Replay(args) = &cli.command {
        // Synchronous: SQLite reads and file writes only.
        return match gitspy::replay::run(args) {
            Ok(gitspy::replay::Outcome::Ok) => ExitCode::SUCCESS,
            Ok(gitspy::replay::Outcome::Differs(diff)) => {
                eprintln!("error: verify: {diff}");
                ExitCode::from(1)
            }
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(2)
            }
        };
    }
    let result = rt.block_on(async move {
        match cli.command {
            Command::Serve(args) => gitspy::server::run(args, gitspy::shutdown_on_signals()).await,
            Command::Worker(args) => gitspy::worker::run(args, gitspy::shutdown_on_signals()).await,
            Command::Healthcheck(args) => healthcheck(args).await,
            Command::Dead(args) => gitspy::dead::run(args).await,
            // Run synchronously above, before the runtime.
            Command::Replay(_) => Ok(()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// A minimal HTTP/1.1 GET so the healthcheck needs no shell and no curl in the image.
async fn healthcheck(args: HealthcheckArgs) -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let rest = args
        .url
        .strip_prefix("http://")
        .ok_or_else(|| anyhow::anyhow!("only http:// URLs are supported, got `{}`", args.url))?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let fut = async {
        let mut s = tokio::net::TcpStream::connect(hostport).await?;
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await?;
        Ok::<_, std::io::Error>(buf)
    };
    let buf = tokio::time::timeout(args.timeout, fut)
        .await
        .map_err(|_| anyhow::anyhow!("{} did not answer within {:?}", args.url, args.timeout))??;
    let status_line = String::from_utf8_lossy(&buf[..buf.len().min(64)]).into_owned();
    if status_line.starts_with("HTTP/1.1 200") || status_line.starts_with("HTTP/1.0 200") {
        Ok(())
    } else {
        anyhow::bail!(
            "{} answered `{}`",
            args.url,
            status_line.lines().next().unwrap_or("")
        )
    }
}
