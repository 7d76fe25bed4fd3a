//! The server's use of the durable spool (`GITSPY_ON_REDIS_DOWN=spool`): accept into the spool while
//! Redis is down (or while the spool still holds anything, so order is kept), and a background task
//! that drains it into Redis through the same atomic enqueue, forgetting records only after Redis
//! confirmed them. The file format itself lives in [`crate::spool`].
//!
//! - Durability: a `spooled` 202 is sent only after [`Spool::append_batch`] returned, i.e. the
//!   record was written and `fdatasync`ed into a log file whose directory entry was fsynced when
//!   the file was created (or renamed into place).
//! - Group commit: one committer thread appends for every request. What queued up while the
//!   previous fsync ran goes into the next `append_batch` (one write, one fsync), in arrival order.
//! - Order: the request path asks a mirror of the spool's index (never the spool's lock, which is
//!   held across fsyncs); while it is non-empty every delivery is spooled behind it, even with
//!   Redis back. The drain moves records oldest first and forgets them (`pop_front`) only after
//!   Redis answered, so a crash mid-drain re-sends some, which the atomic enqueue reports as
//!   duplicates and does not enqueue again.
//! - Duplicates: an id in the spool is a duplicate; while spooling with Redis up, so is an id
//!   Redis knows in any state but `failed`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::delivery::Delivery;
use crate::metrics::Metrics;
use crate::queue::Queue;
use crate::sabotage::{self, Variant};
use crate::spool::{Spool, SpoolRecord};

/// The delivery's fields other than the body, stored as a JSON header in front of the raw body.
#[derive(Serialize, Deserialize)]
struct Header {
    id: String,
    event: String,
    action: Option<String>,
    repository: Option<String>,
    received_at_ms: i64,
}

/// Record payload: 4-byte big-endian header length, the JSON header, then the raw body.
pub fn encode(d: &Delivery) -> Vec<u8> {
    let header = serde_json::to_vec(&Header {
        id: d.id.clone(),
        event: d.event.clone(),
        action: d.action.clone(),
        repository: d.repository.clone(),
        received_at_ms: d.received_at_ms,
    })
    .unwrap_or_default();
    let mut out = Vec::with_capacity(4 + header.len() + d.body.len());
    out.extend_from_slice(&(header.len() as u32).to_be_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(&d.body);
    out
}

pub fn decode(payload: &[u8]) -> Option<Delivery> {
    let len = u32::from_be_bytes(payload.get(..4)?.try_into().ok()?) as usize;
    let header: Header = serde_json::from_slice(payload.get(4..4 + len)?).ok()?;
    Some(Delivery {
        id: header.id,
        event: header.event,
        action: header.action,
        repository: header.repository,
        received_at_ms: header.received_at_ms,
        body: payload.get(4 + len..)?.to_vec(),
    })
}

/// What the spool did with one delivery. Plain data: `http/` maps it to a status code and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpoolOutcome {
    /// Appended and fsynced: the delivery is durable (202 `spooled`).
    Spooled,
    /// Already known: in the spool (`state` is `spooled`) or in Redis in a state other than
    /// `failed` (200 `duplicate`).
    Duplicate { state: String },
    /// Not durable (the append or its fsync failed): never answer 2xx.
    Failed { error: String },
}

/// How the drain task behaves; production uses [`DrainConfig::default`].
#[derive(Debug, Clone, Default)]
pub struct DrainConfig {
    /// TEST ONLY (`GITSPY_TEST_SPOOL_DRAIN_DELAY`): sleep this long before moving each record into
    /// Redis, so tests can hold the spool non-empty while Redis is up, or kill the server mid-drain.
    pub test_delay: Option<Duration>,
}

/// The server's spool: one [`Spool`] behind a mutex (appends and pops are serialised), the
/// committer thread that appends for every request, the queue it drains into, and a wake-up for
/// the drain task.
pub struct SpoolHandle {
    spool: Arc<Mutex<Spool>>,
    /// What the request path asks (depth, "is this id spooled?"), kept apart from `spool` whose
    /// lock is held across every fsync: an async handler must never block a runtime thread on it.
    mirror: Arc<Mutex<Mirror>>,
    /// Requests for the committer thread; it exits when the handle (this sender) is dropped.
    appends: std::sync::mpsc::Sender<AppendRequest>,
    queue: Arc<Queue>,
    metrics: Arc<Metrics>,
    wake: tokio::sync::Notify,
    drain: DrainConfig,
}

/// The live delivery ids, as a copy of the spool's index: updated after an append is durable and
/// before it is answered, and after a pop is durable.
#[derive(Default)]
struct Mirror {
    ids: HashMap<String, u32>,
    len: usize,
}

impl Mirror {
    fn add<'a>(&mut self, ids: impl IntoIterator<Item = &'a str>) {
        for id in ids {
            *self.ids.entry(id.to_owned()).or_default() += 1;
            self.len += 1;
        }
    }

    fn remove<'a>(&mut self, ids: impl IntoIterator<Item = &'a str>) {
        for id in ids {
            if let Some(n) = self.ids.get_mut(id) {
                *n -= 1;
                if *n == 0 {
                    self.ids.remove(id);
                }
            }
            self.len = self.len.saturating_sub(1);
        }
    }
}

/// One delivery to make durable, and where to say how it went: `Ok(true)` appended and fsynced,
/// `Ok(false)` already in the spool (a duplicate), `Err` not durable.
struct AppendRequest {
    rec: SpoolRecord,
    done: tokio::sync::oneshot::Sender<Result<bool, String>>,
}

/// Most requests one group commit takes, and roughly most payload bytes (a batch is held in memory).
const GROUP_MAX_RECORDS: usize = 256;
const GROUP_MAX_BYTES: usize = 8 << 20;

/// Group commit: takes every request that queued up while the previous fsync ran and makes them
/// durable with one `append_batch` (one write, one fsync), so concurrent deliveries share an fsync
/// instead of queueing behind each other's. Requests are appended in the order they arrived.
fn committer(
    spool: Arc<Mutex<Spool>>,
    mirror: Arc<Mutex<Mirror>>,
    requests: std::sync::mpsc::Receiver<AppendRequest>,
) {
    while let Ok(first) = requests.recv() {
        let mut batch = vec![first];
        let mut bytes = batch[0].rec.payload.len();
        while batch.len() < GROUP_MAX_RECORDS && bytes < GROUP_MAX_BYTES {
            match requests.try_recv() {
                Ok(r) => {
                    bytes += r.rec.payload.len();
                    batch.push(r);
                }
                Err(_) => break,
            }
        }
        let mut s = lock(&spool);
        // A delivery already in the spool is a duplicate now (it is durable). A second copy within
        // this batch is answered only after the first one's fate is known: a `duplicate` must
        // never be said of something that then fails to become durable.
        let mut position = std::collections::HashMap::new();
        let mut recs = Vec::with_capacity(batch.len());
        let mut dones = Vec::with_capacity(batch.len());
        let mut copies = Vec::new();
        for r in batch {
            if s.contains(&r.rec.delivery) {
                let _ = r.done.send(Ok(false));
            } else if let Some(&i) = position.get(&r.rec.delivery) {
                copies.push((i, r.done));
            } else {
                position.insert(r.rec.delivery.clone(), recs.len());
                recs.push(r.rec);
                dones.push(r.done);
            }
        }
        tracing::debug!(records = recs.len(), "spool group commit");
        let outcomes: Vec<Result<bool, String>> = match s.append_batch(&recs) {
            Ok(()) => vec![Ok(true); recs.len()],
            // One bad record (e.g. over the size limit) must not fail the others: retry alone.
            Err(_) if recs.len() > 1 => recs
                .iter()
                .map(|rec| s.append(rec).map(|()| true).map_err(|e| e.to_string()))
                .collect(),
            Err(e) => vec![Err(e.to_string()); recs.len()],
        };
        drop(s);
        // Visible to the request path before anyone is answered: from now on new deliveries go
        // behind these.
        lock(&mirror).add(
            recs.iter()
                .zip(&outcomes)
                .filter(|(_, o)| o.is_ok())
                .map(|(r, _)| r.delivery.as_str()),
        );
        for (i, done) in copies {
            let _ = done.send(outcomes[i].clone().map(|_| false));
        }
        for (done, outcome) in dones.into_iter().zip(outcomes) {
            let _ = done.send(outcome);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

impl SpoolHandle {
    /// Opens (and recovers) the spool in `dir`. A torn last record is dropped and counted.
    pub fn open(
        dir: &Path,
        queue: Arc<Queue>,
        metrics: Arc<Metrics>,
        drain: DrainConfig,
    ) -> anyhow::Result<Arc<Self>> {
        let (spool, report) = Spool::open(dir)
            .map_err(|e| anyhow::anyhow!("cannot open spool in {}: {e}", dir.display()))?;
        if report.torn_records_dropped > 0 {
            metrics.spool_torn.add(report.torn_records_dropped);
            tracing::error!(
                dir = %dir.display(),
                dropped = report.torn_records_dropped,
                bytes = report.torn_bytes_dropped,
                "spool had a torn last record (crash mid-write); dropped it — it was never acknowledged"
            );
        }
        if report.records > 0 {
            tracing::warn!(
                records = report.records,
                "spool is not empty at start-up: draining it into Redis"
            );
        }
        let mut mirror = Mirror::default();
        mirror.add(spool.delivery_ids().iter().map(String::as_str));
        let mirror = Arc::new(Mutex::new(mirror));
        let spool = Arc::new(Mutex::new(spool));
        let (appends, requests) = std::sync::mpsc::channel();
        let (for_committer, mirror_for_committer) = (spool.clone(), mirror.clone());
        std::thread::Builder::new()
            .name("gitspy-spool-commit".into())
            .spawn(move || committer(for_committer, mirror_for_committer, requests))
            .context("cannot start the spool committer thread")?;
        let h = Arc::new(Self {
            spool,
            mirror,
            appends,
            queue,
            metrics,
            wake: tokio::sync::Notify::new(),
            drain,
        });
        if let Some(delay) = h.drain.test_delay {
            tracing::warn!(
                ?delay,
                "GITSPY_TEST_SPOOL_DRAIN_DELAY is set: the spool drains slowly (test only)"
            );
        }
        h.refresh_depth_metric();
        Ok(h)
    }

    /// Deliveries waiting in the spool (never blocks on an fsync).
    pub fn depth(&self) -> usize {
        lock(&self.mirror).len
    }

    /// True if the spool holds this delivery id (never blocks on an fsync).
    pub fn contains(&self, id: &str) -> bool {
        lock(&self.mirror).ids.contains_key(id)
    }

    pub fn refresh_depth_metric(&self) {
        let n = self.depth();
        self.metrics.spool_depth.store(
            i64::try_from(n).unwrap_or(i64::MAX),
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// While the spool is not empty, every new delivery goes behind what it holds (`None`: the spool
    /// is empty, enqueue directly). A delivery Redis already knows is answered `duplicate` when Redis
    /// is believed up; while it is down that cannot be known, so the delivery is spooled and the
    /// drain's atomic enqueue drops it.
    pub async fn accept_if_spooling(
        &self,
        d: &Delivery,
        metrics: &Metrics,
    ) -> Option<SpoolOutcome> {
        if self.depth() == 0 {
            return None;
        }
        if self.metrics.redis_up() && !self.contains(&d.id) {
            // A failed delivery may be redelivered (SPEC §1.3): only other states are duplicates.
            if let Ok(Some(state)) = self.queue.get_state(&d.id).await {
                if gitspy_contract::DeliveryState::from_wire(&state)
                    != gitspy_contract::DeliveryState::Failed
                {
                    metrics.events_duplicate.inc(&d.event);
                    return Some(SpoolOutcome::Duplicate { state });
                }
            }
        }
        Some(self.spool(d, metrics).await)
    }

    /// Appends `d` durably (file and directory fsynced): [`SpoolOutcome::Spooled`]; a delivery id
    /// the spool already holds is a duplicate.
    pub async fn spool(&self, d: &Delivery, metrics: &Metrics) -> SpoolOutcome {
        let rec = SpoolRecord {
            delivery: d.id.clone(),
            payload: encode(d),
        };
        let (done, outcome) = tokio::sync::oneshot::channel();
        let appended = match self.appends.send(AppendRequest { rec, done }) {
            Ok(()) => outcome
                .await
                .unwrap_or_else(|_| Err("the spool committer thread is gone".into())),
            Err(_) => Err("the spool committer thread is gone".into()),
        };
        match appended {
            Ok(true) => {
                // Sabotage `uncounted-spooled`: a spooled delivery is not counted as received.
                if !crate::sabotage::is(crate::sabotage::Variant::UncountedSpooled) {
                    metrics.events_received.inc(&d.event);
                }
                self.refresh_depth_metric();
                self.wake.notify_one();
                SpoolOutcome::Spooled
            }
            Ok(false) => {
                metrics.events_duplicate.inc(&d.event);
                SpoolOutcome::Duplicate {
                    state: "spooled".to_owned(),
                }
            }
            Err(e) => {
                metrics.events_rejected.inc("spool_error");
                tracing::error!(delivery = %d.id, error = %e, "spool append failed: answering 503");
                SpoolOutcome::Failed { error: e }
            }
        }
    }

    /// Drains the spool into Redis, oldest first, until `shutdown`. Records are forgotten only after
    /// Redis confirmed them (queued, or already known — the atomic enqueue dedupes re-sent records
    /// after a crash mid-drain).
    pub async fn drain_loop(self: Arc<Self>, shutdown: CancellationToken) {
        let mut backoff = Duration::from_millis(100);
        loop {
            if shutdown.is_cancelled() {
                return;
            }
            let spool = self.spool.clone();
            let batch = tokio::task::spawn_blocking(move || lock(&spool).peek(64)).await;
            let mut batch = match batch {
                Ok(Ok(b)) => b,
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "cannot read the spool; retrying");
                    Vec::new()
                }
                Err(e) => {
                    tracing::error!(error = %e, "spool task failed");
                    Vec::new()
                }
            };
            if sabotage::is(Variant::SpoolStuckLast) && batch.len() < 64 {
                // Sabotage: the whole spool was read; its last record is never moved.
                batch.pop();
            }
            if batch.is_empty() {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = self.wake.notified() => {},
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {},
                }
                continue;
            }
            let mut done = 0;
            for (i, rec) in batch.iter().enumerate() {
                if sabotage::is(Variant::SpoolSkipLast) && i > 0 && i + 1 == batch.len() {
                    // Sabotage: an off-by-one that forgets the last record of a batch of several
                    // once the ones before it went through.
                    done += 1;
                    continue;
                }
                if let Some(delay) = self.drain.test_delay {
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(delay) => {},
                    }
                }
                let Some(d) = decode(&rec.payload) else {
                    tracing::error!(delivery = %rec.delivery, "undecodable spool record: skipped");
                    done += 1;
                    continue;
                };
                match self.queue.enqueue(&d).await {
                    Ok(outcome) => {
                        tracing::debug!(delivery = %d.id, ?outcome, "moved a spooled delivery into redis");
                        crate::failpoint!(crate::failpoints::SPOOL_DRAIN);
                        done += 1;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "redis still unavailable; spool drain waits");
                        break;
                    }
                }
            }
            if done > 0 {
                let spool = self.spool.clone();
                let r = tokio::task::spawn_blocking(move || lock(&spool).pop_front(done)).await;
                match r {
                    Ok(Ok(())) => {
                        lock(&self.mirror).remove(batch[..done].iter().map(|r| r.delivery.as_str()))
                    }
                    Ok(Err(e)) => {
                        tracing::error!(error = %e, "cannot truncate the spool after draining (records will be re-sent and deduped)")
                    }
                    Err(e) => tracing::error!(error = %e, "spool task failed"),
                }
                self.refresh_depth_metric();
                backoff = Duration::from_millis(100);
                if self.depth() == 0 {
                    tracing::info!("spool drained into redis");
                }
            }
            if done < batch.len() {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {},
                }
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
}
