//! GitSpy: a GitHub-webhook pipeline that keeps a Kanban board per repository.
//!
//! HTTP ingress ([`http`]) verifies and enqueues deliveries in a Redis Stream ([`queue`]); workers
//! ([`worker`]) fold them into a board store ([`store`]) using the pure event model in [`github`].
//! [`server`] wires `gitspy serve` together.

pub mod build_info;
pub mod config;
pub mod dead;
pub mod delivery;
pub mod failpoints;
pub mod github;
pub mod http;
pub mod ingress_spool;
pub mod metrics;
pub mod queue;
pub mod replay;
pub mod sabotage;
pub mod server;
pub mod spool;
pub mod store;
pub mod worker;

/// Every listening process prints its bound address as its first stdout line, so callers that
/// asked for port 0 never race for free ports.
pub fn print_listening(addr: std::net::SocketAddr) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "listening on http://{addr}");
    let _ = out.flush();
}

/// `gitspy serve` with an admin address prints it as the second stdout line, right after
/// [`print_listening`]'s.
pub fn print_admin_listening(addr: std::net::SocketAddr) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "admin listening on http://{addr}");
    let _ = out.flush();
}

/// A token cancelled on the first SIGTERM or SIGINT.
pub fn shutdown_on_signals() -> tokio_util::sync::CancellationToken {
    let token = tokio_util::sync::CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::error!("cannot install signal handlers");
            return;
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = int.recv() => tracing::info!("SIGINT: shutting down"),
        }
        t.cancel();
    });
    token
}

/// What `serve` and `worker` both open at start-up.
pub struct Backends {
    pub metrics: std::sync::Arc<metrics::Metrics>,
    pub queue: std::sync::Arc<queue::Queue>,
    pub store: std::sync::Arc<dyn store::Store>,
    /// `false` only under the test-only GITSPY_TEST_DISABLE_DEDUPE.
    pub dedupe: bool,
}

/// Opens metrics, the queue and the store, with the test-only dedupe switch applied to both (and
/// logged loudly).
pub fn open_backends(
    redis: &config::RedisArgs,
    db: &std::path::Path,
    busy_timeout: std::time::Duration,
    sqlite_sync: store::SqliteSync,
) -> anyhow::Result<Backends> {
    use anyhow::Context as _;
    use std::sync::Arc;
    let metrics = Arc::new(metrics::Metrics::new());
    let dedupe = !redis.test_disable_dedupe;
    if !dedupe {
        tracing::error!("GITSPY_TEST_DISABLE_DEDUPE is set: duplicates WILL be enqueued and applied twice (test only)");
    }
    let queue = Arc::new(
        queue::Queue::new(
            queue::QueueConfig {
                redis_url: redis.redis_url.clone(),
                timeout: redis.redis_timeout,
                state_ttl: redis.state_ttl,
                dedupe,
            },
            metrics.clone(),
        )
        .context("invalid REDIS_URL")?,
    );
    let store = store::open(
        db,
        store::StoreOptions {
            dedupe,
            busy_timeout,
            sqlite_sync,
        },
    )
    .with_context(|| format!("cannot open the store at {}", store::describe(db)))?;
    Ok(Backends {
        metrics,
        queue,
        store,
        dedupe,
    })
}
