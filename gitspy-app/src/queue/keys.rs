//! Every Redis key and stream name GitSpy uses, in one place.

/// The stream every accepted delivery is appended to.
pub const STREAM: &str = "gitspy:events";
/// Dead-lettered deliveries (attempts exhausted).
pub const DEAD_STREAM: &str = "gitspy:events:dead";
/// The consumer group all workers share.
pub const GROUP: &str = "gitspy-workers";

/// `received|processing|processed|failed` for a delivery; carries the state TTL.
pub fn state(delivery: &str) -> String {
    format!("events:{delivery}:state")
}

/// The per-delivery processing lock: `<token>:<acquired-ms>`, `SET NX PX <lock-ttl>`.
pub fn lock(delivery: &str) -> String {
    format!("events:{delivery}:lock")
}

/// Explicit attempt counter (not the stream's delivery count, which also grows on crash and reclaim).
pub fn attempts(delivery: &str) -> String {
    format!("events:{delivery}:attempts")
}

/// The last processing error of a delivery (shown by `gitspy dead list`).
pub fn last_error(delivery: &str) -> String {
    format!("events:{delivery}:error")
}

/// Scan patterns used by introspection.
pub const STATE_PATTERN: &str = "events:*:state";
pub const LOCK_PATTERN: &str = "events:*:lock";
