//! The delivery states: one enum for both sides (the lookup API's `state`, the `…:state` keys).

use serde::{Deserialize, Serialize};

/// A delivery's state as GitSpy reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Enqueued, not yet taken by a worker.
    Received,
    /// A worker holds it.
    Processing,
    /// Applied (or logged) successfully.
    Processed,
    /// Dead-lettered after the maximum number of attempts.
    Failed,
    /// In the server's local spool, not yet in Redis.
    Spooled,
    /// Nothing is known of it (or a state this build does not know).
    #[serde(other)]
    Unknown,
}

impl DeliveryState {
    /// Every state a delivery can be in, `Unknown` last.
    pub const ALL: [DeliveryState; 6] = [
        DeliveryState::Received,
        DeliveryState::Processing,
        DeliveryState::Processed,
        DeliveryState::Failed,
        DeliveryState::Spooled,
        DeliveryState::Unknown,
    ];

    /// The wire name (`received`, …), as in JSON and in Redis.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Received => "received",
            DeliveryState::Processing => "processing",
            DeliveryState::Processed => "processed",
            DeliveryState::Failed => "failed",
            DeliveryState::Spooled => "spooled",
            DeliveryState::Unknown => "unknown",
        }
    }

    /// The state of a wire name; anything else is [`DeliveryState::Unknown`].
    pub fn from_wire(s: &str) -> DeliveryState {
        DeliveryState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .unwrap_or(DeliveryState::Unknown)
    }
}

impl std::fmt::Display for DeliveryState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_round_trip_through_serde() {
        for st in DeliveryState::ALL {
            let json = serde_json::to_string(&st).unwrap();
            assert_eq!(json, format!("\"{}\"", st.as_str()));
            assert_eq!(serde_json::from_str::<DeliveryState>(&json).unwrap(), st);
            assert_eq!(DeliveryState::from_wire(st.as_str()), st);
        }
        assert_eq!(
            serde_json::from_str::<DeliveryState>("\"weird\"").unwrap(),
            DeliveryState::Unknown
        );
    }
}
