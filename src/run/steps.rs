//! Executes a scenario's steps in order, `parallel:` blocks concurrently and `repeat:` blocks on
//! their period, recording every step, mark and fault window for the report.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt as _;
use rand::rngs::StdRng;
use rand::Rng as _;
use rand::SeedableRng as _;
use tokio::time::Instant;

use super::system::System;
use crate::load::{BatchOptions, Duplicates, PayloadGen, PlannedSend, RunNonce, Scheduled, Sender};
use crate::observe::prom::{self, names};
use crate::report::{FaultWindow, Mark, ReplayRecord, SendCounts, SendFidelity, StepRecord};
use crate::scenario::model::{Expect, RedisAction, Replay, Send, Step, Wait};
use crate::verdict::{BoardModel, ShuffleOutcome};

/// The owner of the repository every generated payload of a run belongs to; the name is
/// `run-<nonce>`, so a second run against the same store never shares a board with the first.
pub const RUN_REPO_OWNER: &str = "gitspy-chaos";

/// The repository (`owner/name`, id) of one run's generated payloads.
pub fn run_repo(nonce: &RunNonce) -> (String, u64) {
    let id = u64::from_str_radix(nonce.as_str(), 16)
        .map(|n| 1_000_000 + n % 1_000_000_000_000)
        .unwrap_or(424_242);
    (format!("{RUN_REPO_OWNER}/run-{}", nonce.as_str()), id)
}

/// Shared state of one run's step execution.
pub struct Ctx {
    pub sys: tokio::sync::Mutex<System>,
    /// Every scrape of the run (the poller's, and one right before each process fault).
    pub series: std::sync::Arc<Mutex<crate::observe::Series>>,
    pub server_url: String,
    pub sender: Sender,
    pub gen: Mutex<PayloadGen>,
    /// The generator's record of every item it sent (the board oracle's input).
    pub model: Mutex<BoardModel>,
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
    /// Ids of the poison deliveries sent (`send.poison`): expected dead-lettered.
    pub poison: Mutex<BTreeSet<String>>,
    /// `--fail-fast`: no step starts after one failed.
    pub fail_fast: bool,
    /// `--max-wait`: the longest any `wait: {drained}` (and the final drain) may take.
    pub max_wait: Option<Duration>,
    /// The index of the first failed step, once `fail_fast` stopped the run (0: not stopped).
    pub stopped_at: AtomicU32,
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
    /// Replays with `shuffle`, by name.
    pub shuffles: BTreeMap<String, ShuffleOutcome>,
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
        let db = PathBuf::from(sys.db_env());
        Ok(Ctx {
            sys: tokio::sync::Mutex::new(sys),
            series: std::sync::Arc::new(Mutex::new(crate::observe::Series::new())),
            server_url,
            sender,
            gen: Mutex::new(gen),
            model: Mutex::new(BoardModel::default()),
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
            poison: Mutex::new(BTreeSet::new()),
            fail_fast: false,
            max_wait: None,
            stopped_at: AtomicU32::new(0),
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

    /// The step whose failure stopped the run (`--fail-fast`), if one did.
    pub fn stopped(&self) -> Option<u32> {
        match self.stopped_at.load(Ordering::SeqCst) {
            0 => None,
            i => Some(i),
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
                if self.stopped().is_some() {
                    break;
                }
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
            let mut fidelity = None;
            let result: anyhow::Result<String> = match step {
                Step::Send(s) => {
                    let (result, f) = self.send(s).await;
                    fidelity = f;
                    result
                }
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
                Step::DeadRequeue(d) => crate::fault::store::dead_requeue(self, d.min).await,
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
                        if self.stopped().is_some() {
                            break;
                        }
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
                    if self.fail_fast {
                        let _ = self.stopped_at.compare_exchange(
                            0,
                            index,
                            Ordering::SeqCst,
                            Ordering::SeqCst,
                        );
                    }
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
                send: fidelity,
            });
        }
        .boxed()
    }

    /// A send step: `count` new deliveries (with `same`, `count` requests of one id), then
    /// `duplicates` adds copies on top — `copies − 1` more requests for a `fraction` of them,
    /// chosen by the seed, at the same instant as the original (`concurrent`) or in the slots
    /// right after it — sent with the step's rate, concurrency and timeout. Returns the note
    /// and what was planned next to what was done.
    async fn send(&self, s: &Send) -> (anyhow::Result<String>, Option<SendFidelity>) {
        let (plan, planned) = match self.plan_send(s) {
            Ok(p) => p,
            Err(e) => return (Err(e), None),
        };
        {
            let mut model = lock(&self.model);
            for p in &plan {
                if let Some(snap) = &p.send.delivery.snapshot {
                    model.record(&p.send.delivery.id, snap);
                }
            }
        }
        let opts = BatchOptions {
            rate: s.rate.map(|r| r.per_second()),
            concurrency: Some(s.concurrency.value.max(1) as usize),
            timeout: Some(s.timeout.value.get()),
        };
        let report = match self.sender.send_scheduled(plan, &opts).await {
            Ok(r) => r,
            Err(e) => return (Err(e), None),
        };
        let mut seen = BTreeSet::new();
        let mut copies = 0u64;
        for e in &report.entries {
            if !seen.insert(e.delivery.as_str()) {
                copies += 1;
            }
        }
        let fidelity = SendFidelity {
            planned,
            done: SendCounts {
                distinct_ids: seen.len() as u64,
                requests: report.entries.len() as u64,
                copies,
                max_in_flight: report.max_in_flight as u64,
                slipped: report.slipped,
            },
        };
        let sum = report.summary();
        let note = format!(
            "sent {}, acknowledged {} ({} new, {} duplicate), rejected {}, no answer {}{}",
            sum.sent,
            sum.accepted + sum.duplicates,
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
        let differences = fidelity.differences();
        if !differences.is_empty() {
            return (
                Err(anyhow::anyhow!(
                    "the step did not do what it says: {}",
                    differences.join("; ")
                )),
                Some(fidelity),
            );
        }
        let ok_2xx = sum.accepted + sum.duplicates;
        let result = match s.expect {
            Expect::Accepted if ok_2xx != sum.sent => Err(anyhow::anyhow!(
                "expected every request acknowledged: {note}"
            )),
            Expect::Rejected if ok_2xx != 0 => {
                Err(anyhow::anyhow!("expected every request rejected: {note}"))
            }
            _ => Ok(note),
        };
        (result, Some(fidelity))
    }

    /// The requests of a send step on their schedule slots, and the counts they add up to.
    fn plan_send(&self, s: &Send) -> anyhow::Result<(Vec<Scheduled>, SendCounts)> {
        let count = s.count() as usize;
        let new = if s.same { 1 } else { count };
        let originals = match &s.events {
            Some(mix) => {
                let weights: Vec<(String, u32)> = mix
                    .value
                    .iter()
                    .filter(|(_, w)| **w > 0)
                    .map(|(e, w)| (e.clone(), *w))
                    .collect();
                lock(&self.gen).plan_weighted(new, &weights)?
            }
            None => lock(&self.gen).plan(new, &Duplicates::default()),
        };
        let mut out = Vec::new();
        let mut slot = 0u64;
        if s.same {
            for p in originals {
                for i in 0..count {
                    let send = if i == 0 {
                        p.clone()
                    } else {
                        PlannedSend {
                            delivery: p.delivery.clone(),
                            duplicate_of: Some(p.delivery.id.clone()),
                        }
                    };
                    out.push(Scheduled { send, slot });
                    slot += 1;
                }
            }
        } else {
            let chosen: BTreeSet<usize> = match &s.duplicates {
                Some(d) => {
                    let k = ((count as f64) * d.fraction.value).round() as usize;
                    let n = self.step_counter.load(Ordering::SeqCst);
                    let mut rng = StdRng::seed_from_u64(self.seed ^ 0xd0_b1e5 ^ u64::from(n));
                    rand::seq::index::sample(&mut rng, count, k.min(count))
                        .into_iter()
                        .collect()
                }
                None => BTreeSet::new(),
            };
            for (i, p) in originals.into_iter().enumerate() {
                let extra = match &s.duplicates {
                    Some(d) if chosen.contains(&i) => d.copies.value.saturating_sub(1),
                    _ => 0,
                };
                let concurrent = s.duplicates.as_ref().is_some_and(|d| d.concurrent);
                let copy = PlannedSend {
                    delivery: p.delivery.clone(),
                    duplicate_of: Some(p.delivery.id.clone()),
                };
                out.push(Scheduled { send: p, slot });
                for _ in 0..extra {
                    if !concurrent {
                        slot += 1;
                    }
                    out.push(Scheduled {
                        send: copy.clone(),
                        slot,
                    });
                }
                slot += 1;
            }
        }
        // Poison deliveries at seeded places among the others, each in a slot of its own, never
        // inside a group of concurrent copies (which share one slot).
        let poison = s.poison.value as usize;
        if poison > 0 {
            let n = self.step_counter.load(Ordering::SeqCst);
            let mut rng = StdRng::seed_from_u64(self.seed ^ 0x0090_150e ^ u64::from(n));
            for _ in 0..poison {
                let d = lock(&self.gen).poison_delivery();
                lock(&self.poison).insert(d.id.clone());
                let bounds: Vec<usize> = (0..=out.len())
                    .filter(|&i| i == 0 || i == out.len() || out[i].slot != out[i - 1].slot)
                    .collect();
                let at = bounds[rng.random_range(0..bounds.len())];
                let slot = match out.get(at) {
                    Some(next) => next.slot,
                    None => out.last().map_or(0, |l| l.slot + 1),
                };
                for later in &mut out[at..] {
                    later.slot += 1;
                }
                out.insert(
                    at,
                    Scheduled {
                        send: PlannedSend {
                            delivery: std::sync::Arc::new(d),
                            duplicate_of: None,
                        },
                        slot,
                    },
                );
            }
        }
        let distinct: BTreeSet<&str> = out.iter().map(|p| p.send.delivery.id.as_str()).collect();
        let planned = SendCounts {
            distinct_ids: distinct.len() as u64,
            requests: out.len() as u64,
            copies: (out.len() - distinct.len()) as u64,
            max_in_flight: u64::from(s.concurrency.value.max(1)),
            slipped: 0,
        };
        Ok((out, planned))
    }

    /// Drained: the backlog (waiting + active + delayed retries + spool) is 0 — read from the
    /// server's gauges (absent gauges, i.e. Redis down, are not drained).
    pub async fn is_drained(&self) -> bool {
        let url = format!("{}/metrics/prom", self.server_url);
        match prom::scrape_as(&self.http, &url, "server", &self.profile.metrics).await {
            Ok(s) => s.gauge(names::REDIS_UP) == Some(1.0) && s.backlog() == Some(0.0),
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
            let timeout = match self.max_wait {
                Some(cap) if cap < w.timeout().get() => cap,
                _ => w.timeout().get(),
            };
            let took = self.wait_drained(timeout).await?;
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
            "redelivered {}: acknowledged {} ({} new, {} duplicate), rejected {}, no answer {}",
            s.sent,
            s.accepted + s.duplicates,
            s.accepted,
            s.duplicates,
            s.rejected,
            s.indeterminate
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
        // The window and starting state, shared by the in-order and the shuffled fold.
        let mut window: Vec<std::ffi::OsString> = vec!["--db".into(), self.db.clone().into()];
        if let Some(f) = from {
            window.extend(["--from".into(), f.to_string().into()]);
        }
        let to_ms = to.unwrap_or_else(|| prom::now_ms() + 1);
        window.extend(["--to".into(), to_ms.to_string().into()]);
        if let Some(repo) = &r.repo {
            window.extend(["--repo".into(), repo.into()]);
        }
        if let Some(prev) = &r.state_from {
            let t = self.timeline();
            let (dir, _, _) = t
                .replay_out
                .get(&prev.value)
                .ok_or_else(|| anyhow::anyhow!("replay `{}` has not run", prev.value))?;
            window.extend([
                "--state".into(),
                dir.join("replay-state.json").into_os_string(),
            ]);
        }
        let mut args = window.clone();
        if r.dry_run {
            args.push("--dry-run".into());
        } else {
            args.extend(["--out".into(), out.clone().into_os_string()]);
        }
        if r.verify {
            args.push("--verify".into());
        }
        let (output, json) = self.gitspy_replay(&args).await?;
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        let verify_ok = r.verify.then_some(output.status.success());
        let digests = json.as_ref().map(replay_digests).unwrap_or_default();
        if let Some(shuffle) = &r.shuffle {
            let result = self
                .shuffled_replay(r, &window, shuffle, &digests)
                .await
                .unwrap_or_else(|e| ShuffleOutcome {
                    error: Some(format!("{e:#}")),
                    ..ShuffleOutcome::default()
                });
            self.timeline().shuffles.insert(name.clone(), result);
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
        let summary = json.as_ref().map_or_else(String::new, |v| {
            format!(
                "{} deliveries folded, digest {}",
                v["deliveries"].as_u64().unwrap_or(0),
                v["digest"].as_str().unwrap_or("?")
            )
        });
        if verify_ok == Some(false) {
            let diff = json
                .as_ref()
                .and_then(|v| v["verify"]["difference"].as_str().map(str::to_owned))
                .unwrap_or_else(|| stderr.trim().to_owned());
            return Ok(format!("verify found a difference: {diff}"));
        }
        Ok(summary)
    }

    /// Runs `gitspy replay --json` with `args`; the answer's JSON object when it printed one.
    async fn gitspy_replay(
        &self,
        args: &[std::ffi::OsString],
    ) -> anyhow::Result<(std::process::Output, Option<serde_json::Value>)> {
        // The replay tool is part of the system under test: it runs with the managed server's
        // settings (`target.env` included), as an operator's replay would on that deployment.
        let env = self.sys.lock().await.server.env().to_vec();
        let mut cmd = tokio::process::Command::new(&self.gitspy_bin);
        cmd.arg("replay")
            .envs(env)
            .args(args)
            .arg("--json")
            .kill_on_drop(true);
        let output = tokio::time::timeout(Duration::from_secs(300), cmd.output())
            .await
            .map_err(|_| anyhow::anyhow!("gitspy replay did not finish within 300 s"))??;
        let json = serde_json::from_slice::<serde_json::Value>(&output.stdout)
            .ok()
            .filter(serde_json::Value::is_object);
        Ok((output, json))
    }

    /// The same window folded in log order, in a seeded shuffled order with duplicates and
    /// newest first (all dry runs), and the live boards when the window is the whole log.
    async fn shuffled_replay(
        &self,
        r: &Replay,
        window: &[std::ffi::OsString],
        shuffle: &crate::scenario::model::Shuffle,
        main: &BTreeMap<String, String>,
    ) -> anyhow::Result<ShuffleOutcome> {
        let seed = shuffle.seed.unwrap_or(self.seed);
        let mut in_order_args = window.to_vec();
        in_order_args.push("--dry-run".into());
        let mut shuffled_args = in_order_args.clone();
        shuffled_args.extend([
            "--shuffle-seed".into(),
            seed.to_string().into(),
            "--duplicates".into(),
            shuffle.duplicates.to_string().into(),
        ]);
        let mut outcome = ShuffleOutcome {
            seed,
            duplicates: shuffle.duplicates,
            ..ShuffleOutcome::default()
        };
        let mut reversed_args = in_order_args.clone();
        reversed_args.push("--reverse".into());
        for (args, into) in [
            (&in_order_args, &mut outcome.in_order),
            (&shuffled_args, &mut outcome.shuffled),
        ] {
            let (output, json) = self.gitspy_replay(args).await?;
            let json = json.ok_or_else(|| {
                anyhow::anyhow!(
                    "gitspy replay --json printed no JSON object (exit {:?}): {}",
                    output.status.code(),
                    String::from_utf8_lossy(&output.stderr).trim()
                )
            })?;
            *into = replay_digests(&json);
        }
        // Newest first, where the replay tool has that order (a build without `--reverse` leaves
        // it out rather than failing the comparison).
        match self.gitspy_replay(&reversed_args).await? {
            (_, Some(json)) => outcome.reversed = replay_digests(&json),
            (output, None) => tracing::warn!(
                "gitspy replay --reverse gave no JSON (exit {:?}); newest-first order skipped",
                output.status.code()
            ),
        }
        if main != &outcome.in_order && !main.is_empty() {
            outcome.error = Some("the replay step and its in-order dry run disagree".into());
        }
        if r.from.is_none()
            && r.to.is_none()
            && r.state_from.is_none()
            && !outcome.reversed.is_empty()
        {
            outcome.prefixes = self.prefix_folds(&in_order_args).await?;
        }
        if r.from.is_none() && r.to.is_none() && r.state_from.is_none() {
            let mut live = BTreeMap::new();
            for repo in outcome.in_order.keys() {
                let url = format!(
                    "{}{}/{repo}",
                    self.server_url, self.profile.endpoints.boards
                );
                let v: serde_json::Value = self.http.get(&url).send().await?.json().await?;
                live.insert(
                    repo.clone(),
                    v["digest"].as_str().unwrap_or_default().to_owned(),
                );
            }
            outcome.live = Some(live);
        }
        Ok(outcome)
    }
}

/// Prefixes of the log the order-independence check also folds both ways.
const PREFIX_FOLDS: usize = 8;

impl Ctx {
    /// [`PREFIX_FOLDS`] prefixes of the log, cut at evenly spaced send instants of the ledger,
    /// each folded in log order and newest first (dry runs).
    async fn prefix_folds(
        &self,
        in_order_args: &[std::ffi::OsString],
    ) -> anyhow::Result<Vec<crate::verdict::PrefixFold>> {
        let mut sent: Vec<u64> = self
            .sender
            .ledger()
            .entries
            .iter()
            .map(|e| e.sent_at_ms)
            .collect();
        sent.sort_unstable();
        sent.dedup();
        let mut cuts: Vec<u64> = (1..=PREFIX_FOLDS)
            .filter_map(|k| sent.get(k * sent.len() / (PREFIX_FOLDS + 1)).copied())
            .collect();
        cuts.dedup();
        let mut out = Vec::new();
        for to_ms in cuts {
            // A delivery still being applied can land in the prefix between the two folds (the
            // log is keyed by when it was received): only folds of the same rows are compared.
            for _attempt in 0..3 {
                let mut folds = Vec::new();
                for reverse in [false, true] {
                    // The window's own end (if any) gives way to the prefix's.
                    let mut args: Vec<std::ffi::OsString> = Vec::new();
                    let mut it = in_order_args.iter();
                    while let Some(a) = it.next() {
                        if a == "--to" {
                            it.next();
                        } else {
                            args.push(a.clone());
                        }
                    }
                    args.extend(["--to".into(), format!("{to_ms}ms").into()]);
                    if reverse {
                        args.push("--reverse".into());
                    }
                    let (output, json) = self.gitspy_replay(&args).await?;
                    folds.push(json.ok_or_else(|| {
                        anyhow::anyhow!(
                            "gitspy replay --to {to_ms}ms printed no JSON object (exit {:?}): {}",
                            output.status.code(),
                            String::from_utf8_lossy(&output.stderr).trim()
                        )
                    })?);
                }
                if folds[0]["deliveries"] == folds[1]["deliveries"] {
                    out.push(crate::verdict::PrefixFold {
                        to_ms,
                        in_order: replay_digests(&folds[0]),
                        reversed: replay_digests(&folds[1]),
                    });
                    break;
                }
            }
        }
        Ok(out)
    }
}

/// `repo → digest` of a `gitspy replay --json` answer.
fn replay_digests(v: &serde_json::Value) -> BTreeMap<String, String> {
    v["boards"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|b| {
            Some((
                b["repo"].as_str()?.to_owned(),
                b["digest"].as_str()?.to_owned(),
            ))
        })
        .collect()
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
        Step::DeadRequeue(d) if d.min > 0 => ("dead_requeue", format!("all (at least {})", d.min)),
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
