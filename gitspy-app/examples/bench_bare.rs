//! The bench's reference server (`scripts/bench.sh`): axum with GitSpy's router settings and
//! runtime, answering `POST /webhooks` with 202 after reading the whole body — nothing else. What
//! GitSpy serves is measured as a fraction of what this serves on the same machine in the same run.
//!
//! `GITSPY_LISTEN` (default `127.0.0.1:0`) is the address; the bound one is the first stdout line.

use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let listen = std::env::var("GITSPY_LISTEN").unwrap_or_else(|_| "127.0.0.1:0".into());
    let app = Router::new()
        .route(
            "/webhooks",
            post(|body: Bytes| async move {
                // The body is read in full before the answer, as GitSpy must read it to verify.
                std::hint::black_box(body.len());
                (StatusCode::ACCEPTED, r#"{"status":"queued"}"#)
            }),
        )
        .layer(DefaultBodyLimit::max(25 * 1024 * 1024));
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    gitspy::print_listening(listener.local_addr()?);
    let stop = gitspy::shutdown_on_signals();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await?;
    Ok(())
}
