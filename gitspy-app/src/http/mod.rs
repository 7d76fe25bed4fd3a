//! The HTTP surface of `gitspy serve` (axum only lives here): `POST /webhooks`, the read APIs and
//! `/metrics/prom`. `app(state)` builds the router so handlers are testable without a socket;
//! `public_app` and `admin_app` split it in two when the server has an admin address.

#[cfg(feature = "failpoints")]
mod debug;
mod error;
mod read;
mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;

use crate::config::OnRedisDown;
use crate::metrics::Metrics;
use crate::queue::Queue;
use crate::store::Store;

pub use error::ApiError;

/// Everything a handler needs.
#[derive(Clone)]
pub struct AppState {
    pub queue: Arc<Queue>,
    pub store: Arc<dyn Store>,
    pub metrics: Arc<Metrics>,
    /// Accepted webhook secrets (rotation); empty only with `allow_unsigned`.
    pub secrets: Arc<Vec<String>>,
    pub allow_unsigned: bool,
    pub on_redis_down: OnRedisDown,
    pub spool: Option<Arc<crate::ingress_spool::SpoolHandle>>,
    /// Seconds suggested in `Retry-After` when Redis is down.
    pub retry_after_secs: u64,
}

/// The router of `gitspy serve` on one address: [`public_app`] and [`admin_app`] together.
pub fn app(state: AppState, max_body: usize) -> Router {
    public_app(state.clone(), max_body).merge(admin_app(state))
}

/// What faces the internet when `GITSPY_ADMIN_ADDR` is set: `POST /webhooks` only; every other
/// path is a 404.
pub fn public_app(state: AppState, max_body: usize) -> Router {
    Router::new()
        .route("/webhooks", post(webhooks::receive))
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state)
}

/// The admin address: health, readiness, `/metrics/prom`, the read APIs and (in `failpoints`
/// builds) `/debug/failpoints`; no `/webhooks`.
pub fn admin_app(state: AppState) -> Router {
    let router = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(read::readyz))
        .route("/metrics/prom", get(metrics_prom))
        .route("/boards/{owner}/{repo}", get(read::board))
        .route("/deliveries", get(read::list_deliveries))
        .route("/deliveries/lookup", post(read::lookup))
        .route("/deliveries/{id}", get(read::delivery));
    with_debug_routes(router).with_state(state)
}

/// Adds `/debug/failpoints` in `failpoints` builds; without the feature the routes do not exist.
fn with_debug_routes<S: Clone + Send + Sync + 'static>(router: Router<S>) -> Router<S> {
    #[cfg(feature = "failpoints")]
    let router = router.merge(debug::routes());
    router
}

async fn metrics_prom(State(st): State<AppState>) -> impl IntoResponse {
    let gauges = st.queue.gauges().await.ok();
    if let Some(spool) = &st.spool {
        spool.refresh_depth_metric();
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        st.metrics.render(gauges),
    )
}

/// The router of a worker's metrics port: `/metrics/prom` and `/healthz` (and `/debug/failpoints`
/// in `failpoints` builds).
pub fn worker_metrics_app(queue: Arc<Queue>, metrics: Arc<Metrics>) -> Router {
    let router = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/metrics/prom",
            get(move || {
                let queue = queue.clone();
                let metrics = metrics.clone();
                async move {
                    let gauges = queue.gauges().await.ok();
                    (
                        [(
                            header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )],
                        metrics.render(gauges),
                    )
                }
            }),
        );
    with_debug_routes(router)
}

/// `Retry-After` default: a few seconds, enough for a Redis restart, short for GitHub's retries.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(5);
