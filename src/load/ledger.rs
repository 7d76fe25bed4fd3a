//! The ledger: one entry per HTTP attempt the harness made, the ground truth the verdict judges
//! every delivery id against (SPEC §2.4, §2.5).
//!
//! Entries are plain data (JSON round-trips, goes into `run.json`). Concurrent senders do not share
//! a lock on it: each batch's request tasks send their entries over a channel to one collector
//! ([`collector`]), as oha does, and the finished batch is appended in schedule order.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// What one HTTP attempt came back with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The server answered with this HTTP status.
    Status(u16),
    /// No answer within the per-request timeout: the server may or may not have taken the
    /// delivery (indeterminate, like a Jepsen `:info`).
    Timeout,
    /// The connection could not be opened, so no byte of the request left the harness: definitely
    /// not accepted.
    Refused(String),
    /// Any other transport failure (reset mid-request, malformed response…): the request may have
    /// reached the server, so the outcome is indeterminate.
    Transport(String),
}

impl Outcome {
    /// A 2xx answer: the server says the delivery is durable (or already known).
    pub fn is_success(&self) -> bool {
        matches!(self, Outcome::Status(code) if (200..300).contains(code))
    }

    /// No definite answer either way: the delivery may or may not have been taken.
    pub fn is_indeterminate(&self) -> bool {
        matches!(self, Outcome::Timeout | Outcome::Transport(_))
    }

    /// A definite refusal: a non-2xx status, or a connection that never opened.
    pub fn is_rejected(&self) -> bool {
        match self {
            Outcome::Status(code) => !(200..300).contains(code),
            Outcome::Refused(_) => true,
            Outcome::Timeout | Outcome::Transport(_) => false,
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Status(code) => write!(f, "{code}"),
            Outcome::Timeout => f.write_str("timeout"),
            Outcome::Refused(e) => write!(f, "refused: {e}"),
            Outcome::Transport(e) => write!(f, "transport error: {e}"),
        }
    }
}

/// One HTTP attempt.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// The `X-GitHub-Delivery` id sent.
    pub delivery: String,
    /// 1 for the first request carrying this id, then 2, 3… for every later request with the same
    /// id (deliberate duplicates and redeliveries alike), in schedule order.
    pub attempt: u32,
    /// Set when this request was a deliberate exact duplicate (same id, same body) of that
    /// delivery; `None` for originals and for redeliveries.
    pub duplicate_of: Option<String>,
    /// The `X-GitHub-Event` sent.
    pub event: String,
    /// When the open-model schedule wanted this request to start (unix ms).
    pub scheduled_at_ms: u64,
    /// When the request actually started (unix ms); later than `scheduled_at_ms` only when the
    /// concurrency bound was saturated.
    pub sent_at_ms: u64,
    pub outcome: Outcome,
    /// From the start of the request to the end of the response body (or to the timeout), to
    /// the microsecond.
    pub latency_ms: f64,
    /// The response JSON's `status` (`queued`, `duplicate`, `spooled`), else its `error`, when
    /// the body had one.
    pub answer: Option<String>,
}

impl LedgerEntry {
    /// A 200 whose body says the server already knew the delivery id.
    pub fn is_duplicate_answer(&self) -> bool {
        self.outcome.is_success() && self.answer.as_deref() == Some("duplicate")
    }
}

/// Counts over a ledger. `sent = accepted + duplicates + rejected + indeterminate`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LedgerSummary {
    /// HTTP attempts made.
    pub sent: u64,
    /// Distinct delivery ids among them.
    pub distinct: u64,
    /// 2xx answers other than "duplicate" (queued, spooled).
    pub accepted: u64,
    /// 2xx answers saying `"status":"duplicate"`.
    pub duplicates: u64,
    /// Non-2xx answers and connections refused.
    pub rejected: u64,
    /// Timeouts and other transport errors: no definite answer.
    pub indeterminate: u64,
    /// Latency percentiles over the attempts that got an HTTP answer.
    pub latency_p50_ms: Option<f64>,
    pub latency_p95_ms: Option<f64>,
    pub latency_max_ms: Option<f64>,
}

/// Every attempt of a run, in schedule order.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Ledger {
    pub entries: Vec<LedgerEntry>,
}

impl Ledger {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, entry: LedgerEntry) {
        self.entries.push(entry);
    }

    pub fn extend(&mut self, entries: impl IntoIterator<Item = LedgerEntry>) {
        self.entries.extend(entries);
    }

    pub fn summary(&self) -> LedgerSummary {
        summarize(&self.entries)
    }

    /// The ids GitHub's "redeliver failed" would resend: every id none of whose attempts got a
    /// 2xx (all rejected or indeterminate), in order of first appearance.
    pub fn to_redeliver(&self) -> Vec<String> {
        let mut succeeded: HashSet<&str> = HashSet::new();
        for e in &self.entries {
            if e.outcome.is_success() {
                succeeded.insert(&e.delivery);
            }
        }
        let mut seen: HashSet<&str> = HashSet::new();
        let mut out = Vec::new();
        for e in &self.entries {
            if !succeeded.contains(e.delivery.as_str()) && seen.insert(&e.delivery) {
                out.push(e.delivery.clone());
            }
        }
        out
    }

    /// Attempts per delivery id.
    pub fn by_delivery(&self) -> HashMap<&str, Vec<&LedgerEntry>> {
        let mut map: HashMap<&str, Vec<&LedgerEntry>> = HashMap::new();
        for e in &self.entries {
            map.entry(e.delivery.as_str()).or_default().push(e);
        }
        map
    }

    pub fn to_json(&self) -> anyhow::Result<String> {
        serde_json::to_string_pretty(self).context("serialising the ledger")
    }

    pub fn from_json(text: &str) -> anyhow::Result<Self> {
        serde_json::from_str(text).context("parsing a ledger")
    }

    /// Writes [`Ledger::to_json`] and a newline, streamed: a long run's ledger is never held as
    /// one string next to the entries.
    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        use std::io::Write as _;
        let context = || format!("writing the ledger to {}", path.display());
        let file = std::fs::File::create(path).with_context(context)?;
        let mut out = std::io::BufWriter::new(file);
        serde_json::to_writer_pretty(&mut out, self).with_context(context)?;
        out.write_all(b"\n").with_context(context)?;
        out.flush().with_context(context)
    }

    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the ledger {}", path.display()))?;
        Self::from_json(&text).with_context(|| format!("in {}", path.display()))
    }
}

/// Summary counts over any slice of entries (a whole ledger or one batch).
pub fn summarize(entries: &[LedgerEntry]) -> LedgerSummary {
    let mut s = LedgerSummary::default();
    let mut ids: HashSet<&str> = HashSet::new();
    let mut latencies: Vec<f64> = Vec::new();
    for e in entries {
        s.sent += 1;
        ids.insert(&e.delivery);
        if e.is_duplicate_answer() {
            s.duplicates += 1;
        } else if e.outcome.is_success() {
            s.accepted += 1;
        } else if e.outcome.is_rejected() {
            s.rejected += 1;
        } else {
            s.indeterminate += 1;
        }
        if matches!(e.outcome, Outcome::Status(_)) {
            latencies.push(e.latency_ms);
        }
    }
    s.distinct = ids.len() as u64;
    latencies.sort_by(f64::total_cmp);
    s.latency_p50_ms = percentile(&latencies, 0.50);
    s.latency_p95_ms = percentile(&latencies, 0.95);
    s.latency_max_ms = latencies.last().copied();
    s
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// The sending half of a batch's ledger channel; cloned into every request task. Entries carry
/// their slot in the schedule so the collector can restore schedule order.
#[derive(Clone, Debug)]
pub struct LedgerWriter {
    tx: mpsc::UnboundedSender<(usize, LedgerEntry)>,
}

impl LedgerWriter {
    /// Records one attempt. If the collector is gone the batch was abandoned and the entry has
    /// nowhere to go, so it is dropped.
    pub fn record(&self, slot: usize, entry: LedgerEntry) {
        let _ = self.tx.send((slot, entry));
    }
}

/// The one task that receives a batch's entries; [`LedgerCollector::finish`] returns them in
/// schedule order once every [`LedgerWriter`] is dropped.
#[derive(Debug)]
pub struct LedgerCollector {
    task: JoinHandle<Vec<(usize, LedgerEntry)>>,
}

impl LedgerCollector {
    pub async fn finish(self) -> anyhow::Result<Vec<LedgerEntry>> {
        let mut entries = self
            .task
            .await
            .context("the ledger collector task failed")?;
        entries.sort_by_key(|(slot, _)| *slot);
        Ok(entries.into_iter().map(|(_, e)| e).collect())
    }
}

/// Starts a collector task (needs a tokio runtime) and returns the writer to clone into senders.
pub fn collector() -> (LedgerWriter, LedgerCollector) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        let mut entries = Vec::new();
        while let Some(item) = rx.recv().await {
            entries.push(item);
        }
        entries
    });
    (LedgerWriter { tx }, LedgerCollector { task })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, attempt: u32, outcome: Outcome, answer: Option<&str>) -> LedgerEntry {
        LedgerEntry {
            delivery: id.to_string(),
            attempt,
            duplicate_of: None,
            event: "issues".to_string(),
            scheduled_at_ms: 1_000,
            sent_at_ms: 1_001,
            outcome,
            latency_ms: f64::from(attempt),
            answer: answer.map(str::to_string),
        }
    }

    fn mixed() -> Ledger {
        Ledger {
            entries: vec![
                entry("ok", 1, Outcome::Status(202), Some("queued")),
                entry("down", 1, Outcome::Status(503), Some("queue unavailable")),
                entry("slow", 1, Outcome::Timeout, None),
                entry("recovered", 1, Outcome::Status(503), None),
                entry(
                    "refused",
                    1,
                    Outcome::Refused("connection refused".into()),
                    None,
                ),
                entry(
                    "reset",
                    1,
                    Outcome::Transport("connection reset".into()),
                    None,
                ),
                entry("recovered", 2, Outcome::Status(202), Some("queued")),
                entry("ok", 2, Outcome::Status(200), Some("duplicate")),
                entry("down", 2, Outcome::Timeout, None),
                entry("spooled", 1, Outcome::Status(202), Some("spooled")),
            ],
        }
    }

    #[test]
    fn to_redeliver_lists_ids_without_any_2xx_in_first_appearance_order() {
        assert_eq!(mixed().to_redeliver(), ["down", "slow", "refused", "reset"]);
    }

    #[test]
    fn summary_partitions_attempts() {
        let s = mixed().summary();
        assert_eq!(s.sent, 10);
        assert_eq!(s.distinct, 7);
        assert_eq!(s.accepted, 3, "queued ok, queued recovered, spooled");
        assert_eq!(s.duplicates, 1);
        assert_eq!(s.rejected, 3, "two 503 and one refused connection");
        assert_eq!(s.indeterminate, 3, "two timeouts and one reset");
        assert_eq!(
            s.sent,
            s.accepted + s.duplicates + s.rejected + s.indeterminate
        );
        // Latencies of the six attempts with an HTTP status: 1, 1, 1, 2, 2, 1.
        assert_eq!(s.latency_p50_ms, Some(1.0));
        assert_eq!(s.latency_max_ms, Some(2.0));
    }

    #[test]
    fn empty_ledger_has_no_latency_and_nothing_to_redeliver() {
        let l = Ledger::new();
        assert_eq!(l.summary(), LedgerSummary::default());
        assert!(l.to_redeliver().is_empty());
    }

    #[test]
    fn write_streams_the_same_text_as_to_json() {
        let l = mixed();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.json");
        l.write(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, l.to_json().unwrap() + "\n");
        assert_eq!(Ledger::read(&path).unwrap(), l);
    }

    #[test]
    fn json_round_trip() {
        let l = mixed();
        let text = l.to_json().unwrap();
        assert!(text.contains(r#""status": 503"#), "{text}");
        assert!(text.contains(r#""outcome": "timeout""#), "{text}");
        assert_eq!(Ledger::from_json(&text).unwrap(), l);
    }

    #[tokio::test]
    async fn collector_restores_schedule_order() {
        let (writer, collector) = collector();
        let mut tasks = Vec::new();
        for slot in (0..20).rev() {
            let w = writer.clone();
            tasks.push(tokio::spawn(async move {
                w.record(slot, entry(&format!("d{slot}"), 1, Outcome::Timeout, None));
            }));
        }
        drop(writer);
        for t in tasks {
            t.await.unwrap();
        }
        let entries = collector.finish().await.unwrap();
        let ids: Vec<_> = entries.iter().map(|e| e.delivery.clone()).collect();
        let expected: Vec<_> = (0..20).map(|s| format!("d{s}")).collect();
        assert_eq!(ids, expected);
    }
}
