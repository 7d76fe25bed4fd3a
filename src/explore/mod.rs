//! `gitspy-chaos explore`: generate scenarios from a seed ([`generate`]), run them one after
//! another through the normal run engine until one fails or the budget is spent, then shrink
//! the failing one ([`shrink`]) to a minimal scenario YAML that reproduces the failure.
//!
//! Everything lands in one directory, `<report-dir>/explore-<seed>/`: `run-<i>.yaml` (each
//! generated scenario), `runs/` (each run's usual report), `explore.json` + `explore.md` (the
//! summary table), and after a failure `minimal.yaml` (validates, ready to copy into
//! `scenarios/`) with `shrink/` (the candidates' reports).

pub mod generate;
pub mod shrink;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use comfy_table::{presets, ContentArrangement, Table};
use serde::Serialize;

use crate::cli::BackendArg;
use crate::report::Verdict;
use crate::run::RunOptions;
use crate::scenario::{self, Dur, Scenario};
use crate::system::BackendKind;

pub use generate::{generate, run_seed, Bounds};
pub use shrink::{candidates, shrink, size};

/// `gitspy-chaos explore`.
#[derive(Debug, clap::Args)]
pub struct ExploreArgs {
    /// Seed of the exploration: the same seed generates the same sequence of scenarios.
    #[arg(long, value_name = "N")]
    pub seed: u64,
    /// Stop starting new runs after this long, e.g. `30m` (a run already started finishes).
    #[arg(long, value_name = "D", default_value = "30m")]
    pub budget: Dur,
    /// Stop after this many runs.
    #[arg(long, value_name = "N")]
    pub runs: Option<u64>,
    /// Run only the scenario of this run seed (printed for every run): a replay of one run.
    #[arg(long, value_name = "RUN_SEED")]
    pub only: Option<u64>,
    /// Most episodes (fault or send blocks) per generated scenario.
    #[arg(long, value_name = "N", default_value = "3")]
    pub max_episodes: u32,
    /// Most deliveries of one generated send.
    #[arg(long, value_name = "N", default_value = "40")]
    pub max_count: u32,
    /// Leave crash points out of the grammar even with a failpoints build (e.g. to keep a
    /// known false alarm of one check out of the way while looking for other failures).
    #[arg(long)]
    pub no_crash_points: bool,
    /// A candidate counts as failing when it fails K of M tries, e.g. `2/3` (recorded).
    #[arg(long, value_name = "K/M", default_value = "2/3", value_parser = parse_confirm)]
    pub confirm: (u32, u32),
    /// Time for shrinking a failure, e.g. `15m`; `0s` skips shrinking.
    #[arg(long, value_name = "D", default_value = "20m")]
    pub shrink_budget: Dur,
    /// How to run Redis (default: each scenario's `auto`).
    #[arg(long, value_enum)]
    pub backend: Option<BackendArg>,
    /// The gitspy binary. Default: `GITSPY_BIN`, else next to gitspy-chaos, else on `PATH`.
    /// A failpoints build (`gitspy --version` says so) adds crash points to the grammar.
    #[arg(long, env = "GITSPY_BIN", value_name = "PATH")]
    pub gitspy_bin: Option<PathBuf>,
    /// Environment for every managed GitSpy process, as for `run`, e.g.
    /// `--target-env GITSPY_SABOTAGE=drop-one-in-twenty`; repeatable.
    #[arg(long, value_name = "KEY=VAL", value_parser = crate::cli::parse_target_env)]
    pub target_env: Vec<(String, String)>,
    /// Scale every pace of the generated scenarios (as `run --time-scale`).
    #[arg(long, value_name = "F", default_value = "1", value_parser = crate::cli::parse_time_scale)]
    pub time_scale: f64,
    /// How long each run's final drain (after its faults are undone) may take, e.g. `45s`
    /// (`run` allows 120 s). A liveness failure waits it out in every run and every shrink
    /// candidate; a correct GitSpy drains within seconds once the faults are healed.
    #[arg(long, value_name = "D", default_value = "45s")]
    pub final_drain: Dur,
    /// Where the exploration directory is written.
    #[arg(long, value_name = "DIR", default_value = "reports")]
    pub report_dir: PathBuf,
}

fn parse_confirm(text: &str) -> Result<(u32, u32), String> {
    let bad = || format!("`{text}` is not K/M with 1 <= K <= M, e.g. 2/3");
    let (k, m) = text.split_once('/').ok_or_else(bad)?;
    let k: u32 = k.trim().parse().map_err(|_| bad())?;
    let m: u32 = m.trim().parse().map_err(|_| bad())?;
    if k == 0 || k > m {
        return Err(bad());
    }
    Ok((k, m))
}

/// One run of the exploration, as the summary records it.
#[derive(Debug, Clone, Serialize)]
pub struct RunRow {
    /// 0-based position in the exploration.
    pub index: u64,
    /// The run seed: the scenario and its `seed:`.
    pub seed: u64,
    /// The generated scenario file.
    pub scenario: PathBuf,
    /// Steps of the scenario.
    pub steps: usize,
    /// The faults it injects.
    pub faults: Vec<String>,
    /// `PASSED`, `FAILED`, `INCONCLUSIVE` or `ERROR`.
    pub verdict: String,
    /// Names of the checks that failed.
    pub failed_checks: Vec<String>,
    /// Wall time of the run.
    pub duration_ms: u64,
    /// The run's report directory (absent when it could not start).
    pub report: Option<PathBuf>,
    /// Why it could not run, for `ERROR`.
    pub error: Option<String>,
    /// Replays this run alone.
    pub replay: String,
}

/// The shrinking of a failure, as recorded.
#[derive(Debug, Clone, Serialize)]
pub struct ShrinkSummary {
    /// The minimal scenario file.
    pub minimal: PathBuf,
    /// Its steps (nested counted), and those of the original.
    pub steps: usize,
    /// Steps of the failing generated scenario.
    pub original_steps: usize,
    /// The failed checks it reproduces.
    pub reproduces: Vec<String>,
    /// `k/m` a candidate needed.
    pub confirm: String,
    /// Failed runs out of runs of the minimal scenario in its final confirmation.
    pub reproduced: String,
    /// Whether shrinking ran to its end (else the shrink budget stopped it).
    pub complete: bool,
    /// Every candidate tried.
    pub attempts: Vec<shrink::Attempt>,
}

/// `explore.json`.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub seed: u64,
    pub budget: String,
    pub bounds: String,
    pub target_env: Vec<String>,
    pub runs: Vec<RunRow>,
    /// The index of the first failing run.
    pub found: Option<u64>,
    pub shrink: Option<ShrinkSummary>,
}

struct Explorer {
    args: ExploreArgs,
    opts: RunOptions,
    dir: PathBuf,
    rt: tokio::runtime::Runtime,
    interrupt: tokio_util::sync::CancellationToken,
    n_shrink: u64,
}

/// The outcome of running one scenario once.
struct Outcome {
    verdict: Verdict,
    failed: Vec<String>,
    report: Option<PathBuf>,
    error: Option<String>,
}

impl Explorer {
    fn run_once(&self, path: &Path, s: &Scenario, report_dir: &Path) -> Outcome {
        let mut opts = self.opts.clone();
        opts.report_dir = report_dir.to_path_buf();
        let r = self
            .rt
            .block_on(crate::run::run_scenario(path, s, &opts, &self.interrupt));
        match r {
            Ok(out) => Outcome {
                verdict: out.report.verdict,
                failed: out
                    .report
                    .checks
                    .iter()
                    .filter(|c| !c.passed)
                    .map(|c| c.name.clone())
                    .collect(),
                report: Some(out.dir),
                error: None,
            },
            Err(e) => Outcome {
                verdict: Verdict::Error,
                failed: Vec::new(),
                report: None,
                error: Some(format!("{e:#}")),
            },
        }
    }

    fn replay_cmd(&self, run_seed: u64) -> String {
        let mut c = format!(
            "gitspy-chaos explore --seed {} --only {run_seed} --max-episodes {} --max-count {}",
            self.args.seed, self.args.max_episodes, self.args.max_count
        );
        if let Some(b) = &self.args.gitspy_bin {
            c.push_str(&format!(" --gitspy-bin {}", b.display()));
        }
        for (k, v) in &self.args.target_env {
            c.push_str(&format!(" --target-env {k}={v}"));
        }
        if let Some(b) = self
            .args
            .backend
            .and_then(|b| clap::ValueEnum::to_possible_value(&b))
        {
            c.push_str(&format!(" --backend {}", b.get_name()));
        }
        if self.args.no_crash_points {
            c.push_str(" --no-crash-points");
        }
        if self.args.final_drain != Dur::secs(45) {
            c.push_str(&format!(" --final-drain {}", self.args.final_drain));
        }
        if self.args.time_scale != 1.0 {
            c.push_str(&format!(" --time-scale {}", self.args.time_scale));
        }
        c
    }
}

fn write_scenario(path: &Path, s: &Scenario, header: &str) -> anyhow::Result<()> {
    let yaml = scenario::load::to_yaml(s)?;
    let text = format!("{header}{yaml}");
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// `gitspy-chaos explore`: exit 0 nothing found, 1 a failure found (and shrunk), 2 could not
/// run.
pub fn explore_cmd(args: ExploreArgs) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let interrupt = tokio_util::sync::CancellationToken::new();
    {
        let interrupt = interrupt.clone();
        let _guard = rt.enter();
        let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
            .context("installing the Ctrl-C handler")?;
        rt.spawn(async move {
            if sigint.recv().await.is_some() {
                eprintln!("interrupted (Ctrl-C): tearing the system down");
                interrupt.cancel();
            }
        });
    }
    let bin = crate::system::procs::find_gitspy_bin(args.gitspy_bin.as_deref())?;
    let version = rt
        .block_on(crate::run::gitspy_version(&bin))
        .unwrap_or_default();
    let bounds = Bounds {
        max_episodes: args.max_episodes.max(1),
        max_count: args.max_count.max(1),
        max_workers: 2,
        failpoints: !args.no_crash_points && crate::fault::crash::has_failpoints(&version),
    };
    // A replay of one run gets its own directory: the exploration's summary stays as it was.
    let dir = match args.only {
        None => args.report_dir.join(format!("explore-{}", args.seed)),
        Some(run) => args
            .report_dir
            .join(format!("explore-{}-only-{run}", args.seed)),
    };
    std::fs::create_dir_all(dir.join("runs"))
        .with_context(|| format!("creating {}", dir.display()))?;
    let opts = RunOptions {
        backend: args.backend.map(|b| match b {
            BackendArg::Docker => BackendKind::Docker,
            BackendArg::Process => BackendKind::Process,
            BackendArg::Auto => BackendKind::Auto,
        }),
        gitspy_bin: Some(bin.clone()),
        seed: None,
        poll_interval: None,
        time_scale: args.time_scale,
        report_dir: dir.join("runs"),
        profile: None,
        target_disable_dedupe: false,
        target_env: args.target_env.clone(),
        store: None,
        final_drain: Some(args.final_drain.get()),
        fail_fast: false,
        max_wait: None,
    };
    let mut ex = Explorer {
        args,
        opts,
        dir,
        rt,
        interrupt,
        n_shrink: 0,
    };
    let mut summary = Summary {
        seed: ex.args.seed,
        budget: ex.args.budget.to_string(),
        bounds: format!(
            "≤ {} episodes, ≤ {} deliveries per send, ≤ {} workers, final drain {}, crash points: {}",
            bounds.max_episodes,
            bounds.max_count,
            bounds.max_workers,
            ex.args.final_drain,
            match (bounds.failpoints, ex.args.no_crash_points) {
                (true, _) => "yes",
                (false, true) => "no (--no-crash-points)",
                (false, false) => "no (not a failpoints build)",
            }
        ),
        target_env: ex
            .args
            .target_env
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect(),
        runs: Vec::new(),
        found: None,
        shrink: None,
    };
    eprintln!(
        "explore: seed {}, budget {}, {}; writing {}",
        ex.args.seed,
        ex.args.budget,
        summary.bounds,
        ex.dir.display()
    );
    let started = Instant::now();
    let mut failing: Option<(u64, Scenario, PathBuf, Vec<String>)> = None;
    for index in 0.. {
        if ex.interrupt.is_cancelled()
            || started.elapsed() >= ex.args.budget.get()
            || ex.args.runs.is_some_and(|n| index >= n)
            || (ex.args.only.is_some() && index > 0)
        {
            break;
        }
        let seed = ex
            .args
            .only
            .unwrap_or_else(|| run_seed(ex.args.seed, index));
        let s = generate(seed, &bounds);
        let file = ex.dir.join(format!("run-{index}.yaml"));
        let replay = ex.replay_cmd(seed);
        write_scenario(
            &file,
            &s,
            &format!(
                "# explore --seed {} run {index}; replay: {replay}\n",
                ex.args.seed
            ),
        )?;
        let t0 = Instant::now();
        let out = ex.run_once(&file, &s, &ex.dir.join("runs"));
        let row = RunRow {
            index,
            seed,
            scenario: file.clone(),
            steps: size(&s),
            faults: s.faults().iter().map(ToString::to_string).collect(),
            verdict: out.verdict.label().to_string(),
            failed_checks: out.failed.clone(),
            duration_ms: t0.elapsed().as_millis() as u64,
            report: out.report,
            error: out.error.clone(),
            replay,
        };
        eprintln!(
            "explore: run {index} (seed {seed}): {}{} in {:.1}s — replay: {}",
            row.verdict,
            if row.failed_checks.is_empty() {
                String::new()
            } else {
                format!(" [{}]", row.failed_checks.join(", "))
            },
            row.duration_ms as f64 / 1000.0,
            row.replay
        );
        if let Some(e) = &out.error {
            eprintln!("explore: run {index} could not run: {e}");
        }
        summary.runs.push(row);
        write_summary(&ex.dir, &summary)?;
        if out.verdict == Verdict::Error && index == 0 {
            // The environment cannot run anything: say so instead of burning the budget.
            print_table(&summary)?;
            return Ok(ExitCode::from(2));
        }
        if out.verdict == Verdict::Failed {
            failing = Some((index, s, file, out.failed));
            break;
        }
    }
    let Some((index, s, _file, failed)) = failing else {
        print_table(&summary)?;
        println!(
            "explore: nothing failed in {} run(s); summary: {}",
            summary.runs.len(),
            ex.dir.join("explore.json").display()
        );
        return Ok(if ex.interrupt.is_cancelled() {
            ExitCode::from(2)
        } else {
            ExitCode::SUCCESS
        });
    };
    summary.found = Some(index);
    if !ex.args.shrink_budget.is_zero() {
        summary.shrink = Some(shrink_failure(&mut ex, &s, &failed)?);
    }
    write_summary(&ex.dir, &summary)?;
    print_table(&summary)?;
    println!(
        "explore: run {index} FAILED [{}]; summary: {}",
        failed.join(", "),
        ex.dir.join("explore.json").display()
    );
    if let Some(sh) = &summary.shrink {
        println!(
            "explore: minimal scenario ({} steps, from {}; reproduced {}; confirm {}): {}",
            sh.steps,
            sh.original_steps,
            sh.reproduced,
            sh.confirm,
            sh.minimal.display()
        );
    }
    Ok(ExitCode::from(1))
}

/// Shrinks the failing `s`; a candidate fails when it fails `k` of `m` runs with at least one of
/// the checks that failed originally.
fn shrink_failure(
    ex: &mut Explorer,
    s: &Scenario,
    failed: &[String],
) -> anyhow::Result<ShrinkSummary> {
    let (k, m) = ex.args.confirm;
    let shrink_dir = ex.dir.join("shrink");
    std::fs::create_dir_all(&shrink_dir)?;
    let deadline = Instant::now() + ex.args.shrink_budget.get();
    let mut reproduced = String::new();
    let confirm = |ex: &mut Explorer, cand: &Scenario| -> anyhow::Result<Option<(u32, u32)>> {
        ex.n_shrink += 1;
        let file = shrink_dir.join(format!("candidate-{}.yaml", ex.n_shrink));
        write_scenario(&file, cand, "")?;
        let (mut fails, mut runs) = (0u32, 0u32);
        while runs < m {
            if ex.interrupt.is_cancelled() || Instant::now() >= deadline {
                return Ok(None);
            }
            let out = ex.run_once(&file, cand, &shrink_dir);
            runs += 1;
            if out.verdict == Verdict::Failed && out.failed.iter().any(|f| failed.contains(f)) {
                fails += 1;
            }
            if fails >= k || fails + (m - runs) < k {
                break;
            }
        }
        Ok(Some((fails, runs)))
    };
    let mut err = None;
    let result = shrink::shrink(s, |cand| match confirm(ex, cand) {
        Ok(Some((fails, runs))) => {
            eprintln!("shrink: {} steps: failed {fails}/{runs}", size(cand));
            if fails >= k {
                reproduced = format!("{fails}/{runs}");
                shrink::Verdict::Fails
            } else {
                shrink::Verdict::Passes
            }
        }
        Ok(None) => shrink::Verdict::Stop,
        Err(e) => {
            err = Some(e);
            shrink::Verdict::Stop
        }
    });
    if let Some(e) = err {
        return Err(e);
    }
    if reproduced.is_empty() {
        reproduced = format!("1/1 (the original run; no smaller candidate failed {k}/{m})");
    }
    let minimal = ex.dir.join("minimal.yaml");
    let mut min = result.scenario.clone();
    min.name.value = format!("found-{}", min.seed.unwrap_or(0));
    min.description = format!(
        "found by `gitspy-chaos explore --seed {}` and shrunk: fails {}",
        ex.args.seed,
        failed.join(", ")
    );
    write_scenario(
        &minimal,
        &min,
        &format!(
            "# Found by gitspy-chaos explore --seed {} (target env: {}); shrunk from {} to {} steps.\n\
             # Reproduces: {} (reproduced {reproduced}, a candidate needed {k}/{m} failing runs).\n",
            ex.args.seed,
            if ex.args.target_env.is_empty() {
                "none".to_string()
            } else {
                ex.args
                    .target_env
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            },
            size(s),
            size(&result.scenario),
            failed.join(", ")
        ),
    )?;
    Ok(ShrinkSummary {
        minimal,
        steps: size(&result.scenario),
        original_steps: size(s),
        reproduces: failed.to_vec(),
        confirm: format!("{k}/{m}"),
        reproduced,
        complete: result.complete,
        attempts: result.attempts,
    })
}

fn write_summary(dir: &Path, summary: &Summary) -> anyhow::Result<()> {
    let json = serde_json::to_string_pretty(summary)?;
    std::fs::write(dir.join("explore.json"), json)?;
    std::fs::write(dir.join("explore.md"), table(summary).to_string())?;
    Ok(())
}

fn table(summary: &Summary) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(["run", "seed", "faults", "verdict", "duration"]);
    for r in &summary.runs {
        t.add_row([
            r.index.to_string(),
            r.seed.to_string(),
            if r.faults.is_empty() {
                "none".into()
            } else {
                r.faults.join(", ")
            },
            if r.failed_checks.is_empty() {
                r.verdict.clone()
            } else {
                format!("{} ({})", r.verdict, r.failed_checks.join(", "))
            },
            format!("{:.1}s", Duration::from_millis(r.duration_ms).as_secs_f64()),
        ]);
    }
    t
}

fn print_table(summary: &Summary) -> anyhow::Result<()> {
    writeln!(std::io::stdout().lock(), "{}", table(summary)).context("writing to stdout")
}
