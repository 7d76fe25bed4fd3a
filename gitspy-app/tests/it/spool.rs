//! `GITSPY_ON_REDIS_DOWN=spool` against real processes: deliveries accepted while Redis is down are
//! fsynced to the local spool, drained in arrival order through the atomic enqueue, and processed
//! exactly once — across a Redis that comes back, a server SIGKILLed with a non-empty spool, a torn
//! last record, and a server SIGKILLed in the middle of a drain.

use std::time::Duration;

use gitspy::store::{SqliteStore, Store};

use crate::util::*;

const LONG: Duration = Duration::from_secs(60);

/// Spool mode with a 1 s Redis timeout, plus `extra`.
pub fn spool_env(extra: &[(&'static str, String)]) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("GITSPY_ON_REDIS_DOWN", "spool".to_string()),
        ("GITSPY_REDIS_TIMEOUT", "1s".to_string()),
    ];
    env.extend(extra.iter().cloned());
    env
}

/// One exact series of a process's `/metrics/prom`.
pub fn metric(p: &Proc, series: &str) -> Option<f64> {
    let (_, text) = get_text(&p.url("/metrics/prom"));
    sample(&text, series)
}

/// POSTs a signed `issues` delivery; returns the HTTP status and the `status` field of the answer.
pub fn send(server: &Proc, id: &str) -> (u16, String) {
    let r = post(
        server,
        &Post::signed("issues", id, fixture("issues/opened.json")),
    );
    let status = r.json()["status"].as_str().unwrap_or("").to_owned();
    (r.status, status)
}

/// The delivery ids of the store's event log, in log (`seq`) order.
pub fn log_order(sys: &Sys) -> Vec<String> {
    let store = SqliteStore::open_read_only(&sys.db()).expect("open the store read-only");
    let mut ids = Vec::new();
    store
        .scan_log(0, i64::MAX, &mut |l| {
            ids.push(l.delivery.id);
            Ok(())
        })
        .expect("scan the event log");
    ids
}

/// The delivery ids of the entries in `gitspy:events`, in stream-id order.
pub fn stream_order(redis: &Redis) -> Vec<String> {
    let entries: Vec<(String, std::collections::HashMap<String, Vec<u8>>)> = redis::cmd("XRANGE")
        .arg("gitspy:events")
        .arg("-")
        .arg("+")
        .query(&mut redis.conn())
        .expect("XRANGE gitspy:events");
    entries
        .into_iter()
        .map(|(_, fields)| String::from_utf8(fields["id"].clone()).expect("utf-8 delivery id"))
        .collect()
}

/// `ids` appear in the event log exactly in this order (other deliveries may be interleaved).
pub fn assert_logged_in_order(sys: &Sys, ids: &[String]) {
    let log: Vec<String> = log_order(sys)
        .into_iter()
        .filter(|id| ids.contains(id))
        .collect();
    assert_eq!(log, ids, "event log order differs from the POST order");
}

/// Every id: one event-log row, at most one card effect.
pub fn assert_logged_once(server: &Proc, ids: &[String]) {
    let (_, v) = post_json(
        &server.url("/deliveries/lookup"),
        serde_json::json!({ "ids": ids }),
    );
    let all = v["deliveries"].as_array().expect("lookup answer");
    assert_eq!(all.len(), ids.len(), "{v}");
    for d in all {
        assert_eq!(d["state"], "processed", "{d}");
        assert_eq!(d["logged"], 1, "{d}");
        assert!(d["effects"].as_u64().unwrap() <= 1, "{d}");
    }
}

pub fn spool_log(sys: &Sys) -> std::path::PathBuf {
    sys.dir.path().join("spool").join(gitspy::spool::LOG_FILE)
}

fn ids(prefix: &str, n: usize) -> Vec<String> {
    let base = id(prefix);
    (0..n).map(|i| format!("{base}-{i:02}")).collect()
}

fn worker(sys: &Sys, redis: &Redis, name: &str) -> Proc {
    sys.worker(redis, &[("GITSPY_REDIS_TIMEOUT", "1s".into())], name)
}

/// Asserts a `200 duplicate` answer in `state`.
fn assert_duplicate(server: &Proc, id: &str, state: &str) {
    let r = post(
        server,
        &Post::signed("issues", id, fixture("issues/opened.json")),
    );
    assert_eq!(r.status, 200, "{id}: {}", r.body);
    assert_eq!(r.json()["status"], "duplicate", "{id}: {}", r.body);
    assert_eq!(r.json()["state"], state, "{id}: {}", r.body);
}

fn wait_spool_empty(server: &Proc) {
    wait_for(LONG, "the spool depth to reach 0", || {
        metric(server, "gitspy_spool_depth") == Some(0.0)
    });
}

// The drain order is checked in the stream itself, before any worker consumes it: a worker that
// lived through a Redis restart may retry an entry whose first attempt met the broken connection,
// which reorders processing (not enqueueing). Workers started after the drain then also log the
// deliveries in that order.

#[test]
fn spooled_deliveries_are_durable_counted_and_drained_in_arrival_order_exactly_once() {
    let mut redis = Redis::start();
    let sys = Sys::new();
    let server = sys.serve(&redis, &spool_env(&[]));
    let mut first_worker = worker(&sys, &redis, "worker");
    let before = ids("before", 2);
    for id in &before {
        assert_eq!(send(&server, id), (202, "queued".into()));
    }
    wait_processed(&server, &before, LONG);
    first_worker.kill9();

    redis.kill();
    let spooled = ids("spooled", 8);
    for (i, id) in spooled.iter().enumerate() {
        assert_eq!(send(&server, id), (202, "spooled".into()), "{id}");
        // The 202 came after the append: the record is in the spool file already.
        let log = std::fs::read(spool_log(&sys)).expect("read spool.log");
        assert!(
            log.windows(id.len()).any(|w| w == id.as_bytes()),
            "{id} answered 202 but is not in spool.log"
        );
        assert_eq!(metric(&server, "gitspy_spool_depth"), Some((i + 1) as f64));
    }
    // A duplicate of a spooled delivery, Redis still down: found in the spool's index.
    assert_duplicate(&server, &spooled[3], "spooled");
    assert_eq!(metric(&server, "gitspy_spool_depth"), Some(8.0));
    assert_eq!(
        metric(
            &server,
            "gitspy_events_duplicate_total{event_type=\"issues\"}"
        ),
        Some(1.0)
    );
    assert_eq!(delivery(&server, &spooled[0])["state"], "spooled");

    redis.restart();
    wait_spool_empty(&server);
    assert_eq!(
        stream_order(&redis),
        spooled,
        "drained out of order or twice"
    );
    let worker = worker(&sys, &redis, "worker2");
    wait_processed(&server, &spooled, LONG);
    let mut all = before.clone();
    all.extend(spooled.iter().cloned());
    assert_logged_once(&server, &all);
    assert_logged_in_order(&sys, &all);
    // Acknowledged and deleted, nothing left behind, nothing seen twice.
    assert_eq!(xlen(&redis, "gitspy:events"), 0);
    let (_, m) = get_text(&worker.url("/metrics/prom"));
    assert!(
        !m.contains("gitspy_jobs_duplicate_total{"),
        "the worker met a duplicate:\n{m}"
    );
    assert!(server.log_text().contains("spool drained into redis"));
}

#[test]
fn while_the_spool_is_not_empty_new_deliveries_are_spooled_behind_it_even_with_redis_back() {
    let mut redis = Redis::start();
    let sys = Sys::new();
    let server = sys.serve(
        &redis,
        &spool_env(&[("GITSPY_TEST_SPOOL_DRAIN_DELAY", "1s".into())]),
    );
    let before = ids("before", 1);
    assert_eq!(send(&server, &before[0]), (202, "queued".into()));

    redis.kill();
    let first = ids("first", 5);
    for id in &first {
        assert_eq!(send(&server, id), (202, "spooled".into()), "{id}");
    }
    redis.restart();
    // The drain moved the first record into Redis (its state key exists), so Redis is back for
    // the server too; the other four take at least 1 s each.
    wait_for(LONG, "the first spooled record to reach redis", || {
        get(&redis, &format!("events:{}:state", first[0])).is_some()
    });
    assert_eq!(metric(&server, "gitspy_redis_up"), Some(1.0));
    let later = ids("later", 3);
    for id in &later {
        assert_eq!(send(&server, id), (202, "spooled".into()), "{id}");
    }
    // Duplicates while spooling with Redis up: one only Redis knows (queued before the outage),
    // one still waiting in the spool (the spool's index knows it).
    assert_duplicate(&server, &before[0], "received");
    assert_duplicate(&server, &later[1], "spooled");

    let mut all = before.clone();
    all.extend(first.iter().cloned());
    all.extend(later.iter().cloned());
    wait_spool_empty(&server);
    assert_eq!(stream_order(&redis), all, "drained out of order or twice");
    let _worker = worker(&sys, &redis, "worker");
    wait_processed(&server, &all, LONG);
    assert_logged_once(&server, &all);
    assert_logged_in_order(&sys, &all);
}

#[test]
fn a_killed_server_drains_its_spool_after_restart_and_drops_only_a_torn_last_record() {
    let mut redis = Redis::start();
    let sys = Sys::new();
    let mut server = sys.serve(&redis, &spool_env(&[]));
    redis.kill();
    let spooled = ids("torn", 5);
    for id in &spooled {
        assert_eq!(send(&server, id), (202, "spooled".into()), "{id}");
    }
    server.kill9();
    // Tear the last record: cut its last bytes, as a crash in the middle of its write would.
    let path = spool_log(&sys);
    let len = std::fs::metadata(&path).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(len - 7).unwrap();
    drop(f);

    redis.restart();
    let server = sys.serve_as(&redis, &spool_env(&[]), "serve2");
    assert_eq!(
        metric(&server, "gitspy_spool_torn_records_total"),
        Some(1.0)
    );
    wait_spool_empty(&server);
    let kept = spooled[..4].to_vec();
    assert_eq!(stream_order(&redis), kept, "drained out of order or twice");
    let _worker = worker(&sys, &redis, "worker");
    wait_processed(&server, &kept, LONG);
    assert_logged_once(&server, &kept);
    assert_logged_in_order(&sys, &kept);
    let torn = delivery(&server, &spooled[4]);
    assert_eq!(torn["state"], "unknown", "{torn}");
    assert_eq!(torn["logged"], 0, "{torn}");
    let log = server.log_text();
    assert!(log.contains("torn last record"), "{log}");
    assert!(log.contains("spool is not empty at start-up"), "{log}");
}

#[test]
fn a_server_killed_in_the_middle_of_a_drain_loses_nothing_and_duplicates_nothing() {
    let mut redis = Redis::start();
    let sys = Sys::new();
    let mut server = sys.serve(
        &redis,
        &spool_env(&[("GITSPY_TEST_SPOOL_DRAIN_DELAY", "300ms".into())]),
    );
    redis.kill();
    let spooled = ids("middrain", 10);
    for id in &spooled {
        assert_eq!(send(&server, id), (202, "spooled".into()), "{id}");
    }
    redis.restart();
    // No worker yet: the stream length is exactly what the drain has moved so far.
    wait_for(LONG, "the drain to move 3 records into redis", || {
        xlen(&redis, "gitspy:events") >= 3
    });
    server.kill9();
    let moved = xlen(&redis, "gitspy:events");
    assert!(
        moved < 10,
        "the drain finished before the kill ({moved} moved)"
    );

    // The restarted server re-sends what was moved but not yet forgotten; the atomic enqueue
    // drops those, so the stream holds each delivery exactly once, in order.
    let server = sys.serve_as(&redis, &spool_env(&[]), "serve2");
    wait_spool_empty(&server);
    assert_eq!(
        stream_order(&redis),
        spooled,
        "drained out of order or twice"
    );
    let _worker = worker(&sys, &redis, "worker");
    wait_processed(&server, &spooled, LONG);
    assert_logged_once(&server, &spooled);
    assert_logged_in_order(&sys, &spooled);
}

#[test]
fn concurrent_spooled_deliveries_are_each_made_durable_once_and_drained_once() {
    let mut redis = Redis::start();
    let sys = Sys::new();
    let server = sys.serve(&redis, &spool_env(&[]));
    redis.kill();
    // 40 distinct deliveries in flight at once (group commit shares fsyncs between them), each
    // of the first 5 sent twice concurrently: exactly one of a pair is spooled.
    let spooled = ids("burst", 40);
    let body = fixture("issues/opened.json");
    let mut sends: Vec<&String> = spooled.iter().collect();
    sends.extend(spooled[..5].iter());
    let url = server.url("/webhooks");
    let answers: Vec<(String, Resp)> = reqwest::block_on(async {
        let client = reqwest::client();
        futures::future::join_all(sends.iter().map(|id| {
            let p = Post::signed("issues", id, body.clone());
            let client = client.clone();
            let url = url.clone();
            async move { (id.to_string(), post_async(&client, &url, &p).await) }
        }))
        .await
    });
    for id in &spooled {
        let mine: Vec<(u16, String)> = answers
            .iter()
            .filter(|(a, _)| a == id)
            .map(|(_, r)| {
                (
                    r.status,
                    r.json()["status"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect();
        let spooled_once = mine
            .iter()
            .filter(|m| **m == (202, "spooled".into()))
            .count();
        assert_eq!(spooled_once, 1, "{id}: {mine:?}");
        assert!(
            mine.iter()
                .all(|m| *m == (202, "spooled".into()) || *m == (200, "duplicate".into())),
            "{id}: {mine:?}"
        );
    }
    assert_eq!(metric(&server, "gitspy_spool_depth"), Some(40.0));

    redis.restart();
    wait_spool_empty(&server);
    let mut in_stream = stream_order(&redis);
    in_stream.sort();
    let mut expected = spooled.clone();
    expected.sort();
    assert_eq!(in_stream, expected, "each delivery once in the stream");
    let _worker = worker(&sys, &redis, "worker");
    wait_processed(&server, &spooled, LONG);
    assert_logged_once(&server, &spooled);
}
