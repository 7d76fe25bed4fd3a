//! One webhook delivery as it travels through the pipeline: ingress → stream (or spool) → worker → event log.
//!
//! Plain data, shared by `http`, `queue`, `spool`, `store` and `replay`, so every hop carries exactly the
//! same fields.

use serde::{Deserialize, Serialize};

/// A delivery accepted by the ingress. `body` is the raw JSON payload (the `payload=` field already
/// extracted for form-encoded deliveries).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// `X-GitHub-Delivery`.
    pub id: String,
    /// `X-GitHub-Event`.
    pub event: String,
    /// The payload's `action`, when it has one.
    pub action: Option<String>,
    /// The payload's `repository.full_name`, when it has one.
    pub repository: Option<String>,
    /// When the ingress received it, unix milliseconds.
    pub received_at_ms: i64,
    /// The raw JSON payload.
    pub body: Vec<u8>,
}

/// Milliseconds since the unix epoch, now.
pub fn now_ms() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
}

/// A delivery id is used inside Redis key names and URLs: keep it to printable ASCII without spaces.
pub fn valid_delivery_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 200 && id.bytes().all(|b| b.is_ascii_graphic() && b != b'/')
}
