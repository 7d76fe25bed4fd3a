//! Every Redis key and stream name GitSpy uses: the patterns of the shared contract
//! ([`gitspy_contract::keys`]), filled in for one delivery.

use gitspy_contract::keys;

pub use gitspy_contract::keys::{DEAD_STREAM, GROUP, STREAM};

/// `received|processing|processed|failed` for a delivery; carries the state TTL.
pub fn state(delivery: &str) -> String {
    keys::fill(keys::STATE, delivery)
}

/// The per-delivery processing lock: `<token>:<acquired-ms>`, `SET NX PX <lock-ttl>`.
pub fn lock(delivery: &str) -> String {
    keys::fill(keys::LOCK, delivery)
}

/// Explicit attempt counter (not the stream's delivery count, which also grows on crash and reclaim).
pub fn attempts(delivery: &str) -> String {
    keys::fill(keys::ATTEMPTS, delivery)
}

/// The last processing error of a delivery (shown by `gitspy dead list`).
pub fn last_error(delivery: &str) -> String {
    keys::fill(keys::ERROR, delivery)
}
