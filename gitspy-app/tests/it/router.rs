//! The router of `gitspy serve` driven in-process with `tower::ServiceExt::oneshot` — no socket:
//! status codes and bodies of every route against a real Redis and a real SQLite store.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use tower::ServiceExt as _;

use gitspy::config::OnRedisDown;
use gitspy::http::{app, AppState};
use gitspy::metrics::Metrics;
use gitspy::queue::{Queue, QueueConfig};
use gitspy::store::{SqliteStore, Store, StoreOptions};

use crate::util::{fixture, id, sign, Redis, SECRET};

fn state(redis_url: String, db: &std::path::Path) -> AppState {
    let metrics = Arc::new(Metrics::new());
    let queue = Queue::new(
        QueueConfig {
            redis_url,
            timeout: Duration::from_secs(2),
            state_ttl: Duration::from_secs(3600),
            dedupe: true,
        },
        metrics.clone(),
    )
    .expect("a valid redis url");
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(db, StoreOptions::default()).expect("opening the store"));
    AppState {
        queue: Arc::new(queue),
        store,
        metrics,
        secrets: Arc::new(vec![SECRET.to_owned()]),
        allow_unsigned: false,
        on_redis_down: OnRedisDown::Reject,
        spool: None,
        retry_after_secs: 7,
    }
}

async fn call(router: &axum::Router, req: Request<Body>) -> (StatusCode, String, Option<String>) {
    let resp = router
        .clone()
        .oneshot(req)
        .await
        .expect("the router answers");
    let status = resp.status();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .expect("reading the body");
    (
        status,
        String::from_utf8_lossy(&bytes).into_owned(),
        retry_after,
    )
}

fn webhook(delivery: &str, body: Vec<u8>, signature: Option<String>) -> Request<Body> {
    let mut b = Request::post("/webhooks")
        .header("content-type", "application/json")
        .header("x-github-event", "issues")
        .header("x-github-delivery", delivery);
    if let Some(sig) = signature {
        b = b.header("x-hub-signature-256", sig);
    }
    b.body(Body::from(body)).expect("a valid request")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_its_status_without_a_socket() {
    let redis = tokio::task::spawn_blocking(Redis::start)
        .await
        .expect("starting redis-server");
    let dir = tempfile::tempdir().expect("a temp dir");
    let router = app(state(redis.url(), &dir.path().join("gitspy.db")), 1 << 20);

    let (s, body, _) = call(
        &router,
        Request::get("/healthz").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!((s, body.as_str()), (StatusCode::OK, "ok\n"));

    let body = fixture("issues/opened.json");
    let delivery = id("oneshot");
    let (s, text, _) = call(&router, webhook(&delivery, body.clone(), None)).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{text}");
    assert!(text.contains("invalid signature"), "{text}");

    let bad = Request::post("/webhooks")
        .header("x-hub-signature-256", sign(b"{}"))
        .header("x-github-delivery", "d-1")
        .body(Body::from("{}"))
        .unwrap();
    let (s, text, _) = call(&router, bad).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{text}");
    assert!(text.contains("X-GitHub-Event"), "{text}");

    let (s, text, _) = call(&router, webhook(&delivery, body.clone(), Some(sign(&body)))).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{text}");
    assert!(text.contains("\"queued\""), "{text}");
    let (s, text, _) = call(&router, webhook(&delivery, body.clone(), Some(sign(&body)))).await;
    assert_eq!(s, StatusCode::OK, "{text}");
    assert!(
        text.contains("\"duplicate\"") && text.contains("received"),
        "{text}"
    );

    let (s, text, _) = call(
        &router,
        Request::get(format!("/deliveries/{delivery}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{text}");
    assert!(text.contains("received"), "{text}");

    let (s, _, _) = call(
        &router,
        Request::get("/boards/nobody/nothing")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    let (s, text, _) = call(
        &router,
        Request::get("/metrics/prom").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        text.contains("gitspy_events_received_total{event_type=\"issues\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("gitspy_events_duplicate_total{event_type=\"issues\"} 1"),
        "{text}"
    );

    // Redis gone: 503 with the configured Retry-After, never a 2xx.
    drop(redis);
    let other = id("oneshot-down");
    let (s, text, retry) = call(&router, webhook(&other, body.clone(), Some(sign(&body)))).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{text}");
    assert_eq!(retry.as_deref(), Some("7"));
}
