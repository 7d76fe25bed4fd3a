//! Group commit of the atomic enqueue: concurrent `POST /webhooks` requests are coalesced into one
//! [`scripts::ENQUEUE_BATCH`] call, one Redis round trip for the batch instead of one per delivery.
//!
//! Each delivery is still deduplicated and enqueued atomically (the script handles the batch's
//! deliveries one after the other inside one atomic step), and each caller gets its own answer
//! only once the script holding its delivery has returned — so a 2xx still means "in Redis". With
//! Redis AOF `always`, the batch shares one fsync.
//!
//! Batches form by themselves: a request that arrives while [`IN_FLIGHT`] batches are already on
//! the wire waits for a slot, and every request that arrived meanwhile joins its batch (up to
//! [`MAX_BATCH`]). An idle server sends a lone request at once, so the lightly loaded latency is
//! one round trip as before. A caller waits at most the command deadline (`GITSPY_REDIS_TIMEOUT`)
//! in all — for a slot and for its batch together — so an unreachable Redis is answered 503
//! within the Redis timeout (SPEC), never after a slot wait plus a batch wait; one that gave up
//! before its batch was sent is left out of it (only a batch already on the wire can be written
//! after its callers timed out, as with any timed-out command: a 503 that was enqueued anyway).

use std::sync::Arc;
use std::time::Duration;

use redis::{RedisResult, Value};
use tokio::sync::{mpsc, oneshot, Semaphore};

use super::{keys, scripts, unexpected, value_string, value_u64, Enqueued, RedisConn};
use crate::delivery::Delivery;
use crate::sabotage::{self, Variant};

/// Deliveries per script call at most.
pub const MAX_BATCH: usize = 128;
/// Batches on the wire at once.
pub const IN_FLIGHT: usize = 4;

struct Pending {
    delivery: Delivery,
    reply: oneshot::Sender<RedisResult<Enqueued>>,
}

/// The handle the ingress enqueues through; the batching task ends when it is dropped.
pub struct GroupCommit {
    tx: mpsc::UnboundedSender<Pending>,
    /// The longest a caller waits, slot and batch together: the Redis timeout. (It was twice
    /// that plus slack, and under a partition the fifth concurrent request waited for a slot a
    /// full timeout and then for its own batch: 503s after 1.8 s with a 1 s timeout, found by
    /// the harness's `rejects_within_redis_timeout` in `09-partition`.)
    deadline: Duration,
}

impl GroupCommit {
    /// Starts the batching task on the current tokio runtime.
    pub fn start(conn: Arc<RedisConn>, ttl_ms: u64, dedupe: bool) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let deadline = conn.timeout();
        tokio::spawn(batch_loop(conn, ttl_ms, dedupe, rx));
        Self { tx, deadline }
    }

    /// Enqueues one delivery in the next batch and waits for that batch's answer.
    pub async fn enqueue(&self, delivery: &Delivery) -> RedisResult<Enqueued> {
        let (reply, answer) = oneshot::channel();
        let pending = Pending {
            delivery: delivery.clone(),
            reply,
        };
        if self.tx.send(pending).is_err() {
            return Err(gone());
        }
        match tokio::time::timeout(self.deadline, answer).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(gone()),
            // Gone before its batch was sent, the delivery is never written (see `batch_loop`);
            // gone while it was in flight, it is as indeterminate as any timed-out command.
            Err(_) => Err(redis::RedisError::from(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "redis did not answer in time",
            ))),
        }
    }
}

async fn batch_loop(
    conn: Arc<RedisConn>,
    ttl_ms: u64,
    dedupe: bool,
    mut rx: mpsc::UnboundedReceiver<Pending>,
) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    while let Some(first) = rx.recv().await {
        // Waiting for a slot is what lets a batch grow under load.
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        // Callers that gave up (timed out, or their connection closed) are not written for.
        let mut batch: Vec<Pending> = Some(first)
            .into_iter()
            .filter(|p| !p.reply.is_closed())
            .collect();
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(p) if p.reply.is_closed() => {}
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        if batch.is_empty() {
            continue;
        }
        let conn = conn.clone();
        tokio::spawn(async move {
            let result = flush(&conn, ttl_ms, dedupe, &batch).await;
            drop(permit);
            match result {
                Ok(answers) => {
                    for (p, a) in batch.into_iter().zip(answers) {
                        let _ = p.reply.send(Ok(a));
                    }
                }
                Err(e) => {
                    for p in batch {
                        let _ = p.reply.send(Err(e.clone()));
                    }
                }
            }
        });
    }
}

/// One script call for the whole batch; one answer per delivery, in order.
async fn flush(
    conn: &RedisConn,
    ttl_ms: u64,
    dedupe: bool,
    batch: &[Pending],
) -> RedisResult<Vec<Enqueued>> {
    conn.run(|mut c| async move {
        let mut inv = scripts::ENQUEUE_BATCH.prepare_invoke();
        inv.key(keys::STREAM);
        for p in batch {
            inv.key(keys::state(&p.delivery.id))
                .key(keys::attempts(&p.delivery.id));
        }
        // Sabotage `enqueue-duplicates` switches the duplicate check off (never in production).
        let dedupe = dedupe && !sabotage::is(Variant::EnqueueDuplicates);
        inv.arg(ttl_ms).arg(if dedupe { "1" } else { "0" });
        for p in batch {
            let d = &p.delivery;
            inv.arg(&d.id)
                .arg(&d.event)
                .arg(d.action.as_deref().unwrap_or(""))
                .arg(d.repository.as_deref().unwrap_or(""))
                .arg(d.received_at_ms)
                .arg(&d.body);
        }
        let v: Value = inv.invoke_async(&mut c).await?;
        parse_batch_reply(v, batch.len())
    })
    .await
}

fn parse_batch_reply(v: Value, n: usize) -> RedisResult<Vec<Enqueued>> {
    match &v {
        Value::Array(parts) if parts.len() == 2 * n => Ok(parts
            .chunks(2)
            .map(|pair| {
                let text = value_string(&pair[1]);
                if value_u64(&pair[0]) == 1 {
                    Enqueued::Queued(text)
                } else {
                    Enqueued::Duplicate(text)
                }
            })
            .collect()),
        _ => Err(unexpected("enqueue batch script", &v)),
    }
}

/// The batching task is gone (the runtime is shutting down): a connection-level error, so the
/// caller answers 503 or spools, never 2xx.
fn gone() -> redis::RedisError {
    redis::RedisError::from(std::io::Error::new(
        std::io::ErrorKind::BrokenPipe,
        "the enqueue batching task stopped",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_reply_maps_flags_in_order() {
        let v = Value::Array(vec![
            Value::Int(1),
            Value::BulkString(b"1-0".to_vec()),
            Value::Int(0),
            Value::BulkString(b"received".to_vec()),
        ]);
        assert_eq!(
            parse_batch_reply(v, 2).unwrap(),
            [
                Enqueued::Queued("1-0".into()),
                Enqueued::Duplicate("received".into())
            ]
        );
        assert!(parse_batch_reply(Value::Array(vec![Value::Int(1)]), 1).is_err());
        assert!(parse_batch_reply(Value::Nil, 1).is_err());
    }
}
