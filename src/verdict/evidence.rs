//! Everything the verdict reads, gathered once at the end of a run into one typed value: the
//! sender's ledger, the store's lookups and listing, the Redis probe, the polled series, the
//! live boards and the generator's board model, the fault log and what the steps recorded.
//! The run engine fills it (all the I/O happens there); every check is a pure function of it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde_json::Value;

use super::board::BoardModel;
use super::classes::{self, Lookup, SendOutcome, Verdict, VerdictInput};
use crate::load::{Ledger, Outcome};
use crate::observe::prometheus::PromSeries;
use crate::observe::{RedisProbe, Series};
use crate::report::FaultWindow;
use crate::system::procs::Instance;

/// What one replay step left for the checks.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayOutcome {
    /// Its output directory (boards and state file), unused for a dry run.
    pub dir: PathBuf,
    pub dry_run: bool,
    /// `Some(passed)` for a replay with `verify: true`.
    pub verified: Option<bool>,
}

/// What a replay with `shuffle` found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ShuffleOutcome {
    pub seed: u64,
    pub duplicates: u32,
    /// `repo → digest` folded in log order.
    pub in_order: BTreeMap<String, String>,
    /// `repo → digest` folded in the shuffled order with duplicates.
    pub shuffled: BTreeMap<String, String>,
    /// `repo → digest` folded newest first (`gitspy replay --reverse`); empty when the system's
    /// replay tool has no such order.
    pub reversed: BTreeMap<String, String>,
    /// `repo → digest` of the live boards (whole-log windows only).
    pub live: Option<BTreeMap<String, String>>,
    /// Prefixes of the log (whole-log windows only) folded in log order and newest first: a
    /// same-second tie or a reordered pair decides the board only while it is the newest thing
    /// its card saw, so prefixes cut soon after it show what the whole log hides.
    pub prefixes: Vec<PrefixFold>,
    /// Why the comparison could not be made.
    pub error: Option<String>,
}

/// What Prometheus answered for one `promql` or `alert` check.
#[derive(Debug, Clone, PartialEq)]
pub struct PromAnswer {
    /// Unix ms of the instant query, or of the range query's start.
    pub from_ms: u64,
    /// Unix ms of the instant query, or of the range query's end.
    pub to_ms: u64,
    /// A range query (`over: run`).
    pub range: bool,
    /// The answer's series, or why there is none (unreachable, Prometheus' own error).
    pub result: Result<Vec<PromSeries>, String>,
    /// What the reader should know about the answer (e.g. a scrape older than the run's end).
    pub note: Option<String>,
}

/// One prefix `[beginning, to)` of the event log folded in two orders.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PrefixFold {
    /// The prefix's end (received-at, unix ms, exclusive).
    pub to_ms: u64,
    /// `repo → digest` folded in log order.
    pub in_order: BTreeMap<String, String>,
    /// `repo → digest` folded newest first.
    pub reversed: BTreeMap<String, String>,
}

/// The evidence of one run.
#[derive(Debug, Clone, Default)]
pub struct Evidence {
    /// Every send attempt.
    pub ledger: Ledger,
    /// Per delivery id, what each attempt got, in ledger order.
    pub sends: BTreeMap<String, Vec<SendOutcome>>,
    /// `POST /deliveries/lookup` per id.
    pub lookups: BTreeMap<String, Lookup>,
    /// `GET /deliveries`: every id the store lists as processed.
    pub listed: BTreeSet<String>,
    /// The Redis probe after the final drain (`None` if Redis could not be probed).
    pub probe: Option<RedisProbe>,
    /// Every scrape of the run.
    pub series: Series,
    /// The generator's record of every item it sent.
    pub model: BoardModel,
    /// `GET /boards/{owner}/{repo}` for every repository of the model (`Err` says why not).
    pub boards: BTreeMap<String, Result<Value, String>>,
    /// Fault windows, in ms since the run's start.
    pub faults: Vec<FaultWindow>,
    /// Step expectations that did not hold.
    pub step_problems: Vec<String>,
    /// The step executor panicked.
    pub panicked: bool,
    /// Why the final drain did not finish, if it did not.
    pub drain_error: Option<String>,
    /// Replay steps by name.
    pub replays: BTreeMap<String, ReplayOutcome>,
    /// Replay steps with `shuffle`, by name.
    pub shuffles: BTreeMap<String, ShuffleOutcome>,
    /// Unix ms of the run's start (the origin of `faults`).
    pub t0_unix_ms: u64,
    /// SIGKILLs the run sent.
    pub kills: u32,
    /// Every managed worker (its metrics target name) with every instance it ran as; empty in
    /// attach mode.
    pub workers: Vec<(String, Vec<Instance>)>,
    /// Prometheus' answers for the `promql` checks, by the check's index in the scenario.
    pub prom: BTreeMap<usize, PromAnswer>,
    /// The server's `GITSPY_REDIS_TIMEOUT` in ms and where it was learned (target env, an
    /// attached process's environment, GitSpy's default).
    pub redis_timeout: Option<(u64, String)>,
    /// Ids sent as poison (`send.poison`), expected dead-lettered.
    pub poison: BTreeSet<String>,
    /// The system exposes GitSpy's own metric names (no profile renames them): its counters
    /// mean what GitSpy's mean.
    pub gitspy_metrics: bool,
    /// The per-delivery verdict, derived from the above by [`Evidence::classify`].
    pub verdict: Verdict,
}

/// Examples kept per verdict class.
pub const EXAMPLES: usize = 5;

impl Evidence {
    /// Per delivery id, the outcome of each attempt of `ledger`.
    pub fn sends_of(ledger: &Ledger) -> BTreeMap<String, Vec<SendOutcome>> {
        let mut sends: BTreeMap<String, Vec<SendOutcome>> = BTreeMap::new();
        for e in &ledger.entries {
            sends
                .entry(e.delivery.clone())
                .or_default()
                .push(match &e.outcome {
                    Outcome::Status(s) => SendOutcome::Status(*s),
                    Outcome::Timeout => SendOutcome::Timeout,
                    Outcome::Refused(m) => SendOutcome::Transport(format!("refused: {m}")),
                    Outcome::Transport(m) => SendOutcome::Transport(m.clone()),
                });
        }
        sends
    }

    /// Classifies every delivery id (SPEC §2.5) and keeps the result in `verdict`.
    pub fn classify(&mut self) {
        self.verdict = classes::judge(
            &VerdictInput {
                sends: &self.sends,
                lookups: &self.lookups,
                listed: &self.listed,
                probe: self.probe.as_ref(),
                poison: &self.poison,
            },
            EXAMPLES,
        );
    }

    /// Whether the store reports `id` processed (an event-log row, an effect, or listed).
    pub fn processed(&self, id: &str) -> bool {
        self.listed.contains(id)
            || self
                .lookups
                .get(id)
                .is_some_and(|l| l.logged > 0 || l.effects > 0)
    }

    /// Unix ms at which the last fault window closed (the run's start if there was none).
    pub fn last_fault_end_ms(&self) -> u64 {
        self.faults
            .iter()
            .map(|f| f.end_ms.unwrap_or(f.start_ms))
            .max()
            .map_or(self.t0_unix_ms, |rel| self.t0_unix_ms + rel)
    }
}
