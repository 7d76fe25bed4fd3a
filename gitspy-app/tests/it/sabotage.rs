//! The broken variants (`sabotage` builds only): each test runs one small situation twice with the
//! same binary, once with `GITSPY_SABOTAGE=<variant>` and once without, and shows that the variant
//! really misbehaves while the unsabotaged run does the right thing.

use std::time::{Duration, Instant};

use crate::spool::{metric, send, spool_env};
use crate::util::*;

const LONG: Duration = Duration::from_secs(60);
/// How long a sabotaged run gets to (wrongly) not do something: several claim-idle periods.
const GRACE: Duration = Duration::from_secs(6);

/// `GITSPY_SABOTAGE` when `variant` is set, plus `extra`.
fn env(variant: Option<&str>, extra: &[(&'static str, String)]) -> Vec<(&'static str, String)> {
    let mut e = vec![
        ("GITSPY_LOCK_TTL", "2s".to_string()),
        ("GITSPY_CLAIM_IDLE", "2s".to_string()),
        ("GITSPY_REDIS_TIMEOUT", "1s".to_string()),
    ];
    if let Some(v) = variant {
        e.push(("GITSPY_SABOTAGE", v.to_string()));
    }
    e.extend(extra.iter().cloned());
    e
}

/// Polls `cond` for up to `within`; whether it became true.
fn eventually(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn state(redis: &Redis, id: &str) -> Option<String> {
    get(redis, &format!("events:{id}:state"))
}

fn processed(server: &Proc, id: &str) -> bool {
    delivery(server, id)["state"] == "processed"
}

fn logged(server: &Proc, id: &str) -> u64 {
    delivery(server, id)["logged"].as_u64().unwrap_or(0)
}

/// A worker holds `id` in flight (30 s processing delay) and is SIGKILLed; a rescuer (same
/// variant) starts. Returns whether `id` ends up processed and logged once within `GRACE`/`LONG`.
fn killed_in_flight(variant: Option<&str>, wait_state: &str) -> (bool, Redis, Sys, Proc, String) {
    let redis = Redis::start();
    let sys = Sys::new();
    let server = sys.serve(&redis, &env(variant, &[]));
    let d = id("sab");
    assert_eq!(send(&server, &d), (202, "queued".into()));
    let mut victim = sys.worker(
        &redis,
        &env(
            variant,
            &[("GITSPY_TEST_PROCESSING_DELAY", "30s".to_string())],
        ),
        "victim",
    );
    wait_for(LONG, "the delivery to be in flight", || {
        state(&redis, &d).as_deref() == Some(wait_state)
    });
    victim.kill9();
    let rescuer = sys.worker(&redis, &env(variant, &[]), "rescuer");
    let within = if variant.is_some() { GRACE } else { LONG };
    let ok = eventually(within, || {
        processed(&server, &d) && logged(&server, &d) == 1
    });
    drop(rescuer);
    (ok, redis, sys, server, d)
}

#[test]
fn ack_before_commit_loses_a_delivery_when_the_worker_dies_in_between() {
    let (ok, _redis, _sys, server, d) = killed_in_flight(Some("ack-before-commit"), "processed");
    assert!(!ok);
    let v = delivery(&server, &d);
    assert_eq!(v["state"], "processed", "{v}");
    assert_eq!(v["logged"], 0, "{v}");
    let (ok, ..) = killed_in_flight(None, "processing");
    assert!(ok, "the correct build lost it");
}

#[test]
fn never_reclaim_leaves_a_dead_workers_delivery_pending_forever() {
    let (ok, redis, ..) = killed_in_flight(Some("never-reclaim"), "processing");
    assert!(!ok);
    assert_eq!(xlen(&redis, "gitspy:events"), 1);
    let (ok, ..) = killed_in_flight(None, "processing");
    assert!(ok);
}

#[test]
fn lock_without_ttl_leaves_a_dead_workers_lock_forever() {
    let (ok, redis, _sys, _server, d) = killed_in_flight(Some("lock-without-ttl"), "processing");
    assert!(!ok);
    let ttl: i64 = redis::cmd("PTTL")
        .arg(format!("events:{d}:lock"))
        .query(&mut redis.conn())
        .unwrap();
    assert_eq!(ttl, -1, "the lock has a TTL");
    let (ok, ..) = killed_in_flight(None, "processing");
    assert!(ok);
}

/// A worker crashes right after its store commit; a rescuer takes the entry over. Returns how
/// often the delivery was logged.
fn crash_after_commit(variant: Option<&str>) -> u64 {
    let redis = Redis::start();
    let sys = Sys::new();
    let server = sys.serve(&redis, &env(variant, &[]));
    let d = id("sab-twice");
    assert_eq!(send(&server, &d), (202, "queued".into()));
    let mut victim = sys.worker(
        &redis,
        &env(
            variant,
            &[("GITSPY_TEST_CRASH_AFTER_COMMIT", "true".to_string())],
        ),
        "victim",
    );
    victim.wait_exit(LONG);
    let _rescuer = sys.worker(&redis, &env(variant, &[]), "rescuer");
    wait_processed(&server, std::slice::from_ref(&d), LONG);
    logged(&server, &d)
}

#[test]
fn apply_twice_applies_a_redelivered_entry_again() {
    assert_eq!(crash_after_commit(Some("apply-twice")), 2);
    assert_eq!(crash_after_commit(None), 1);
}

/// A delivery that always fails, 2 attempts allowed. Returns (dead letters, attempts) after the
/// correct build would have dead-lettered it.
fn poison(variant: Option<&str>) -> (u64, u64) {
    let redis = Redis::start();
    let sys = Sys::new();
    let server = sys.serve(&redis, &env(variant, &[]));
    let d = format!("poison-{}", id("sab"));
    assert_eq!(send(&server, &d), (202, "queued".into()));
    let _w = sys.worker(
        &redis,
        &env(
            variant,
            &[
                ("GITSPY_TEST_FAIL_PREFIX", "poison-".to_string()),
                ("GITSPY_MAX_ATTEMPTS", "2".to_string()),
                ("GITSPY_RETRY_BASE", "100ms".to_string()),
            ],
        ),
        "worker",
    );
    let attempts = |r: &Redis| -> u64 {
        get(r, &format!("events:{d}:attempts"))
            .and_then(|a| a.parse().ok())
            .unwrap_or(0)
    };
    eventually(GRACE, || {
        xlen(&redis, "gitspy:events:dead") == 1 || attempts(&redis) >= 4
    });
    (xlen(&redis, "gitspy:events:dead"), attempts(&redis))
}

#[test]
fn retry_forever_never_dead_letters() {
    let (dead, attempts) = poison(Some("retry-forever"));
    assert_eq!(dead, 0);
    assert!(attempts >= 4, "{attempts} attempts");
    let (dead, attempts) = poison(None);
    assert_eq!((dead, attempts), (1, 2));
}

/// Redis restarts under a running worker, then a delivery arrives. Returns whether it was
/// processed, and the worker's `/healthz` status.
fn after_redis_restart(variant: Option<&str>) -> (bool, u16) {
    let mut redis = Redis::start();
    let sys = Sys::new();
    let server = sys.serve(&redis, &env(variant, &[]));
    let worker = sys.worker(&redis, &env(variant, &[]), "worker");
    let first = id("sab-before");
    assert_eq!(send(&server, &first), (202, "queued".into()));
    wait_processed(&server, std::slice::from_ref(&first), LONG);
    redis.kill();
    std::thread::sleep(Duration::from_secs(2));
    redis.restart();
    let d = id("sab-after");
    wait_for(LONG, "the server to enqueue again", || {
        send(&server, &d).0 == 202
    });
    let within = if variant.is_some() { GRACE } else { LONG };
    let ok = eventually(within, || processed(&server, &d));
    (ok, get_text(&worker.url("/healthz")).0)
}

#[test]
fn stop_after_redis_error_stops_reading_while_staying_healthy() {
    assert_eq!(
        after_redis_restart(Some("stop-after-redis-error")),
        (false, 200)
    );
    assert_eq!(after_redis_restart(None), (true, 200));
}

/// An issue's newer snapshot arrives first, its older one second. Returns the card's title.
fn title_after_out_of_order(variant: Option<&str>) -> String {
    let redis = Redis::start();
    let sys = Sys::new();
    let server = sys.serve(&redis, &env(variant, &[]));
    let _w = sys.worker(&redis, &env(variant, &[]), "worker");
    let base: serde_json::Value = serde_json::from_slice(&fixture("issues/opened.json")).unwrap();
    for (title, at) in [
        ("newer", "2030-01-01T00:00:00Z"),
        ("older", "2020-01-01T00:00:00Z"),
    ] {
        let mut p = base.clone();
        p["issue"]["title"] = title.into();
        p["issue"]["updated_at"] = at.into();
        let d = id("sab-fold");
        let r = post(
            &server,
            &Post::signed("issues", &d, serde_json::to_vec(&p).unwrap()),
        );
        assert_eq!(r.status, 202, "{}", r.body);
        wait_processed(&server, std::slice::from_ref(&d), LONG);
    }
    let store = gitspy::store::SqliteStore::open_read_only(&sys.db()).unwrap();
    let snap = gitspy::store::Store::snapshot(&store).unwrap();
    assert_eq!(snap.cards.len(), 1);
    snap.cards[0].1.title.as_ref().unwrap().value.clone()
}

#[test]
fn fold_arrival_order_keeps_the_last_arriving_snapshot_instead_of_the_newest() {
    assert_eq!(
        title_after_out_of_order(Some("fold-arrival-order")),
        "older"
    );
    assert_eq!(title_after_out_of_order(None), "newer");
}

fn second_copy(variant: Option<&str>) -> (u16, String) {
    let redis = Redis::start();
    let sys = Sys::new();
    let server = sys.serve(&redis, &env(variant, &[]));
    let d = id("sab-dup");
    assert_eq!(send(&server, &d), (202, "queued".into()));
    let r = send(&server, &d);
    if r.0 == 202 {
        assert_eq!(
            xlen(&redis, "gitspy:events"),
            2,
            "the copy was not enqueued"
        );
    }
    r
}

#[test]
fn enqueue_duplicates_answers_202_to_a_copy_and_enqueues_it() {
    assert_eq!(
        second_copy(Some("enqueue-duplicates")),
        (202, "queued".into())
    );
    assert_eq!(second_copy(None), (200, "duplicate".into()));
}

/// One delivery the variant drops and one it keeps. Returns their `logged` counts once both are
/// `processed`.
fn one_dropped_one_kept(variant: Option<&str>) -> (u64, u64) {
    let redis = Redis::start();
    let sys = Sys::new();
    let server = sys.serve(&redis, &env(variant, &[]));
    let _w = sys.worker(&redis, &env(variant, &[]), "worker");
    let base = id("sab-drop");
    let mut candidates = (0..).map(|i| format!("{base}-{i}"));
    let dropped = candidates
        .by_ref()
        .find(|d| gitspy::sabotage::dropped(d))
        .unwrap();
    let kept = candidates.find(|d| !gitspy::sabotage::dropped(d)).unwrap();
    for d in [&dropped, &kept] {
        assert_eq!(send(&server, d), (202, "queued".into()));
    }
    wait_processed(&server, &[dropped.clone(), kept.clone()], LONG);
    (logged(&server, &dropped), logged(&server, &kept))
}

#[test]
fn drop_one_in_twenty_marks_a_delivery_processed_without_applying_it() {
    assert_eq!(one_dropped_one_kept(Some("drop-one-in-twenty")), (0, 1));
    assert_eq!(one_dropped_one_kept(None), (1, 1));
}

/// An `issue_comment` and an `issues` delivery processed; the worker's processed counters.
fn processed_counters(variant: Option<&str>) -> (Option<f64>, Option<f64>) {
    let redis = Redis::start();
    let sys = Sys::new();
    let server = sys.serve(&redis, &env(variant, &[]));
    let w = sys.worker(&redis, &env(variant, &[]), "worker");
    let c = id("sab-comment");
    let r = post(
        &server,
        &Post::signed("issue_comment", &c, fixture("issue_comment/created.json")),
    );
    assert_eq!(r.status, 202, "{}", r.body);
    let i = id("sab-issue");
    assert_eq!(send(&server, &i), (202, "queued".into()));
    wait_processed(&server, &[c, i], LONG);
    (
        metric(
            &w,
            "gitspy_jobs_processed_total{event_type=\"issue_comment\"}",
        ),
        metric(&w, "gitspy_jobs_processed_total{event_type=\"issues\"}"),
    )
}

#[test]
fn undercount_processed_does_not_count_issue_comments() {
    assert_eq!(
        processed_counters(Some("undercount-processed")),
        (None, Some(1.0))
    );
    assert_eq!(processed_counters(None), (Some(1.0), Some(1.0)));
}

/// Three deliveries spooled while Redis is down, then Redis is back. Returns how many of them get
/// processed.
fn spooled_three(variant: Option<&str>) -> usize {
    let mut redis = Redis::start();
    let sys = Sys::new();
    let server = sys.serve(&redis, &spool_env(&env(variant, &[])));
    redis.kill();
    let base = id("sab-spool");
    let ids: Vec<String> = (0..3).map(|i| format!("{base}-{i}")).collect();
    for d in &ids {
        assert_eq!(send(&server, d), (202, "spooled".into()));
    }
    redis.restart();
    wait_for(LONG, "the spool to drain", || {
        metric(&server, "gitspy_spool_depth") == Some(0.0)
    });
    let _w = sys.worker(&redis, &env(variant, &[]), "worker");
    let within = if variant.is_some() { GRACE } else { LONG };
    eventually(within, || ids.iter().all(|d| processed(&server, d)));
    ids.iter().filter(|d| processed(&server, d)).count()
}

#[test]
fn spool_skip_last_loses_the_last_record_of_a_drained_batch() {
    assert_eq!(spooled_three(Some("spool-skip-last")), 2);
    assert_eq!(spooled_three(None), 3);
}

fn send_with_redis_down(variant: Option<&str>) -> u16 {
    let mut redis = Redis::start();
    let sys = Sys::new();
    let server = sys.serve(&redis, &env(variant, &[]));
    redis.kill();
    send(&server, &id("sab-down")).0
}

#[test]
fn accept_on_enqueue_failure_answers_202_for_what_was_never_enqueued() {
    assert_eq!(send_with_redis_down(Some("accept-on-enqueue-failure")), 202);
    assert_eq!(send_with_redis_down(None), 503);
}
