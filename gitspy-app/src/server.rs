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
    } = crate::open_backends(
        &args.redis,
        &args.db,
        args.store_busy_timeout,
        args.sqlite_sync,
    )?;
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
    let admin = match args.admin_addr {
        Some(a) => {
            let l = tokio::net::TcpListener::bind(a)
                .await
                .with_context(|| format!("cannot listen on the admin address {a}"))?;
            Some(l)
        }
        None => None,
    };
    // The first stdout line stays the webhook address (callers parse it); the admin address,
    // when there is one, is the second.
    crate::print_listening(addr);
    let mut served = Vec::new();
    let stop = shutdown.clone();
    match admin {
        Some(admin) => {
            let admin_addr = admin.local_addr()?;
            crate::print_admin_listening(admin_addr);
            tracing::info!(%addr, %admin_addr, mode = ?args.on_redis_down, "gitspy serve ready (webhooks only on the public address)");
            served.push(spawn_serve(
                listener,
                http::public_app(state.clone(), args.max_body),
                stop.clone(),
            ));
            served.push(spawn_serve(admin, http::admin_app(state), stop));
        }
        None => {
            tracing::info!(%addr, mode = ?args.on_redis_down, "gitspy serve ready");
            served.push(spawn_serve(listener, http::app(state, args.max_body), stop));
        }
    }
    let grace = args.shutdown_grace;
    shutdown.cancelled().await;
    let all = futures_join_all(served);
    match tokio::time::timeout(grace, all).await {
        Ok(results) => {
            for r in results {
                r.context("server task")?.context("server")?;
            }
        }
        Err(_) => tracing::warn!(
            ?grace,
            "connections still open after the grace period; exiting"
        ),
    }
    background.cancel();
    Ok(())
}

type Served = tokio::task::JoinHandle<std::io::Result<()>>;

/// Serves `app` on `listener` until `stop`, then drains its connections.
fn spawn_serve(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    stop: CancellationToken,
) -> Served {
    let server =
        axum::serve(listener, app).with_graceful_shutdown(async move { stop.cancelled().await });
    tokio::spawn(async move { server.await })
}

/// Awaits every task in order (each drains on its own, concurrently).
async fn futures_join_all(
    tasks: Vec<Served>,
) -> Vec<Result<std::io::Result<()>, tokio::task::JoinError>> {
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await);
    }
    out
}
