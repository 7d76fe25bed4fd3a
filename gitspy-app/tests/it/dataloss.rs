//! Redis restarted without its data (an empty dir): the worker that meets `NOGROUP` recreates the
//! consumer group at id `0` — so what was enqueued into the fresh Redis before it noticed is still
//! read —, says so loudly and counts `gitspy_redis_data_loss_total`; the system keeps working.

use std::process::Command;
use std::time::Duration;

use crate::spool::{assert_logged_once, metric, send, spool_env};
use crate::util::*;

const LONG: Duration = Duration::from_secs(60);

fn signal(p: &Proc, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &p.pid().to_string()])
        .status()
        .unwrap();
    assert!(ok.success(), "kill {sig} {}", p.pid());
}

#[test]
fn redis_restarted_without_its_data_recreates_the_group_at_0_counts_the_loss_and_keeps_working() {
    let mut redis = Redis::start();
    let sys = Sys::new();
    let server = sys.serve(&redis, &spool_env(&[]));
    let worker = sys.worker(&redis, &[("GITSPY_REDIS_TIMEOUT", "1s".into())], "worker");
    let base = id("loss");
    let before: Vec<String> = (0..3).map(|i| format!("{base}-before-{i}")).collect();
    for id in &before {
        assert_eq!(send(&server, id), (202, "queued".into()));
    }
    wait_processed(&server, &before, LONG);
    assert_eq!(metric(&worker, "gitspy_redis_data_loss_total"), Some(0.0));

    // Freeze the worker so the fresh Redis receives deliveries before any consumer group exists:
    // a group recreated at `$` instead of `0` would never deliver them.
    signal(&worker, "-STOP");
    redis.restart_empty();
    let after: Vec<String> = (0..3).map(|i| format!("{base}-after-{i}")).collect();
    for id in &after {
        // The server may still hold a dead connection for a moment: then it spools (202 too).
        let (status, how) = send(&server, id);
        assert_eq!(status, 202, "{id}: {how}");
        assert!(how == "queued" || how == "spooled", "{id}: {how}");
    }
    wait_for(LONG, "the new deliveries to reach the fresh redis", || {
        xlen(&redis, "gitspy:events") == 3
    });
    let groups: redis::Value = redis::cmd("XINFO")
        .arg("GROUPS")
        .arg("gitspy:events")
        .query(&mut redis.conn())
        .unwrap();
    assert_eq!(
        groups,
        redis::Value::Array(vec![]),
        "a group exists already"
    );
    signal(&worker, "-CONT");

    wait_processed(&server, &after, LONG);
    assert_eq!(metric(&worker, "gitspy_redis_data_loss_total"), Some(1.0));
    assert!(
        worker.log_text().contains("REDIS LOST ITS DATA"),
        "{}",
        worker.log_text()
    );
    // A redelivery of a delivery processed before the loss: Redis forgot it, so it is queued
    // again, but the store knows it was applied and does not log it a second time.
    assert_eq!(send(&server, &before[0]), (202, "queued".into()));
    wait_for(LONG, "the redelivery to be acknowledged", || {
        xlen(&redis, "gitspy:events") == 0
    });
    wait_processed(&server, &before, LONG);
    let mut all = before.clone();
    all.extend(after.iter().cloned());
    assert_logged_once(&server, &all);
    // Still exactly one loss: later NOGROUP-free reads do not count again.
    assert_eq!(metric(&worker, "gitspy_redis_data_loss_total"), Some(1.0));
}
