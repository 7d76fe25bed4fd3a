//! `gitspy serve`: wires the queue, the store, the optional spool and the router, then serves until
//! SIGTERM/SIGINT and drains connections.

use std::sync::Arc;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use crate::config::{OnRedisDown, ServeArgs};
use crate::http::{self, AppState, DEFAULT_RETRY_AFTER};
use crate::ingress_spool::{DrainConfig, SpoolHandle};

pub async fn run(args: ServeArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let secrets: Vec<String> = args
        .secret
        .as_deref()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if secrets.is_empty() && !args.allow_unsigned {
        anyhow::bail!(
            "no webhook secret: set GITHUB_WEBHOOK_SECRET (comma-separated for rotation)\n\
             hint: for a local demo only, --allow-unsigned accepts unsigned deliveries"
        );
    }
    if args.allow_unsigned {
        tracing::warn!("!!! --allow-unsigned: deliveries are NOT verified; never use this outside a local demo !!!");
    }
    let crate::Backends {
        metrics,
        queue,
        store,
        ..
    } = crate::open_backends(&args.redis, &args.db, args.store_busy_timeout)?;
    if let Err(e) = queue.ensure_group().await {
        tracing::warn!(error = %e, "redis is not reachable at start-up; /readyz answers 503 until it is");
    }
    let background = CancellationToken::new();
    let spool = match args.on_redis_down {
        OnRedisDown::Spool => {
            let drain = DrainConfig {
                test_delay: args.test_spool_drain_delay,
            };
            let h = SpoolHandle::open(&args.spool_dir, queue.clone(), metrics.clone(), drain)?;
            tokio::spawn(h.clone().drain_loop(background.clone()));
            Some(h)
        }
        OnRedisDown::Reject => None,
    };
    let state = AppState {
        queue,
        store,
        metrics,
        secrets: Arc::new(secrets),
        allow_unsigned: args.allow_unsigned,
        on_redis_down: args.on_redis_down,
        spool,
        retry_after_secs: DEFAULT_RETRY_AFTER.as_secs(),
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    crate::print_listening(addr);
    tracing::info!(%addr, mode = ?args.on_redis_down, "gitspy serve ready");
    let app = http::app(state, args.max_body);
    let grace = args.shutdown_grace;
    let stop = shutdown.clone();
    let server =
        axum::serve(listener, app).with_graceful_shutdown(async move { stop.cancelled().await });
    let served = tokio::spawn(async move { server.await });
    shutdown.cancelled().await;
    match tokio::time::timeout(grace, served).await {
        Ok(r) => r.context("server task")?.context("server")?,
        Err(_) => tracing::warn!(
            ?grace,
            "connections still open after the grace period; exiting"
        ),
    }
    background.cancel();
    Ok(())
}
