//! `gitspy-chaos run`: start the system, execute the scenario's steps while polling metrics, undo
//! faults, drain, then judge every delivery id and every check and write the reports.

pub mod judge;
pub mod steps;
pub mod system;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use rand::SeedableRng as _;

use crate::fault;
use crate::load::{PayloadGen, RunNonce, Sender, SenderConfig};
use crate::observe::{prom, Series};
use crate::report::{self, Format, RunReport};
use crate::scenario::{self, RedisBackend as ScenarioBackend, Scenario};
use crate::system::procs::find_gitspy_bin;
use crate::system::BackendKind;
use steps::{Ctx, Timeline};
use system::{System, SystemSpec};

/// How long the end-of-run drain may take before the verdict is taken anyway.
const FINAL_DRAIN: Duration = Duration::from_secs(120);
/// After the drain, the workers' job counters must stand still this long before the final
/// scrape: a worker whose finish reached Redis but whose answer did not (a partition healing,
/// a slow reply) counts that delivery on its next try — 500 ms later, or after a reconnect
/// backoff of at most 2 s — although Redis already says `processed` and the drain is over.
const SETTLE_QUIET: Duration = Duration::from_millis(2500);
/// The longest the final scrape waits for the counters to settle.
const SETTLE_MAX: Duration = Duration::from_secs(20);

/// Options of one run beyond the scenario file.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub backend: Option<BackendKind>,
    pub gitspy_bin: Option<PathBuf>,
    pub seed: Option<u64>,
    pub poll_interval: Option<Duration>,
    pub time_scale: f64,
    pub report_dir: PathBuf,
    /// A target profile file (the system's names); overrides the scenario's `target.profile`.
    pub profile: Option<PathBuf>,
    /// Test-only: start GitSpy with its duplicate checks off.
    pub target_disable_dedupe: bool,
    /// `--target-env KEY=VAL`, over each scenario's `target.env`.
    pub target_env: Vec<(String, String)>,
    /// `--store`: the board store of managed runs, over each scenario's `target.store`.
    pub store: Option<scenario::model::StoreKind>,
    /// How long the final drain (after the faults are undone) may take; `None`: 120 s.
    /// `explore` shortens it, so a liveness failure costs less than three minutes per run.
    pub final_drain: Option<Duration>,
    /// `--fail-fast`: stop at the first step that fails (a `wait` that timed out, a dead
    /// requeue that found nothing, ...), skip the final drain, and judge what happened so far.
    pub fail_fast: bool,
    /// `--max-wait`: caps the timeout of every `wait: {drained}` step and of the final drain.
    pub max_wait: Option<Duration>,
}

/// The run was interrupted by Ctrl-C (after tearing the system down).
#[derive(Debug, thiserror::Error)]
#[error("interrupted; the system under test was torn down")]
pub struct Interrupted;

/// The outcome of one scenario run.
pub struct RunOutcome {
    pub report: RunReport,
    pub dir: PathBuf,
}

/// `gitspy-chaos run`: loads and validates every scenario first, then runs them in order with
/// `opts`. The exit code is the worst verdict (0 passed, 1 a check failed, 2 could not run).
pub async fn run_cmd(scenarios: &[PathBuf], opts: RunOptions) -> anyhow::Result<ExitCode> {
    // Parse and validate every file first: a typo in the third file must not cost two runs.
    let mut loaded = Vec::new();
    let mut bad = 0;
    for path in scenarios {
        match scenario::load_and_validate(path) {
            Ok(s) => loaded.push((path.clone(), s)),
            Err(diags) => {
                bad += diags.len();
                for d in diags {
                    eprintln!("{d}");
                }
            }
        }
    }
    if bad > 0 {
        eprintln!("error: {bad} problem(s) in the scenario files; nothing was run");
        return Ok(ExitCode::from(2));
    }
    // Ctrl-C is caught from here on (also while the system starts): the run tears down first.
    let interrupt = tokio_util::sync::CancellationToken::new();
    {
        let interrupt = interrupt.clone();
        let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
            .context("installing the Ctrl-C handler")?;
        tokio::spawn(async move {
            if sigint.recv().await.is_some() {
                eprintln!("interrupted (Ctrl-C): tearing the system down");
                interrupt.cancel();
            }
        });
    }
    let mut code = 0u8;
    for (path, s) in loaded {
        if interrupt.is_cancelled() {
            return Ok(ExitCode::from(2));
        }
        match run_scenario(&path, &s, &opts, &interrupt).await {
            Ok(out) => {
                println!("{}", report::render_terminal(&out.report));
                println!("report: {}", out.dir.display());
                code = worse(code, out.report.verdict.exit_code());
            }
            Err(e) if e.is::<Interrupted>() => {
                eprintln!("error: {}: {e:#}", path.display());
                return Ok(ExitCode::from(2));
            }
            Err(e) => {
                eprintln!("error: {}: {e:#}", path.display());
                code = worse(code, 2);
            }
        }
    }
    Ok(ExitCode::from(code))
}

/// The exit code of several runs: could not run (2) over a failed check (1) over inconclusive
/// (3) over passed (0).
fn worse(a: u8, b: u8) -> u8 {
    let rank = |c: u8| match c {
        0 => 0,
        3 => 1,
        1 => 2,
        _ => 3,
    };
    if rank(b) > rank(a) {
        b
    } else {
        a
    }
}

fn scenario_backend(s: &Scenario) -> BackendKind {
    match s.target.value.redis.backend.value {
        ScenarioBackend::Docker => BackendKind::Docker,
        ScenarioBackend::Process => BackendKind::Process,
        ScenarioBackend::External => BackendKind::External,
        ScenarioBackend::Auto => BackendKind::Auto,
    }
}

/// Runs one (validated) scenario against a managed GitSpy and writes its reports.
pub async fn run_scenario(
    path: &Path,
    s: &Scenario,
    opts: &RunOptions,
    interrupt: &tokio_util::sync::CancellationToken,
) -> anyhow::Result<RunOutcome> {
    let s = s.scaled(opts.time_scale);
    let seed = opts.seed.or(s.seed).unwrap_or(0);
    let poll = opts
        .poll_interval
        .unwrap_or(s.observe.poll_interval.value.get());
    let backend = opts.backend.unwrap_or_else(|| scenario_backend(&s));
    let store = opts.store.unwrap_or(s.target.value.store);
    if store != scenario::model::StoreKind::Postgres
        && s.target.value.attach.is_none()
        && s.faults()
            .contains(&scenario::model::FaultKind::StoreTerminate)
    {
        anyhow::bail!(
            "scenario `{}` terminates PostgreSQL connections, but its store is {}\n\
             hint: set `target.store: postgres` or run with --store postgres",
            s.name.value,
            store.as_str()
        );
    }
    if let (false, None, Some(link)) = (
        store == scenario::model::StoreKind::Postgres,
        &s.target.value.attach,
        s.store_links().first(),
    ) {
        anyhow::bail!(
            "scenario `{}` puts a network fault on link `{link}`, but its store is {}: only a \
             PostgreSQL store is reached over the network\n\
             hint: set `target.store: postgres` or run with --store postgres",
            s.name.value,
            store.as_str()
        );
    }
    // Attach mode needs the binary only for replay steps; a missing one is reported there.
    let gitspy_bin = match (
        &s.target.value.attach,
        find_gitspy_bin(opts.gitspy_bin.as_deref()),
    ) {
        (_, Ok(b)) => b,
        (Some(_), Err(_)) => PathBuf::from("gitspy"),
        (None, Err(e)) => return Err(e),
    };
    if s.needs_failpoints() {
        let version = gitspy_version(&gitspy_bin).await.unwrap_or_default();
        if !fault::crash::has_failpoints(&version) {
            anyhow::bail!(
                "scenario `{}` arms crash points, but {} has no failpoints (`gitspy --version`: {})\n\
                 hint: build it with `{}` and pass it with --gitspy-bin",
                s.name.value,
                gitspy_bin.display(),
                if version.is_empty() { "no answer" } else { version.as_str() },
                fault::crash::BUILD_HINT
            );
        }
    }
    let prometheus = prometheus_preflight(&s).await?;
    let started = time::OffsetDateTime::now_utc();
    let name = s.name.value.clone();
    let run_dir = create_run_dir(&opts.report_dir, started, &name)?;
    let nonce = RunNonce::random();
    let run_id = format!(
        "{}-{}",
        run_dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("run"),
        nonce.as_str()
    );
    eprintln!(
        "run {run_id}: scenario {name} (seed {seed}, time scale {}), reports in {}",
        opts.time_scale,
        run_dir.display()
    );

    let profile = crate::system::profile::resolve_profile(
        opts.profile.as_deref(),
        path,
        s.target.value.profile.as_deref(),
    )?;
    let target_env = match &s.target.value.attach {
        None => system::effective_target_env(&profile.env, &s.target.value.env, &opts.target_env),
        Some(_) => Default::default(),
    };
    let system = start_system(
        &s,
        opts,
        backend,
        &gitspy_bin,
        &run_id,
        &run_dir,
        &profile,
        target_env.clone(),
        seed,
    )
    .await;
    let system = match system {
        Ok(sys) => sys,
        Err(e) => return Err(e.context("could not start the system under test")),
    };
    // A Ctrl-C during the start is handled below like one during the steps (partial report).
    let net_links = system.net.records();
    let redis_desc = system.redis.describe();
    let redis_kind = system.redis.kind();
    let concurrency = max_concurrency(&s.steps.value).max(1);
    let sender = Sender::new(SenderConfig {
        url: system.ingress_url(&profile.endpoints.webhooks),
        secret: Some(system.secret.clone()),
        rate: None,
        concurrency: concurrency as usize,
        timeout: Duration::from_secs(5),
    })?;
    let (repo, repo_id) = steps::run_repo(&nonce);
    let gen = PayloadGen::new(seed, nonce.clone(), &repo, repo_id)?;
    let mut ctx = Ctx::new(
        system,
        sender,
        gen,
        seed,
        nonce.clone(),
        rand::rngs::StdRng::seed_from_u64(seed),
        gitspy_bin.clone(),
        run_dir.join("replays"),
    )?;
    ctx.profile = profile;
    ctx.fail_fast = opts.fail_fast;
    ctx.max_wait = opts.max_wait;
    let ctx = Arc::new(ctx);
    // A managed Prometheus scrapes the processes just started (a failure undoes the start).
    let mut managed_prom = None;
    let prometheus = match prometheus {
        Some(p) => Some(p),
        None => match start_managed_prometheus(&s, path, &ctx, &run_dir).await {
            Ok(Some(m)) => {
                let client = m.client.clone();
                managed_prom = Some(m);
                Some(client)
            }
            Ok(None) => None,
            Err(e) => {
                ctx.sys.lock().await.teardown().await;
                return Err(e.context("could not start the managed Prometheus"));
            }
        },
    };

    // Poller: one scrape before the first step, then every `poll`, then one after the drain.
    let series = ctx.series.clone();
    let _ = scrape_all(&ctx, &series).await;
    let stop_poll = tokio_util::sync::CancellationToken::new();
    let poller = spawn_poller(ctx.clone(), poll, stop_poll.clone());

    // Steps, then undo what is still broken, then drain.
    let final_drain = opts.final_drain.unwrap_or(FINAL_DRAIN);
    let final_drain = opts
        .max_wait
        .map_or(final_drain, |cap| cap.min(final_drain));
    let (panicked, interrupted, drain) =
        run_steps_and_drain(&ctx, &s, interrupt, final_drain).await;
    ctx.finish_progress();
    let drained_at = prom::now_ms();
    stop_poll.cancel();
    let _ = poller.await;
    if drain.is_ok() {
        let settled = settle_and_scrape(&ctx, &series).await;
        ctx.say(settled);
    } else {
        let _ = scrape_all(&ctx, &series).await;
    }

    let (judged, timeline) = judge_with_efficacy(
        &ctx,
        &s,
        &series,
        &drain,
        drained_at,
        panicked,
        interrupted,
        prometheus,
    )
    .await;
    if let Some(m) = managed_prom.as_mut() {
        m.stop().await;
    }
    let finished = time::OffsetDateTime::now_utc();
    // Teardown before writing: the log tails are complete then.
    let processes = teardown_and_collect_logs(&ctx, &run_dir).await;
    let (verdict, error) = match &judged {
        Ok(j) => (RunReport::verdict_of(&j.checks), None),
        Err(e) => (report::Verdict::Error, Some(format!("{e:#}"))),
    };
    let mut j = judged.unwrap_or_default();
    if interrupted {
        j.ledger = sent_so_far(&ctx);
    }
    let mut run = RunReport {
        schema_version: report::SCHEMA_VERSION,
        tool: report::ToolInfo {
            name: "gitspy-chaos".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        },
        target: report::TargetInfo {
            links: net_links,
            store: s.target.value.attach.is_none().then(|| {
                opts.store
                    .unwrap_or(s.target.value.store)
                    .as_str()
                    .to_owned()
            }),
            ..target_info(
                &s,
                &gitspy_bin,
                format!("{} ({redis_desc})", redis_kind.as_str()),
                target_env,
            )
            .await
        },
        scenario: scenario_info(&s, path, seed, opts.time_scale, poll),
        started_at: rfc3339(started),
        finished_at: rfc3339(finished),
        duration_ms: (finished - started).whole_milliseconds().max(0) as u64,
        verdict,
        error,
        faults: timeline.faults,
        steps: timeline.steps,
        marks: timeline.marks,
        series: j.series,
        ledger: j.ledger,
        checks: j.checks,
        probe: j.probe,
        processes,
        replays: timeline.replays,
        interrupted,
    };
    summarize_logs(&mut run, &run_dir, ctx.t0_unix_ms);
    report::write_all(&run, &run_dir, &Format::ALL)?;
    let ledger_path = run_dir.join("ledger.json");
    let _ = ctx.sender.ledger().write(&ledger_path);
    if interrupted {
        eprintln!("partial report (interrupted): {}", run_dir.display());
        return Err(Interrupted.into());
    }
    Ok(RunOutcome {
        report: run,
        dir: run_dir,
    })
}

/// Starts the managed system (with `target_env`), or attaches to the running one the scenario
/// names.
#[allow(clippy::too_many_arguments)] // one call site; the run's facts, not options
async fn start_system(
    s: &Scenario,
    opts: &RunOptions,
    backend: BackendKind,
    gitspy_bin: &Path,
    run_id: &str,
    run_dir: &Path,
    profile: &crate::system::profile::Profile,
    target_env: std::collections::BTreeMap<String, String>,
    seed: u64,
) -> anyhow::Result<System> {
    match &s.target.value.attach {
        None => {
            System::start(SystemSpec {
                run_id,
                gitspy_bin,
                backend,
                container: s.target.value.redis.container.clone(),
                image: s.target.value.redis.image.clone(),
                workers: s.target.value.workers.value,
                spool: matches!(s.target.value.on_redis_down, scenario::OnRedisDown::Spool),
                dir: &run_dir.join("system"),
                disable_dedupe: opts.target_disable_dedupe,
                env: target_env,
                profile,
                seed,
                admin_address: s.target.value.admin_address,
                store: opts.store.unwrap_or(s.target.value.store),
            })
            .await
        }
        Some(a) => {
            let secret = std::env::var("GITHUB_WEBHOOK_SECRET").map_err(|_| {
                anyhow::anyhow!(
                    "attach mode signs webhooks with the deployment's secret\n\
                     hint: export GITHUB_WEBHOOK_SECRET=<the secret gitspy serve was started with>"
                )
            })?;
            let redis_url = s.target.value.redis.url.clone().unwrap_or_default();
            System::attach(
                run_id,
                gitspy_bin,
                backend,
                s.target.value.redis.container.clone(),
                &redis_url,
                system::AttachTarget {
                    server_url: a.server_url.clone(),
                    admin_url: a.admin_url.clone(),
                    server_metrics_urls: a.server_metrics_urls.clone(),
                    worker_urls: a.worker_metrics_urls.clone(),
                    worker_matcher: a.worker_process.clone(),
                    server_matcher: a.server_process.clone(),
                },
                secret,
                &run_dir.join("system"),
            )
            .await
        }
    }
}

/// Scrapes every process each `poll` until `stop` (the caller scrapes once before and once
/// after).
fn spawn_poller(
    ctx: Arc<Ctx>,
    poll: Duration,
    stop: tokio_util::sync::CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let series = ctx.series.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(poll) => { scrape_all(&ctx, &series).await; }
            }
        }
    })
}

/// Runs the steps, undoes the faults still in force and waits for the final drain. Ctrl-C stops
/// the steps (and the drain): the run then writes a partial report marked interrupted, in every
/// format, tears down and exits 2. Returns (a step panicked, interrupted, the drain's outcome).
async fn run_steps_and_drain(
    ctx: &Ctx,
    s: &Scenario,
    interrupt: &tokio_util::sync::CancellationToken,
    final_drain: Duration,
) -> (bool, bool, anyhow::Result<Duration>) {
    let steps_result = std::panic::AssertUnwindSafe(ctx.run_steps(&s.steps.value));
    let (panicked, mut interrupted) = tokio::select! {
        biased;
        _ = interrupt.cancelled() => (false, true),
        r = futures::FutureExt::catch_unwind(steps_result) => (r.is_err(), false),
    };
    ctx.undo_faults().await;
    let drain = if interrupted {
        Err(anyhow::anyhow!("interrupted"))
    } else if let Some(i) = ctx.stopped() {
        ctx.say(format!(
            "--fail-fast: step {i} failed; faults undone, the final drain skipped"
        ));
        Err(anyhow::anyhow!(
            "skipped: --fail-fast stopped the run when step {i} failed"
        ))
    } else {
        ctx.say("undoing faults done; waiting for the final drain".into());
        tokio::select! {
            d = ctx.wait_drained(final_drain) => d,
            _ = interrupt.cancelled() => {
                interrupted = true;
                Err(anyhow::anyhow!("interrupted"))
            }
        }
    };
    (panicked, interrupted, drain)
}

/// The Prometheus of `observe.prometheus { url }`, asked before anything starts: it must be ready
/// and accept every `promql` expression (a syntax error is Prometheus' `bad_data`), or the run
/// could not run (exit 2).
async fn prometheus_preflight(
    s: &Scenario,
) -> anyhow::Result<Option<crate::observe::prometheus::Prometheus>> {
    let Some(url) = s
        .observe
        .prometheus
        .as_ref()
        .and_then(|p| p.value.url.as_ref())
    else {
        return Ok(None);
    };
    let p = crate::observe::prometheus::Prometheus::new(&url.value).map_err(anyhow::Error::msg)?;
    p.ready().await.map_err(|e| {
        anyhow::anyhow!(
            "{e}\nhint: start it, or fix `observe.prometheus.url` (line {})",
            url.pos.line
        )
    })?;
    check_promql_syntax(&p, s).await?;
    Ok(Some(p))
}

/// `observe.prometheus: { managed: true }`: a Prometheus of the run's own scraping every process
/// of the system, with the scenario's rule files (relative to the scenario file).
async fn start_managed_prometheus(
    s: &Scenario,
    path: &Path,
    ctx: &Ctx,
    run_dir: &Path,
) -> anyhow::Result<Option<crate::system::prometheus::ManagedPrometheus>> {
    let Some(cfg) = s.observe.prometheus.as_ref().filter(|p| p.value.managed) else {
        return Ok(None);
    };
    let base = path.parent().unwrap_or(Path::new("."));
    let mut rules = Vec::new();
    for r in &cfg.value.rules {
        let file = base.join(&r.value);
        let abs = std::fs::canonicalize(&file).map_err(|e| {
            anyhow::anyhow!(
                "line {}: rule file {}: {e}\nhint: `rules` are relative to the scenario file",
                r.pos.line,
                file.display()
            )
        })?;
        rules.push(abs);
    }
    let interval = cfg
        .value
        .interval
        .as_ref()
        .map_or(Duration::from_secs(1), |d| d.value.get());
    let targets = ctx.sys.lock().await.metric_targets();
    let m = crate::system::prometheus::ManagedPrometheus::start(
        &run_dir.join("system").join("prometheus"),
        &targets,
        &rules,
        interval,
    )
    .await?;
    check_promql_syntax(&m.client, s).await?;
    ctx.say(format!(
        "managed Prometheus at {} scraping {} target(s) every {interval:?}",
        m.client.url(),
        targets.len()
    ));
    Ok(Some(m))
}

/// Lets Prometheus parse every `promql` expression: a syntax error (its `bad_data`) is exit 2.
async fn check_promql_syntax(
    p: &crate::observe::prometheus::Prometheus,
    s: &Scenario,
) -> anyhow::Result<()> {
    for c in s.checks.iter() {
        let scenario::Check::Promql(q) = &c.value else {
            continue;
        };
        if let Err(e) = p.query(&q.expr, prom::now_ms()).await {
            if e.contains("(bad_data)") {
                anyhow::bail!(
                    "line {}: `{}`: {e}\nhint: fix the PromQL expression",
                    q.expr.pos.line,
                    q.expr.value
                );
            }
        }
    }
    Ok(())
}

/// The judgement (none when interrupted), then what the faults hit — known only now that the
/// ledger and the final states are — with the `faults_effective` check added to the checks.
#[allow(clippy::too_many_arguments)] // one call site; the run's facts, not options
async fn judge_with_efficacy(
    ctx: &Ctx,
    s: &Scenario,
    series: &Mutex<Series>,
    drain: &anyhow::Result<Duration>,
    drained_at: u64,
    panicked: bool,
    interrupted: bool,
    prometheus: Option<crate::observe::prometheus::Prometheus>,
) -> (anyhow::Result<judge::Judged>, Timeline) {
    let mut judged = if interrupted {
        let done = ctx.timeline().steps.len();
        Err(anyhow::anyhow!(
            "interrupted (Ctrl-C) after {done} completed step(s): a partial report; nothing was judged"
        ))
    } else {
        judge::judge(
            ctx,
            s,
            series,
            judge::Ending {
                drain_error: drain.as_ref().err().map(|e| e.to_string()),
                drained_at_ms: drained_at,
                panicked,
                prometheus,
            },
        )
        .await
    };
    let mut timeline = std::mem::take(&mut *ctx.timeline());
    // What the faults hit, now that the ledger and the final states are known.
    let hit_lookups = lookup_ids(ctx, &fault::efficacy::hit_ids(&timeline.faults)).await;
    fault::efficacy::fill_after_run(
        &mut timeline.faults,
        &ctx.sender.ledger(),
        ctx.t0_unix_ms,
        ctx.now_ms(),
        &hit_lookups,
        judged.as_ref().ok().map(|j| &j.applied),
    );
    if let Ok(j) = judged.as_mut() {
        if let Some(c) = fault::efficacy::check(s, &timeline.faults) {
            j.checks.push(c);
        }
    }
    (judged, timeline)
}

/// Tears the system down and returns each managed process's log tail and full log file
/// (complete only after teardown, which is why it comes first; a Redis container's log is
/// saved just before, while the container exists).
async fn teardown_and_collect_logs(ctx: &Ctx, run_dir: &Path) -> Vec<report::ProcessLog> {
    let mut sys = ctx.sys.lock().await;
    let redis_dir = sys.dir.join("redis");
    let redis_log = sys.redis.keep_log(&redis_dir).await;
    sys.teardown().await;
    let mut v = vec![process_log(&sys.server, run_dir)];
    v.extend(sys.workers.iter().map(|w| process_log(w, run_dir)));
    if let Some(path) = redis_log {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        v.push(report::ProcessLog {
            role: "redis".into(),
            pid: None,
            restarts: 0,
            log_tail: lines[lines.len().saturating_sub(15)..].join("\n"),
            log_file: relative_to(&path, run_dir),
            log_summary: None,
        });
    }
    v
}

/// Fills each process's error/warning summary from its full log, per fault window.
fn summarize_logs(run: &mut RunReport, run_dir: &Path, t0_unix_ms: u64) {
    let (faults, end_ms) = (&run.faults, run.duration_ms);
    for p in &mut run.processes {
        let Some(file) = &p.log_file else { continue };
        let Ok(bytes) = std::fs::read(run_dir.join(file)) else {
            continue;
        };
        let text = String::from_utf8_lossy(&bytes);
        p.log_summary = Some(crate::observe::logs::summarize(
            &text, t0_unix_ms, end_ms, faults,
        ));
    }
}

/// `path` relative to `base` with `/` separators, when it lies inside it.
fn relative_to(path: &Path, base: &Path) -> Option<String> {
    let rel = path.strip_prefix(base).ok()?;
    let parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    Some(parts.join("/"))
}

/// What an interrupted run sent so far, without a verdict.
fn sent_so_far(ctx: &Ctx) -> report::LedgerSummary {
    let l = ctx.sender.ledger().summary();
    report::LedgerSummary {
        sent: l.sent,
        accepted: l.accepted,
        duplicates: l.duplicates,
        rejected: l.rejected,
        indeterminate: l.indeterminate,
        ..Default::default()
    }
}

/// What was tested: managed or attached, GitSpy's version, the Redis backend, the workers and
/// the env the harness gave them.
async fn target_info(
    s: &Scenario,
    gitspy_bin: &Path,
    redis_backend: String,
    env: std::collections::BTreeMap<String, String>,
) -> report::TargetInfo {
    report::TargetInfo {
        kind: if s.target.value.attach.is_some() {
            report::TargetKind::Attached
        } else {
            report::TargetKind::Managed
        },
        gitspy_version: gitspy_version(gitspy_bin).await,
        redis_backend,
        redis_version: None,
        workers: s.target.value.workers.value,
        env,
        store: None,
        links: Vec::new(),
    }
}

/// The scenario as run: the file, its text, the seed and pace actually used.
fn scenario_info(
    s: &Scenario,
    path: &Path,
    seed: u64,
    time_scale: f64,
    poll: Duration,
) -> report::ScenarioInfo {
    report::ScenarioInfo {
        name: s.name.value.clone(),
        description: s.description.clone(),
        file: path.display().to_string(),
        yaml: std::fs::read_to_string(path).unwrap_or_default(),
        seed,
        time_scale,
        poll_interval_ms: poll.as_millis() as u64,
    }
}

/// The lookups of `ids` (empty on any error: efficacy then says "not measured").
async fn lookup_ids(ctx: &Ctx, ids: &[String]) -> Vec<crate::verdict::classes::Lookup> {
    if ids.is_empty() {
        return Vec::new();
    }
    let r = ctx
        .http
        .post(format!(
            "{}{}",
            ctx.server_url, ctx.profile.endpoints.lookup
        ))
        .json(&serde_json::json!({ "ids": ids }))
        .send()
        .await;
    let Ok(r) = r else { return Vec::new() };
    let Ok(v) = r.json::<serde_json::Value>().await else {
        return Vec::new();
    };
    v["deliveries"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|d| serde_json::from_value(d).ok())
        .collect()
}

fn create_run_dir(
    root: &Path,
    started: time::OffsetDateTime,
    name: &str,
) -> anyhow::Result<PathBuf> {
    let base = report::run_dir_name(started, name);
    for n in 1..100 {
        let candidate = if n == 1 {
            root.join(&base)
        } else {
            root.join(format!("{base}-{n}"))
        };
        match std::fs::create_dir_all(root).and_then(|_| std::fs::create_dir(&candidate)) {
            Ok(()) => return Ok(candidate),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(e).with_context(|| format!("cannot create {}", candidate.display()))
            }
        }
    }
    anyhow::bail!("cannot find a free run directory under {}", root.display())
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn process_log(p: &crate::system::procs::ManagedProc, run_dir: &Path) -> report::ProcessLog {
    report::ProcessLog {
        role: p.role.name(),
        pid: p.pid,
        restarts: p.restarts,
        log_tail: p.log_tail(),
        log_file: Some(p.log_path())
            .filter(|f| f.exists())
            .and_then(|f| relative_to(f, run_dir)),
        log_summary: None,
    }
}

pub(crate) async fn gitspy_version(bin: &Path) -> Option<String> {
    let out = tokio::process::Command::new(bin)
        .arg("--version")
        .output()
        .await
        .ok()?;
    version_of(&String::from_utf8_lossy(&out.stdout))
}

/// The version from `gitspy --version`'s first line (`gitspy 0.1.0 (features: none)` →
/// `0.1.0 (features: none)`): reports print "gitspy <version>" themselves, so keeping the
/// program name gave "gitspy gitspy 0.1.0".
fn version_of(stdout: &str) -> Option<String> {
    let mut words = stdout.lines().next()?.split_whitespace().peekable();
    if words.peek() == Some(&"gitspy") {
        words.next();
    }
    let version = words.collect::<Vec<_>>().join(" ");
    (!version.is_empty()).then_some(version)
}

/// The sender's overall bound: the most requests the scenario's send steps may have in flight
/// at once (parallel branches add up; each step also keeps its own bound).
fn max_concurrency(steps: &[scenario::At<scenario::Step>]) -> u32 {
    steps
        .iter()
        .map(|s| step_concurrency(&s.value))
        .max()
        .unwrap_or(1)
}

fn step_concurrency(step: &scenario::Step) -> u32 {
    match step {
        scenario::Step::Send(x) => x.concurrency.value,
        scenario::Step::Parallel(p) => p.value.iter().map(|s| step_concurrency(&s.value)).sum(),
        scenario::Step::Repeat(r) => max_concurrency(&r.steps.value),
        _ => 1,
    }
}

/// The final scrape, once every live worker's job counters (`gitspy_jobs_*`) stood still for
/// [`SETTLE_QUIET`] (at most [`SETTLE_MAX`]): the verdict compares those counters with the
/// store, and a counter still moving after the drain would read as a miscount. Returns what to
/// tell the user.
async fn settle_and_scrape(ctx: &Ctx, series: &Mutex<Series>) -> String {
    let begin = std::time::Instant::now();
    let mut last = scrape_all(ctx, series).await;
    let mut still_since = std::time::Instant::now();
    loop {
        if still_since.elapsed() >= SETTLE_QUIET {
            return format!(
                "final scrape: the workers' counters stood still for {:.1}s ({:.1}s after the drain)",
                SETTLE_QUIET.as_secs_f64(),
                begin.elapsed().as_secs_f64()
            );
        }
        if begin.elapsed() >= SETTLE_MAX {
            return format!(
                "final scrape: the workers' counters were still moving {:.0}s after the drain; judged anyway",
                SETTLE_MAX.as_secs_f64()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = scrape_all(ctx, series).await;
        if job_counters(&now) != job_counters(&last) {
            still_since = std::time::Instant::now();
        }
        last = now;
    }
}

/// Per worker target, the sum of its `gitspy_jobs_*` counters (`None`: no answer).
fn job_counters(scrapes: &[(String, Option<prom::Scrape>)]) -> Vec<(String, Option<f64>)> {
    use prom::names;
    scrapes
        .iter()
        .filter(|(t, _)| t.starts_with("worker"))
        .map(|(t, s)| {
            let sum = s.as_ref().map(|s| {
                [
                    names::JOBS_PROCESSED,
                    names::JOBS_DUPLICATE,
                    names::JOBS_FAILED,
                    names::JOBS_RETRIED,
                ]
                .iter()
                .filter_map(|n| s.counter_where(n, &[]))
                .sum::<f64>()
            });
            (t.clone(), sum)
        })
        .collect()
}

/// Scrapes every process once into `series`; returns what each answered.
async fn scrape_all(ctx: &Ctx, series: &Mutex<Series>) -> Vec<(String, Option<prom::Scrape>)> {
    let targets = ctx.sys.lock().await.metric_targets();
    let scrapes = futures::future::join_all(
        targets
            .iter()
            .map(|(name, url)| prom::scrape_as(&ctx.http, url, name, &ctx.profile.metrics)),
    )
    .await;
    let mut s = match series.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    let mut out = Vec::new();
    for ((name, _), r) in targets.into_iter().zip(scrapes) {
        let r = r.ok();
        if let Some(r) = &r {
            s.push(r.clone());
        }
        out.push((name, r));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_counters_sum_the_workers_job_counters_and_ignore_the_server() {
        let w = prom::Scrape::parse(
            "worker-0",
            1,
            "gitspy_jobs_processed_total{event_type=\"issues\"} 3\ngitspy_jobs_duplicate_total{event_type=\"issues\"} 1\ngitspy_queue_waiting 9\n",
        )
        .unwrap();
        let srv = prom::Scrape::parse("server", 1, "gitspy_events_received_total 5\n").unwrap();
        let got = job_counters(&[
            ("server".into(), Some(srv)),
            ("worker-0".into(), Some(w)),
            ("worker-1".into(), None),
        ]);
        assert_eq!(
            got,
            vec![
                ("worker-0".to_string(), Some(4.0)),
                ("worker-1".to_string(), None)
            ]
        );
    }

    #[test]
    fn the_version_is_stored_without_the_program_name() {
        assert_eq!(version_of("gitspy 0.1.0\n").as_deref(), Some("0.1.0"));
        assert_eq!(
            version_of("gitspy 0.2.0 (features: failpoints)\nmore\n").as_deref(),
            Some("0.2.0 (features: failpoints)")
        );
        assert_eq!(version_of("1.2.3").as_deref(), Some("1.2.3"));
        assert_eq!(version_of(""), None);
        assert_eq!(version_of("gitspy \n"), None);
    }
}
