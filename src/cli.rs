//! The command line: every command and flag of SPEC §2.1 as clap types, and [`dispatch`], which
//! runs a parsed command and says which exit code it earned.
//!
//! Exit codes: 0 all good, 1 a check failed (`run`), 2 could not do the job (bad scenario file,
//! missing environment, a command this build does not have), 3 inconclusive (`run`: every check
//! passed but `faults_effective` — the faults hit nothing).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use comfy_table::{presets, ContentArrangement, Table};

use crate::run::RunOptions;
use crate::scenario::{self, Diagnostic, Dur, Scenario};
use crate::system::BackendKind;

/// Breaks GitSpy on purpose and proves nothing was lost or duplicated.
#[derive(Debug, Parser)]
#[command(name = "gitspy-chaos", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run scenarios against GitSpy; exit 0 all passed, 1 a check failed, 2 could not run,
    /// 3 inconclusive (the faults hit nothing, so the run proves nothing).
    ///
    /// Faults can wait for a condition and say what they hit, e.g.
    /// `fault: {worker: kill, which: random, when: {holding: 3}, within: 20s}` (also `backlog`,
    /// `spooled`, `in_flight_requests`); `worker: freeze|thaw` (SIGSTOP/SIGCONT). With a fault
    /// the check `faults_effective` (default `min: 1`) makes a run INCONCLUSIVE, never a pass,
    /// when its kills hit no in-flight delivery or its other faults (Redis stop, network toxic,
    /// store lock, graceful stop) met no request and no waiting delivery.
    ///
    /// Every run is judged on its data even where the scenario lists no such check (the
    /// baseline): `deliveries` lost/duplicated/unexpected at 0, `board_matches_model`,
    /// `duplicate_answers`, `processed_matches_store`, `ingress_matches_ledger` (the server's
    /// received/duplicate/rejected counters against the answers it gave), `no_stuck_locks` and
    /// the replay checks, each where the run can observe it; `checks: [baseline: false, …]`
    /// judges only what is listed.
    ///
    /// Network faults act on the TCP proxy the harness puts on every link of a managed run, e.g.
    /// `fault: {network: {link: server-redis, partition: true, for: 5s}}`; toxics `partition`,
    /// `reset`, `latency` (+ `jitter`), `bandwidth`, `slice`, `limit_data`, `slow_close`, `heal`;
    /// links `sender-server`, `server-redis`, `workers-redis`, `worker-<i>-redis`, `redis`, `all`,
    /// and with a PostgreSQL store `server-store`, `workers-store`, `worker-<i>-store`, `store`
    /// (e.g. `fault: {network: {link: workers-store, reset: true, for: 3s}}`);
    /// `direction: up|down|both`; `via: docker` disconnects the Redis container instead.
    ///
    /// PromQL checks ask a Prometheus that scrapes the system (`observe: {prometheus: {url:
    /// "http://127.0.0.1:9090"}}`) at the end of the run, e.g. `promql: {name: p95, expr:
    /// 'histogram_quantile(0.95, sum(rate(gitspy_job_duration_ms_bucket[5m])) by (le))', max:
    /// 500}`; bounds `min`, `max` or `equals`; `over: run` checks every sample of a range query
    /// over the run (`step`, default 1s). No data fails; an unreachable Prometheus is exit 2.
    /// `prometheus: {managed: true, rules: [alerts.yml], interval: 1s}` starts one for the run;
    /// `alert: {name: GitSpyRedisDown, fires_during: redis stop, resolves: true}` then checks
    /// from `ALERTS` that it fires in that fault's window and resolves after it (`never: true`:
    /// it never fires).
    Run(RunArgs),
    /// Generate scenarios from a seed and run them until one fails (exit 1) or the budget is
    /// spent (exit 0), then shrink the failure to a minimal scenario YAML, e.g.
    /// `gitspy-chaos explore --seed 7 --budget 30m --confirm 2/3`. Writes
    /// `<report-dir>/explore-<seed>/`: explore.json and explore.md (seed, faults, verdict and
    /// duration of each run), run-<i>.yaml, and minimal.yaml after a failure.
    Explore(crate::explore::ExploreArgs),
    /// Parse and check scenario files (no side effects); every error with file:line:column.
    Validate(ValidateArgs),
    /// Show the scenarios of a directory: name, description, faults, expected duration.
    List(ListArgs),
    /// Re-render a finished run's reports from its run.json.
    Report(ReportArgs),
    /// Send signed webhooks to a server, on their own, outside any scenario.
    Send(crate::load::SendArgs),
    /// Undo what an interrupted run left behind: containers, networks, processes.
    Cleanup(CleanupArgs),
    /// Check the environment: Docker and its API version, redis-server, the gitspy binary, ports.
    Doctor(DoctorArgs),
    /// Run one link of the network proxy by hand (the one `run` puts on every link of a managed
    /// run), until Ctrl-C: prints `proxy listening on ADDR -> UPSTREAM`, then its counters at
    /// the end. For measuring its overhead and trying toxics, e.g.
    /// `gitspy-chaos proxy 127.0.0.1:6379 --latency 200ms --jitter 50ms`.
    Proxy(ProxyArgs),
}

/// `gitspy-chaos run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Scenario files to run, in order.
    #[arg(required = true, value_name = "SCENARIO")]
    pub scenarios: Vec<PathBuf>,
    /// How to run Redis; overrides the scenario's `target.redis.backend` (not `external`).
    #[arg(long, value_enum)]
    pub backend: Option<BackendArg>,
    /// The gitspy binary. Default: `GITSPY_BIN`, else next to gitspy-chaos, else on `PATH`.
    #[arg(long, env = "GITSPY_BIN", value_name = "PATH")]
    pub gitspy_bin: Option<PathBuf>,
    /// Seed of every random choice; overrides the scenario's `seed`.
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Time between two metric scrapes, e.g. `5s`; overrides the scenario's `observe`.
    #[arg(long, value_name = "D")]
    pub poll_interval: Option<Dur>,
    /// Scale every pace of the scenario by F (fixed waits, sleeps, repeat periods and lengths,
    /// the period of each rate), e.g. `0.1` for a ten times quicker CI variant; deadlines and
    /// thresholds are kept. Recorded in the report.
    #[arg(long, value_name = "F", default_value = "1", value_parser = parse_time_scale)]
    pub time_scale: f64,
    /// Where run directories are written.
    #[arg(long, value_name = "DIR", default_value = "reports")]
    pub report_dir: PathBuf,
    /// Environment for every managed GitSpy process, over the scenario's `target.env` and the
    /// harness defaults (see `list`); repeatable, e.g. `--target-env GITSPY_CLAIM_IDLE=20s
    /// --target-env GITSPY_LOCK_TTL=20s`. Recorded in run.json.
    #[arg(long, value_name = "KEY=VAL", value_parser = parse_target_env)]
    pub target_env: Vec<(String, String)>,
    /// A target profile (YAML): the names of the system under test (Redis keys, metric names,
    /// states, env names, endpoints); overrides the scenario's `target.profile`. Default:
    /// GitSpy's, e.g. `--profile profiles/acme.yaml`.
    #[arg(long, value_name = "FILE")]
    pub profile: Option<PathBuf>,
    /// The board store of managed runs; overrides the scenario's `target.store`: `postgres`
    /// starts a PostgreSQL server for the run (needs the `postgresql` package), e.g.
    /// `run scenarios/01-smoke.yaml --store postgres`.
    #[arg(long, value_enum)]
    pub store: Option<StoreArg>,
    /// How long the final drain (after every fault is undone) may take before the run is judged
    /// anyway, e.g. `--final-drain 30s`. A system that never drains then fails `final_drain`.
    #[arg(long, value_name = "D", default_value = "120s")]
    pub final_drain: Dur,
    /// Stop at the first step that fails (a `wait` that timed out, a `dead_requeue` that found
    /// nothing, a send the system refused), skip the final drain and judge what happened so
    /// far: a failing run ends in seconds instead of waiting out every later timeout. Parallel
    /// branches finish the step they are in; the faults are undone as usual. The data checks
    /// judge the system as it was then: deliveries not yet processed read as lost.
    #[arg(long)]
    pub fail_fast: bool,
    /// Cap the timeout of every `wait: { drained: true }` step and of the final drain at D, e.g.
    /// `--fail-fast --max-wait 45s` for a CI job that must end quickly when the system stops
    /// draining. A system that needs longer to drain then fails those steps.
    #[arg(long, value_name = "D")]
    pub max_wait: Option<Dur>,
}

/// Board stores selectable on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StoreArg {
    /// A SQLite file in the run's directory.
    Sqlite,
    /// A PostgreSQL server the harness starts.
    Postgres,
}

pub(crate) fn parse_target_env(text: &str) -> Result<(String, String), String> {
    let (k, v) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}` is not KEY=VAL"))?;
    crate::run::system::check_target_env_key(k).map_err(|why| format!("`{k}`: {why}"))?;
    Ok((k.to_string(), v.to_string()))
}

/// Redis backends selectable on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendArg {
    /// A container through the Docker API.
    Docker,
    /// A `redis-server` child process.
    Process,
    /// Docker when available, else a process.
    Auto,
}

impl RunArgs {
    /// The engine's options from the flags (the engine never sees clap types).
    pub fn options(&self) -> RunOptions {
        RunOptions {
            backend: self.backend.map(|b| match b {
                BackendArg::Docker => BackendKind::Docker,
                BackendArg::Process => BackendKind::Process,
                BackendArg::Auto => BackendKind::Auto,
            }),
            gitspy_bin: self.gitspy_bin.clone(),
            seed: self.seed,
            poll_interval: self.poll_interval.map(|d| d.get()),
            time_scale: self.time_scale,
            report_dir: self.report_dir.clone(),
            profile: self.profile.clone(),
            target_disable_dedupe: std::env::var_os("GITSPY_CHAOS_TEST_TARGET_NO_DEDUPE").is_some(),
            target_env: self.target_env.clone(),
            store: self.store.map(|s| match s {
                StoreArg::Sqlite => crate::scenario::model::StoreKind::Sqlite,
                StoreArg::Postgres => crate::scenario::model::StoreKind::Postgres,
            }),
            final_drain: Some(self.final_drain.get()),
            fail_fast: self.fail_fast,
            max_wait: self.max_wait.map(|d| d.get()),
        }
    }
}

pub(crate) fn parse_time_scale(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(f) if f.is_finite() && f > 0.0 => Ok(f),
        _ => Err(format!(
            "`{text}` is not a positive number (e.g. 0.1 for ten times faster)"
        )),
    }
}

/// `gitspy-chaos validate`.
#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// Scenario files, or directories of `*.yaml` files.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
}

/// `gitspy-chaos list`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Directory of scenarios.
    #[arg(default_value = "scenarios", value_name = "DIR")]
    pub dir: PathBuf,
}

/// `gitspy-chaos report`.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// The run.json of a finished run.
    #[arg(value_name = "RUN_JSON")]
    pub run_json: PathBuf,
    /// Formats to write next to run.json, comma-separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "md,html,junit"
    )]
    pub format: Vec<crate::report::Format>,
}

/// `gitspy-chaos cleanup`.
#[derive(Debug, clap::Args)]
pub struct CleanupArgs {}

/// `gitspy-chaos doctor`.
#[derive(Debug, clap::Args)]
pub struct DoctorArgs {}

/// `gitspy-chaos proxy`.
#[derive(Debug, clap::Args)]
pub struct ProxyArgs {
    /// Where to forward every connection, `host:port`.
    #[arg(value_name = "UPSTREAM")]
    pub upstream: String,
    /// Listen on this port of 127.0.0.1 (default: a free one).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Delay every chunk, both ways, e.g. `200ms`.
    #[arg(long, value_parser = gitspy_contract::units::duration_arg)]
    pub latency: Option<std::time::Duration>,
    /// With `--latency`: ± this much, uniform, seeded by `--seed`.
    #[arg(long, value_parser = gitspy_contract::units::duration_arg)]
    pub jitter: Option<std::time::Duration>,
    /// Seed of the jitter.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// Run a parsed command. `Ok` carries the exit code of a command that did its job (including
/// "2: the files are invalid", already explained on stderr); `Err` is a failure to print as
/// `error: …` with exit code 2.
pub fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Validate(args) => validate(&args),
        Command::Explore(args) => crate::explore::explore_cmd(args),
        Command::List(args) => list(&args),
        Command::Run(args) => {
            runtime()?.block_on(crate::run::run_cmd(&args.scenarios, args.options()))
        }
        Command::Report(args) => {
            crate::report::report_cmd(&args.run_json, &args.format, None)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Send(args) => {
            let url = args.url.clone();
            // On a runtime worker, not the main thread: every request task the send loop spawns
            // then lands in that worker's own queue instead of the shared one with a thread
            // wake-up (a futex call) per request.
            let done = runtime()?.block_on(async {
                tokio::spawn(crate::load::send_cmd(args))
                    .await
                    .context("the send task failed")?
            })?;
            match crate::load::send_outcome(&done, &url) {
                Ok(()) => Ok(ExitCode::SUCCESS),
                Err(failure) => {
                    eprintln!("error: {}", failure.message);
                    Ok(ExitCode::from(failure.code))
                }
            }
        }
        Command::Proxy(args) => {
            runtime()?.block_on(crate::netproxy::proxy_cmd(
                &args.upstream,
                args.port,
                args.latency,
                args.jitter,
                args.seed,
            ))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Cleanup(_) => {
            let done = runtime()?.block_on(crate::run::system::cleanup())?;
            if done.is_empty() {
                println!("nothing to clean up");
            }
            for line in done {
                println!("{line}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Doctor(_) => runtime()?.block_on(doctor()),
    }
}

/// Loads every scenario under `paths`; prints each problem to stderr.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// `gitspy-chaos doctor`: what this machine can run, and how to get what is missing.
async fn doctor() -> anyhow::Result<ExitCode> {
    let mut table = Table::new();
    table
        .load_preset(presets::UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(["check", "ok", "detail", "hint"]);
    let checks = crate::system::doctor(crate::system::DEFAULT_IMAGE).await;
    let mut redis_ok = false;
    let mut docker_ok = false;
    for c in &checks {
        if c.name.contains("redis-server") && c.ok {
            redis_ok = true;
        }
        if c.name.contains("image") && c.ok {
            docker_ok = true;
        }
        table.add_row([
            c.name.clone(),
            if c.ok { "yes" } else { "no" }.to_string(),
            c.detail.clone(),
            c.hint.clone().unwrap_or_default(),
        ]);
    }
    let bin = crate::system::procs::find_gitspy_bin(None);
    table.add_row([
        "gitspy binary".to_string(),
        if bin.is_ok() { "yes" } else { "no" }.to_string(),
        bin.as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|e| format!("{e}").lines().next().unwrap_or("").to_string()),
        if bin.is_ok() {
            String::new()
        } else {
            "cargo build -p gitspy, or --gitspy-bin / GITSPY_BIN".into()
        },
    ]);
    let port = std::net::TcpListener::bind("127.0.0.1:0").map(|l| l.local_addr().map(|a| a.port()));
    table.add_row([
        "free loopback port".to_string(),
        if port.is_ok() { "yes" } else { "no" }.to_string(),
        match &port {
            Ok(Ok(p)) => format!("127.0.0.1:{p}"),
            _ => "cannot bind 127.0.0.1:0".into(),
        },
        String::new(),
    ]);
    writeln!(std::io::stdout().lock(), "{table}").context("writing to stdout")?;
    if bin.is_ok() && (redis_ok || docker_ok) {
        Ok(ExitCode::SUCCESS)
    } else {
        Ok(ExitCode::from(2))
    }
}

fn load_all(paths: &[PathBuf]) -> anyhow::Result<(Vec<(PathBuf, Scenario)>, usize)> {
    let (files, unreadable) = scenario::collect_files(paths);
    let mut stderr = std::io::stderr().lock();
    print_diagnostics(&mut stderr, &unreadable)?;
    let mut good = Vec::new();
    let mut problems = unreadable.len();
    for file in files {
        match scenario::load_and_validate(&file) {
            Ok(s) => good.push((file, s)),
            Err(diags) => {
                problems += diags.len();
                print_diagnostics(&mut stderr, &diags)?;
            }
        }
    }
    Ok((good, problems))
}

fn print_diagnostics(out: &mut impl Write, diags: &[Diagnostic]) -> anyhow::Result<()> {
    for d in diags {
        writeln!(out, "{d}").context("writing to stderr")?;
    }
    Ok(())
}

fn validate(args: &ValidateArgs) -> anyhow::Result<ExitCode> {
    let (good, problems) = load_all(&args.paths)?;
    let mut stdout = std::io::stdout().lock();
    for (file, s) in &good {
        writeln!(stdout, "{}: ok ({})", file.display(), s.name.value)
            .context("writing to stdout")?;
    }
    if problems > 0 {
        let plural = if problems == 1 { "" } else { "s" };
        eprintln!("error: {problems} problem{plural} found");
        return Ok(ExitCode::from(2));
    }
    if good.is_empty() {
        anyhow::bail!("no scenario files found (looked for *.yaml and *.yml)");
    }
    Ok(ExitCode::SUCCESS)
}

fn list(args: &ListArgs) -> anyhow::Result<ExitCode> {
    let (good, problems) = load_all(std::slice::from_ref(&args.dir))?;
    let mut table = Table::new();
    table
        .load_preset(presets::UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(["name", "description", "faults", "expected duration"]);
    for (_, s) in &good {
        let faults: Vec<String> = s.faults().iter().map(ToString::to_string).collect();
        let faults = if faults.is_empty() {
            "none".to_owned()
        } else {
            faults.join(", ")
        };
        // Whole seconds are precise enough for "how long will this take".
        let secs = s.estimated_run_time().as_secs_f64().round() as u64;
        table.add_row([
            s.name.value.clone(),
            s.description.clone(),
            faults,
            Dur::secs(secs).to_string(),
        ]);
    }
    let defaults: Vec<String> =
        crate::run::system::default_target_env(&gitspy_contract::EnvNames::default())
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
    writeln!(
        std::io::stdout().lock(),
        "{table}\nmanaged GitSpy processes get {} unless `target.env` or `run --target-env` says otherwise",
        defaults.join(" ")
    )
    .context("writing to stdout")?;
    if problems > 0 {
        eprintln!("error: some scenarios are invalid; run `gitspy-chaos validate` on them");
        return Ok(ExitCode::from(2));
    }
    Ok(ExitCode::SUCCESS)
}
