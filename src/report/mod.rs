//! The run report: one plain-data model (`RunReport`) that a finished run fills in, and one
//! exporter per output format behind the `Exporter` trait (as hyperfine's `src/export/`).
//!
//! `run.json` is the single source of truth: every other format is rendered from the model
//! alone, deterministically (no clock, no hash-map order, no environment), so
//! `gitspy-chaos report run.json --format md,html,junit` reproduces byte for byte what the run
//! wrote. The model is self-contained on purpose: it imports nothing from the rest of the
//! harness, so the run engine converts into it and the report side never changes when the
//! engine's internals do. Its JSON shape is pinned by `schema/run.schema.json`.

mod chart;
mod escape;
mod html;
mod json;
mod junit;
mod markdown;
mod terminal;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

pub use html::HtmlExporter;
pub use json::JsonExporter;
pub use junit::JunitExporter;
pub use markdown::MarkdownExporter;
pub use terminal::render_terminal;

/// The `schema_version` this build writes and reads. Bump it (and the schema) on any change
/// that an older reader would misread.
pub const SCHEMA_VERSION: u32 = 1;

/// Everything known about one finished (or aborted) scenario run.
///
/// Times inside the run (`*_ms`, series points) are milliseconds since `started_at`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunReport {
    /// Always [`SCHEMA_VERSION`] when written by this build.
    pub schema_version: u32,
    pub tool: ToolInfo,
    pub target: TargetInfo,
    pub scenario: ScenarioInfo,
    /// RFC 3339, UTC (`2026-11-26T20:06:38Z`).
    pub started_at: String,
    /// RFC 3339, UTC.
    pub finished_at: String,
    pub duration_ms: u64,
    pub verdict: Verdict,
    /// Why the run could not complete (verdict `error`), e.g. "redis-server not found".
    pub error: Option<String>,
    /// The fault timeline, in start order.
    pub faults: Vec<FaultWindow>,
    /// Every step as executed, in start order.
    pub steps: Vec<StepRecord>,
    /// Named instants (`mark:` steps).
    pub marks: Vec<Mark>,
    /// Polled time series (rates already per second, computed by the engine).
    pub series: Vec<Series>,
    pub ledger: LedgerSummary,
    pub checks: Vec<CheckRecord>,
    /// The final Redis probe; `None` when Redis could not be probed at the end.
    pub probe: Option<ProbeSummary>,
    /// Managed processes (and the managed Redis), with the tail of their output.
    pub processes: Vec<ProcessLog>,
    pub replays: Vec<ReplayRecord>,
    /// The run was stopped by Ctrl-C: a partial report (verdict `error`, nothing judged).
    #[serde(default)]
    pub interrupted: bool,
}

/// The harness that produced the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolInfo {
    /// `gitspy-chaos`.
    pub name: String,
    /// The harness version (`CARGO_PKG_VERSION`).
    pub version: String,
}

/// The system under test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetInfo {
    pub kind: TargetKind,
    /// `gitspy --version` of the target, when known.
    pub gitspy_version: Option<String>,
    /// `docker`, `process` or `external`.
    pub redis_backend: String,
    /// Redis `INFO server` `redis_version`, when known.
    pub redis_version: Option<String>,
    /// Number of worker processes.
    pub workers: u32,
    /// Environment of the managed GitSpy processes (harness defaults, `target.env`,
    /// `--target-env`); empty in attach mode.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Managed mode: the board store GitSpy was given, `sqlite` or `postgres` (absent in attach
    /// mode and in reports of older versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<String>,
    /// Managed mode: the harness's TCP proxy on every link (`sender-server`, `server-redis`,
    /// `worker-<i>-redis`), with the address GitSpy was given and the real one behind it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<crate::netproxy::LinkRecord>,
}

/// Whether the harness started the system or attached to a running one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    Managed,
    Attached,
}

/// The scenario exactly as it ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioInfo {
    pub name: String,
    pub description: String,
    /// The scenario file as given on the command line.
    pub file: String,
    /// The YAML text as run (before time scaling).
    pub yaml: String,
    /// The seed in force (from the file or `--seed`).
    pub seed: u64,
    /// `--time-scale` (1.0 = durations as written).
    pub time_scale: f64,
    /// The metrics poll interval in force, after time scaling.
    pub poll_interval_ms: u64,
}

/// The outcome of the whole run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Every check passed.
    Passed,
    /// The run completed and at least one check failed.
    Failed,
    /// The run could not complete (environment missing, setup failed).
    Error,
    /// Every check passed but `faults_effective`: the faults hit nothing (a kill caught no work
    /// in flight, an outage met no request and no waiting delivery), so the run proves nothing
    /// about what they were meant to test (exit 3).
    Inconclusive,
}

impl Verdict {
    /// Upper-case label used in every format.
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Passed => "PASSED",
            Verdict::Failed => "FAILED",
            Verdict::Error => "ERROR",
            Verdict::Inconclusive => "INCONCLUSIVE",
        }
    }

    /// The process exit code of a run with this verdict: 0, 1 (a check failed), 2 (could not
    /// run), 3 (inconclusive).
    pub fn exit_code(self) -> u8 {
        match self {
            Verdict::Passed => 0,
            Verdict::Failed => 1,
            Verdict::Error => 2,
            Verdict::Inconclusive => 3,
        }
    }
}

/// One fault of the typed fault log: when it was asked for, applied and healed, whether it
/// landed, and what it hit.
///
/// `start_ms` is when it was applied (for a missed or refused fault: when it gave up);
/// `end_ms == Some(start_ms)` is an instantaneous fault (a SIGKILL); `end_ms == None` means it
/// was still in force when the run ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultWindow {
    /// What was done, e.g. `redis stop`, `worker kill`.
    pub kind: String,
    /// What it was done to, e.g. `gitspy-redis`, `worker-2`.
    pub target: String,
    /// When the step asked for it (a triggered fault then waits for its condition).
    #[serde(default)]
    pub requested_ms: Option<u64>,
    /// When it was applied (`applied_at`).
    pub start_ms: u64,
    /// When it was healed (`healed_at`): the process started again, Redis back.
    pub end_ms: Option<u64>,
    /// Whether it landed.
    #[serde(default)]
    pub outcome: FaultOutcome,
    /// A crash fault (kill, freeze, crash point): judged by `faults_effective`.
    #[serde(default)]
    pub crash: bool,
    /// The condition it waited for (`holding >= 3`), when triggered.
    #[serde(default)]
    pub trigger: Option<String>,
    /// What it hit at the moment it was applied; `None` when not measured.
    #[serde(default)]
    pub hit: Option<FaultHit>,
    pub note: String,
}

/// Whether a fault landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FaultOutcome {
    /// It was injected.
    #[default]
    Applied,
    /// Its trigger condition never held within the deadline; nothing was injected.
    Missed,
    /// The harness would not inject it (e.g. the attached process did not match any more).
    Refused,
}

impl FaultOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            FaultOutcome::Applied => "applied",
            FaultOutcome::Missed => "missed",
            FaultOutcome::Refused => "refused",
        }
    }
}

/// What a fault hit: the work in flight at the victim when it struck.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultHit {
    /// Delivery ids pending at the victim worker's consumer (`XPENDING`).
    #[serde(default)]
    pub pending: Vec<String>,
    /// Of those, the ones whose `events:<id>:lock` was held.
    #[serde(default)]
    pub locks: u64,
    /// Webhook requests of the sender in flight.
    #[serde(default)]
    pub in_flight_requests: u64,
    /// Requests answered non-2xx or not at all while the fault was in force (Redis faults).
    #[serde(default)]
    pub rejected: u64,
    /// Requests answered `spooled` while the fault was in force (Redis faults).
    #[serde(default)]
    pub spooled: u64,
    /// Requests the sender sent while the fault was in force (filled after the run).
    #[serde(default)]
    pub requests: u64,
    /// Deliveries acknowledged and not yet applied while the fault was in force: the work it
    /// held up (Redis, store, worker and worker-link faults; filled after the run from the
    /// ledger's answer times and the store's `applied_at`).
    #[serde(default)]
    pub waiting: u64,
    /// Of `pending`, how many ended processed exactly once (filled after the verdict).
    #[serde(default)]
    pub recovered: Option<u64>,
    /// Network faults: what the toxic did on its links.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkHit>,
}

/// What a network fault did on its proxied links while it was in force.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkHit {
    /// The links it acted on.
    pub links: Vec<String>,
    /// Connections open when it struck plus those opened while it was in force.
    pub connections: u64,
    /// New connections a partition held (accepted, not connected upstream until it healed).
    pub held_connections: u64,
    /// Bytes a partition held back (delivered when it healed).
    pub bytes_held: u64,
    /// Bytes delivered late by latency, bandwidth or slicing.
    pub bytes_delayed: u64,
    /// Bytes that passed the links while it was in force.
    pub bytes_passed: u64,
    /// Connections reset.
    pub resets: u64,
    /// Connections closed by `limit_data`.
    pub cut: u64,
    /// Ends of stream passed on late.
    pub slow_closed: u64,
    /// A real partition through the Docker API (`via: docker`): the proxies' counts above do
    /// not see it, so whether it acted is judged by the requests and deliveries it held up.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub docker: bool,
}

impl NetworkHit {
    /// `19 connections, 331 B held back, 17 new connections held`: the counts that are not zero.
    pub fn summary(&self) -> String {
        let mut p = vec![format!("{} connections", self.connections)];
        for (n, what) in [
            (self.bytes_held, "B held back"),
            (self.held_connections, "new connections held"),
            (self.bytes_delayed, "B delivered late"),
            (self.resets, "connections reset"),
            (self.cut, "connections cut"),
            (self.slow_closed, "closes delayed"),
        ] {
            if n > 0 {
                p.push(format!("{n} {what}"));
            }
        }
        p.join(", ")
    }
}

impl NetworkHit {
    /// Whether the toxic did anything to the bytes or connections on its links.
    pub fn acted(&self) -> bool {
        self.docker
            || self.held_connections > 0
            || self.bytes_held > 0
            || self.bytes_delayed > 0
            || self.resets > 0
            || self.cut > 0
            || self.slow_closed > 0
    }
}

impl FaultHit {
    /// Whether the fault caught work in flight: deliveries pending at a victim, requests in
    /// flight, or requests rejected or spooled while it was in force.
    pub fn hit_work_in_flight(&self) -> bool {
        !self.pending.is_empty()
            || self.in_flight_requests > 0
            || self.rejected > 0
            || self.spooled > 0
    }

    /// Whether the fault hit anything at all: work in flight, requests that arrived or
    /// deliveries that waited while it was in force.
    pub fn hit_something(&self) -> bool {
        self.hit_work_in_flight() || self.requests > 0 || self.waiting > 0
    }
}

impl FaultWindow {
    /// Whether the fault landed on something. A crash fault must catch work in flight (a Redis
    /// kill also counts acknowledged deliveries waiting in Redis); any other fault must meet
    /// requests or waiting deliveries while in force, and a network toxic must also have acted
    /// on its links (a latency on an idle link delays nothing).
    pub fn effective(&self) -> bool {
        if self.outcome != FaultOutcome::Applied {
            return false;
        }
        let Some(h) = &self.hit else { return false };
        if self.crash && self.target != "redis" {
            return h.hit_work_in_flight();
        }
        if self.target == "network server-store" {
            // The server only reads the store (lookups, boards, readiness): what it breaks is
            // the server's connections, so it counts when the toxic acted on one of them.
            return h
                .network
                .as_ref()
                .is_some_and(|n| n.connections > 0 && n.acted());
        }
        h.hit_something() && h.network.as_ref().is_none_or(NetworkHit::acted)
    }

    /// What it hit, in words: `hit 7 in-flight deliveries (7 locked); all 7 recovered`.
    pub fn hit_text(&self) -> String {
        match self.outcome {
            FaultOutcome::Missed => {
                return format!(
                    "missed: {} never held",
                    self.trigger.as_deref().unwrap_or("the condition")
                )
            }
            FaultOutcome::Refused if self.note.is_empty() => return "refused".into(),
            FaultOutcome::Refused => return format!("refused: {}", self.note),
            FaultOutcome::Applied => {}
        }
        let Some(h) = &self.hit else {
            return String::new();
        };
        let mut parts = Vec::new();
        if !h.pending.is_empty() || self.crash && self.kind.starts_with("worker") {
            let n = h.pending.len();
            let mut t = format!(
                "hit {n} in-flight deliver{}",
                if n == 1 { "y" } else { "ies" }
            );
            if h.locks > 0 {
                t.push_str(&format!(" ({} locked)", h.locks));
            }
            parts.push(t);
        }
        if h.in_flight_requests > 0 || self.kind.starts_with("server") && self.crash {
            parts.push(format!("{} requests in flight", h.in_flight_requests));
        }
        if h.rejected > 0 {
            parts.push(format!("{} requests rejected", h.rejected));
        }
        if h.spooled > 0 {
            parts.push(format!("{} spooled", h.spooled));
        }
        if h.requests > 0 && h.rejected == 0 && h.spooled == 0 {
            parts.push(format!(
                "{} request{} arrived",
                h.requests,
                if h.requests == 1 { "" } else { "s" }
            ));
        }
        if h.waiting > 0 {
            parts.push(format!(
                "{} deliver{} waited",
                h.waiting,
                if h.waiting == 1 { "y" } else { "ies" }
            ));
        }
        if let Some(n) = &h.network {
            parts.push(n.summary());
        }
        if let (Some(r), false) = (h.recovered, h.pending.is_empty()) {
            let n = h.pending.len() as u64;
            parts.push(if r == n {
                format!("all {n} recovered")
            } else {
                format!("{r} of {n} recovered")
            });
        }
        if parts.is_empty() {
            return if self.crash {
                "hit nothing in flight".into()
            } else {
                "hit nothing: no request arrived and no delivery waited".into()
            };
        }
        if !self.crash && !self.effective() {
            return format!("no effect: {}", parts.join("; "));
        }
        parts.join("; ")
    }
}

/// One scenario step as executed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepRecord {
    /// Position in the scenario (0-based, parallel branches numbered in file order).
    pub index: u32,
    /// `send`, `wait`, `fault`, `mark`, `redeliver`, `parallel`, `replay`, ...
    pub kind: String,
    pub description: String,
    pub start_ms: u64,
    /// `None` when the run stopped inside this step.
    pub end_ms: Option<u64>,
    pub ok: bool,
    pub note: String,
    /// For a send step: what was planned and what was done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send: Option<SendFidelity>,
}

/// A send step's plan next to what the sender did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendFidelity {
    pub planned: SendCounts,
    pub done: SendCounts,
}

impl SendFidelity {
    /// `planned 40 ids, 120 requests, 80 copies, ≤ 16 in flight; done 40, 120, 80, 9 in flight,
    /// 0 slipped`.
    pub fn summary(&self) -> String {
        let (p, d) = (&self.planned, &self.done);
        format!(
            "planned {} ids, {} requests, {} copies, ≤ {} in flight; done {}, {}, {}, {} in flight, {} slipped",
            p.distinct_ids,
            p.requests,
            p.copies,
            p.max_in_flight,
            d.distinct_ids,
            d.requests,
            d.copies,
            d.max_in_flight,
            d.slipped
        )
    }

    /// Where done differs from planned, one phrase each (empty: the step did what it said):
    /// distinct ids, requests and copies must be equal, and no more requests in flight than the
    /// bound. Slipped requests (started late because every slot was busy) are recorded and shown
    /// but are not a difference: how fast the system under test answers is what they measure,
    /// not what the harness did.
    pub fn differences(&self) -> Vec<String> {
        let (p, d) = (&self.planned, &self.done);
        let mut out = Vec::new();
        for (what, planned, done) in [
            ("distinct ids", p.distinct_ids, d.distinct_ids),
            ("requests", p.requests, d.requests),
            ("copies", p.copies, d.copies),
        ] {
            if planned != done {
                out.push(format!("{what}: planned {planned}, done {done}"));
            }
        }
        if d.max_in_flight > p.max_in_flight {
            out.push(format!(
                "in flight: at most {} planned, {} done",
                p.max_in_flight, d.max_in_flight
            ));
        }
        out
    }
}

/// Counts of one send step.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendCounts {
    pub distinct_ids: u64,
    pub requests: u64,
    pub copies: u64,
    pub max_in_flight: u64,
    pub slipped: u64,
}

/// A named instant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mark {
    pub name: String,
    pub at_ms: u64,
}

/// One polled series. Well-known names are grouped into charts: `received_rate`,
/// `processed_rate`, `failed_rate` (per second), `waiting`, `active`, `p50_ms`, `p95_ms`;
/// any other series gets a chart of its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Series {
    pub name: String,
    /// Display unit, e.g. `/s`, `ms`, `deliveries`.
    pub unit: String,
    /// `[t_ms, value]`, in time order; a missing sample (gauge absent while Redis was down)
    /// is simply absent, and the chart draws a gap.
    pub points: Vec<(u64, f64)>,
}

/// Ledger totals and the per-delivery classification (SPEC §2.5). The vocabulary, used the same
/// way in every report format, the step notes and the checks:
/// - **sent**: HTTP requests the harness sent (copies and redeliveries included);
/// - **acknowledged**: requests answered 2xx — `accepted` (new: 202 queued or spooled) plus
///   `duplicates` (200 duplicate);
/// - **rejected**: requests answered with a non-2xx status; **no answer** (`indeterminate`):
///   timeouts and transport errors;
/// - **processed**: distinct delivery ids the store reports applied (event-log row, effect, or
///   listed).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerSummary {
    /// Requests sent (every attempt, duplicates included).
    pub sent: u64,
    /// Acknowledged as new: 2xx `queued` or `spooled`.
    pub accepted: u64,
    /// Acknowledged as a duplicate: 200 `duplicate`.
    pub duplicates: u64,
    /// Non-2xx answers.
    pub rejected: u64,
    /// No answer (timeout, transport error).
    pub indeterminate: u64,
    /// Distinct delivery ids the target reports processed.
    pub processed: u64,
    /// Class name (`ok`, `recovered`, `lost`, `duplicated`, `unexpected`, `failed`,
    /// `unacknowledged`, `poisoned`) to its count and a few example delivery ids.
    pub classes: BTreeMap<String, LedgerClass>,
}

impl LedgerSummary {
    /// Requests answered 2xx: accepted as new plus duplicate answers.
    pub fn acknowledged(&self) -> u64 {
        self.accepted + self.duplicates
    }

    /// The counts in the report's one vocabulary, joined by `sep`:
    /// `sent 20 · acknowledged 20 (20 new, 0 duplicate) · rejected 0 · no answer 0 · processed 20`.
    pub fn counts_line(&self, sep: &str) -> String {
        format!(
            "sent {}{sep}acknowledged {} ({} new, {} duplicate){sep}rejected {}{sep}no answer {}{sep}processed {}",
            self.sent,
            self.acknowledged(),
            self.accepted,
            self.duplicates,
            self.rejected,
            self.indeterminate,
            self.processed
        )
    }
}

/// One ledger class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerClass {
    pub count: u64,
    /// Up to a handful of delivery ids in this class (text from the target: escaped on output).
    pub examples: Vec<String>,
}

/// One check with what was measured and what was required.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckRecord {
    /// E.g. `deliveries.lost`, `no_stuck_locks`, `job_duration_p95`.
    pub name: String,
    /// `None` when nothing could be measured (no samples); such a check has failed.
    pub measured: Option<f64>,
    /// How `measured` must compare to `threshold` to pass.
    pub op: CheckOp,
    pub threshold: f64,
    /// Unit of both numbers (`ms`, `s`, `deliveries`, or empty).
    pub unit: String,
    pub passed: bool,
    /// Tolerances, explanations ("2 workers killed: metric increments after the last scrape
    /// are unknowable").
    pub note: String,
}

/// Comparison of a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CheckOp {
    #[serde(rename = "<=")]
    Le,
    #[serde(rename = "<")]
    Lt,
    #[serde(rename = "==")]
    Eq,
    #[serde(rename = ">=")]
    Ge,
    #[serde(rename = ">")]
    Gt,
}

impl CheckOp {
    /// Whether `measured op threshold` holds (a check with nothing measured never passes).
    pub fn holds(self, measured: Option<f64>, threshold: f64) -> bool {
        let Some(m) = measured else { return false };
        match self {
            CheckOp::Le => m <= threshold,
            CheckOp::Lt => m < threshold,
            CheckOp::Eq => m == threshold,
            CheckOp::Ge => m >= threshold,
            CheckOp::Gt => m > threshold,
        }
    }

    /// The mathematical sign shown next to thresholds.
    pub fn symbol(self) -> &'static str {
        match self {
            CheckOp::Le => "≤",
            CheckOp::Lt => "<",
            CheckOp::Eq => "=",
            CheckOp::Ge => "≥",
            CheckOp::Gt => ">",
        }
    }
}

impl CheckRecord {
    /// The name of the efficacy check: failing it makes a run INCONCLUSIVE, not FAILED.
    pub const FAULTS_EFFECTIVE: &'static str = "faults_effective";

    /// Whether this is the `faults_effective` check (its failure is "inconclusive", not data
    /// loss).
    pub fn is_efficacy(&self) -> bool {
        self.name == Self::FAULTS_EFFECTIVE
    }

    /// `pass`, `FAIL`, or `INCONCLUSIVE` for a failed efficacy check.
    pub fn status_label(&self) -> &'static str {
        match (self.passed, self.is_efficacy()) {
            (true, _) => "pass",
            (false, true) => "INCONCLUSIVE",
            (false, false) => "FAIL",
        }
    }

    /// `"640 ms"`, or `"n/a"` when nothing was measured.
    pub fn measured_text(&self) -> String {
        match self.measured {
            Some(v) => with_unit(&fmt_num(v), &self.unit),
            None => "n/a".to_string(),
        }
    }

    /// `"≤ 500 ms"`.
    pub fn threshold_text(&self) -> String {
        format!(
            "{} {}",
            self.op.symbol(),
            with_unit(&fmt_num(self.threshold), &self.unit)
        )
    }
}

fn with_unit(num: &str, unit: &str) -> String {
    if unit.is_empty() {
        num.to_string()
    } else if unit.starts_with('/') || unit == "%" {
        format!("{num}{unit}")
    } else {
        format!("{num} {unit}")
    }
}

/// Formats a number for people: integers without decimals, others with up to three,
/// trailing zeros removed. Deterministic for a given `f64`.
pub fn fmt_num(v: f64) -> String {
    if !v.is_finite() {
        return "n/a".to_string();
    }
    if v.fract() == 0.0 && v.abs() < 1e15 {
        return format!("{v:.0}");
    }
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".to_string()
    } else {
        s.to_string()
    }
}

/// Formats run-relative milliseconds as seconds, `12.5s`.
pub fn fmt_ms(ms: u64) -> String {
    format!("{}s", fmt_num(ms as f64 / 1000.0))
}

/// The final Redis probe (SPEC §2.4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeSummary {
    /// Count of `events:*:state` keys per state value.
    pub states: BTreeMap<String, u64>,
    /// `events:*:lock` keys present.
    pub locks: u64,
    /// Locks with no TTL, a TTL above the lock TTL, or left after the drain.
    pub stuck_locks: u64,
    pub stream_len: u64,
    pub pending: u64,
    pub dead: u64,
}

/// A managed process and the tail of its output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessLog {
    /// `redis`, `server`, `worker-1`, ...
    pub role: String,
    /// Pid of the last incarnation, when known.
    pub pid: Option<u32>,
    pub restarts: u32,
    /// Last lines of stdout+stderr (text from the target: escaped on output).
    pub log_tail: String,
    /// The full log, relative to the run directory (`system/server.log`); `None` when not kept.
    #[serde(default)]
    pub log_file: Option<String>,
    /// Errors and warnings of the full log, overall and per fault window.
    #[serde(default)]
    pub log_summary: Option<LogSummary>,
}

/// Errors and warnings of one process's full log. A line's level is the process's own
/// (`ERROR`/`WARN` of GitSpy's log lines; Redis's `#` warning level; a Rust panic is an error);
/// a line is in a fault's window when its timestamp is from the fault's start to 5 s after it
/// healed (or to the end of the run); lines without a timestamp take the last one before them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSummary {
    pub lines: u64,
    pub errors: u64,
    pub warnings: u64,
    /// Errors and warnings in no fault's window.
    pub outside_errors: u64,
    pub outside_warnings: u64,
    /// One entry per fault of `faults` with at least one error or warning in its window.
    pub per_fault: Vec<FaultLogCount>,
    /// The first few error lines, else warning lines (text from the target: escaped on output).
    pub examples: Vec<String>,
}

/// Errors and warnings logged in one fault's window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultLogCount {
    /// Index of the fault in `faults`.
    pub fault: u32,
    pub errors: u64,
    pub warnings: u64,
}

/// One `gitspy replay` the scenario ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayRecord {
    pub name: String,
    /// Window start as given (a mark name, RFC 3339 or ms).
    pub from: String,
    pub to: String,
    pub dry_run: bool,
    /// `owner/repo` to board digest (`sha256:...`).
    pub digests: BTreeMap<String, String>,
}

impl RunReport {
    /// Checks what the JSON schema cannot catch from the Rust side: the schema version and
    /// non-finite numbers (serde_json would write them as `null`, and the run would no
    /// longer read back).
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.schema_version != SCHEMA_VERSION {
            bail!(
                "run report has schema_version {}, this gitspy-chaos reads {SCHEMA_VERSION}\n\
                 hint: render it with the gitspy-chaos version that wrote it ({} {})",
                self.schema_version,
                self.tool.name,
                self.tool.version
            );
        }
        if !self.scenario.time_scale.is_finite() {
            bail!("scenario.time_scale is not a finite number");
        }
        for s in &self.series {
            if let Some((t, _)) = s.points.iter().find(|(_, v)| !v.is_finite()) {
                bail!("series {:?} has a non-finite value at t={t}ms", s.name);
            }
        }
        for c in &self.checks {
            if !c.threshold.is_finite() || c.measured.is_some_and(|m| !m.is_finite()) {
                bail!(
                    "check {:?} has a non-finite measured value or threshold (use null for \"not measured\")",
                    c.name
                );
            }
        }
        Ok(())
    }

    /// The verdict a completed run's checks give: FAILED when a check other than
    /// `faults_effective` failed, INCONCLUSIVE when only that one did, else PASSED.
    pub fn verdict_of(checks: &[CheckRecord]) -> Verdict {
        if checks.iter().any(|c| !c.passed && !c.is_efficacy()) {
            Verdict::Failed
        } else if checks.iter().any(|c| !c.passed) {
            Verdict::Inconclusive
        } else {
            Verdict::Passed
        }
    }

    /// One line per fault: `worker kill #2 of worker-1 at 12.3s: hit 7 in-flight deliveries;
    /// all 7 recovered`. The number counts faults of that kind on that target.
    pub fn fault_lines(&self) -> Vec<String> {
        let mut seen: BTreeMap<(&str, &str), u32> = BTreeMap::new();
        self.faults
            .iter()
            .map(|f| {
                let n = seen
                    .entry((f.kind.as_str(), f.target.as_str()))
                    .or_insert(0);
                *n += 1;
                let action = f.kind.rsplit(' ').next().unwrap_or(&f.kind);
                let hit = f.hit_text();
                let mut line = format!("{action} #{n} of {} at {}", f.target, fmt_ms(f.start_ms));
                if !hit.is_empty() {
                    line.push_str(": ");
                    line.push_str(&hit);
                }
                line
            })
            .collect()
    }

    /// Number of checks that passed.
    pub fn checks_passed(&self) -> usize {
        self.checks.iter().filter(|c| c.passed).count()
    }

    /// The count of a ledger class, 0 when absent.
    pub fn class_count(&self, class: &str) -> u64 {
        self.ledger.classes.get(class).map_or(0, |c| c.count)
    }
}

/// Ledger classes in the order SPEC §2.5 lists them; classes not listed follow alphabetically.
pub const CLASS_ORDER: [&str; 8] = [
    "ok",
    "recovered",
    "lost",
    "duplicated",
    "unexpected",
    "failed",
    "unacknowledged",
    "poisoned",
];

/// The ledger classes of `run` in display order.
pub fn ordered_classes(run: &RunReport) -> Vec<(&str, &LedgerClass)> {
    let mut out: Vec<(&str, &LedgerClass)> = CLASS_ORDER
        .iter()
        .filter_map(|name| run.ledger.classes.get_key_value(*name))
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    out.extend(
        run.ledger
            .classes
            .iter()
            .filter(|(k, _)| !CLASS_ORDER.contains(&k.as_str()))
            .map(|(k, v)| (k.as_str(), v)),
    );
    out
}

/// A report output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum)]
pub enum Format {
    /// `run.json`, the source of every other format.
    Json,
    /// `report.md`, for a PR comment or `$GITHUB_STEP_SUMMARY`.
    Md,
    /// `report.html`, one self-contained file with charts.
    Html,
    /// `junit.xml`, one testcase per check.
    Junit,
}

impl Format {
    /// Every format, in the order a run writes them.
    pub const ALL: [Format; 4] = [Format::Json, Format::Md, Format::Html, Format::Junit];

    /// The exporter that renders this format.
    pub fn exporter(self) -> &'static dyn Exporter {
        match self {
            Format::Json => &JsonExporter,
            Format::Md => &MarkdownExporter,
            Format::Html => &HtmlExporter,
            Format::Junit => &JunitExporter,
        }
    }

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Md => "md",
            Format::Html => "html",
            Format::Junit => "junit",
        }
    }

    /// Parses a comma-separated list such as `md,html,junit` (duplicates removed, order kept).
    pub fn parse_list(s: &str) -> Result<Vec<Format>, UnknownFormat> {
        let mut out = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let f: Format = part.parse()?;
            if !out.contains(&f) {
                out.push(f);
            }
        }
        Ok(out)
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A format name that is not one of `json`, `md`, `html`, `junit`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown report format {0:?}; expected one of: json, md, html, junit")]
pub struct UnknownFormat(pub String);

impl FromStr for Format {
    type Err = UnknownFormat;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "json" => Ok(Format::Json),
            "md" | "markdown" => Ok(Format::Md),
            "html" => Ok(Format::Html),
            "junit" | "xml" => Ok(Format::Junit),
            _ => Err(UnknownFormat(s.to_string())),
        }
    }
}

/// One output format. Implementations render from the model alone and must be deterministic:
/// the same `RunReport` always gives the same bytes.
pub trait Exporter: Sync {
    /// The file this exporter writes inside a run directory.
    fn file_name(&self) -> &'static str;
    /// Renders the whole file.
    fn render(&self, run: &RunReport) -> anyhow::Result<Vec<u8>>;
}

/// Renders `formats` of `run` into `dir` (created if missing) and returns the written paths,
/// in the order of `formats`. Each file is written to a temporary name and renamed, so a
/// reader never sees half a report.
pub fn write_all(run: &RunReport, dir: &Path, formats: &[Format]) -> anyhow::Result<Vec<PathBuf>> {
    run.validate()?;
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create report directory {}", dir.display()))?;
    let mut written = Vec::with_capacity(formats.len());
    for format in formats {
        let exporter = format.exporter();
        let bytes = exporter
            .render(run)
            .with_context(|| format!("cannot render the {format} report"))?;
        let path = dir.join(exporter.file_name());
        let tmp = dir.join(format!(".{}.tmp", exporter.file_name()));
        std::fs::write(&tmp, &bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &path)
            .with_context(|| format!("cannot move {} to {}", tmp.display(), path.display()))?;
        written.push(path);
    }
    Ok(written)
}

/// Reads and checks a `run.json`.
pub fn read_run(run_json: &Path) -> anyhow::Result<RunReport> {
    let bytes =
        std::fs::read(run_json).with_context(|| format!("cannot read {}", run_json.display()))?;
    // Look at the version first, so a newer file fails with a useful message rather than
    // with an unknown-field error.
    let probe: serde_json::Value = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not JSON", run_json.display()))?;
    match probe
        .get("schema_version")
        .and_then(serde_json::Value::as_u64)
    {
        Some(v) if v == u64::from(SCHEMA_VERSION) => {}
        Some(v) => bail!(
            "{} has schema_version {v}, this gitspy-chaos reads {SCHEMA_VERSION}",
            run_json.display()
        ),
        None => bail!(
            "{} has no schema_version: not a gitspy-chaos run report",
            run_json.display()
        ),
    }
    let run: RunReport = serde_json::from_value(probe).with_context(|| {
        format!(
            "{} does not match the run report schema",
            run_json.display()
        )
    })?;
    run.validate()
        .with_context(|| format!("invalid run report {}", run_json.display()))?;
    Ok(run)
}

/// `gitspy-chaos report <run.json> --format ...`: re-renders a finished run into `out_dir`
/// (default: the directory holding `run.json`), prints the terminal summary on stdout and the
/// written paths on stderr.
pub fn report_cmd(
    run_json: &Path,
    formats: &[Format],
    out_dir: Option<&Path>,
) -> anyhow::Result<()> {
    let run = read_run(run_json)?;
    let dir = match out_dir {
        Some(d) => d.to_path_buf(),
        None => match run_json.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        },
    };
    let written = write_all(&run, &dir, formats)?;
    print!("{}", render_terminal(&run));
    for path in written {
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// The directory name for a run: `<UTC timestamp>-<scenario>`, e.g.
/// `20261126T200638Z-redis-down`. The scenario name is reduced to `[A-Za-z0-9._-]`.
pub fn run_dir_name(started_at: time::OffsetDateTime, scenario: &str) -> String {
    let t = started_at.to_offset(time::UtcOffset::UTC);
    let mut name: String = scenario
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    if name.trim_matches(['-', '.']).is_empty() {
        name = "scenario".to_string();
    }
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z-{}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        name
    )
}

/// `reports_root/<UTC timestamp>-<scenario>/` for `run`, from its `started_at`.
pub fn run_dir(reports_root: &Path, run: &RunReport) -> anyhow::Result<PathBuf> {
    let started = time::OffsetDateTime::parse(
        &run.started_at,
        &time::format_description::well_known::Rfc3339,
    )
    .with_context(|| format!("started_at {:?} is not RFC 3339", run.started_at))?;
    Ok(reports_root.join(run_dir_name(started, &run.scenario.name)))
}

/// Creates and returns a fresh directory for `run` under `reports_root`: the [`run_dir`] name,
/// or that name with `-2`, `-3`, ... when a run of the same scenario started in the same
/// second already has it. Never reuses (and so never overwrites) an existing directory.
pub fn create_run_dir(reports_root: &Path, run: &RunReport) -> anyhow::Result<PathBuf> {
    let base = run_dir(reports_root, run)?;
    std::fs::create_dir_all(reports_root)
        .with_context(|| format!("cannot create report root {}", reports_root.display()))?;
    for n in 1u32..1000 {
        let candidate = if n == 1 {
            base.clone()
        } else {
            let mut name = base.as_os_str().to_os_string();
            name.push(format!("-{n}"));
            PathBuf::from(name)
        };
        match std::fs::create_dir(&candidate) {
            Ok(()) => return Ok(candidate),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(e).with_context(|| {
                    format!("cannot create report directory {}", candidate.display())
                })
            }
        }
    }
    bail!(
        "{} and 998 numbered variants already exist; clean up {}",
        base.display(),
        reports_root.display()
    )
}

#[cfg(test)]
mod tests {

    #[test]
    fn send_fidelity_names_every_difference_but_not_slips() {
        let planned = SendCounts {
            distinct_ids: 40,
            requests: 120,
            copies: 80,
            max_in_flight: 16,
            slipped: 0,
        };
        let same = SendFidelity {
            planned: planned.clone(),
            done: SendCounts {
                max_in_flight: 9,
                slipped: 3,
                ..planned.clone()
            },
        };
        assert!(same.differences().is_empty());
        let off = SendFidelity {
            planned: planned.clone(),
            done: SendCounts {
                distinct_ids: 5,
                requests: 40,
                copies: 35,
                max_in_flight: 17,
                slipped: 0,
            },
        };
        assert_eq!(
            off.differences(),
            [
                "distinct ids: planned 40, done 5",
                "requests: planned 120, done 40",
                "copies: planned 80, done 35",
                "in flight: at most 16 planned, 17 done",
            ]
        );
    }

    use super::*;

    #[test]
    fn numbers_are_formatted_for_people() {
        assert_eq!(fmt_num(0.0), "0");
        assert_eq!(fmt_num(20.0), "20");
        assert_eq!(fmt_num(12.5), "12.5");
        assert_eq!(fmt_num(0.1234), "0.123");
        assert_eq!(fmt_num(-0.0001), "0");
        assert_eq!(fmt_num(f64::NAN), "n/a");
        assert_eq!(fmt_ms(12_500), "12.5s");
    }

    #[test]
    fn check_ops_compare_measured_to_threshold() {
        assert!(CheckOp::Le.holds(Some(500.0), 500.0));
        assert!(!CheckOp::Lt.holds(Some(500.0), 500.0));
        assert!(CheckOp::Ge.holds(Some(30.0), 28.0));
        assert!(!CheckOp::Eq.holds(Some(1.0), 0.0));
        assert!(!CheckOp::Le.holds(None, 0.0));
    }

    #[test]
    fn formats_parse_from_a_list() {
        assert_eq!(
            Format::parse_list("md, html,junit,md"),
            Ok(vec![Format::Md, Format::Html, Format::Junit])
        );
        assert_eq!(
            Format::parse_list("md,pdf"),
            Err(UnknownFormat("pdf".to_string()))
        );
    }

    #[test]
    fn run_dir_name_is_utc_and_safe() {
        let t = time::macros::datetime!(2026-11-26 21:06:38 +01:00);
        assert_eq!(
            run_dir_name(t, "redis down/../x"),
            "20261126T200638Z-redis-down-..-x"
        );
        assert_eq!(run_dir_name(t, "../"), "20261126T200638Z-scenario");
    }
}
