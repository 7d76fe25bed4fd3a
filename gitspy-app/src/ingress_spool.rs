//! The server's use of the durable spool (`GITSPY_ON_REDIS_DOWN=spool`): accept into the spool while
//! Redis is down (or while the spool still holds anything, so order is kept), and a background task
//! that drains it into Redis through the same atomic enqueue, forgetting records only after Redis
//! confirmed them. The file format itself lives in [`crate::spool`].

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::delivery::Delivery;
use crate::http::ApiError;
use crate::metrics::Metrics;
use crate::queue::Queue;
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

/// How the drain task behaves; production uses [`DrainConfig::default`].
#[derive(Debug, Clone, Default)]
pub struct DrainConfig {
    /// TEST ONLY (`GITSPY_TEST_SPOOL_DRAIN_DELAY`): sleep this long before moving each record into
    /// Redis, so tests can hold the spool non-empty while Redis is up, or kill the server mid-drain.
    pub test_delay: Option<Duration>,
}

/// The server's spool: one [`Spool`] behind a mutex (appends and pops are serialised), the queue
/// it drains into, and a wake-up for the drain task.
pub struct SpoolHandle {
    spool: Arc<Mutex<Spool>>,
    queue: Arc<Queue>,
    metrics: Arc<Metrics>,
    wake: tokio::sync::Notify,
    drain: DrainConfig,
}

fn lock(spool: &Mutex<Spool>) -> std::sync::MutexGuard<'_, Spool> {
    match spool.lock() {
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
        let h = Arc::new(Self {
            spool: Arc::new(Mutex::new(spool)),
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

    pub fn depth(&self) -> usize {
        lock(&self.spool).len()
    }

    pub fn contains(&self, id: &str) -> bool {
        lock(&self.spool).contains(id)
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
    ) -> Result<Option<Response>, ApiError> {
        if self.depth() == 0 {
            return Ok(None);
        }
        if self.metrics.redis_up() && !self.contains(&d.id) {
            // A failed delivery may be redelivered (SPEC §1.3): only other states are duplicates.
            if let Ok(Some(state)) = self.queue.get_state(&d.id).await {
                if state != "failed" {
                    metrics.events_duplicate.inc(&d.event);
                    return Ok(Some(
                        (
                            StatusCode::OK,
                            Json(json!({"status": "duplicate", "delivery": d.id, "state": state})),
                        )
                            .into_response(),
                    ));
                }
            }
        }
        self.spool(d, metrics).await.map(Some)
    }

    /// Appends `d` durably (file and directory fsynced) and answers 202 `spooled`; a delivery id the
    /// spool already holds is a duplicate.
    pub async fn spool(&self, d: &Delivery, metrics: &Metrics) -> Result<Response, ApiError> {
        let spool = self.spool.clone();
        let rec = SpoolRecord {
            delivery: d.id.clone(),
            payload: encode(d),
        };
        let appended = tokio::task::spawn_blocking(move || {
            let mut s = lock(&spool);
            if s.contains(&rec.delivery) {
                return Ok(false);
            }
            s.append(&rec).map(|_| true)
        })
        .await
        .map_err(|e| ApiError::internal(format!("spool task failed: {e}")))?;
        match appended {
            Ok(true) => {
                metrics.events_received.inc(&d.event);
                self.refresh_depth_metric();
                self.wake.notify_one();
                Ok((
                    StatusCode::ACCEPTED,
                    Json(json!({"status": "spooled", "delivery": d.id})),
                )
                    .into_response())
            }
            Ok(false) => {
                metrics.events_duplicate.inc(&d.event);
                Ok((
                    StatusCode::OK,
                    Json(json!({"status": "duplicate", "delivery": d.id, "state": "spooled"})),
                )
                    .into_response())
            }
            Err(e) => {
                metrics.events_rejected.inc("spool_error");
                tracing::error!(delivery = %d.id, error = %e, "spool append failed: answering 503");
                Err(ApiError::unavailable(
                    "queue unavailable and spool failed",
                    5,
                ))
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
            let batch = match batch {
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
            if batch.is_empty() {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = self.wake.notified() => {},
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {},
                }
                continue;
            }
            let mut done = 0;
            for rec in &batch {
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
                    Ok(Ok(())) => {}
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
