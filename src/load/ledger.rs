//! The ledger: one entry per HTTP attempt the harness made, the ground truth the verdict judges
//! every delivery id against (SPEC §2.4, §2.5).
//!
//! Entries are plain data (JSON round-trips, goes into `run.json`). Concurrent senders do not share
//! a lock on it: each batch's request tasks send their entries over a channel to one collector
//! ([`collector`]), as oha does, and the finished batch is appended in schedule order.
//!
//! A long flood (`gitspy-chaos send`) keeps no entry in memory: its collector counts each
//! attempt into a [`Tally`] and, with a ledger file asked for, writes it as one fixed-size
//! record at its schedule position in a [`RecordFile`] (strings interned), which becomes the
//! same JSON ledger at the end ([`RecordFile::write_json`]).

use std::collections::{HashMap, HashSet};
use std::io::{BufReader, Read as _};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

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
    /// A first request for `delivery` (an `issues` event) sent at unix ms `at` and answered
    /// `outcome`/`answer` `latency_ms` later: the entry unit tests build ledgers from.
    #[cfg(test)]
    pub(crate) fn answered(
        delivery: &str,
        at: u64,
        outcome: Outcome,
        answer: Option<&str>,
        latency_ms: f64,
    ) -> LedgerEntry {
        LedgerEntry {
            delivery: delivery.into(),
            attempt: 1,
            duplicate_of: None,
            event: "issues".into(),
            scheduled_at_ms: at,
            sent_at_ms: at,
            outcome,
            latency_ms,
            answer: answer.map(Into::into),
        }
    }

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

/// Running counts of a streamed ledger: what [`summarize`] says of the entries, without them.
#[derive(Clone, Debug, Default)]
pub struct Tally {
    pub sent: u64,
    pub accepted: u64,
    pub duplicates: u64,
    pub rejected: u64,
    pub indeterminate: u64,
    /// Attempts whose connection never opened, and the first one's error.
    pub refused: u64,
    pub first_refused: Option<String>,
    /// Latencies of the attempts with an HTTP answer, in whole microseconds.
    latencies_us: Vec<u32>,
}

impl Tally {
    pub fn add(&mut self, e: &LedgerEntry) {
        self.sent += 1;
        if e.is_duplicate_answer() {
            self.duplicates += 1;
        } else if e.outcome.is_success() {
            self.accepted += 1;
        } else if e.outcome.is_rejected() {
            self.rejected += 1;
        } else {
            self.indeterminate += 1;
        }
        if let Outcome::Refused(why) = &e.outcome {
            self.refused += 1;
            if self.first_refused.is_none() {
                self.first_refused = Some(why.clone());
            }
        }
        if matches!(e.outcome, Outcome::Status(_)) {
            let us = (e.latency_ms * 1000.0)
                .round()
                .clamp(0.0, f64::from(u32::MAX));
            self.latencies_us.push(us as u32);
        }
    }

    /// The summary of the attempts counted, `distinct` ids among them.
    pub fn summary(&self, distinct: u64) -> LedgerSummary {
        let mut sorted: Vec<f64> = self
            .latencies_us
            .iter()
            .map(|us| f64::from(*us) / 1000.0)
            .collect();
        sorted.sort_by(f64::total_cmp);
        LedgerSummary {
            sent: self.sent,
            distinct,
            accepted: self.accepted,
            duplicates: self.duplicates,
            rejected: self.rejected,
            indeterminate: self.indeterminate,
            latency_p50_ms: percentile(&sorted, 0.50),
            latency_p95_ms: percentile(&sorted, 0.95),
            latency_max_ms: sorted.last().copied(),
        }
    }
}

/// Bytes of one record of a [`RecordFile`].
const RECORD: usize = 128;
/// Longest delivery id kept inside a record; longer ones are kept in memory beside the file.
const ID_INLINE: usize = 64;

/// A ledger on disk: attempt `n` of a sender is the fixed-size record at `n * 128`, written
/// when its answer is in, whatever order answers come back in; delivery ids up to 64 bytes sit
/// in the record, every other string (event, error, answer) is interned once. Read back in
/// schedule order by [`RecordFile::entries`].
#[derive(Debug)]
pub struct RecordFile {
    path: PathBuf,
    file: std::fs::File,
    inner: Mutex<Interned>,
}

#[derive(Debug, Default)]
struct Interned {
    texts: Vec<String>,
    index: HashMap<String, u32>,
    /// Ids too long for a record, by record number.
    long_ids: HashMap<u64, String>,
}

impl Interned {
    fn intern(&mut self, text: &str) -> u32 {
        if let Some(i) = self.index.get(text) {
            return *i;
        }
        let i = self.texts.len() as u32;
        self.texts.push(text.to_string());
        self.index.insert(text.to_string(), i);
        i
    }
}

impl RecordFile {
    /// Creates (or truncates) the file at `path`.
    pub fn create(path: &Path) -> anyhow::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(path)
            .with_context(|| format!("creating the ledger records {}", path.display()))?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
            inner: Mutex::new(Interned::default()),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn inner(&self) -> MutexGuard<'_, Interned> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes `e` as record number `n`.
    pub fn write(&self, n: u64, e: &LedgerEntry) -> std::io::Result<()> {
        let mut r = [0u8; RECORD];
        r[0] = 1;
        let id = e.delivery.as_bytes();
        {
            let mut t = self.inner();
            if id.len() <= ID_INLINE {
                r[1] = id.len() as u8;
                r[2..2 + id.len()].copy_from_slice(id);
            } else {
                r[1] = u8::MAX;
                t.long_ids.insert(n, e.delivery.clone());
            }
            let (kind, status, text) = match &e.outcome {
                Outcome::Status(code) => (0u8, *code, None),
                Outcome::Timeout => (1, 0, None),
                Outcome::Refused(why) => (2, 0, Some(why.as_str())),
                Outcome::Transport(why) => (3, 0, Some(why.as_str())),
            };
            r[67] = kind;
            r[68..70].copy_from_slice(&status.to_le_bytes());
            r[70..74].copy_from_slice(&t.intern(&e.event).to_le_bytes());
            let text = text.map_or(0, |w| t.intern(w) + 1);
            r[74..78].copy_from_slice(&text.to_le_bytes());
            let answer = e.answer.as_deref().map_or(0, |a| t.intern(a) + 1);
            r[78..82].copy_from_slice(&answer.to_le_bytes());
            r[66] = match &e.duplicate_of {
                None => 0,
                Some(d) if *d == e.delivery => 1,
                Some(d) => {
                    r[118..122].copy_from_slice(&t.intern(d).to_le_bytes());
                    2
                }
            };
        }
        r[82..86].copy_from_slice(&e.attempt.to_le_bytes());
        r[86..94].copy_from_slice(&e.scheduled_at_ms.to_le_bytes());
        r[94..102].copy_from_slice(&e.sent_at_ms.to_le_bytes());
        r[102..110].copy_from_slice(&e.latency_ms.to_bits().to_le_bytes());
        self.file.write_all_at(&r, n * RECORD as u64)
    }

    /// Every record written, in record order (numbers never written are skipped).
    pub fn entries(
        &self,
    ) -> anyhow::Result<impl Iterator<Item = anyhow::Result<LedgerEntry>> + '_> {
        let file = std::fs::File::open(&self.path)
            .with_context(|| format!("reading the ledger records {}", self.path.display()))?;
        let mut reader = BufReader::with_capacity(1 << 20, file);
        let mut n: u64 = 0;
        Ok(std::iter::from_fn(move || loop {
            let mut r = [0u8; RECORD];
            match reader.read_exact(&mut r) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return None,
                Err(e) => {
                    return Some(Err(
                        anyhow::Error::new(e).context("reading the ledger records")
                    ))
                }
            }
            n += 1;
            if r[0] == 0 {
                continue;
            }
            return Some(self.decode(n - 1, &r));
        }))
    }

    fn decode(&self, n: u64, r: &[u8; RECORD]) -> anyhow::Result<LedgerEntry> {
        let t = self.inner();
        let u16_at = |i: usize| u16::from_le_bytes([r[i], r[i + 1]]);
        let u32_at = |i: usize| u32::from_le_bytes([r[i], r[i + 1], r[i + 2], r[i + 3]]);
        let u64_at = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&r[i..i + 8]);
            u64::from_le_bytes(b)
        };
        let text = |i: u32| {
            t.texts
                .get(i as usize)
                .cloned()
                .with_context(|| format!("ledger record {n} names string {i}, never written"))
        };
        let delivery = if r[1] == u8::MAX {
            t.long_ids
                .get(&n)
                .cloned()
                .with_context(|| format!("ledger record {n} has a long id never kept"))?
        } else {
            let len = usize::from(r[1]).min(ID_INLINE);
            String::from_utf8(r[2..2 + len].to_vec())
                .with_context(|| format!("ledger record {n}: the id is not UTF-8"))?
        };
        let outcome = match r[67] {
            0 => Outcome::Status(u16_at(68)),
            1 => Outcome::Timeout,
            k => {
                let why = text(u32_at(74).saturating_sub(1))?;
                if k == 2 {
                    Outcome::Refused(why)
                } else {
                    Outcome::Transport(why)
                }
            }
        };
        let answer = match u32_at(78) {
            0 => None,
            i => Some(text(i - 1)?),
        };
        let duplicate_of = match r[66] {
            0 => None,
            1 => Some(delivery.clone()),
            _ => Some(text(u32_at(118))?),
        };
        Ok(LedgerEntry {
            event: text(u32_at(70))?,
            delivery,
            attempt: u32_at(82),
            duplicate_of,
            scheduled_at_ms: u64_at(86),
            sent_at_ms: u64_at(94),
            outcome,
            latency_ms: f64::from_bits(u64_at(102)),
            answer,
        })
    }

    /// Writes the records as the JSON ledger [`Ledger::write`] writes for the same entries,
    /// streamed: no more than one entry is in memory at a time.
    pub fn write_json(&self, path: &Path) -> anyhow::Result<()> {
        use std::io::Write as _;
        let context = || format!("writing the ledger to {}", path.display());
        let file = std::fs::File::create(path).with_context(context)?;
        let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
        let failure: std::cell::RefCell<Option<anyhow::Error>> = Default::default();
        let entries = self.entries()?.map_while(|e| match e {
            Ok(e) => Some(e),
            Err(err) => {
                *failure.borrow_mut() = Some(err);
                None
            }
        });
        let streamed = Streamed {
            entries: std::cell::RefCell::new(Some(entries)),
        };
        serde_json::to_writer_pretty(&mut out, &streamed).with_context(context)?;
        drop(streamed);
        if let Some(err) = failure.into_inner() {
            return Err(err);
        }
        out.write_all(b"\n").with_context(context)?;
        out.flush().with_context(context)
    }
}

/// Serialises as a [`Ledger`] whose entries come from an iterator, consumed once.
struct Streamed<I> {
    entries: std::cell::RefCell<Option<I>>,
}

impl<I: Iterator<Item = LedgerEntry>> Serialize for Streamed<I> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct as _;
        struct Seq<'a, I>(&'a std::cell::RefCell<Option<I>>);
        impl<I: Iterator<Item = LedgerEntry>> Serialize for Seq<'_, I> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let it = self.0.borrow_mut().take();
                s.collect_seq(it.into_iter().flatten())
            }
        }
        let mut st = s.serialize_struct("Ledger", 1)?;
        st.serialize_field("entries", &Seq(&self.entries))?;
        st.end()
    }
}

/// Where a batch's collector puts the entries of a streamed ledger (see [`Tally`]).
#[derive(Debug, Default)]
pub struct Stream {
    pub records: Option<RecordFile>,
    tally: Mutex<Tally>,
    /// Record number of the first attempt of the next batch.
    next: std::sync::atomic::AtomicU64,
}

impl Stream {
    pub fn new(records: Option<RecordFile>) -> Self {
        Self {
            records,
            ..Self::default()
        }
    }

    pub fn tally(&self) -> Tally {
        self.tally.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
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
    task: Collected,
}

#[derive(Debug)]
enum Collected {
    Kept(JoinHandle<Vec<(usize, LedgerEntry)>>),
    Streamed(JoinHandle<anyhow::Result<Vec<LedgerEntry>>>),
}

impl LedgerCollector {
    pub async fn finish(self) -> anyhow::Result<Vec<LedgerEntry>> {
        let task = match self.task {
            Collected::Kept(task) => task,
            Collected::Streamed(task) => {
                return task.await.context("the ledger collector task failed")?
            }
        };
        let mut entries = task.await.context("the ledger collector task failed")?;
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
    (
        LedgerWriter { tx },
        LedgerCollector {
            task: Collected::Kept(task),
        },
    )
}

/// A collector that keeps nothing: each entry is counted into `stream`'s tally and written to
/// its record file (if any) at the batch's first record number plus its slot.
/// [`LedgerCollector::finish`] returns no entries; it fails if a record could not be written.
pub fn streaming_collector(stream: Arc<Stream>) -> (LedgerWriter, LedgerCollector) {
    use std::sync::atomic::Ordering;
    let (tx, mut rx) = mpsc::unbounded_channel::<(usize, LedgerEntry)>();
    let base = stream.next.load(Ordering::SeqCst);
    let task = tokio::spawn(async move {
        let mut written: u64 = 0;
        let mut failed: Option<std::io::Error> = None;
        while let Some((slot, entry)) = rx.recv().await {
            written = written.max(slot as u64 + 1);
            if let Some(records) = &stream.records {
                // A page-cache write of 128 bytes: cheaper than a hop to a blocking thread.
                if let Err(e) = records.write(base + slot as u64, &entry) {
                    failed.get_or_insert(e);
                }
            }
            stream
                .tally
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .add(&entry);
        }
        stream.next.fetch_max(base + written, Ordering::SeqCst);
        match failed {
            None => Ok(Vec::new()),
            Some(e) => Err(anyhow::Error::new(e).context("writing the ledger records")),
        }
    });
    (
        LedgerWriter { tx },
        LedgerCollector {
            task: Collected::Streamed(task),
        },
    )
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

    /// Records written out of order (as answers come back) read back in schedule order, every
    /// field intact, and become the same JSON text as the in-memory ledger.
    #[test]
    fn record_file_keeps_every_field_and_writes_the_same_json() {
        let mut l = mixed();
        l.entries[1].duplicate_of = Some("down".into());
        l.entries[2].duplicate_of = Some("another-id".into());
        l.entries[3].delivery = "x".repeat(100);
        l.entries[4].latency_ms = 0.1 + 0.2;
        let dir = tempfile::tempdir().unwrap();
        let records = RecordFile::create(&dir.path().join("ledger.records")).unwrap();
        for (n, e) in l.entries.iter().enumerate().rev() {
            records.write(n as u64, e).unwrap();
        }
        let back: Vec<LedgerEntry> = records.entries().unwrap().map(|e| e.unwrap()).collect();
        assert_eq!(back, l.entries);
        let path = dir.path().join("ledger.json");
        records.write_json(&path).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            l.to_json().unwrap() + "\n"
        );
        // A record number never written (a gap) is skipped.
        let gappy = RecordFile::create(&dir.path().join("gappy.records")).unwrap();
        gappy.write(3, &l.entries[0]).unwrap();
        assert_eq!(gappy.entries().unwrap().count(), 1);
    }

    #[test]
    fn tally_summarises_like_the_ledger() {
        let l = mixed();
        let mut t = Tally::default();
        for e in &l.entries {
            t.add(e);
        }
        assert_eq!(t.summary(7), l.summary());
        assert_eq!(t.refused, 1);
        assert_eq!(t.first_refused.as_deref(), Some("connection refused"));
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
