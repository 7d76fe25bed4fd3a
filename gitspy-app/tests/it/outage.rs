//! Redis going away under a running server and worker.

use std::time::Duration;

use crate::util::*;

#[test]
fn redis_down_answers_503_fast_and_everything_recovers_without_restarts() {
    let mut redis = Redis::start();
    let sys = Sys::new();
    let server = sys.serve(&redis, &[("GITSPY_REDIS_TIMEOUT", "1s".into())]);
    // A slow worker: what is accepted before the outage is still queued or in flight when Redis dies.
    let worker = sys.worker(
        &redis,
        &[
            ("GITSPY_REDIS_TIMEOUT", "1s".into()),
            ("GITSPY_TEST_PROCESSING_DELAY", "300ms".into()),
            ("GITSPY_WORKER_CONCURRENCY", "1".into()),
        ],
        "worker",
    );
    let body = fixture("issues/opened.json");
    let before: Vec<String> = (0..5).map(|i| format!("{}-{i}", id("before"))).collect();
    for id in &before {
        assert_eq!(
            post(&server, &Post::signed("issues", id, body.clone())).status,
            202
        );
    }
    redis.kill();
    for i in 0..3 {
        let r = post(
            &server,
            &Post::signed("issues", &format!("{}-{i}", id("during")), body.clone()),
        );
        assert_eq!(r.status, 503, "{}", r.body);
        assert_eq!(r.json()["error"], "queue unavailable");
        assert!(r.retry_after.is_some(), "no Retry-After");
        // Configured timeout 1 s; generous bound, far below a default client's ~10 s hang.
        assert!(
            r.elapsed < Duration::from_secs(4),
            "503 took {:?}",
            r.elapsed
        );
    }
    assert_eq!(get_text(&server.url("/readyz")).0, 503);
    for url in [server.url("/metrics/prom"), worker.url("/metrics/prom")] {
        let (_, m) = get_text(&url);
        assert_eq!(sample(&m, "gitspy_redis_up"), Some(0.0), "{m}");
        assert!(
            !m.contains("gitspy_queue_waiting"),
            "queue gauge present while Redis is down:\n{m}"
        );
        assert!(!m.contains("gitspy_queue_active "), "{m}");
    }

    // Same port and dir: AOF brings the data back, the script cache is empty (NOSCRIPT fallback).
    redis.restart();
    let after = format!("{}-0", id("after"));
    wait_for(Duration::from_secs(30), "server to accept again", || {
        post(&server, &Post::signed("issues", &after, body.clone())).status == 202
    });
    // Everything accepted before the outage, and after it, is processed — by the same processes.
    let mut all = before.clone();
    all.push(after.clone());
    wait_processed(&server, &all, Duration::from_secs(60));
    assert_eq!(get_text(&server.url("/readyz")).0, 200);
    let (_, m) = get_text(&worker.url("/metrics/prom"));
    assert_eq!(sample(&m, "gitspy_redis_up"), Some(1.0), "{m}");
    // Both processes are the ones started at the beginning.
    assert!(server.log_text().contains("redis unreachable"));
}
