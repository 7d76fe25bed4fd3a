//! The Redis side of GitSpy: the atomic enqueue, the consumer group, per-delivery state, locks,
//! attempts, dead letters and the queue gauges. Key names live in [`keys`], scripts in [`scripts`].

pub mod conn;
pub mod group;
pub mod keys;
pub mod scripts;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{RedisError, RedisResult, Value};

use crate::delivery::Delivery;
use crate::metrics::{Metrics, QueueGauges};
use crate::sabotage::{self, Variant};
pub use conn::{is_connection_error, RedisConn};

/// Settings shared by every process that talks to the queue.
#[derive(Clone, Debug)]
pub struct QueueConfig {
    pub redis_url: String,
    /// Bounds connecting and every command (not the blocking read, which has its own connection).
    pub timeout: Duration,
    /// TTL of the `state`, `attempts` and `error` keys.
    pub state_ttl: Duration,
    /// Test-only: `false` turns off every duplicate check so the harness can prove it detects
    /// duplication. Never set in production.
    pub dedupe: bool,
}

/// Result of the atomic enqueue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enqueued {
    /// A new stream entry with this id.
    Queued(String),
    /// The delivery is already known in this state; nothing was written.
    Duplicate(String),
}

/// What [`Queue::claim_batch`] found for one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The lock is ours; the delivery's state (absent when the key expired).
    Locked(Option<String>),
    /// Another worker (or a dead one whose lock has not expired) holds it.
    Busy,
}

/// One entry read from the stream.
#[derive(Debug, Clone)]
pub struct Entry {
    pub stream_id: String,
    /// `None` when the entry was deleted while pending (only its id is left).
    pub delivery: Option<Delivery>,
}

/// A dead-lettered delivery as `gitspy dead list` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeadEntry {
    pub dead_id: String,
    pub delivery: String,
    pub event: String,
    pub attempts: u64,
    pub error: String,
    pub dead_at_ms: i64,
    #[serde(skip)]
    pub original: Option<Delivery>,
}

/// The queue handle: one multiplexed connection for commands.
pub struct Queue {
    pub conn: Arc<RedisConn>,
    pub cfg: QueueConfig,
    metrics: Arc<Metrics>,
    /// Set once this process has seen the consumer group: a later `NOGROUP` means Redis lost its data.
    group_seen: AtomicBool,
    /// Started on the first enqueue (it needs the runtime).
    group: OnceLock<group::GroupCommit>,
}

impl Queue {
    pub fn new(cfg: QueueConfig, metrics: Arc<Metrics>) -> RedisResult<Self> {
        Ok(Self {
            conn: Arc::new(RedisConn::new(&cfg.redis_url, cfg.timeout)?),
            group: OnceLock::new(),
            cfg,
            metrics,
            group_seen: AtomicBool::new(false),
        })
    }

    fn ttl_ms(&self) -> u64 {
        u64::try_from(self.cfg.state_ttl.as_millis()).unwrap_or(u64::MAX)
    }

    /// Records whether Redis answered; `gitspy_redis_up` follows the last command's outcome.
    fn observe<T>(&self, r: &RedisResult<T>) {
        match r {
            Ok(_) => self.metrics.set_redis_up(true),
            Err(e) if is_connection_error(e) => self.metrics.set_redis_up(false),
            Err(_) => self.metrics.set_redis_up(true),
        }
    }

    /// The atomic enqueue, group-committed: concurrent calls share one script round trip (see
    /// [`group`]); each delivery is deduplicated and enqueued atomically, and the answer comes only
    /// once the batch holding it is in Redis.
    pub async fn enqueue(&self, d: &Delivery) -> RedisResult<Enqueued> {
        let group = self.group.get_or_init(|| {
            group::GroupCommit::start(self.conn.clone(), self.ttl_ms(), self.cfg.dedupe)
        });
        let r = group.enqueue(d).await;
        self.observe(&r);
        r
    }

    /// `PING` with the command timeout.
    pub async fn ping(&self) -> RedisResult<()> {
        let r = self
            .conn
            .run(|mut c| async move {
                redis::cmd("PING").query_async::<String>(&mut c).await?;
                Ok(())
            })
            .await;
        self.observe(&r);
        r
    }

    /// Creates the consumer group at id `0` (with `MKSTREAM`) when it is missing. A missing group
    /// after this process has seen it means Redis lost its data: recreate at `0` — never `$`, which
    /// would skip what was re-enqueued since — and say so loudly.
    pub async fn ensure_group(&self) -> RedisResult<()> {
        let r = self
            .conn
            .run(|mut c| async move {
                let r: RedisResult<String> = redis::cmd("XGROUP")
                    .arg("CREATE")
                    .arg(keys::STREAM)
                    .arg(keys::GROUP)
                    .arg("0")
                    .arg("MKSTREAM")
                    .query_async(&mut c)
                    .await;
                match r {
                    Ok(_) => Ok(true),
                    Err(e) if e.code() == Some("BUSYGROUP") => Ok(false),
                    Err(e) => Err(e),
                }
            })
            .await;
        self.observe(&r);
        let created = r?;
        if created && self.group_seen.load(Ordering::SeqCst) {
            self.report_data_loss();
        }
        self.group_seen.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Called when a command answered `NOGROUP`. If this process had seen the group, Redis lost its
    /// data: count it and say so loudly, once per disappearance, even if another process recreates
    /// the group before this one calls [`Queue::ensure_group`] (which then finds `BUSYGROUP`).
    pub fn note_group_missing(&self) {
        if self.group_seen.swap(false, Ordering::SeqCst) {
            self.report_data_loss();
        }
    }

    fn report_data_loss(&self) {
        self.metrics.redis_data_loss.inc();
        tracing::error!(
            stream = keys::STREAM,
            group = keys::GROUP,
            "REDIS LOST ITS DATA: the consumer group was gone; recreating it at id 0. Deliveries \
             that were queued or pending in Redis before the loss are not in the stream any more \
             (GitHub redelivery or the sender must resend them)"
        );
    }

    /// Queue gauges from one pipeline: `XLEN`, `XPENDING` summary, dead `XLEN`.
    pub async fn gauges(&self) -> RedisResult<QueueGauges> {
        let r = self
            .conn
            .run(|mut c| async move {
                let (len, pending, dead): (u64, Value, u64) = redis::pipe()
                    .cmd("XLEN")
                    .arg(keys::STREAM)
                    .cmd("XPENDING")
                    .arg(keys::STREAM)
                    .arg(keys::GROUP)
                    .cmd("XLEN")
                    .arg(keys::DEAD_STREAM)
                    .query_async(&mut c)
                    .await?;
                let active = match &pending {
                    Value::Array(items) => items.first().map(value_u64).unwrap_or(0),
                    _ => 0,
                };
                Ok(QueueGauges {
                    waiting: len.saturating_sub(active),
                    active,
                    dead,
                })
            })
            .await;
        if let Err(e) = &r {
            if e.code() == Some("NOGROUP") {
                // The stream or group vanished under us: recreate and report it.
                self.note_group_missing();
                let _ = self.ensure_group().await;
            }
        }
        self.observe(&r);
        r
    }

    /// State and attempts of many deliveries in one round trip.
    pub async fn states(&self, ids: &[String]) -> RedisResult<Vec<(Option<String>, u64)>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let r = self
            .conn
            .run(|mut c| async move {
                let mut p = redis::pipe();
                for id in ids {
                    p.cmd("GET").arg(keys::state(id));
                    p.cmd("GET").arg(keys::attempts(id));
                }
                let v: Vec<Option<String>> = p.query_async(&mut c).await?;
                Ok(v.chunks(2)
                    .map(|pair| {
                        let attempts = pair
                            .get(1)
                            .and_then(|a| a.as_deref())
                            .and_then(|a| a.parse().ok())
                            .unwrap_or(0);
                        (pair.first().cloned().flatten(), attempts)
                    })
                    .collect())
            })
            .await;
        self.observe(&r);
        r
    }

    // ---- worker side ----

    /// A connection for blocking reads, with a response timeout above the block time.
    pub async fn blocking_conn(&self, block: Duration) -> RedisResult<MultiplexedConnection> {
        self.conn
            .dedicated(block + self.cfg.timeout + Duration::from_secs(1))
            .await
    }

    /// `XREADGROUP … BLOCK` on the dedicated connection: new entries for `consumer`.
    pub async fn read_new(
        &self,
        c: &mut MultiplexedConnection,
        consumer: &str,
        count: usize,
        block: Duration,
    ) -> RedisResult<Vec<Entry>> {
        let v: Value = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(keys::GROUP)
            .arg(consumer)
            .arg("COUNT")
            .arg(count)
            .arg("BLOCK")
            .arg(u64::try_from(block.as_millis()).unwrap_or(u64::MAX))
            .arg("STREAMS")
            .arg(keys::STREAM)
            .arg(">")
            .query_async(c)
            .await?;
        let mut out = Vec::new();
        // Reply: [[stream, [[id, [f, v, …]], …]]] (RESP2) or a map (RESP3); Nil on timeout.
        match v {
            Value::Nil => {}
            Value::Array(streams) => {
                for s in streams {
                    if let Value::Array(mut parts) = s {
                        if parts.len() == 2 {
                            if let Some(entries) = parts.pop() {
                                out.extend(parse_entries(entries));
                            }
                        }
                    }
                }
            }
            Value::Map(streams) => {
                for (_, entries) in streams {
                    out.extend(parse_entries(entries));
                }
            }
            other => return Err(unexpected("XREADGROUP", &other)),
        }
        Ok(out)
    }

    /// `XAUTOCLAIM` entries idle longer than `min_idle` to `consumer`.
    pub async fn autoclaim(
        &self,
        consumer: &str,
        min_idle: Duration,
        count: usize,
    ) -> RedisResult<Vec<Entry>> {
        let idle = u64::try_from(min_idle.as_millis()).unwrap_or(u64::MAX);
        let r = self
            .conn
            .run(|mut c| async move {
                let mut out = Vec::new();
                let mut cursor = "0-0".to_string();
                // Bounded: at most 16 pages per call.
                for _ in 0..16 {
                    let v: Value = redis::cmd("XAUTOCLAIM")
                        .arg(keys::STREAM)
                        .arg(keys::GROUP)
                        .arg(consumer)
                        .arg(idle)
                        .arg(&cursor)
                        .arg("COUNT")
                        .arg(count)
                        .query_async(&mut c)
                        .await?;
                    let Value::Array(mut parts) = v else {
                        return Err(unexpected("XAUTOCLAIM", &v));
                    };
                    if parts.len() >= 3 {
                        // Redis 7: ids deleted while pending were removed from the PEL for us.
                        parts.truncate(2);
                    }
                    let entries = parts.pop().unwrap_or(Value::Nil);
                    let next = parts.pop().map(|v| value_string(&v)).unwrap_or_default();
                    out.extend(parse_entries(entries));
                    if next == "0-0" || next.is_empty() || out.len() >= count {
                        break;
                    }
                    cursor = next;
                }
                Ok(out)
            })
            .await;
        self.observe(&r);
        r
    }

    /// Takes the delivery lock: `SET NX PX`, value `<token>:<acquired-ms>` (or keeps our own).
    pub async fn lock(&self, delivery: &str, token: &str, ttl: Duration) -> RedisResult<bool> {
        let value = format!("{token}:{}", crate::delivery::now_ms());
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        let script = if sabotage::is(Variant::LockWithoutTtl) {
            &*scripts::SABOTAGE_ACQUIRE_LOCK_WITHOUT_TTL
        } else {
            &*scripts::ACQUIRE_LOCK
        };
        let r = self
            .conn
            .run(|mut c| async move {
                let v: i64 = script
                    .key(keys::lock(delivery))
                    .arg(token)
                    .arg(value)
                    .arg(ttl_ms)
                    .invoke_async(&mut c)
                    .await?;
                Ok(v == 1)
            })
            .await;
        self.observe(&r);
        r
    }

    /// The batch form of [`Queue::lock`] + [`Queue::get_state`], one round trip: per delivery
    /// (in order) whether the lock is ours now, and if so the delivery's state.
    pub async fn claim_batch(
        &self,
        deliveries: &[&str],
        token: &str,
        ttl: Duration,
    ) -> RedisResult<Vec<Claim>> {
        if deliveries.is_empty() {
            return Ok(Vec::new());
        }
        let value = format!("{token}:{}", crate::delivery::now_ms());
        // `0`: the `lock-without-ttl` sabotage (a lock that never expires).
        let ttl_ms = if sabotage::is(Variant::LockWithoutTtl) {
            0
        } else {
            u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
        };
        let r = self
            .conn
            .run(|mut c| async move {
                let mut inv = scripts::CLAIM_BATCH.prepare_invoke();
                for d in deliveries {
                    inv.key(keys::lock(d)).key(keys::state(d));
                }
                inv.arg(token).arg(&value).arg(ttl_ms);
                let v: Value = inv.invoke_async(&mut c).await?;
                match &v {
                    Value::Array(parts) if parts.len() == 2 * deliveries.len() => Ok(parts
                        .chunks(2)
                        .map(|pair| {
                            if value_u64(&pair[0]) == 1 {
                                let state = value_string(&pair[1]);
                                Claim::Locked((!state.is_empty()).then_some(state))
                            } else {
                                Claim::Busy
                            }
                        })
                        .collect()),
                    _ => Err(unexpected("claim batch script", &v)),
                }
            })
            .await;
        self.observe(&r);
        r
    }

    /// The batch form of [`Queue::set_state`]`("processing")` for the deliveries about to be
    /// applied and of ack + release for those found already processed, one round trip:
    /// `(delivery, stream id, already processed)`.
    pub async fn start_batch(&self, items: &[(&str, &str, bool)], token: &str) -> RedisResult<()> {
        if items.is_empty() {
            return Ok(());
        }
        let ttl = self.ttl_ms();
        let r = self
            .conn
            .run(|mut c| async move {
                let mut inv = scripts::START_BATCH.prepare_invoke();
                inv.key(keys::STREAM);
                for (d, _, _) in items {
                    inv.key(keys::state(d)).key(keys::lock(d));
                }
                inv.arg(keys::GROUP).arg(token).arg(ttl);
                for (_, stream_id, processed) in items {
                    inv.arg(if *processed { "d" } else { "p" }).arg(*stream_id);
                }
                let _: i64 = inv.invoke_async(&mut c).await?;
                Ok(())
            })
            .await;
        self.observe(&r);
        r
    }

    /// [`Queue::finish`] for a batch, one round trip: `(delivery, stream id)`.
    pub async fn finish_batch(&self, items: &[(&str, &str)], token: &str) -> RedisResult<()> {
        if items.is_empty() {
            return Ok(());
        }
        let ttl = self.ttl_ms();
        let r = self
            .conn
            .run(|mut c| async move {
                let mut inv = scripts::FINISH_BATCH.prepare_invoke();
                inv.key(keys::STREAM);
                for (d, _) in items {
                    inv.key(keys::state(d)).key(keys::lock(d));
                }
                inv.arg(keys::GROUP).arg(token).arg(ttl);
                for (_, stream_id) in items {
                    inv.arg(*stream_id);
                }
                let _: i64 = inv.invoke_async(&mut c).await?;
                Ok(())
            })
            .await;
        self.observe(&r);
        r
    }

    pub async fn release_lock(&self, delivery: &str, token: &str) -> RedisResult<()> {
        self.conn
            .run(|mut c| async move {
                let _: i64 = scripts::RELEASE_LOCK
                    .key(keys::lock(delivery))
                    .arg(token)
                    .invoke_async(&mut c)
                    .await?;
                Ok(())
            })
            .await
    }

    /// Heartbeat for in-flight deliveries: renew our locks and reset the entries' idle time
    /// (`XCLAIM … JUSTID` to ourselves does not bump the delivery counter) in one pipeline.
    pub async fn heartbeat(
        &self,
        consumer: &str,
        token: &str,
        ttl: Duration,
        inflight: &[(String, String)],
    ) -> RedisResult<()> {
        if inflight.is_empty() {
            return Ok(());
        }
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        self.conn
            .run(|mut c| async move {
                let mut claim = redis::cmd("XCLAIM");
                claim
                    .arg(keys::STREAM)
                    .arg(keys::GROUP)
                    .arg(consumer)
                    .arg(0);
                for (_, stream_id) in inflight {
                    claim.arg(stream_id);
                }
                claim.arg("JUSTID");
                let _: Value = claim.query_async(&mut c).await?;
                if sabotage::is(Variant::LockWithoutTtl) {
                    // Sabotage: the lock has no TTL, so there is "nothing to renew".
                    return Ok(());
                }
                for (delivery, _) in inflight {
                    let _: i64 = scripts::RENEW_LOCK
                        .key(keys::lock(delivery))
                        .arg(token)
                        .arg(ttl_ms)
                        .invoke_async(&mut c)
                        .await?;
                }
                Ok(())
            })
            .await
    }

    pub async fn set_state(&self, delivery: &str, state: &str) -> RedisResult<()> {
        let ttl = self.ttl_ms();
        self.conn
            .run(|mut c| async move {
                let _: i64 = scripts::SET_STATE
                    .key(keys::state(delivery))
                    .arg(state)
                    .arg(ttl)
                    .invoke_async(&mut c)
                    .await?;
                Ok(())
            })
            .await
    }

    pub async fn get_state(&self, delivery: &str) -> RedisResult<Option<String>> {
        self.conn
            .run(|mut c| async move {
                redis::cmd("GET")
                    .arg(keys::state(delivery))
                    .query_async(&mut c)
                    .await
            })
            .await
    }

    /// Marks processed, acknowledges and deletes the entry, releases the lock: one script.
    pub async fn finish(&self, delivery: &str, stream_id: &str, token: &str) -> RedisResult<()> {
        let ttl = self.ttl_ms();
        self.conn
            .run(|mut c| async move {
                let _: i64 = scripts::FINISH
                    .key(keys::state(delivery))
                    .key(keys::STREAM)
                    .key(keys::lock(delivery))
                    .arg(keys::GROUP)
                    .arg(stream_id)
                    .arg(token)
                    .arg(ttl)
                    .invoke_async(&mut c)
                    .await?;
                Ok(())
            })
            .await
    }

    /// [`Queue::finish`] in two steps, for the `after-ack` failpoint only: `processed` + `XACK` +
    /// release the lock, then `between()`, then `XDEL`. A crash in `between` leaves an acknowledged
    /// entry in the stream (counted as waiting until a restarted worker sweeps it).
    pub async fn finish_split(
        &self,
        delivery: &str,
        stream_id: &str,
        token: &str,
        between: impl FnOnce(),
    ) -> RedisResult<()> {
        let ttl = self.ttl_ms();
        self.conn
            .run(|mut c| async move {
                let _: i64 = scripts::FINISH_ACK_ONLY
                    .key(keys::state(delivery))
                    .key(keys::STREAM)
                    .key(keys::lock(delivery))
                    .arg(keys::GROUP)
                    .arg(stream_id)
                    .arg(token)
                    .arg(ttl)
                    .invoke_async(&mut c)
                    .await?;
                Ok(())
            })
            .await?;
        between();
        self.conn
            .run(|mut c| async move {
                let _: i64 = redis::cmd("XDEL")
                    .arg(keys::STREAM)
                    .arg(stream_id)
                    .query_async(&mut c)
                    .await?;
                Ok(())
            })
            .await
    }

    /// Deletes entries that were acknowledged but not deleted (a crash between `XACK` and `XDEL`,
    /// possible only through [`Queue::finish_split`]): they would count as waiting forever and no
    /// consumer would ever read them again. Cheap when there are none: the group's counters show
    /// `XLEN = lag + pending`, and only otherwise are the delivered entries scanned (bounded
    /// pages). Safe against live workers: an entry at or before the group's last-delivered id
    /// is either pending or acknowledged, and every other acknowledgement deletes atomically.
    /// Returns how many it deleted.
    pub async fn sweep_acked(&self) -> RedisResult<u64> {
        self.conn
            .run(|mut c| async move {
                let (len, groups): (u64, Value) = redis::pipe()
                    .cmd("XLEN")
                    .arg(keys::STREAM)
                    .cmd("XINFO")
                    .arg("GROUPS")
                    .arg(keys::STREAM)
                    .query_async(&mut c)
                    .await?;
                let Value::Array(groups) = groups else {
                    return Ok(0);
                };
                let Some(group) = groups
                    .into_iter()
                    .map(fields_map)
                    .find(|g| g.get("name").map(Vec::as_slice) == Some(keys::GROUP.as_bytes()))
                else {
                    return Ok(0);
                };
                let num = |k: &str| {
                    group
                        .get(k)
                        .and_then(|v| std::str::from_utf8(v).ok()?.parse::<u64>().ok())
                };
                let pending = num("pending").unwrap_or(0);
                if let Some(lag) = num("lag") {
                    if len <= lag + pending {
                        return Ok(0);
                    }
                }
                let last = group
                    .get("last-delivered-id")
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_default();
                if last.is_empty() || last == "0-0" {
                    return Ok(0);
                }
                let mut deleted = 0;
                let mut start = "-".to_string();
                for _ in 0..16 {
                    let v: Value = redis::cmd("XRANGE")
                        .arg(keys::STREAM)
                        .arg(&start)
                        .arg(&last)
                        .arg("COUNT")
                        .arg(500)
                        .query_async(&mut c)
                        .await?;
                    let ids: Vec<String> =
                        parse_entries(v).into_iter().map(|e| e.stream_id).collect();
                    let (Some(first), Some(end)) = (ids.first(), ids.last()) else {
                        break;
                    };
                    let p: Value = redis::cmd("XPENDING")
                        .arg(keys::STREAM)
                        .arg(keys::GROUP)
                        .arg(first)
                        .arg(end)
                        .arg(ids.len())
                        .query_async(&mut c)
                        .await?;
                    let pending: std::collections::HashSet<String> = match p {
                        Value::Array(items) => items
                            .iter()
                            .filter_map(|i| match i {
                                Value::Array(parts) => parts.first().map(value_string),
                                _ => None,
                            })
                            .collect(),
                        _ => Default::default(),
                    };
                    let acked: Vec<&String> =
                        ids.iter().filter(|id| !pending.contains(*id)).collect();
                    if !acked.is_empty() {
                        let n: u64 = redis::cmd("XDEL")
                            .arg(keys::STREAM)
                            .arg(&acked)
                            .query_async(&mut c)
                            .await?;
                        deleted += n;
                    }
                    if ids.len() < 500 {
                        break;
                    }
                    start = format!("({end}");
                }
                Ok(deleted)
            })
            .await
    }

    /// Acknowledges and deletes an entry without touching its state (duplicates, deleted entries).
    pub async fn ack(&self, stream_id: &str) -> RedisResult<()> {
        self.conn
            .run(|mut c| async move {
                let _: (i64, i64) = redis::pipe()
                    .atomic()
                    .cmd("XACK")
                    .arg(keys::STREAM)
                    .arg(keys::GROUP)
                    .arg(stream_id)
                    .cmd("XDEL")
                    .arg(keys::STREAM)
                    .arg(stream_id)
                    .query_async(&mut c)
                    .await?;
                Ok(())
            })
            .await
    }

    /// Counts one more attempt; returns the new count.
    pub async fn add_attempt(&self, delivery: &str, error: &str) -> RedisResult<u64> {
        let ttl = self.ttl_ms();
        self.conn
            .run(|mut c| async move {
                let (n,): (u64,) = redis::pipe()
                    .atomic()
                    .cmd("INCR")
                    .arg(keys::attempts(delivery))
                    .cmd("PEXPIRE")
                    .arg(keys::attempts(delivery))
                    .arg(ttl)
                    .ignore()
                    .cmd("SET")
                    .arg(keys::last_error(delivery))
                    .arg(error)
                    .arg("PX")
                    .arg(ttl)
                    .ignore()
                    .query_async(&mut c)
                    .await?;
                Ok(n)
            })
            .await
    }

    /// Moves a delivery to the dead-letter stream atomically.
    pub async fn dead_letter(
        &self,
        d: &Delivery,
        stream_id: &str,
        token: &str,
        attempts: u64,
        error: &str,
    ) -> RedisResult<()> {
        let ttl = self.ttl_ms();
        self.conn
            .run(|mut c| async move {
                let _: i64 = scripts::DEAD_LETTER
                    .key(keys::state(&d.id))
                    .key(keys::STREAM)
                    .key(keys::lock(&d.id))
                    .key(keys::DEAD_STREAM)
                    .key(keys::last_error(&d.id))
                    .arg(keys::GROUP)
                    .arg(stream_id)
                    .arg(token)
                    .arg(ttl)
                    .arg(&d.id)
                    .arg(&d.event)
                    .arg(attempts)
                    .arg(error)
                    .arg(crate::delivery::now_ms())
                    .arg(d.action.as_deref().unwrap_or(""))
                    .arg(d.repository.as_deref().unwrap_or(""))
                    .arg(d.received_at_ms)
                    .arg(&d.body)
                    .invoke_async(&mut c)
                    .await?;
                Ok(())
            })
            .await
    }

    /// Every entry of the dead-letter stream, oldest first (bounded pages).
    pub async fn dead_entries(&self) -> RedisResult<Vec<DeadEntry>> {
        self.conn
            .run(|mut c| async move {
                let v: Value = redis::cmd("XRANGE")
                    .arg(keys::DEAD_STREAM)
                    .arg("-")
                    .arg("+")
                    .query_async(&mut c)
                    .await?;
                let mut out = Vec::new();
                if let Value::Array(entries) = v {
                    for e in entries {
                        let Value::Array(mut parts) = e else { continue };
                        if parts.len() != 2 {
                            continue;
                        }
                        let fields = fields_map(parts.pop().unwrap_or(Value::Nil));
                        let dead_id = parts.pop().map(|v| value_string(&v)).unwrap_or_default();
                        let get = |k: &str| fields.get(k).cloned().unwrap_or_default();
                        let text = |k: &str| String::from_utf8_lossy(&get(k)).into_owned();
                        let original = if fields.contains_key("body") {
                            Some(Delivery {
                                id: text("id"),
                                event: text("event"),
                                action: Some(text("action")).filter(|s| !s.is_empty()),
                                repository: Some(text("repository")).filter(|s| !s.is_empty()),
                                received_at_ms: text("received_at").parse().unwrap_or(0),
                                body: get("body"),
                            })
                        } else {
                            None
                        };
                        out.push(DeadEntry {
                            dead_id,
                            delivery: text("id"),
                            event: text("event"),
                            attempts: text("attempts").parse().unwrap_or(0),
                            error: text("error"),
                            dead_at_ms: text("dead_at").parse().unwrap_or(0),
                            original,
                        });
                    }
                }
                Ok(out)
            })
            .await
    }

    /// Removes an entry from the dead-letter stream (after it was requeued).
    pub async fn remove_dead(&self, dead_id: &str) -> RedisResult<()> {
        self.conn
            .run(|mut c| async move {
                let _: i64 = redis::cmd("XDEL")
                    .arg(keys::DEAD_STREAM)
                    .arg(dead_id)
                    .query_async(&mut c)
                    .await?;
                Ok(())
            })
            .await
    }
}

fn parse_entries(v: Value) -> Vec<Entry> {
    let Value::Array(entries) = v else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in entries {
        let Value::Array(mut parts) = e else { continue };
        if parts.is_empty() {
            continue;
        }
        let fields = if parts.len() >= 2 { parts.pop() } else { None };
        let stream_id = parts.pop().map(|v| value_string(&v)).unwrap_or_default();
        let delivery = fields.and_then(|f| {
            let mut m = fields_map(f);
            // Moved out, not copied: the body is most of the entry's bytes.
            let body = m.remove("body");
            let text = |k: &str| m.get(k).map(|b| String::from_utf8_lossy(b).into_owned());
            Some(Delivery {
                id: text("id")?,
                event: text("event")?,
                action: text("action").filter(|s| !s.is_empty()),
                repository: text("repository").filter(|s| !s.is_empty()),
                received_at_ms: text("received_at")?.parse().ok()?,
                body: body?,
            })
        });
        out.push(Entry {
            stream_id,
            delivery,
        });
    }
    out
}

fn fields_map(v: Value) -> std::collections::HashMap<String, Vec<u8>> {
    let mut m = std::collections::HashMap::new();
    match v {
        Value::Array(items) => {
            let mut it = items.into_iter();
            while let (Some(k), Some(val)) = (it.next(), it.next()) {
                m.insert(value_string(&k), value_bytes(val));
            }
        }
        Value::Map(pairs) => {
            for (k, val) in pairs {
                m.insert(value_string(&k), value_bytes(val));
            }
        }
        _ => {}
    }
    m
}

fn value_bytes(v: Value) -> Vec<u8> {
    match v {
        Value::BulkString(b) => b,
        Value::SimpleString(s) => s.into_bytes(),
        Value::Int(i) => i.to_string().into_bytes(),
        _ => Vec::new(),
    }
}

fn value_string(v: &Value) -> String {
    match v {
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        Value::SimpleString(s) => s.clone(),
        Value::Int(i) => i.to_string(),
        Value::Okay => "OK".into(),
        _ => String::new(),
    }
}

fn value_u64(v: &Value) -> u64 {
    match v {
        Value::Int(i) => u64::try_from(*i).unwrap_or(0),
        other => value_string(other).parse().unwrap_or(0),
    }
}

fn unexpected(what: &str, v: &Value) -> RedisError {
    RedisError::from((
        redis::ErrorKind::Parse,
        "unexpected reply",
        format!("{what}: {v:?}"),
    ))
}
