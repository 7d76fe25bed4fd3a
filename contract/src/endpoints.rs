//! The HTTP paths of `gitspy serve` (a worker serves only [`HEALTHZ`] and [`METRICS`]).

/// `POST`: a GitHub webhook delivery.
pub const WEBHOOKS: &str = "/webhooks";
/// `GET`: liveness.
pub const HEALTHZ: &str = "/healthz";
/// `GET`: readiness (Redis and the store reachable).
pub const READYZ: &str = "/readyz";
/// `GET`: Prometheus text exposition.
pub const METRICS: &str = "/metrics/prom";
/// `GET /boards/{owner}/{repo}`: one board.
pub const BOARDS: &str = "/boards";
/// `GET /deliveries?after=&limit=`: listing; `GET /deliveries/{id}`: one delivery.
pub const DELIVERIES: &str = "/deliveries";
/// `POST`: states of many deliveries at once.
pub const LOOKUP: &str = "/deliveries/lookup";
