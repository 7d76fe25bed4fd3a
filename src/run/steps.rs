//! Executes a scenario's steps in order, `parallel:` blocks concurrently and `repeat:` blocks on
//! their period, recording every step, mark and fault window for the report.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt as _;
use rand::rngs::StdRng;
use tokio::time::Instant;

use super::system::System;
use crate::load::{Duplicates, PayloadGen, RunNonce, Sender};
use crate::observe::prom::{self, names};
use crate::report::{FaultWindow, Mark, ReplayRecord, StepRecord};
use crate::scenario::model::{Expect, RedisAction, Replay, Send, Step, Wait};

/// The repository every generated payload belongs to.
pub const RUN_REPO: &str = "gitspy-chaos/board";
pub const RUN_REPO_ID: u64 = 424242;

/// Shared state of one run's step execution.
pub struct Ctx {
    pub sys: tokio::sync::Mutex<System>,
    /// Every scrape of the run (the poller's, and one right before each process fault).
    pub series: std::sync::Arc<Mutex<crate::observe::Series>>,
    pub server_url: String,
    pub sender: Sender,
    pub gen: Mutex<PayloadGen>,
    pub seed: u64,
    pub nonce: RunNonce,
    pub rng: Mutex<StdRng>,
    pub t0: Instant,
    pub t0_unix_ms: u64,
    pub log: Mutex<Timeline>,
    pub gitspy_bin: PathBuf,
    pub db: PathBuf,
    pub replay_dir: PathBuf,
    pub http: reqwest::Client,
    pub kills: AtomicU32,
    step_counter: AtomicU32,
    /// Whether Redis is currently down on purpose (for undoing faults at the end).
    pub redis_down: Mutex<Option<RedisAction>>,
    /// Attached processes a `freeze` stopped (thawed by `thaw` or at the end).
    pub attach_frozen: Mutex<
        Vec<(
            crate::system::attach::MatchedProc,
            crate::scenario::ProcessMatcher,
        )>,
    >,
    /// The store lock a `store` fault holds, if any.
    pub store_lock: Mutex<Option<crate::fault::store::HeldLock>>,
    /// Network faults in force without `for` (healed by `heal: true` or at the end).
    pub net_faults: Mutex<Vec<crate::fault::network::Active>>,
    /// A spinner on a terminal; `None` writes plain stderr lines (CI logs, pipes).
    progress: Option<indicatif::ProgressBar>,
    /// The names of the system under test (GitSpy's unless the scenario or `--profile` says).
    pub profile: gitspy_contract::Profile,
}

/// Everything the steps record.
#[derive(Default)]
pub struct Timeline {
    pub steps: Vec<StepRecord>,
    pub marks: Vec<Mark>,
    pub marks_unix: BTreeMap<String, u64>,
    pub faults: Vec<FaultWindow>,
    pub replays: Vec<ReplayRecord>,
    /// name → (output dir, dry run, verify exit ok)
    pub replay_out: BTreeMap<String, (PathBuf, bool, Option<bool>)>,
    /// Step expectations that did not hold (a failed check of their own).
    pub problems: Vec<String>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

impl Ctx {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        sys: System,
        sender: Sender,
        gen: PayloadGen,
        seed: u64,
        nonce: RunNonce,
        rng: StdRng,
        gitspy_bin: PathBuf,
        replay_dir: PathBuf,
    ) -> anyhow::Result<Ctx> {
        let server_url = sys.server_url("");
        let db = sys.dir.join("gitspy.db");
        Ok(Ctx {
            sys: tokio::sync::Mutex::new(sys),
            series: std::sync::Arc::new(Mutex::new(crate::observe::Series::new())),
            server_url,
            sender,
            gen: Mutex::new(gen),
            seed,
            nonce,
            rng: Mutex::new(rng),
            t0: Instant::now(),
            t0_unix_ms: prom::now_ms(),
            log: Mutex::new(Timeline::default()),
            gitspy_bin,
            db,
            replay_dir,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .no_proxy()
                .build()?,
            kills: AtomicU32::new(0),
            step_counter: AtomicU32::new(0),
            redis_down: Mutex::new(None),
            attach_frozen: Mutex::new(Vec::new()),
            store_lock: Mutex::new(None),
            net_faults: Mutex::new(Vec::new()),
            progress: progress_bar(),
            profile: gitspy_contract::Profile::default(),
        })
    }

    /// One line of progress: above the spinner on a terminal, a plain stderr line otherwise.
    pub fn say(&self, line: String) {
        match &self.progress {
            Some(pb) => {
                pb.println(&line);
                pb.set_message(line);
            }
            None => eprintln!("{line}"),
        }
    }

    pub fn finish_progress(&self) {
        if let Some(pb) = &self.progress {
            pb.finish_and_clear();
        }
    }

    pub fn now_ms(&self) -> u64 {
        self.t0.elapsed().as_millis() as u64
    }

    pub fn timeline(&self) -> std::sync::MutexGuard<'_, Timeline> {
        lock(&self.log)
    }

    /// Runs steps in order.
    pub fn run_steps<'a>(&'a self, steps: &'a [crate::scenario::At<Step>]) -> BoxFuture<'a, ()> {
        async move {
            for s in steps {
                self.run_step(&s.value).await;
            }
        }
        .boxed()
    }

    fn run_step<'a>(&'a self, step: &'a Step) -> BoxFuture<'a, ()> {
        async move {
            let index = self.step_counter.fetch_add(1, Ordering::SeqCst) + 1;
            // Test-only: proves a panic inside a step still tears the system down.
            if std::env::var("GITSPY_CHAOS_TEST_PANIC_AT_STEP")
                .ok()
                .and_then(|v| v.parse::<u32>().ok())
                == Some(index)
            {
                panic!("GITSPY_CHAOS_TEST_PANIC_AT_STEP={index}");
            }
            let start = self.now_ms();
            let (kind, description) = describe(step);
            tracing::info!(step = index, %kind, %description, "step");
            eprintln!(
                "[{:>7.1}s] step {index}: {kind} {description}",
                start as f64 / 1000.0
            );
            let result: anyhow::Result<String> = match step {
                Step::Send(s) => self.send(s).await,
                Step::Wait(w) => self.wait(w).await,
                Step::Sleep(d) => {
                    tokio::time::sleep(d.value.get()).await;
                    Ok(String::new())
                }
                Step::Mark(name) => {
                    let at = self.now_ms();
                    let mut t = self.timeline();
                    t.marks.push(Mark {
                        name: name.value.clone(),
                        at_ms: at,
                    });
                    t.marks_unix
                        .insert(name.value.clone(), self.t0_unix_ms + at);
                    Ok(String::new())
                }
                Step::Fault(f) => crate::fault::run(self, f).await,
                Step::Redeliver(_) => self.redeliver().await,
                Step::DeadRequeue(_) => crate::fault::store::dead_requeue(self).await,
                Step::Replay(r) => self.replay(r, index).await,
                Step::Parallel(steps) => {
                    let futs = steps.value.iter().map(|s| self.run_step(&s.value));
                    futures::future::join_all(futs).await;
                    Ok(String::new())
                }
                Step::Repeat(r) => {
                    let begin = Instant::now();
                    let every = r.every.value.get();
                    let rounds = r.rounds();
                    for round in 0..rounds {
                        tokio::time::sleep_until(begin + every.mul_f64(round as f64)).await;
                        self.run_steps(&r.steps.value).await;
                    }
                    Ok(format!("{rounds} rounds"))
                }
            };
            let end = self.now_ms();
            let (ok, note) = match result {
                Ok(note) => (true, note),
                Err(e) => {
                    let msg = format!("step {index} ({kind}): {e:#}");
                    self.say(format!("[{:>7.1}s] {msg}", end as f64 / 1000.0));
                    self.timeline().problems.push(msg);
                    (false, format!("{e:#}"))
                }
            };
            self.timeline().steps.push(StepRecord {
                index,
                kind: kind.to_string(),
                description,
                start_ms: start,
                end_ms: Some(end),
                ok,
                note,
            });
        }
        .boxed()
    }

    async fn send(&self, s: &Send) -> anyhow::Result<String> {
        let dups = match &s.duplicates {
            Some(d) => Duplicates {
                same: s.same,
                copies: d.copies.value,
                fraction: d.fraction.value,
            },
            None => Duplicates {
                same: s.same,
                copies: 0,
                fraction: 0.0,
            },
        };
        let count = s.count() as usize;
        let plan = match &s.events {
            Some(mix) => {
                // A mix has its own generator (ids stay unique: the nonce gets a suffix).
                let events: Vec<String> = mix
                    .value
                    .iter()
                    .filter(|(_, w)| **w > 0)
                    .map(|(e, _)| e.clone())
                    .collect();
                let n = self.step_counter.load(Ordering::SeqCst);
                let nonce = RunNonce::new(format!("{}m{n}", self.nonce.as_str()));
                let mut g =
                    PayloadGen::new(self.seed ^ u64::from(n), nonce, RUN_REPO, RUN_REPO_ID)?
                        .with_events(&events)?;
                g.plan(count, &dups)
            }
            None => lock(&self.gen).plan(count, &dups),
        };
        let rate = s.rate.map(|r| r.per_second());
        let report = self.sender.send_at(plan, rate).await?;
        let sum = report.summary();
        let note = format!(
            "sent {}, accepted {}, duplicates {}, rejected {}, indeterminate {}{}",
            sum.sent,
            sum.accepted,
            sum.duplicates,
            sum.rejected,
            sum.indeterminate,
            if report.slipped > 0 {
                format!(", {} started late (concurrency)", report.slipped)
            } else {
                String::new()
            }
        );
        let ok_2xx = sum.accepted + sum.duplicates;
        match s.expect {
            Expect::Accepted if ok_2xx != sum.sent => {
                anyhow::bail!("expected every request accepted: {note}")
            }
            Expect::Rejected if ok_2xx != 0 => {
                anyhow::bail!("expected every request rejected: {note}")
            }
            _ => Ok(note),
        }
    }

    /// Drained: nothing waiting, nothing pending, spool empty — read from the server's gauges
    /// (absent gauges, i.e. Redis down, are not drained).
    pub async fn is_drained(&self) -> bool {
        let url = format!("{}/metrics/prom", self.server_url);
        match prom::scrape_as(&self.http, &url, "server", &self.profile.metrics).await {
            Ok(s) => {
                s.gauge(names::REDIS_UP) == Some(1.0)
                    && s.gauge(names::QUEUE_WAITING) == Some(0.0)
                    && s.gauge(names::QUEUE_ACTIVE) == Some(0.0)
                    && s.gauge(names::SPOOL_DEPTH).unwrap_or(0.0) == 0.0
            }
            Err(_) => false,
        }
    }

    pub async fn wait_drained(&self, timeout: Duration) -> anyhow::Result<Duration> {
        let begin = Instant::now();
        loop {
            if self.is_drained().await {
                return Ok(begin.elapsed());
            }
            if begin.elapsed() > timeout {
                anyhow::bail!("the system did not drain within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn wait(&self, w: &Wait) -> anyhow::Result<String> {
        if w.drained {
            let took = self.wait_drained(w.timeout().get()).await?;
            Ok(format!("drained after {:.1}s", took.as_secs_f64()))
        } else if let Some(d) = &w.duration {
            tokio::time::sleep(d.value.get()).await;
            Ok(String::new())
        } else {
            Ok(String::new())
        }
    }

    async fn redeliver(&self) -> anyhow::Result<String> {
        let report = self.sender.redeliver_failed().await?;
        let s = report.summary();
        Ok(format!(
            "redelivered {}: accepted {}, duplicates {}, rejected {}, indeterminate {}",
            s.sent, s.accepted, s.duplicates, s.rejected, s.indeterminate
        ))
    }

    /// Scrapes one process now (before it is killed or stopped), so its counters are known up to
    /// the fault: what it counts after this scrape and before the signal is all that is lost.
    pub async fn scrape_one(&self, name: &str, url: &str) {
        if let Ok(scrape) = prom::scrape_as(&self.http, url, name, &self.profile.metrics).await {
            lock(&self.series).push(scrape);
        }
    }

    /// Undoes faults still in force (see [`crate::fault::heal_all`]).
    pub async fn undo_faults(&self) {
        crate::fault::heal_all(self).await;
    }

    async fn replay(&self, r: &Replay, index: u32) -> anyhow::Result<String> {
        let name = r.name_or_default(index as usize);
        let (from, to) = {
            let t = self.timeline();
            let bound = |m: &Option<crate::scenario::At<String>>| -> anyhow::Result<Option<u64>> {
                match m {
                    None => Ok(None),
                    Some(m) => t
                        .marks_unix
                        .get(&m.value)
                        .copied()
                        .map(Some)
                        .ok_or_else(|| {
                            anyhow::anyhow!("mark `{}` was not set before this replay", m.value)
                        }),
                }
            };
            (bound(&r.from)?, bound(&r.to)?)
        };
        let out = self.replay_dir.join(&name);
        let mut cmd = tokio::process::Command::new(&self.gitspy_bin);
        cmd.arg("replay")
            .arg("--db")
            .arg(&self.db)
            .kill_on_drop(true);
        if let Some(f) = from {
            cmd.arg("--from").arg(f.to_string());
        }
        let to_ms = to.unwrap_or_else(|| prom::now_ms() + 1);
        cmd.arg("--to").arg(to_ms.to_string());
        if let Some(repo) = &r.repo {
            cmd.arg("--repo").arg(repo);
        }
        if r.dry_run {
            cmd.arg("--dry-run");
        } else {
            cmd.arg("--out").arg(&out);
        }
        if let Some(prev) = &r.state_from {
            let t = self.timeline();
            let (dir, _, _) = t
                .replay_out
                .get(&prev.value)
                .ok_or_else(|| anyhow::anyhow!("replay `{}` has not run", prev.value))?;
            cmd.arg("--state").arg(dir.join("replay-state.json"));
        }
        if r.verify {
            cmd.arg("--verify");
        }
        let output = tokio::time::timeout(Duration::from_secs(300), cmd.output())
            .await
            .map_err(|_| anyhow::anyhow!("gitspy replay did not finish within 300 s"))??;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        let verify_ok = r.verify.then_some(output.status.success());
        let mut digests = BTreeMap::new();
        if !r.dry_run && output.status.success() {
            if let Ok(entries) = std::fs::read_dir(&out) {
                for e in entries.flatten() {
                    let p = e.path();
                    if p.to_string_lossy().ends_with(".kanban.json") {
                        let parsed = std::fs::read(&p)
                            .ok()
                            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
                        if let Some(v) = parsed {
                            let repo = v["repo"].as_str().unwrap_or_default().to_string();
                            let d = v["digest"].as_str().unwrap_or_default().to_string();
                            digests.insert(repo, d);
                        }
                    }
                }
            }
        } else if r.dry_run {
            // Dry-run lines carry the digest: keep them as the record.
            for line in stdout.lines() {
                if let Some(i) = line.find("sha256:") {
                    let repo = line.split_whitespace().next().unwrap_or("").to_string();
                    digests.insert(
                        repo,
                        line[i..]
                            .split_whitespace()
                            .next()
                            .unwrap_or("")
                            .to_string(),
                    );
                }
            }
        }
        {
            let mut t = self.timeline();
            t.replays.push(ReplayRecord {
                name: name.clone(),
                from: r
                    .from
                    .as_ref()
                    .map(|m| m.value.clone())
                    .unwrap_or_else(|| "beginning".into()),
                to: r
                    .to
                    .as_ref()
                    .map(|m| m.value.clone())
                    .unwrap_or_else(|| "end".into()),
                dry_run: r.dry_run,
                digests,
            });
            t.replay_out
                .insert(name.clone(), (out, r.dry_run, verify_ok));
        }
        if !output.status.success() && !r.verify {
            anyhow::bail!("gitspy replay failed: {}", stderr.trim());
        }
        if verify_ok == Some(false) {
            return Ok(format!("verify found a difference: {}", stdout.trim()));
        }
        Ok(stdout.lines().take(5).collect::<Vec<_>>().join("; "))
    }
}

/// A spinner when stderr is a terminal (and `NO_COLOR`/CI do not ask for plain output).
fn progress_bar() -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal as _;
    if !std::io::stderr().is_terminal() || std::env::var_os("CI").is_some() {
        return None;
    }
    let pb = indicatif::ProgressBar::new_spinner();
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{spinner} {elapsed_precise} {wide_msg}")
    {
        pb.set_style(style);
    }
    pb.enable_steady_tick(Duration::from_millis(200));
    Some(pb)
}

fn describe(step: &Step) -> (&'static str, String) {
    match step {
        Step::Send(s) => (
            "send",
            format!(
                "{} deliveries{}{}{}",
                s.count(),
                s.rate.map(|r| format!(" at {r}")).unwrap_or_default(),
                if s.same { ", one id" } else { "" },
                s.duplicates
                    .as_ref()
                    .map(|d| format!(
                        ", duplicates x{} ({:.0}%)",
                        d.copies.value,
                        d.fraction.value * 100.0
                    ))
                    .unwrap_or_default()
            ),
        ),
        Step::Wait(w) if w.drained => ("wait", format!("drained (timeout {})", w.timeout())),
        Step::Wait(w) => (
            "wait",
            w.duration
                .as_ref()
                .map(|d| d.value.to_string())
                .unwrap_or_default(),
        ),
        Step::Sleep(d) => ("sleep", d.value.to_string()),
        Step::Mark(m) => ("mark", m.value.clone()),
        Step::Fault(f) => (
            "fault",
            format!(
                "{}{}",
                f.kind().map(|k| k.to_string()).unwrap_or_default(),
                f.when
                    .map(|w| format!(" when {w} (within {})", f.within()))
                    .unwrap_or_default()
            ),
        ),
        Step::Redeliver(_) => ("redeliver", "failed".into()),
        Step::DeadRequeue(_) => ("dead_requeue", "all".into()),
        Step::Replay(r) => (
            "replay",
            format!(
                "{} [{}, {}){}{}",
                r.name.as_ref().map(|n| n.value.clone()).unwrap_or_default(),
                r.from
                    .as_ref()
                    .map(|m| m.value.clone())
                    .unwrap_or_else(|| "start".into()),
                r.to.as_ref()
                    .map(|m| m.value.clone())
                    .unwrap_or_else(|| "end".into()),
                if r.dry_run { " dry-run" } else { "" },
                if r.verify { " verify" } else { "" }
            ),
        ),
        Step::Parallel(p) => ("parallel", format!("{} branches", p.value.len())),
        Step::Repeat(r) => ("repeat", format!("every {} x{}", r.every.value, r.rounds())),
    }
}
