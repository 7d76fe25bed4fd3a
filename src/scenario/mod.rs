//! Scenario files: their format ([`model`]), reading ([`load`]), checking ([`validate`]) and the
//! units they are written in ([`units`]), plus what `list` shows about a scenario.
//!
//! The entry point for every command is [`load_and_validate`]: it returns a scenario that the run
//! engine can execute without re-checking anything, or every problem found, each with its place
//! in the file.

pub mod load;
pub mod model;
pub mod units;
pub mod validate;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use model::*;
pub use units::{Dur, Rate, UnitError};

/// One thing wrong with a scenario, at a position in its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where; `0:0` when the problem has no position (the file could not be read).
    pub pos: Pos,
    /// What is wrong, lowercase, naming the bad value.
    pub message: String,
    /// How to fix it.
    pub hint: String,
}

/// A [`Problem`] together with its file, printed ripgrep-style:
///
/// ```text
/// scenarios/x.yaml:12:5: error: mark `outage` is used but never set
///   hint: add a `- mark: NAME` step before this replay, or fix the spelling
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file as the user named it (relative paths stay relative).
    pub file: PathBuf,
    /// What is wrong and where.
    pub problem: Problem,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Problem { pos, message, hint } = &self.problem;
        let file = self.file.display();
        if pos.line == 0 {
            write!(f, "{file}: error: {message}")?;
        } else {
            write!(f, "{file}:{}:{}: error: {message}", pos.line, pos.column)?;
        }
        write!(f, "\n  hint: {hint}")
    }
}

/// A `target.profile` that does not load (missing, bad YAML, unknown field, a key pattern
/// without `{id}`), reported at `target` like any other problem: `validate` catches it, not the
/// run.
fn profile_problem(path: &Path, scenario: &Scenario) -> Option<Problem> {
    let rel = scenario.target.value.profile.as_deref()?;
    let err = crate::system::profile::resolve_profile(None, path, Some(rel)).err()?;
    let text = format!("{err:#}");
    let (message, hint) = match text.split_once("\nhint: ") {
        Some((m, h)) => (m.to_owned(), h.to_owned()),
        None => (
            text,
            "`target.profile` is a YAML file relative to this scenario; see docs/contract.md"
                .to_owned(),
        ),
    };
    Some(Problem {
        pos: scenario.target.pos,
        message,
        hint,
    })
}

/// Read, parse and validate one scenario file.
///
/// Errors: every problem found. A file that does not parse yields exactly one (the parser
/// cannot go on after a syntax or shape error); a file that parses yields all the problems of
/// its values.
pub fn load_and_validate(path: &Path) -> Result<Scenario, Vec<Diagnostic>> {
    let in_file = |problem| Diagnostic {
        file: path.to_path_buf(),
        problem,
    };
    let scenario = load::load_file(path).map_err(|p| vec![in_file(p)])?;
    let mut problems = validate::validate(&scenario);
    problems.extend(profile_problem(path, &scenario));
    if problems.is_empty() {
        Ok(scenario)
    } else {
        Err(problems.into_iter().map(in_file).collect())
    }
}

/// The scenario files named by `paths`: files as given, directories expanded to their `*.yaml`
/// and `*.yml` files (not recursively), sorted by name; plus a diagnostic for every path that
/// does not exist or directory that cannot be read.
pub fn collect_files(paths: &[PathBuf]) -> (Vec<PathBuf>, Vec<Diagnostic>) {
    let mut files = Vec::new();
    let mut unreadable = Vec::new();
    for path in paths {
        let problem = |e: std::io::Error, hint: &str| Diagnostic {
            file: path.clone(),
            problem: Problem {
                pos: Pos::default(),
                message: format!("cannot read: {e}"),
                hint: hint.to_owned(),
            },
        };
        let meta = match std::fs::metadata(path) {
            Ok(meta) => meta,
            Err(e) => {
                unreadable.push(problem(e, "give a scenario file or a directory of them"));
                continue;
            }
        };
        if !meta.is_dir() {
            files.push(path.clone());
            continue;
        }
        let entries = match std::fs::read_dir(path) {
            Ok(entries) => entries,
            Err(e) => {
                unreadable.push(problem(e, "check the directory's permissions"));
                continue;
            }
        };
        let mut found: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.is_file()
                    && matches!(p.extension().and_then(|x| x.to_str()), Some("yaml" | "yml"))
            })
            .collect();
        found.sort();
        files.extend(found);
    }
    (files, unreadable)
}

impl Scenario {
    /// This scenario with its pace shortened (or stretched) by `factor`, for `--time-scale`:
    /// fixed waits, sleeps, the `repeat` period and length, the poll interval and send rates.
    ///
    /// Deadlines and thresholds are not scaled: a drain timeout, `backlog.within`, a request
    /// timeout or a p95 limit measure the system, which does not get faster because the
    /// scenario does. A `repeat` keeps its number of rounds. A factor that is not a positive
    /// finite number leaves the scenario unchanged.
    #[must_use]
    pub fn scaled(&self, factor: f64) -> Scenario {
        let mut s = self.clone();
        s.observe.poll_interval.value = s.observe.poll_interval.value.scaled(factor);
        scale_steps(&mut s.steps.value, factor);
        s
    }

    /// Every fault the scenario injects, in step order, each once.
    pub fn faults(&self) -> Vec<FaultKind> {
        fn walk(steps: &[At<Step>], out: &mut Vec<FaultKind>) {
            for step in steps {
                match &step.value {
                    Step::Fault(f) => {
                        if let Some(k) = f.kind() {
                            if !out.contains(&k) {
                                out.push(k);
                            }
                        }
                    }
                    Step::Parallel(c) => walk(c, out),
                    Step::Repeat(r) => walk(&r.steps, out),
                    _ => {}
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.steps, &mut out);
        out
    }

    /// The links to the store (`server-store`, `workers-store`, …) the scenario's network faults
    /// name, each once: they exist only in managed runs with a PostgreSQL store.
    pub fn store_links(&self) -> Vec<LinkSel> {
        let mut out = Vec::new();
        for k in self.faults() {
            if let FaultKind::Network(n) = k {
                if n.link.is_store() && !out.contains(&n.link) {
                    out.push(n.link);
                }
            }
        }
        out
    }

    /// Whether a fault arms a crash point (the gitspy binary then needs its `failpoints`
    /// feature).
    pub fn needs_failpoints(&self) -> bool {
        self.faults().iter().any(|k| {
            matches!(
                k,
                FaultKind::WorkerCrashAt(..) | FaultKind::ServerCrashAt(_)
            )
        })
    }

    /// Every replay step with its name (given, or `replay-<n>`), in document order.
    pub fn replays(&self) -> Vec<(String, &Replay)> {
        fn walk<'a>(steps: &'a [At<Step>], out: &mut Vec<(String, &'a Replay)>) {
            for step in steps {
                match &step.value {
                    Step::Replay(r) => out.push((r.name_or_default(out.len() + 1), r)),
                    Step::Parallel(c) => walk(c, out),
                    Step::Repeat(r) => walk(&r.steps, out),
                    _ => {}
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.steps, &mut out);
        out
    }

    /// How long the steps take at least, from the paces written in the file: sends at their
    /// rate, fixed waits and sleeps, `repeat` rounds, the longest branch of a `parallel`.
    /// Waits for a drain, faults and replays count as instant, so the real run is longer.
    pub fn expected_duration(&self) -> Duration {
        steps_duration(&self.steps)
    }

    /// What a run of this scenario is expected to take from start to report, as `list` shows
    /// it: [`Scenario::expected_duration`] plus what the paces do not say — starting and tearing
    /// down the system, waiting for drains (each, and the final one), replays, and the last
    /// interval of each paced send. Calibrated on the shipped scenarios with the process
    /// backend (within about 15 % of the measured wall time, except where an outage leaves a
    /// long drain behind, e.g. a spool).
    pub fn estimated_run_time(&self) -> Duration {
        START_AND_TEARDOWN
            + DRAIN_ALLOWANCE
            + self.expected_duration()
            + steps_allowance(&self.steps)
    }
}

/// Starting Redis, the server and the workers, the final scrape, teardown and report writing.
const START_AND_TEARDOWN: Duration = Duration::from_millis(1500);
/// A wait for a drain that has nothing left to wait for: one or two polls.
const DRAIN_ALLOWANCE: Duration = Duration::from_millis(300);
/// One `gitspy` process the harness runs (`replay`, `dead requeue`).
const REPLAY_ALLOWANCE: Duration = Duration::from_millis(100);

/// The time of `steps` the paces do not state (see [`Scenario::estimated_run_time`]).
fn steps_allowance(steps: &[At<Step>]) -> Duration {
    steps.iter().map(|s| step_allowance(s)).sum()
}

fn step_allowance(step: &Step) -> Duration {
    match step {
        Step::Send(send) => send.rate.map_or(Duration::ZERO, |r| r.interval()),
        Step::Wait(wait) if wait.duration.is_none() => DRAIN_ALLOWANCE,
        Step::Replay(_) | Step::DeadRequeue(_) => REPLAY_ALLOWANCE,
        Step::Parallel(children) => children
            .iter()
            .map(|c| step_allowance(c))
            .max()
            .unwrap_or_default(),
        Step::Repeat(rep) => {
            let rounds = u32::try_from(rep.rounds()).unwrap_or(u32::MAX);
            steps_allowance(&rep.steps).saturating_mul(rounds)
        }
        Step::Wait(_) | Step::Sleep(_) | Step::Mark(_) | Step::Fault(_) | Step::Redeliver(_) => {
            Duration::ZERO
        }
    }
}

fn scale_steps(steps: &mut [At<Step>], factor: f64) {
    for step in steps {
        match &mut step.value {
            Step::Send(send) => {
                if let Some(rate) = &mut send.rate {
                    rate.per = rate.per.scaled(factor);
                }
            }
            Step::Wait(wait) => {
                if let Some(d) = &mut wait.duration {
                    d.value = d.value.scaled(factor);
                }
            }
            Step::Sleep(d) => d.value = d.value.scaled(factor),
            Step::Parallel(children) => scale_steps(&mut children.value, factor),
            Step::Repeat(rep) => {
                rep.every.value = rep.every.value.scaled(factor);
                if let Some(d) = &mut rep.duration {
                    d.value = d.value.scaled(factor);
                }
                scale_steps(&mut rep.steps.value, factor);
            }
            Step::Mark(_)
            | Step::Fault(_)
            | Step::Redeliver(_)
            | Step::DeadRequeue(_)
            | Step::Replay(_) => {}
        }
    }
}

fn steps_duration(steps: &[At<Step>]) -> Duration {
    steps.iter().map(|s| step_duration(s)).sum()
}

fn step_duration(step: &Step) -> Duration {
    match step {
        // Concurrent copies leave with their original, so only the deliveries are paced.
        Step::Send(send) => send.rate.map_or(Duration::ZERO, |r| {
            let concurrent = send.duplicates.as_ref().is_some_and(|d| d.concurrent);
            r.time_for(if concurrent {
                send.count()
            } else {
                send.requests()
            })
        }),
        Step::Wait(wait) => wait.duration.as_ref().map_or(Duration::ZERO, |d| d.get()),
        Step::Sleep(d) => d.get(),
        // A network fault with `for` lasts that long (its heal ends the step).
        Step::Fault(f) => f
            .network
            .as_ref()
            .and_then(|n| n.duration)
            .map_or(Duration::ZERO, |d| d.get()),
        Step::Parallel(children) => children
            .iter()
            .map(|c| step_duration(c))
            .max()
            .unwrap_or_default(),
        Step::Repeat(rep) => {
            let round = steps_duration(&rep.steps);
            let period = rep.every.get().max(round);
            let rounds = u32::try_from(rep.rounds()).unwrap_or(u32::MAX);
            // The last round ends when its steps end, not a whole period later.
            period.saturating_mul(rounds.saturating_sub(1)) + round
        }
        Step::Mark(_) | Step::Redeliver(_) | Step::DeadRequeue(_) | Step::Replay(_) => {
            Duration::ZERO
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario(yaml: &str) -> Scenario {
        load::parse(yaml)
            .unwrap_or_else(|p| panic!("{}:{}: {}", p.pos.line, p.pos.column, p.message))
    }

    const FLAPPING: &str = "\
name: t
target: {redis: {backend: docker}, workers: 2}
observe: {poll_interval: 10s}
steps:
  - send: {count: 20, rate: 20/s}
  - wait: {for: 30s}
  - wait: {drained: true, timeout: 2m}
  - repeat:
      every: 30s
      for: 5m
      steps:
        - fault: {redis: stop}
        - sleep: 10s
        - fault: {redis: start}
  - parallel:
      - sleep: 1m
      - send: {count: 100, rate: 10/s, timeout: 5s}
checks:
  - backlog: {max: 0, within: 60s}
  - job_duration_p95: {max: 500ms}
";

    #[test]
    fn expected_duration_adds_paces_and_takes_the_longest_branch() {
        let s = scenario(FLAPPING);
        // 0.95 s (20 at 20/s) + 30 s + 0 (drain) + 9 × 30 s + 10 s (last round) + max(60 s, 9.9 s)
        let expect = Duration::from_millis(950) + Duration::from_secs(30 + 270 + 10 + 60);
        assert_eq!(s.expected_duration(), expect);
    }

    #[test]
    fn estimated_run_time_adds_start_up_drains_and_last_intervals() {
        let s = scenario(FLAPPING);
        // expected + 1.5 s start/teardown + 0.3 s final drain + 0.3 s (one drain wait)
        // + 50 ms (last interval of 20/s) + 100 ms (last interval of 10/s, in the parallel)
        let expect = s.expected_duration() + Duration::from_millis(1500 + 300 + 300 + 50 + 100);
        assert_eq!(s.estimated_run_time(), expect);
    }

    #[test]
    fn scaled_shortens_paces_but_not_deadlines() {
        let s = scenario(FLAPPING).scaled(0.1);
        assert_eq!(s.observe.poll_interval.value, Dur::secs(1));
        let Step::Send(send) = &s.steps[0].value else {
            panic!()
        };
        assert_eq!(
            send.rate.map(|r| r.to_string()),
            Some("20/100ms".to_owned())
        );
        let Step::Wait(wait) = &s.steps[1].value else {
            panic!()
        };
        assert_eq!(wait.duration.as_ref().map(|d| d.value), Some(Dur::secs(3)));
        let Step::Wait(drain) = &s.steps[2].value else {
            panic!()
        };
        assert_eq!(drain.timeout(), Dur::secs(120), "deadline kept");
        let Step::Repeat(rep) = &s.steps[3].value else {
            panic!()
        };
        assert_eq!(rep.every.value, Dur::secs(3));
        assert_eq!(rep.duration.as_ref().map(|d| d.value), Some(Dur::secs(30)));
        assert_eq!(rep.rounds(), 10, "same number of rounds");
        let Step::Sleep(inner) = &rep.steps[1].value else {
            panic!()
        };
        assert_eq!(inner.value, Dur::secs(1));
        let Check::Backlog(b) = &s.checks[0].value else {
            panic!()
        };
        assert_eq!(b.within.value, Dur::secs(60), "threshold kept");
        let Check::JobDurationP95(p) = &s.checks[1].value else {
            panic!()
        };
        assert_eq!(p.max.value, Dur::millis(500), "threshold kept");
        // Everything paced by the file is ten times shorter.
        let full = scenario(FLAPPING).expected_duration().as_secs_f64();
        let short = s.expected_duration().as_secs_f64();
        assert!((short * 10.0 - full).abs() < 0.01, "{short} vs {full}");
    }

    #[test]
    fn scaled_by_one_changes_nothing() {
        let s = scenario(FLAPPING);
        assert_eq!(s.scaled(1.0), s);
    }

    #[test]
    fn faults_are_listed_once_in_step_order() {
        let s = scenario(FLAPPING);
        let names: Vec<String> = s.faults().iter().map(ToString::to_string).collect();
        assert_eq!(names, ["redis stop", "redis start"]);
    }

    #[test]
    fn replays_are_named_in_document_order() {
        let s = scenario(
            "name: t\ntarget: {}\nsteps:\n  - replay: {}\n  - parallel:\n      - replay: {name: x}\n      - replay: {dry_run: true}\nchecks: [no_stuck_locks]\n",
        );
        let names: Vec<String> = s.replays().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["replay-1", "x", "replay-3"]);
    }

    /// run.json records the scenario; `report` reads it back without the YAML parser.
    #[test]
    fn scenarios_round_trip_through_json() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let (files, problems) =
            collect_files(&[root.join("scenarios"), root.join("scenarios/attach")]);
        assert!(problems.is_empty(), "{problems:?}");
        assert!(files.len() >= 8, "{files:?}");
        for path in files {
            let s = load_and_validate(&path).unwrap();
            let json = serde_json::to_string(&s).unwrap();
            let back: Scenario = serde_json::from_str(&json)
                .unwrap_or_else(|e| panic!("{}: {e}\n{json}", path.display()));
            assert_eq!(
                serde_json::to_string(&back).unwrap(),
                json,
                "{}",
                path.display()
            );
            assert_eq!(back.expected_duration(), s.expected_duration());
        }
    }

    #[test]
    fn requests_count_copies() {
        let s = scenario(
            "name: t\ntarget: {}\nsteps:\n  - send: {count: 10, duplicates: {copies: 3, fraction: 0.5}}\n  - send: {count: 5, same: true}\nchecks: [no_stuck_locks]\n",
        );
        let Step::Send(a) = &s.steps[0].value else {
            panic!()
        };
        assert_eq!(a.requests(), 10 + 5 * 2);
        let Step::Send(b) = &s.steps[1].value else {
            panic!()
        };
        assert_eq!(b.requests(), 5);
    }
}
