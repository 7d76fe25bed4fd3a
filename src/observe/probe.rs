//! Redis introspection of the queue (SPEC §2.4): delivery states counted per value, delivery
//! locks with their remaining TTL (and which of them are stuck), the stream's length and
//! pending count, and the dead-letter stream's length.
//!
//! Keys are walked with `SCAN` (never `KEYS`, which blocks a production Redis), optionally
//! narrowed to the delivery ids of one run. Every name (stream, group, key patterns, state
//! values) is read from the run's target profile ([`Profile`]; GitSpy's by default, from the
//! shared contract), never written here. A missing stream or consumer group is not an error: a
//! Redis that lost its data, or a run that has not sent anything yet, has neither.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result};
use gitspy_contract::{keys, DeliveryState, Profile};
use serde::{Deserialize, Serialize};

/// How long to wait for a TCP connection to Redis. A paused or stopped Redis must cost the
/// probe a bounded time, never a hang.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long to wait for any one reply. SCAN batches of [`SCAN_COUNT`] answer in well under
/// this; anything slower is a Redis in trouble, which is a finding, not a reason to wait.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
/// `COUNT` hint per `SCAN` call.
const SCAN_COUNT: usize = 1000;

/// What the caller knows that the probe cannot: the configured lock TTL, when the system was
/// last seen drained, and which delivery ids belong to this run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeConfig {
    /// The workers' `GITSPY_LOCK_TTL`, in milliseconds.
    pub lock_ttl_ms: u64,
    /// Since when (unix ms) the system has been drained (nothing waiting or pending), if it is.
    #[serde(default)]
    pub drained_since_ms: Option<u64>,
    /// Only state and lock keys of delivery ids starting with this prefix (the run's nonce),
    /// so a Redis that outlived earlier runs does not mix their keys into this one's counts.
    /// `None` counts every delivery.
    #[serde(default)]
    pub id_prefix: Option<String>,
}

impl ProbeConfig {
    /// The `SCAN` pattern for the keys of `key_pattern` (`events:{id}:state`) of the selected ids.
    fn pattern(&self, key_pattern: &str) -> String {
        keys::scan_glob(key_pattern, self.id_prefix.as_deref())
    }
}

/// Why a lock is stuck.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StuckReason {
    /// The lock has no TTL (`PTTL` = -1): it would never expire.
    NoTtl,
    /// The remaining TTL exceeds the configured lock TTL: someone set it wrong.
    TtlAboveConfigured,
    /// The system has been drained longer than the lock TTL and the lock is still there.
    PresentAfterDrain,
}

impl StuckReason {
    /// A short human description for notes and reports.
    pub fn describe(self) -> &'static str {
        match self {
            StuckReason::NoTtl => "no TTL",
            StuckReason::TtlAboveConfigured => "TTL above the configured lock TTL",
            StuckReason::PresentAfterDrain => "still held long after the drain",
        }
    }
}

/// One delivery lock found by the probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    /// The key, `events:<delivery>:lock`.
    pub key: String,
    /// The delivery id taken from the key.
    pub delivery: String,
    /// `PTTL` in ms; -1 when the key has no TTL.
    pub pttl_ms: i64,
    /// The lock's value (`<token>:<acquired-ms>`), when readable as text.
    pub value: Option<String>,
    /// Set when the lock is stuck.
    pub stuck: Option<StuckReason>,
}

/// Everything one probe saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedisProbe {
    /// When the probe ran, unix ms.
    pub at_ms: u64,
    /// Number of state keys per state value (`received`, `processing`, `processed`, `failed`,
    /// or whatever else is found).
    pub states: BTreeMap<String, u64>,
    /// Every lock key, sorted by key.
    pub locks: Vec<LockInfo>,
    /// Whether the work stream exists.
    pub stream_exists: bool,
    /// `XLEN` of the work stream (0 when missing).
    pub stream_len: u64,
    /// Pending entries of the group (`XPENDING` summary); `None` when the stream or the group
    /// is missing.
    pub pending: Option<u64>,
    /// `XLEN` of the dead-letter stream (0 when missing).
    pub dead_len: u64,
}

impl RedisProbe {
    /// The locks that are stuck.
    pub fn stuck_locks(&self) -> impl Iterator<Item = &LockInfo> {
        self.locks.iter().filter(|l| l.stuck.is_some())
    }

    /// Entries not yet delivered to a consumer: `XLEN − pending` (acknowledged entries are
    /// deleted, so this is exact). `None` when pending is unknown.
    pub fn waiting(&self) -> Option<u64> {
        self.pending.map(|p| self.stream_len.saturating_sub(p))
    }
}

/// Whether a lock with remaining TTL `pttl_ms` is stuck, given the configured lock TTL and for
/// how long the system has been drained.
pub fn classify_lock(
    pttl_ms: i64,
    lock_ttl_ms: u64,
    drained_for_ms: Option<u64>,
) -> Option<StuckReason> {
    if pttl_ms == -1 {
        Some(StuckReason::NoTtl)
    } else if pttl_ms > 0 && pttl_ms as u64 > lock_ttl_ms {
        Some(StuckReason::TtlAboveConfigured)
    } else if drained_for_ms.is_some_and(|d| d > lock_ttl_ms) {
        Some(StuckReason::PresentAfterDrain)
    } else {
        None
    }
}

/// Opens a multiplexed connection with explicit connect and response timeouts (the redis-rs
/// default response timeout is not one we chose; stating ours keeps the probe bounded).
pub async fn connect(url: &str) -> Result<redis::aio::MultiplexedConnection> {
    let client =
        redis::Client::open(url).with_context(|| format!("parsing the Redis URL {url}"))?;
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT));
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .with_context(|| format!("connecting to Redis at {url}"))
}

/// Runs one probe on `conn` with GitSpy's names.
pub async fn probe(
    conn: &mut redis::aio::MultiplexedConnection,
    config: &ProbeConfig,
) -> Result<RedisProbe> {
    probe_as(conn, config, &Profile::default()).await
}

/// Runs one probe on `conn` with the names of `profile`. State values are reported under the
/// contract's names (`processed`, …); a value the profile does not name is kept as found.
pub async fn probe_as(
    conn: &mut redis::aio::MultiplexedConnection,
    config: &ProbeConfig,
    profile: &Profile,
) -> Result<RedisProbe> {
    let at_ms = super::prom::now_ms();
    let layout = &profile.redis;

    let mut states = BTreeMap::new();
    for batch in scan(conn, &config.pattern(&layout.state_key)).await? {
        let mut pipe = redis::pipe();
        for k in &batch {
            pipe.cmd("GET").arg(k);
        }
        let values: Vec<Option<String>> = pipe
            .query_async(conn)
            .await
            .context("reading delivery state keys")?;
        // A key that expired between SCAN and GET reads None and is not counted.
        for v in values.into_iter().flatten() {
            let name = match profile.states.state_of(&v) {
                DeliveryState::Unknown => v,
                known => known.as_str().to_owned(),
            };
            *states.entry(name).or_insert(0) += 1;
        }
    }

    let drained_for = config
        .drained_since_ms
        .map(|since| at_ms.saturating_sub(since));
    let mut locks = Vec::new();
    for batch in scan(conn, &config.pattern(&layout.lock_key)).await? {
        let mut pipe = redis::pipe();
        for k in &batch {
            pipe.cmd("PTTL").arg(k).cmd("GET").arg(k);
        }
        let values: Vec<redis::Value> = pipe
            .query_async(conn)
            .await
            .context("reading delivery lock keys")?;
        for (k, pair) in batch.iter().zip(values.chunks(2)) {
            let pttl: i64 = match pair.first() {
                Some(v) => redis::from_redis_value_ref(v).context("reading a lock PTTL")?,
                None => continue,
            };
            if pttl == -2 {
                continue; // released between SCAN and PTTL
            }
            let value = pair
                .get(1)
                .and_then(|v| redis::from_redis_value_ref::<Option<String>>(v).ok())
                .flatten();
            locks.push(LockInfo {
                key: k.clone(),
                delivery: keys::id_of(&layout.lock_key, k).unwrap_or(k).to_owned(),
                pttl_ms: pttl,
                value,
                stuck: classify_lock(pttl, config.lock_ttl_ms, drained_for),
            });
        }
    }
    locks.sort_by(|a, b| a.key.cmp(&b.key));

    let stream_exists: bool = redis::cmd("EXISTS")
        .arg(&layout.stream)
        .query_async::<u64>(conn)
        .await
        .context("checking the work stream")?
        == 1;
    let stream_len: u64 = redis::cmd("XLEN")
        .arg(&layout.stream)
        .query_async(conn)
        .await
        .context("reading the work stream length")?;
    let pending = if stream_exists {
        pending_count(conn, &layout.stream, &layout.group).await?
    } else {
        None
    };
    let dead_len: u64 = redis::cmd("XLEN")
        .arg(&layout.dead_stream)
        .query_async(conn)
        .await
        .context("reading the dead-letter stream length")?;

    Ok(RedisProbe {
        at_ms,
        states,
        locks,
        stream_exists,
        stream_len,
        pending,
        dead_len,
    })
}

/// `XPENDING <stream> <group>` summary count; `None` when the group does not exist.
async fn pending_count(
    conn: &mut redis::aio::MultiplexedConnection,
    stream: &str,
    group: &str,
) -> Result<Option<u64>> {
    let reply: redis::RedisResult<redis::Value> = redis::cmd("XPENDING")
        .arg(stream)
        .arg(group)
        .query_async(conn)
        .await;
    match reply {
        Ok(redis::Value::Array(parts)) => {
            let count = match parts.first() {
                Some(v) => redis::from_redis_value_ref::<u64>(v).context("reading XPENDING")?,
                None => 0,
            };
            Ok(Some(count))
        }
        Ok(other) => anyhow::bail!("unexpected XPENDING reply: {other:?}"),
        Err(e) if e.code() == Some("NOGROUP") => Ok(None),
        Err(e) => Err(e).context("reading the pending count of the consumer group"),
    }
}

/// All keys matching `pattern`, in SCAN batches (one pipeline per batch keeps memory flat).
async fn scan(
    conn: &mut redis::aio::MultiplexedConnection,
    pattern: &str,
) -> Result<Vec<Vec<String>>> {
    let mut batches = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(SCAN_COUNT)
            .query_async(conn)
            .await
            .with_context(|| format!("scanning {pattern}"))?;
        if !keys.is_empty() {
            batches.push(keys);
        }
        if next == 0 {
            return Ok(batches);
        }
        cursor = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_classification() {
        let ttl = 30_000;
        assert_eq!(classify_lock(-1, ttl, None), Some(StuckReason::NoTtl));
        assert_eq!(
            classify_lock(30_001, ttl, None),
            Some(StuckReason::TtlAboveConfigured)
        );
        assert_eq!(classify_lock(30_000, ttl, None), None);
        assert_eq!(classify_lock(5_000, ttl, Some(30_000)), None);
        assert_eq!(
            classify_lock(5_000, ttl, Some(30_001)),
            Some(StuckReason::PresentAfterDrain)
        );
        // no TTL is reported as such even after a drain
        assert_eq!(
            classify_lock(-1, ttl, Some(99_999)),
            Some(StuckReason::NoTtl)
        );
    }

    #[test]
    fn patterns_escape_the_prefix() {
        let all = ProbeConfig::default();
        assert_eq!(all.pattern(keys::STATE), "events:*:state");
        let run = ProbeConfig {
            id_prefix: Some("r[1]*".into()),
            ..ProbeConfig::default()
        };
        assert_eq!(run.pattern(keys::LOCK), "events:r\\[1\\]\\**:lock");
    }

    #[test]
    fn waiting_is_len_minus_pending() {
        let p = RedisProbe {
            at_ms: 0,
            states: BTreeMap::new(),
            locks: vec![],
            stream_exists: true,
            stream_len: 5,
            pending: Some(2),
            dead_len: 0,
        };
        assert_eq!(p.waiting(), Some(3));
        assert_eq!(
            RedisProbe {
                pending: None,
                ..p.clone()
            }
            .waiting(),
            None
        );
    }
}
