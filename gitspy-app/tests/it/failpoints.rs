//! Crash points (`failpoints` builds only): each failpoint, armed over HTTP at run time, really
//! aborts the process inside its window, and the data left behind shows that window — then the
//! system recovers every delivery exactly once.

use std::time::Duration;

use crate::spool::{assert_logged_once, metric, send, spool_env};
use crate::util::*;

const LONG: Duration = Duration::from_secs(60);

fn short_ttls() -> Vec<(&'static str, String)> {
    vec![
        ("GITSPY_LOCK_TTL", "2s".into()),
        ("GITSPY_CLAIM_IDLE", "2s".into()),
        ("GITSPY_REDIS_TIMEOUT", "1s".into()),
    ]
}

/// `PUT|DELETE /debug/failpoints/{name}` on a process; returns status and JSON body.
pub fn failpoint(p: &Proc, method: &str, name: &str, actions: &str) -> (u16, serde_json::Value) {
    let url = p.url(&format!("/debug/failpoints/{name}"));
    reqwest::block_on(async {
        let c = reqwest::client();
        let rb = match method {
            "PUT" => c.put(&url).body(actions.to_owned()),
            "DELETE" => c.delete(&url),
            _ => c.get(&url),
        };
        let r = rb.send().await.expect("failpoint request");
        let s = r.status().as_u16();
        (s, r.json().await.unwrap_or(serde_json::Value::Null))
    })
}

fn arm(p: &Proc, name: &str, actions: &str) {
    let (s, v) = failpoint(p, "PUT", name, actions);
    assert_eq!(s, 200, "arming {name}: {v}");
}

/// Waits for the process to die by SIGABRT after saying which failpoint fired.
fn assert_fired(p: &mut Proc, name: &str) {
    let code = p.wait_exit(LONG);
    assert_eq!(
        code,
        None,
        "expected death by signal; log:\n{}",
        p.log_text()
    );
    let log = p.log_text();
    assert!(
        log.contains(&format!("failpoint {name} fired")),
        "no `failpoint {name} fired` in:\n{log}"
    );
}

fn pending(redis: &Redis) -> u64 {
    let v: redis::Value = redis::cmd("XPENDING")
        .arg("gitspy:events")
        .arg("gitspy-workers")
        .query(&mut redis.conn())
        .unwrap();
    match v {
        redis::Value::Array(items) => match items.first() {
            Some(redis::Value::Int(n)) => *n as u64,
            _ => 0,
        },
        _ => 0,
    }
}

#[test]
fn the_debug_endpoint_arms_lists_and_disarms_and_refuses_unknown_names() {
    let redis = Redis::start();
    let sys = Sys::new();
    let server = sys.serve(&redis, &[]);
    let worker = sys.worker(&redis, &[], "worker");
    for p in [&server, &worker] {
        let (s, v) = get_json(&p.url("/debug/failpoints"));
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["names"].as_array().unwrap().len(), 6, "{v}");
        assert_eq!(v["armed"], serde_json::json!({}), "{v}");

        let (s, v) = failpoint(p, "PUT", "after-comit", "return");
        assert_eq!(s, 400, "{v}");
        let msg = v["error"].as_str().unwrap();
        assert!(
            msg.contains("after-comit") && msg.contains("after-commit"),
            "{msg}"
        );
        let (s, v) = failpoint(p, "PUT", "after-commit", "explode(now)");
        assert_eq!(s, 400, "{v}");

        // Armed to fire on the 100th hit only: nothing here reaches it.
        arm(p, "after-commit", "99*off->return");
        let (_, v) = get_json(&p.url("/debug/failpoints"));
        assert_eq!(v["armed"]["after-commit"], "99*off->return", "{v}");
        let (s, _) = failpoint(p, "DELETE", "after-commit", "");
        assert_eq!(s, 200);
        let (_, v) = get_json(&p.url("/debug/failpoints"));
        assert_eq!(v["armed"], serde_json::json!({}), "{v}");

        let (_, m) = get_text(&p.url("/metrics/prom"));
        assert!(
            m.contains(&format!(
                "gitspy_build_info{{version=\"{}\",features=\"{}\"}} 1",
                env!("CARGO_PKG_VERSION"),
                gitspy::build_info::FEATURES
            )),
            "{m}"
        );
    }
}

#[test]
fn after_lock_leaves_a_locked_entry_that_is_processed_once_after_the_lock_expires() {
    let redis = Redis::start();
    let sys = Sys::new();
    let server = sys.serve(&redis, &[]);
    let mut victim = sys.worker(&redis, &short_ttls(), "victim");
    arm(&victim, "after-lock", "return");
    let d = id("fp-lock");
    assert_eq!(send(&server, &d), (202, "queued".into()));
    assert_fired(&mut victim, "after-lock");
    // The window: locked and pending, but never set `processing`.
    assert_eq!(
        get(&redis, &format!("events:{d}:state")).as_deref(),
        Some("received")
    );
    assert!(get(&redis, &format!("events:{d}:lock")).is_some());
    assert_eq!(pending(&redis), 1);
    let _rescuer = sys.worker(&redis, &short_ttls(), "rescuer");
    wait_processed(&server, std::slice::from_ref(&d), LONG);
    assert_logged_once(&server, std::slice::from_ref(&d));
}

#[test]
fn after_commit_leaves_an_applied_unacknowledged_entry_that_the_rescuer_only_finishes() {
    let redis = Redis::start();
    let sys = Sys::new();
    let server = sys.serve(&redis, &[]);
    let mut victim = sys.worker(&redis, &short_ttls(), "victim");
    // Fires on the second commit: the first delivery goes through untouched.
    arm(&victim, "after-commit", "1*off->return");
    let first = id("fp-commit");
    assert_eq!(send(&server, &first), (202, "queued".into()));
    wait_processed(&server, std::slice::from_ref(&first), LONG);
    let d = id("fp-commit");
    assert_eq!(send(&server, &d), (202, "queued".into()));
    assert_fired(&mut victim, "after-commit");
    // The window: applied in the store, not acknowledged in Redis.
    let v = delivery(&server, &d);
    assert_eq!(v["state"], "processing", "{v}");
    assert_eq!(v["logged"], 1, "{v}");
    assert!(v["applied_at"].is_i64(), "{v}");
    assert_eq!(pending(&redis), 1);
    let rescuer = sys.worker(&redis, &short_ttls(), "rescuer");
    wait_processed(&server, std::slice::from_ref(&d), LONG);
    assert_logged_once(&server, &[first, d.clone()]);
    let log = rescuer.log_text();
    assert_eq!(
        log.matches("already applied by an earlier attempt").count(),
        1,
        "{log}"
    );
    assert_eq!(xlen(&redis, "gitspy:events"), 0);
}

#[test]
fn after_ack_leaves_an_acknowledged_entry_in_the_stream_that_a_worker_sweeps() {
    let redis = Redis::start();
    let sys = Sys::new();
    let server = sys.serve(&redis, &[]);
    let mut victim = sys.worker(&redis, &short_ttls(), "victim");
    arm(&victim, "after-ack", "return");
    let d = id("fp-ack");
    assert_eq!(send(&server, &d), (202, "queued".into()));
    assert_fired(&mut victim, "after-ack");
    // The window: processed and acknowledged, but still in the stream (counted as waiting).
    assert_eq!(
        get(&redis, &format!("events:{d}:state")).as_deref(),
        Some("processed")
    );
    assert_eq!(pending(&redis), 0);
    assert_eq!(xlen(&redis, "gitspy:events"), 1);
    assert_eq!(metric(&server, "gitspy_queue_waiting"), Some(1.0));
    let rescuer = sys.worker(&redis, &short_ttls(), "rescuer");
    wait_for(LONG, "the acknowledged entry to be swept", || {
        xlen(&redis, "gitspy:events") == 0
    });
    assert!(
        rescuer.log_text().contains("acknowledged but not deleted"),
        "{}",
        rescuer.log_text()
    );
    assert_logged_once(&server, std::slice::from_ref(&d));
}

#[test]
fn after_enqueue_crashes_before_the_answer_and_the_delivery_is_still_processed_once() {
    let redis = Redis::start();
    let sys = Sys::new();
    let mut server = sys.serve(&redis, &[]);
    arm(&server, "after-enqueue", "return");
    let d = id("fp-enqueue");
    let body = fixture("issues/opened.json");
    let answered = reqwest::block_on(async {
        reqwest::client()
            .post(server.url("/webhooks"))
            .header("content-type", "application/json")
            .header("x-github-event", "issues")
            .header("x-github-delivery", &d)
            .header("x-hub-signature-256", sign(&body))
            .body(body.clone())
            .send()
            .await
    });
    assert!(answered.is_err(), "the sender got an answer: {answered:?}");
    assert_fired(&mut server, "after-enqueue");
    // The window: in Redis although the sender never heard so.
    assert_eq!(
        get(&redis, &format!("events:{d}:state")).as_deref(),
        Some("received")
    );
    let server = sys.serve_as(&redis, &[], "serve2");
    // The sender retries: a duplicate now.
    assert_eq!(send(&server, &d), (200, "duplicate".into()));
    let _worker = sys.worker(&redis, &short_ttls(), "worker");
    wait_processed(&server, std::slice::from_ref(&d), LONG);
    assert_logged_once(&server, std::slice::from_ref(&d));
}

#[test]
fn spool_append_crashes_before_the_fsync_and_nothing_answered_is_lost() {
    let mut redis = Redis::start();
    let sys = Sys::new();
    let mut server = sys.serve(&redis, &spool_env(&[]));
    let spooled = id("fp-spooled");
    redis.kill();
    assert_eq!(send(&server, &spooled), (202, "spooled".into()));
    arm(&server, "spool-append", "return");
    let d = id("fp-append");
    let body = fixture("issues/opened.json");
    let answered = reqwest::block_on(async {
        reqwest::client()
            .post(server.url("/webhooks"))
            .header("content-type", "application/json")
            .header("x-github-event", "issues")
            .header("x-github-delivery", &d)
            .header("x-hub-signature-256", sign(&body))
            .body(body.clone())
            .send()
            .await
    });
    assert!(answered.is_err(), "the sender got an answer: {answered:?}");
    assert_fired(&mut server, "spool-append");
    // The window: the record was written (not fsynced, never answered); a process crash keeps the
    // page cache, so the restarted server recovers it behind the acknowledged one.
    let log = std::fs::read(crate::spool::spool_log(&sys)).expect("spool.log");
    assert!(log.windows(d.len()).any(|w| w == d.as_bytes()));
    redis.restart();
    let server = sys.serve_as(&redis, &spool_env(&[]), "serve2");
    assert!(
        server.log_text().contains("spool is not empty at start-up"),
        "{}",
        server.log_text()
    );
    let _worker = sys.worker(&redis, &short_ttls(), "worker");
    let both = [spooled, d];
    wait_processed(&server, &both, LONG);
    assert_logged_once(&server, &both);
}

#[test]
fn spool_drain_crashes_after_the_xadd_and_the_redrain_is_deduplicated() {
    let mut redis = Redis::start();
    let sys = Sys::new();
    let mut server = sys.serve(&redis, &spool_env(&[]));
    redis.kill();
    let d = id("fp-drain");
    assert_eq!(send(&server, &d), (202, "spooled".into()));
    arm(&server, "spool-drain", "return");
    redis.restart();
    assert_fired(&mut server, "spool-drain");
    // The window: in the Redis stream and still in the spool.
    assert_eq!(xlen(&redis, "gitspy:events"), 1);
    let log = std::fs::read(crate::spool::spool_log(&sys)).expect("spool.log");
    assert!(log.windows(d.len()).any(|w| w == d.as_bytes()));
    let server = sys.serve_as(&redis, &spool_env(&[]), "serve2");
    wait_for(LONG, "the spool to drain again", || {
        metric(&server, "gitspy_spool_depth") == Some(0.0)
    });
    // The re-sent record was a duplicate: still one stream entry.
    assert_eq!(xlen(&redis, "gitspy:events"), 1);
    let _worker = sys.worker(&redis, &short_ttls(), "worker");
    wait_processed(&server, std::slice::from_ref(&d), LONG);
    assert_logged_once(&server, std::slice::from_ref(&d));
}
