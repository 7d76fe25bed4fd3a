//! `gitspy worker`: consumes `gitspy:events` in the `gitspy-workers` group and folds deliveries into
//! the board store.
//!
//! Per delivery, in order (SPEC §1.3): take `events:<id>:lock` (`SET NX PX`, value
//! `<token>:<acquired-ms>`); if already `processed`, ack and count a duplicate; set `processing`; apply
//! in one store transaction (a batch of deliveries per transaction) that skips deliveries an earlier
//! attempt already committed; then `processed` + `XACK` + `XDEL` + release the lock, in one script.
//! A heartbeat renews our locks and resets our entries' idle time so a slow delivery is never
//! reclaimed while it runs; entries of dead workers are `XAUTOCLAIM`ed after `GITSPY_CLAIM_IDLE`.
//! Failures retry with exponential backoff counted in `events:<id>:attempts`, then dead-letter.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rand::Rng as _;
use tokio_util::sync::CancellationToken;

use crate::config::WorkerArgs;
use crate::delivery::Delivery;
use crate::failpoints;
use crate::metrics::Metrics;
use crate::queue::{is_connection_error, Claim, Entry, Queue};
use crate::sabotage::{self, Variant};
use crate::store::Store;

/// Worker settings after validation.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub batch: usize,
    pub lock_ttl: Duration,
    pub claim_idle: Duration,
    pub max_attempts: u64,
    pub retry_base: Duration,
    pub block: Duration,
    pub consumer: String,
    pub shutdown_grace: Duration,
    pub test_processing_delay: Option<Duration>,
    pub test_fail_prefix: Option<String>,
    pub test_crash_after_commit: bool,
    pub dedupe: bool,
}

/// What the worker's bookkeeping reads of a delivery before the store (not its body).
struct Meta {
    id: String,
    event: String,
}

impl Meta {
    fn of(d: &Delivery) -> Self {
        Self {
            id: d.id.clone(),
            event: d.event.clone(),
        }
    }
}

/// An entry we hold (pending in our name) and will try again at `due`.
struct Waiting {
    entry: Entry,
    due: Instant,
}

struct Worker {
    cfg: WorkerConfig,
    queue: Arc<Queue>,
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    /// Identifies our locks; fixed for the life of the process.
    token: String,
    /// stream id → delivery id of everything pending in our name (in flight or waiting to retry):
    /// the heartbeat keeps these from being reclaimed.
    held: Arc<Mutex<HashMap<String, String>>>,
    waiting: Vec<Waiting>,
    /// Stream ids of the `waiting` entries that wait out a retry backoff (not a lock wait): their
    /// count is `gitspy_queue_delayed`.
    delayed: Vec<String>,
    /// Sabotage `stop-after-redis-error` only: set by the first Redis error, then nothing is read.
    stalled: bool,
}

/// Runs a worker until `shutdown`, then finishes what is in flight and returns.
pub async fn run(args: WorkerArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    if args.claim_idle < args.lock_ttl {
        anyhow::bail!(
            "GITSPY_CLAIM_IDLE ({:?}) must not be less than GITSPY_LOCK_TTL ({:?}): a live worker's \
             delivery would be reclaimed while its lock is still held",
            args.claim_idle,
            args.lock_ttl
        );
    }
    let crate::Backends {
        metrics,
        queue,
        store,
        dedupe,
    } = crate::open_backends(
        &args.redis,
        &args.db,
        args.store_busy_timeout,
        args.sqlite_sync,
    )?;
    let token = random_hex(8);
    let consumer = args
        .consumer
        .clone()
        .unwrap_or_else(|| format!("{}-{}-{}", hostname(), std::process::id(), &token[..6]));

    // Metrics port first: its bound address is the first stdout line.
    let listener = tokio::net::TcpListener::bind((args.metrics_host, args.metrics_port))
        .await
        .with_context(|| {
            format!(
                "cannot bind the metrics port {}:{}",
                args.metrics_host, args.metrics_port
            )
        })?;
    let addr = listener.local_addr()?;
    crate::print_listening(addr);
    let metrics_app = crate::http::worker_metrics_app(queue.clone(), metrics.clone());
    let metrics_stop = CancellationToken::new();
    let ms = metrics_stop.clone();
    let metrics_task = tokio::spawn(async move {
        let _ = axum::serve(listener, metrics_app)
            .with_graceful_shutdown(async move { ms.cancelled().await })
            .await;
    });

    let cfg = WorkerConfig {
        batch: usize::from(args.concurrency),
        lock_ttl: args.lock_ttl,
        claim_idle: args.claim_idle,
        max_attempts: args.max_attempts,
        retry_base: args.retry_base,
        block: args.block,
        consumer,
        shutdown_grace: args.shutdown_grace,
        test_processing_delay: args.test_processing_delay,
        test_fail_prefix: args.test_fail_prefix.clone(),
        test_crash_after_commit: args.test_crash_after_commit,
        dedupe,
    };
    tracing::info!(consumer = %cfg.consumer, "worker started");
    let held = Arc::new(Mutex::new(HashMap::new()));
    let hb_stop = CancellationToken::new();
    let heartbeat = tokio::spawn(heartbeat_loop(
        queue.clone(),
        cfg.clone(),
        token.clone(),
        held.clone(),
        hb_stop.clone(),
    ));
    let mut w = Worker {
        cfg,
        queue,
        store,
        metrics,
        token,
        held,
        waiting: Vec::new(),
        delayed: Vec::new(),
        stalled: false,
    };
    let retention_stop = CancellationToken::new();
    let retention = (!args.log_retention.is_zero()).then(|| {
        tokio::spawn(retention_loop(
            w.store.clone(),
            args.log_retention,
            retention_stop.clone(),
        ))
    });
    let grace = w.cfg.shutdown_grace;
    w.main_loop(shutdown.clone()).await;
    // Entries waiting for a retry stay pending in our name; a live worker reclaims them.
    hb_stop.cancel();
    let _ = tokio::time::timeout(grace, heartbeat).await;
    retention_stop.cancel();
    if let Some(t) = retention {
        let _ = t.await;
    }
    metrics_stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(2), metrics_task).await;
    tracing::info!("worker stopped");
    Ok(())
}

/// Deletes event-log rows older than `retention`, periodically, until `stop`.
async fn retention_loop(store: Arc<dyn Store>, retention: Duration, stop: CancellationToken) {
    let every = (retention / 10).clamp(Duration::from_secs(1), Duration::from_secs(3600));
    loop {
        let cutoff =
            crate::delivery::now_ms() - i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
        let s = store.clone();
        match tokio::task::spawn_blocking(move || s.prune_log(cutoff)).await {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::info!(rows = n, ?retention, "pruned the event log"),
            Ok(Err(e)) => tracing::warn!(error = %e, "event-log retention failed"),
            Err(e) => tracing::warn!(error = %e, "event-log retention task failed"),
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

fn lock_held<'a>(
    held: &'a Mutex<HashMap<String, String>>,
) -> std::sync::MutexGuard<'a, HashMap<String, String>> {
    match held.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

async fn heartbeat_loop(
    queue: Arc<Queue>,
    cfg: WorkerConfig,
    token: String,
    held: Arc<Mutex<HashMap<String, String>>>,
    stop: CancellationToken,
) {
    let every = (cfg.lock_ttl / 3).max(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let inflight: Vec<(String, String)> = lock_held(&held)
            .iter()
            .map(|(sid, did)| (did.clone(), sid.clone()))
            .collect();
        if let Err(e) = queue
            .heartbeat(&cfg.consumer, &token, cfg.lock_ttl, &inflight)
            .await
        {
            tracing::warn!(error = %e, "heartbeat failed");
        }
    }
}

impl Worker {
    async fn main_loop(&mut self, shutdown: CancellationToken) {
        let mut blocking_conn = None;
        let mut backoff = Duration::from_millis(100);
        let mut group_ready = false;
        let mut last_claim = Instant::now() - self.cfg.claim_idle;
        let claim_every = (self.cfg.claim_idle / 2).max(Duration::from_millis(500));
        while !shutdown.is_cancelled() {
            if self.stalled {
                // Sabotage `stop-after-redis-error`: alive, healthy, and reading nothing.
                tokio::select! {
                    _ = shutdown.cancelled() => {},
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {},
                }
                continue;
            }
            if !group_ready {
                match self.queue.ensure_group().await {
                    Ok(()) => group_ready = true,
                    Err(e) => {
                        self.redis_down(&e, &mut backoff, &shutdown).await;
                        continue;
                    }
                }
            }
            // Retries and lock waits that are due.
            let now = Instant::now();
            let (due, later): (Vec<Waiting>, Vec<Waiting>) = std::mem::take(&mut self.waiting)
                .into_iter()
                .partition(|w| w.due <= now);
            self.waiting = later;
            self.delayed
                .retain(|sid| !due.iter().any(|w| w.entry.stream_id == *sid));
            self.publish_delayed();
            if !due.is_empty() {
                self.process(due.into_iter().map(|w| w.entry).collect())
                    .await;
                continue;
            }
            if last_claim.elapsed() >= claim_every && !sabotage::is(Variant::NeverReclaim) {
                last_claim = Instant::now();
                match self.queue.sweep_acked().await {
                    Ok(0) => {}
                    Ok(n) => tracing::warn!(
                        entries = n,
                        "deleted stream entries that were acknowledged but not deleted (a crash \
                         between XACK and XDEL)"
                    ),
                    Err(e) => tracing::warn!(error = %e, "sweeping acknowledged entries failed"),
                }
                match self
                    .queue
                    .autoclaim(&self.cfg.consumer, self.cfg.claim_idle, self.cfg.batch)
                    .await
                {
                    Ok(entries) => {
                        let fresh: Vec<Entry> = {
                            let held = lock_held(&self.held);
                            entries
                                .into_iter()
                                .filter(|e| !held.contains_key(&e.stream_id))
                                .collect()
                        };
                        if !fresh.is_empty() {
                            tracing::info!(
                                count = fresh.len(),
                                "reclaimed idle entries of a dead worker"
                            );
                            self.process(fresh).await;
                            continue;
                        }
                    }
                    Err(e) if e.code() == Some("NOGROUP") => {
                        self.queue.note_group_missing();
                        group_ready = false;
                        continue;
                    }
                    Err(e) => tracing::warn!(error = %e, "XAUTOCLAIM failed"),
                }
            }
            if blocking_conn.is_none() {
                match self.queue.blocking_conn(self.cfg.block).await {
                    Ok(c) => blocking_conn = Some(c),
                    Err(e) => {
                        self.redis_down(&e, &mut backoff, &shutdown).await;
                        continue;
                    }
                }
            }
            let Some(conn) = blocking_conn.as_mut() else {
                continue;
            };
            // Never block past the next due retry.
            let block = self
                .waiting
                .iter()
                .map(|w| w.due.saturating_duration_since(Instant::now()))
                .min()
                .unwrap_or(self.cfg.block)
                .min(self.cfg.block)
                .max(Duration::from_millis(10));
            match self
                .queue
                .read_new(conn, &self.cfg.consumer, self.cfg.batch, block)
                .await
            {
                Ok(entries) => {
                    self.metrics.set_redis_up(true);
                    backoff = Duration::from_millis(100);
                    if !entries.is_empty() {
                        self.process(entries).await;
                    }
                }
                Err(e) if e.code() == Some("NOGROUP") => {
                    self.queue.note_group_missing();
                    group_ready = false;
                }
                Err(e) => {
                    blocking_conn = None;
                    self.redis_down(&e, &mut backoff, &shutdown).await;
                }
            }
        }
    }

    async fn redis_down(
        &mut self,
        e: &redis::RedisError,
        backoff: &mut Duration,
        shutdown: &CancellationToken,
    ) {
        if is_connection_error(e) {
            self.metrics.set_redis_up(false);
        }
        if sabotage::is(Variant::StopAfterRedisError) {
            tracing::warn!(error = %e, "redis error");
            self.stalled = true;
            return;
        }
        tracing::warn!(error = %e, retry_in = ?*backoff, "redis unavailable; the worker waits");
        tokio::select! {
            _ = shutdown.cancelled() => {},
            _ = tokio::time::sleep(*backoff) => {},
        }
        *backoff = (*backoff * 2).min(Duration::from_secs(2));
    }

    fn hold(&self, e: &Entry) {
        if let Some(d) = &e.delivery {
            lock_held(&self.held).insert(e.stream_id.clone(), d.id.clone());
        }
    }

    fn unhold(&self, stream_id: &str) {
        lock_held(&self.held).remove(stream_id);
    }

    fn wait(&mut self, entry: Entry, after: Duration) {
        self.waiting.push(Waiting {
            entry,
            due: Instant::now() + after,
        });
    }

    /// Like [`Worker::wait`], for a retry backoff: counted in `gitspy_queue_delayed`.
    fn wait_retry(&mut self, entry: Entry, after: Duration) {
        self.delayed.push(entry.stream_id.clone());
        self.wait(entry, after);
        self.publish_delayed();
    }

    fn publish_delayed(&self) {
        self.metrics.queue_delayed.store(
            i64::try_from(self.delayed.len()).unwrap_or(i64::MAX),
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// Processes entries we hold. Every path either finishes (ack), dead-letters, or schedules a
    /// later try of the entry; nothing is dropped.
    async fn process(&mut self, entries: Vec<Entry>) {
        let started = Instant::now();
        // One round trip for the batch's locks and states, one for `processing` (and the acks of
        // deliveries found already processed), one store transaction, one for the finishes.
        // Only the id and the event of each delivery are needed until the store: its body (a
        // payload of ~10 KB) is not copied for the bookkeeping.
        let mut claimable: Vec<(Entry, Meta)> = Vec::new();
        for e in entries {
            self.hold(&e);
            let Some(d) = e.delivery.as_ref().map(Meta::of) else {
                // Deleted while pending: nothing to process.
                let _ = self.queue.ack(&e.stream_id).await;
                self.unhold(&e.stream_id);
                continue;
            };
            claimable.push((e, d));
        }
        if claimable.is_empty() {
            return;
        }
        let ids: Vec<&str> = claimable.iter().map(|(_, d)| d.id.as_str()).collect();
        let claims = match self
            .queue
            .claim_batch(&ids, &self.token, self.cfg.lock_ttl)
            .await
        {
            Ok(c) => c,
            Err(err) => {
                tracing::warn!(count = claimable.len(), error = %err, "cannot take the locks; will retry");
                for (e, _) in claimable {
                    self.wait(e, Duration::from_millis(500));
                }
                return;
            }
        };
        let mut locked: Vec<(Entry, Meta, bool)> = Vec::new();
        for ((e, d), claim) in claimable.into_iter().zip(claims) {
            match claim {
                Claim::Busy => {
                    // Another worker (or a dead one whose lock has not expired) holds it: wait, no
                    // attempt is spent.
                    let wait = self.cfg.lock_ttl.min(Duration::from_secs(1));
                    self.wait(e, wait);
                }
                Claim::Locked(state) => {
                    crate::failpoint!(failpoints::AFTER_LOCK);
                    let processed = self.cfg.dedupe && state.as_deref() == Some("processed");
                    locked.push((e, d, processed));
                }
            }
        }
        if locked.is_empty() {
            return;
        }
        let items: Vec<(&str, &str, bool)> = locked
            .iter()
            .map(|(e, d, processed)| (d.id.as_str(), e.stream_id.as_str(), *processed))
            .collect();
        if let Err(err) = self.queue.start_batch(&items, &self.token).await {
            tracing::warn!(count = locked.len(), error = %err, "cannot set processing; will retry");
            for (e, d, _) in locked {
                let _ = self.queue.release_lock(&d.id, &self.token).await;
                self.wait(e, Duration::from_millis(500));
            }
            return;
        }
        let mut ready: Vec<Entry> = Vec::new();
        for (e, d, processed) in locked {
            if processed {
                // Already processed: acknowledged and unlocked by the same script.
                self.metrics.jobs_duplicate.inc(&d.event);
                self.unhold(&e.stream_id);
            } else {
                ready.push(e);
            }
        }
        if ready.is_empty() {
            return;
        }
        if sabotage::is(Variant::DropOneInTwenty) {
            // Sabotage: marked processed, nothing applied.
            let (dropped, kept): (Vec<Entry>, Vec<Entry>) = ready.into_iter().partition(|e| {
                e.delivery
                    .as_ref()
                    .is_some_and(|d| sabotage::dropped(&d.id))
            });
            self.committed(dropped, started, &HashSet::new()).await;
            ready = kept;
        }
        if sabotage::is(Variant::AckBeforeCommit) {
            // Sabotage: acknowledged first, applied afterwards; a crash in between loses it.
            self.committed(ready.clone(), started, &HashSet::new())
                .await;
            if let Some(delay) = self.cfg.test_processing_delay {
                tokio::time::sleep(delay).await;
            }
            let batch: Vec<Delivery> = ready.iter().filter_map(|e| e.delivery.clone()).collect();
            if let Err(err) = self.apply(batch).await {
                tracing::warn!(error = %err, "processing failed");
            }
            return;
        }
        if let Some(delay) = self.cfg.test_processing_delay {
            tokio::time::sleep(delay).await;
        }
        // Injected failures (test only) fail before the store, like a handler error would.
        let (failing, ready): (Vec<Entry>, Vec<Entry>) =
            ready
                .into_iter()
                .partition(|e| match (&self.cfg.test_fail_prefix, &e.delivery) {
                    (Some(p), Some(d)) => d.id.starts_with(p.as_str()),
                    _ => false,
                });
        for e in failing {
            self.failed(e, "injected failure (GITSPY_TEST_FAIL_PREFIX)".into())
                .await;
        }
        // A body the fold cannot read (an item event whose objects have the wrong type) is a
        // failure of that delivery: retried, then dead-lettered — never logged as processed.
        let mut poison = Vec::new();
        let ready: Vec<Entry> = ready
            .into_iter()
            .filter_map(|e| {
                match e
                    .delivery
                    .as_ref()
                    .and_then(|d| crate::github::fold::unfoldable(&d.event, &d.body))
                {
                    Some(why) => {
                        poison.push((e, why));
                        None
                    }
                    None => Some(e),
                }
            })
            .collect();
        for (e, why) in poison {
            self.failed(e, why).await;
        }
        if ready.is_empty() {
            return;
        }
        let batch: Vec<Delivery> = ready.iter().filter_map(|e| e.delivery.clone()).collect();
        let outcome = self.apply(batch).await;
        match outcome {
            Ok(already) => self.committed(ready, started, &already).await,
            Err(err) if ready.len() > 1 => {
                // Isolate the bad delivery: apply one by one.
                tracing::warn!(error = %err, "batch failed; applying its deliveries one by one");
                for e in ready {
                    let Some(d) = e.delivery.clone() else {
                        continue;
                    };
                    match self.apply(vec![d]).await {
                        Ok(already) => self.committed(vec![e], started, &already).await,
                        Err(err) => self.failed(e, err).await,
                    }
                }
            }
            Err(err) => {
                for e in ready {
                    self.failed(e, err.clone()).await;
                }
            }
        }
    }

    /// Applies a batch in one store transaction; the ids an earlier attempt (this worker's or a
    /// crashed or frozen one's) had already committed, which are not applied again.
    async fn apply(&self, batch: Vec<Delivery>) -> Result<HashSet<String>, String> {
        let store = self.store.clone();
        let consumer = self.cfg.consumer.clone();
        let r = tokio::task::spawn_blocking(move || store.apply_batch(&batch, &consumer))
            .await
            .map_err(|e| format!("store task failed: {e}"))?
            .map_err(|e| e.to_string())?;
        if self.cfg.test_crash_after_commit {
            tracing::error!("GITSPY_TEST_CRASH_AFTER_COMMIT: aborting after the store commit");
            std::process::abort();
        }
        crate::failpoint!(failpoints::AFTER_COMMIT);
        let mut already = HashSet::new();
        for o in r {
            if !o.applied {
                tracing::info!(delivery = %o.delivery, "already applied by an earlier attempt; not applying again");
                already.insert(o.delivery);
            }
        }
        Ok(already)
    }

    /// Finishes committed entries in Redis. `already`: ids the store found applied by an earlier
    /// attempt; they count as `gitspy_jobs_duplicate_total`, not as processed, so each worker's
    /// processed counter counts exactly the deliveries its own transactions applied.
    async fn committed(
        &mut self,
        entries: Vec<Entry>,
        started: Instant,
        already: &HashSet<String>,
    ) {
        if failpoints::armed(failpoints::AFTER_ACK) {
            // Only while `after-ack` is armed: each finish in two steps, so the window between
            // XACK and XDEL exists to crash in.
            for e in entries {
                let Some(d) = e.delivery.clone() else {
                    continue;
                };
                let finished = self
                    .queue
                    .finish_split(&d.id, &e.stream_id, &self.token, || {
                        crate::failpoint!(failpoints::AFTER_ACK)
                    })
                    .await;
                match finished {
                    Ok(()) => self.finished(&e, &d, started, already.contains(&d.id)),
                    Err(err) => self.finish_later(e, &d, &err),
                }
            }
            return;
        }
        let items: Vec<(&str, &str)> = entries
            .iter()
            .filter_map(|e| {
                e.delivery
                    .as_ref()
                    .map(|d| (d.id.as_str(), e.stream_id.as_str()))
            })
            .collect();
        let finished = self.queue.finish_batch(&items, &self.token).await;
        for e in entries {
            let Some(d) = e.delivery.clone() else {
                continue;
            };
            match &finished {
                Ok(()) => self.finished(&e, &d, started, already.contains(&d.id)),
                Err(err) => self.finish_later(e, &d, err),
            }
        }
    }

    /// Bookkeeping once `processed` + ack are in Redis.
    fn finished(&self, e: &Entry, d: &Delivery, started: Instant, already_applied: bool) {
        self.unhold(&e.stream_id);
        if already_applied {
            self.metrics.jobs_duplicate.inc(&d.event);
        } else if !(sabotage::is(Variant::UndercountProcessed) && d.event == "issue_comment") {
            self.metrics.jobs_processed.inc(&d.event);
        }
        self.metrics
            .job_duration
            .observe(&d.event, started.elapsed().as_secs_f64() * 1000.0);
        if d.event == "ping" {
            tracing::info!(delivery = %d.id, "ping received");
        }
    }

    /// The store has it but Redis did not take the finish: the next try finds it in
    /// applied_deliveries and only finishes. Not the delivery's fault: no attempt is spent.
    fn finish_later(&mut self, e: Entry, d: &Delivery, err: &redis::RedisError) {
        tracing::warn!(delivery = %d.id, error = %err, "committed but cannot mark processed yet; will retry");
        self.wait(e, Duration::from_millis(500));
    }

    async fn failed(&mut self, e: Entry, error: String) {
        let Some(d) = e.delivery.clone() else { return };
        let attempts = match self.queue.add_attempt(&d.id, &error).await {
            Ok(n) => n,
            Err(err) => {
                tracing::warn!(delivery = %d.id, error = %err, "cannot count the attempt; will retry");
                self.wait(e, Duration::from_millis(500));
                return;
            }
        };
        if attempts >= self.cfg.max_attempts && !sabotage::is(Variant::RetryForever) {
            match self
                .queue
                .dead_letter(&d, &e.stream_id, &self.token, attempts, &error)
                .await
            {
                Ok(()) => {
                    self.unhold(&e.stream_id);
                    self.metrics.jobs_failed.inc(&d.event);
                    tracing::error!(delivery = %d.id, attempts, error = %error, "dead-lettered");
                }
                Err(err) => {
                    tracing::warn!(delivery = %d.id, error = %err, "cannot dead-letter yet; will retry");
                    self.wait(e, Duration::from_millis(500));
                }
            }
            return;
        }
        let _ = self.queue.release_lock(&d.id, &self.token).await;
        let shift = u32::try_from(attempts.saturating_sub(1))
            .unwrap_or(16)
            .min(16);
        let backoff = (self.cfg.retry_base * 2u32.pow(shift)).min(Duration::from_secs(60));
        self.metrics.jobs_retried.inc(&d.event);
        tracing::warn!(delivery = %d.id, attempts, retry_in = ?backoff, error = %error, "processing failed; retrying");
        self.wait_retry(e, backoff);
    }
}

fn random_hex(bytes: usize) -> String {
    let mut rng = rand::rng();
    (0..bytes)
        .map(|_| format!("{:02x}", rng.random::<u8>()))
        .collect()
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "worker".into())
}
