//! Workers: crash and reclaim, heartbeat, crash after commit, retries and dead letters, SIGTERM.

use std::time::Duration;

use crate::util::*;

fn post_many(server: &Proc, prefix: &str, n: usize) -> Vec<String> {
    let body = fixture("issues/opened.json");
    (0..n)
        .map(|i| {
            let id = format!("{}-{i}", id(prefix));
            let r = post(server, &Post::signed("issues", &id, body.clone()));
            assert_eq!(r.status, 202, "{}", r.body);
            id
        })
        .collect()
}

fn short_ttls() -> Vec<(&'static str, String)> {
    vec![
        ("GITSPY_LOCK_TTL", "2s".into()),
        ("GITSPY_CLAIM_IDLE", "2s".into()),
    ]
}

fn assert_logged_once(server: &Proc, ids: &[String]) {
    let (_, v) = post_json(
        &server.url("/deliveries/lookup"),
        serde_json::json!({ "ids": ids }),
    );
    for d in v["deliveries"].as_array().unwrap() {
        assert_eq!(d["logged"], 1, "{d}");
        assert!(d["effects"].as_u64().unwrap() <= 1, "{d}");
        assert_eq!(d["state"], "processed", "{d}");
    }
}

#[test]
fn a_killed_workers_deliveries_are_reclaimed_and_processed_once() {
    let redis = Redis::start();
    let sys = Sys::new();
    let server = sys.serve(&redis, &[]);
    let ids = post_many(&server, "crash", 6);
    let mut env = short_ttls();
    env.push(("GITSPY_TEST_PROCESSING_DELAY", "30s".into()));
    let mut slow = sys.worker(&redis, &env, "slow");
    // Wait until the slow worker holds them (pending, locked), then crash it.
    wait_for(
        Duration::from_secs(20),
        "deliveries to be in flight",
        || {
            ids.iter().all(|id| {
                get(&redis, &format!("events:{id}:state")).as_deref() == Some("processing")
            })
        },
    );
    slow.kill9();
    let _rescuer = sys.worker(&redis, &short_ttls(), "rescuer");
    wait_processed(&server, &ids, Duration::from_secs(60));
    assert_logged_once(&server, &ids);
    assert_eq!(xlen(&redis, "gitspy:events"), 0);
    for (k, ttl) in locks(&redis) {
        assert!(ttl > 0, "lock {k} has no TTL");
    }
}

#[test]
fn a_slow_delivery_of_a_live_worker_is_not_reclaimed() {
    let redis = Redis::start();
    let sys = Sys::new();
    let server = sys.serve(&redis, &[]);
    let ids = post_many(&server, "slow", 1);
    // Processing takes 3x the claim-idle time; the heartbeat must keep it ours.
    let mut env = short_ttls();
    env.push(("GITSPY_TEST_PROCESSING_DELAY", "6s".into()));
    let slow = sys.worker(&redis, &env, "slow");
    wait_for(Duration::from_secs(20), "delivery in flight", || {
        get(&redis, &format!("events:{}:state", ids[0])).as_deref() == Some("processing")
    });
    let other = sys.worker(&redis, &short_ttls(), "other");
    wait_processed(&server, &ids, Duration::from_secs(60));
    assert_logged_once(&server, &ids);
    assert!(
        !other.log_text().contains("reclaimed idle entries"),
        "the live worker's delivery was reclaimed:\n{}",
        other.log_text()
    );
    assert!(slow.log_text().is_empty() || !slow.log_text().contains("panicked"));
}

#[test]
fn a_crash_after_the_store_commit_does_not_apply_twice() {
    let redis = Redis::start();
    let sys = Sys::new();
    let server = sys.serve(&redis, &[]);
    let ids = post_many(&server, "commit", 3);
    let mut env = short_ttls();
    env.push(("GITSPY_TEST_CRASH_AFTER_COMMIT", "true".into()));
    let mut crasher = sys.worker(&redis, &env, "crasher");
    // It aborts right after committing the batch, before `processed` is written.
    crasher.wait_exit(Duration::from_secs(30));
    // Committed in the store, not marked processed in Redis.
    for id in &ids {
        let d = delivery(&server, id);
        assert_ne!(d["state"], "processed", "{d}");
        assert_eq!(d["logged"], 1, "{d}");
    }
    let rescuer = sys.worker(&redis, &short_ttls(), "rescuer");
    wait_processed(&server, &ids, Duration::from_secs(60));
    assert_logged_once(&server, &ids);
    assert!(
        rescuer
            .log_text()
            .contains("already applied by an earlier attempt"),
        "{}",
        rescuer.log_text()
    );
    // The rescuer applied nothing: it counts the three as duplicates, not as processed, so each
    // worker's processed counter is exactly what its own transactions applied.
    let (_, m) = get_text(&worker_metrics_url(&rescuer));
    let total = |name: &str| -> f64 {
        m.lines()
            .filter(|l| l.starts_with(&format!("{name}{{")))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    assert_eq!(total("gitspy_jobs_processed_total"), 0.0, "{m}");
    assert_eq!(total("gitspy_jobs_duplicate_total"), 3.0, "{m}");
}

#[test]
fn failures_retry_with_backoff_then_dead_letter_and_a_redelivery_is_accepted_again() {
    let redis = Redis::start();
    let sys = Sys::new();
    let server = sys.serve(&redis, &[]);
    let bad = format!("poison-{}", id("x"));
    let body = fixture("issues/opened.json");
    assert_eq!(
        post(&server, &Post::signed("issues", &bad, body.clone())).status,
        202
    );
    let mut worker = sys.worker(
        &redis,
        &[
            ("GITSPY_TEST_FAIL_PREFIX", "poison-".into()),
            ("GITSPY_MAX_ATTEMPTS", "3".into()),
            ("GITSPY_RETRY_BASE", "100ms".into()),
        ],
        "worker",
    );
    wait_for(Duration::from_secs(30), "dead letter", || {
        get(&redis, &format!("events:{bad}:state")).as_deref() == Some("failed")
    });
    assert_eq!(xlen(&redis, "gitspy:events:dead"), 1);
    assert_eq!(xlen(&redis, "gitspy:events"), 0);
    assert_eq!(
        get(&redis, &format!("events:{bad}:attempts")).as_deref(),
        Some("3")
    );
    let (_, m) = get_text(&worker_metrics_url(&worker));
    assert_eq!(
        sample(&m, "gitspy_jobs_retried_total{event_type=\"issues\"}"),
        Some(2.0),
        "{m}"
    );
    assert_eq!(
        sample(&m, "gitspy_jobs_failed_total{event_type=\"issues\"}"),
        Some(1.0),
        "{m}"
    );
    assert_eq!(sample(&m, "gitspy_queue_dead"), Some(1.0), "{m}");
    // Retries were spaced out: 100 ms then 200 ms at least.
    let log = worker.log_text();
    assert_eq!(
        log.matches("processing failed; retrying").count(),
        2,
        "{log}"
    );

    // Redelivery of a failed id is accepted again, attempts reset; a healthy worker processes it.
    worker.kill9();
    let r = post(&server, &Post::signed("issues", &bad, body));
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(get(&redis, &format!("events:{bad}:attempts")), None);
    let _healthy = sys.worker(&redis, &[], "healthy");
    wait_processed(&server, std::slice::from_ref(&bad), Duration::from_secs(30));
}

#[test]
fn an_unfoldable_delivery_is_retried_and_dead_lettered_never_applied_and_its_batch_is_applied() {
    let redis = Redis::start();
    let sys = Sys::new();
    let server = sys.serve(&redis, &[]);
    // A valid signature and a JSON object (the ingress queues it), but `issue` is a string.
    let bad = id("unfoldable");
    let body =
        br#"{"action":"opened","issue":"not an object","repository":{"id":1,"full_name":"o/r"}}"#;
    assert_eq!(
        post(&server, &Post::signed("issues", &bad, body.to_vec())).status,
        202
    );
    let good = post_many(&server, "foldable", 3);
    let worker = sys.worker(
        &redis,
        &[
            ("GITSPY_MAX_ATTEMPTS", "2".into()),
            ("GITSPY_RETRY_BASE", "100ms".into()),
        ],
        "worker",
    );
    wait_for(Duration::from_secs(30), "dead letter", || {
        get(&redis, &format!("events:{bad}:state")).as_deref() == Some("failed")
    });
    wait_processed(&server, &good, Duration::from_secs(30));
    assert_logged_once(&server, &good);
    assert_eq!(xlen(&redis, "gitspy:events:dead"), 1);
    let (_, v) = post_json(
        &server.url("/deliveries/lookup"),
        serde_json::json!({ "ids": [bad.clone()] }),
    );
    let d = &v["deliveries"][0];
    assert_eq!(d["state"], "failed", "{d}");
    assert_eq!(d["logged"], 0, "never applied: {d}");
    let (_, m) = get_text(&worker_metrics_url(&worker));
    assert_eq!(
        sample(&m, "gitspy_jobs_failed_total{event_type=\"issues\"}"),
        Some(1.0),
        "{m}"
    );
    let log = worker.log_text();
    assert!(
        log.contains("cannot fold this issues delivery: `issue` is a string, not an object"),
        "{log}"
    );
}

pub fn worker_metrics_url(w: &Proc) -> String {
    w.url("/metrics/prom")
}

#[test]
fn sigterm_finishes_in_flight_deliveries_and_exits_zero() {
    let redis = Redis::start();
    let sys = Sys::new();
    let mut server = sys.serve(&redis, &[]);
    let ids = post_many(&server, "term", 4);
    let mut w = sys.worker(
        &redis,
        &[("GITSPY_TEST_PROCESSING_DELAY", "2s".into())],
        "worker",
    );
    wait_for(Duration::from_secs(20), "deliveries in flight", || {
        ids.iter()
            .all(|id| get(&redis, &format!("events:{id}:state")).as_deref() == Some("processing"))
    });
    w.sigterm();
    assert_eq!(
        w.wait_exit(Duration::from_secs(30)),
        Some(0),
        "{}",
        w.log_text()
    );
    // What was in flight was finished and acknowledged before exit.
    for id in &ids {
        assert_eq!(
            get(&redis, &format!("events:{id}:state")).as_deref(),
            Some("processed")
        );
    }
    assert_eq!(xlen(&redis, "gitspy:events"), 0);
    server.sigterm();
    assert_eq!(
        server.wait_exit(Duration::from_secs(30)),
        Some(0),
        "{}",
        server.log_text()
    );
}

#[test]
fn event_log_retention_prunes_old_rows_but_not_deduplication() {
    let redis = Redis::start();
    let sys = Sys::new();
    let server = sys.serve(&redis, &[]);
    let ids = post_many(&server, "retention", 3);
    let _worker = sys.worker(&redis, &[("GITSPY_LOG_RETENTION", "1s".into())], "worker");
    wait_processed(&server, &ids, Duration::from_secs(30));
    // Within a few retention periods every row is gone from the log...
    wait_for(
        Duration::from_secs(30),
        "the event log to be pruned",
        || {
            let (_, v) = post_json(
                &server.url("/deliveries/lookup"),
                serde_json::json!({ "ids": ids }),
            );
            v["deliveries"]
                .as_array()
                .is_some_and(|a| a.iter().all(|d| d["logged"] == 0))
        },
    );
    // ...while the deliveries stay processed, with their effect, and a redelivery is a duplicate.
    for id in &ids {
        let d = delivery(&server, id);
        assert_eq!(d["state"], "processed", "{d}");
        assert_eq!(d["effects"], 1, "{d}");
    }
    let r = post(
        &server,
        &Post::signed("issues", &ids[0], fixture("issues/opened.json")),
    );
    assert_eq!(r.status, 200, "{}", r.body);
}

#[test]
fn the_lookup_and_the_listing_say_which_consumer_applied_a_delivery() {
    let redis = Redis::start();
    let sys = Sys::new();
    let server = sys.serve(&redis, &[]);
    let ids = post_many(&server, "by", 2);
    let _w = sys.worker(&redis, &[("GITSPY_CONSUMER", "worker-by-7".into())], "w");
    wait_processed(&server, &ids, Duration::from_secs(60));
    let (_, v) = post_json(
        &server.url("/deliveries/lookup"),
        serde_json::json!({ "ids": ids }),
    );
    for d in v["deliveries"].as_array().unwrap() {
        assert_eq!(d["applied_by"], "worker-by-7", "{d}");
        assert!(d["applied_at"].is_i64(), "{d}");
    }
    let (_, l) = get_json(&server.url("/deliveries"));
    let items = l["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{l}");
    for (item, id) in items.iter().zip(l["deliveries"].as_array().unwrap()) {
        assert_eq!(&item["delivery"], id, "{l}");
        assert_eq!(item["applied_by"], "worker-by-7", "{l}");
    }
}

#[test]
fn a_retry_waiting_out_its_backoff_is_counted_as_delayed() {
    let redis = Redis::start();
    let sys = Sys::new();
    let server = sys.serve(&redis, &[]);
    let bad = format!("poison-{}", id("delayed"));
    let r = post(
        &server,
        &Post::signed("issues", &bad, fixture("issues/opened.json")),
    );
    assert_eq!(r.status, 202, "{}", r.body);
    let w = sys.worker(
        &redis,
        &[
            ("GITSPY_TEST_FAIL_PREFIX", "poison-".into()),
            ("GITSPY_RETRY_BASE", "30s".into()),
        ],
        "w",
    );
    wait_for(Duration::from_secs(30), "one retry to be delayed", || {
        let (_, m) = get_text(&worker_metrics_url(&w));
        sample(&m, "gitspy_queue_delayed") == Some(1.0)
    });
    // Still pending in Redis: delayed is a part of active, not in addition to it.
    let (_, m) = get_text(&worker_metrics_url(&w));
    assert_eq!(sample(&m, "gitspy_queue_active"), Some(1.0), "{m}");
    let (_, m) = get_text(&server.url("/metrics/prom"));
    assert_eq!(sample(&m, "gitspy_queue_delayed"), Some(0.0), "{m}");
}

#[test]
fn a_store_locked_longer_than_the_busy_timeout_makes_applies_retry_until_it_is_free() {
    let redis = Redis::start();
    let sys = Sys::new();
    let server = sys.serve(&redis, &[]);
    let w = sys.worker(
        &redis,
        &[
            ("GITSPY_STORE_BUSY_TIMEOUT", "200ms".into()),
            ("GITSPY_RETRY_BASE", "200ms".into()),
            ("GITSPY_MAX_ATTEMPTS", "100".into()),
        ],
        "w",
    );
    // Another process holds the store's write lock.
    let holder = rusqlite::Connection::open(sys.db()).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    let ids = post_many(&server, "locked", 1);
    wait_for(
        Duration::from_secs(30),
        "an apply to fail and be retried",
        || {
            let (_, m) = get_text(&worker_metrics_url(&w));
            sample(&m, "gitspy_jobs_retried_total{event_type=\"issues\"}").unwrap_or(0.0) >= 1.0
        },
    );
    assert!(
        w.log_text().contains("database is locked"),
        "{}",
        w.log_text()
    );
    holder.execute_batch("ROLLBACK").unwrap();
    wait_processed(&server, &ids, Duration::from_secs(60));
    assert_logged_once(&server, &ids);
}
