//! The Redis probe against a real `redis-server` spawned by the test on a free port with its
//! own temporary directory, filled with keys and streams the test creates itself.

use crate::util::{free_port, Redis};
use gitspy_chaos::observe::probe::{self, ProbeConfig, StuckReason, DEAD_STREAM, GROUP, STREAM};

/// A real `redis-server` from the shared support module.
async fn spawn_redis() -> Redis {
    tokio::task::spawn_blocking(Redis::start)
        .await
        .expect("starting redis-server")
}

async fn run(c: &mut redis::aio::MultiplexedConnection, args: &[&str]) -> redis::Value {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query_async(c).await.expect("running a setup command")
}

const LOCK_TTL_MS: u64 = 30_000;

#[tokio::test]
async fn probe_counts_states_finds_stuck_locks_and_reads_streams() {
    let redis = spawn_redis().await;
    let mut c = probe::connect(&redis.url).await.unwrap();

    // Empty Redis: no stream, no group, nothing counted, and no error.
    let cfg = ProbeConfig {
        lock_ttl_ms: LOCK_TTL_MS,
        ..ProbeConfig::default()
    };
    let p = probe::probe(&mut c, &cfg).await.unwrap();
    assert!(p.states.is_empty());
    assert!(p.locks.is_empty());
    assert!(!p.stream_exists);
    assert_eq!((p.stream_len, p.pending, p.dead_len), (0, None, 0));

    // 2 500 processed states force several SCAN batches; a few of the other values.
    let mut pipe = redis::pipe();
    for i in 0..2_500 {
        pipe.cmd("SET")
            .arg(format!("events:p-{i}:state"))
            .arg("processed")
            .ignore();
    }
    pipe.cmd("SET")
        .arg("events:f-1:state")
        .arg("failed")
        .ignore();
    pipe.cmd("SET")
        .arg("events:r-1:state")
        .arg("received")
        .ignore();
    pipe.cmd("SET")
        .arg("events:r-2:state")
        .arg("received")
        .ignore();
    // A key that looks alike but is not a state key must not be counted.
    pipe.cmd("SET").arg("events:x:attempts").arg("3").ignore();
    let () = pipe.query_async(&mut c).await.unwrap();

    run(&mut c, &["SET", "events:ok:lock", "tok:1", "PX", "10000"]).await;
    run(&mut c, &["SET", "events:forever:lock", "tok:2"]).await;
    run(
        &mut c,
        &["SET", "events:long:lock", "tok:3", "PX", "120000"],
    )
    .await;

    // Stream with 3 entries, a group at 0, 2 of them delivered (pending), and one dead letter.
    // The stream exists before the group does: pending must be None, not an error.
    for i in 0..3 {
        run(
            &mut c,
            &["XADD", STREAM, "*", "delivery", &format!("d-{i}")],
        )
        .await;
    }
    let p = probe::probe(&mut c, &cfg).await.unwrap();
    assert!(p.stream_exists);
    assert_eq!((p.stream_len, p.pending), (3, None));

    run(&mut c, &["XGROUP", "CREATE", STREAM, GROUP, "0"]).await;
    run(
        &mut c,
        &[
            "XREADGROUP",
            "GROUP",
            GROUP,
            "w-1",
            "COUNT",
            "2",
            "STREAMS",
            STREAM,
            ">",
        ],
    )
    .await;
    run(&mut c, &["XADD", DEAD_STREAM, "*", "delivery", "f-1"]).await;

    let p = probe::probe(&mut c, &cfg).await.unwrap();
    assert_eq!(p.states.get("processed"), Some(&2_500));
    assert_eq!(p.states.get("failed"), Some(&1));
    assert_eq!(p.states.get("received"), Some(&2));
    assert_eq!(p.states.len(), 3, "unexpected states: {:?}", p.states);
    assert_eq!(
        (p.stream_len, p.pending, p.waiting(), p.dead_len),
        (3, Some(2), Some(1), 1)
    );

    let locks: Vec<(&str, Option<StuckReason>)> = p
        .locks
        .iter()
        .map(|l| (l.delivery.as_str(), l.stuck))
        .collect();
    assert_eq!(
        locks,
        [
            ("forever", Some(StuckReason::NoTtl)),
            ("long", Some(StuckReason::TtlAboveConfigured)),
            ("ok", None),
        ]
    );
    let forever = &p.locks[0];
    assert_eq!(forever.pttl_ms, -1);
    assert_eq!(forever.value.as_deref(), Some("tok:2"));
    assert!(p.locks[2].pttl_ms > 0 && p.locks[2].pttl_ms <= 10_000);
    assert_eq!(p.stuck_locks().count(), 2);

    // Drained for longer than the lock TTL: the lock that is still there is stuck too.
    let drained = ProbeConfig {
        lock_ttl_ms: LOCK_TTL_MS,
        drained_since_ms: Some(p.at_ms - LOCK_TTL_MS - 1_000),
        id_prefix: None,
    };
    let p = probe::probe(&mut c, &drained).await.unwrap();
    let ok = p.locks.iter().find(|l| l.delivery == "ok").unwrap();
    assert_eq!(ok.stuck, Some(StuckReason::PresentAfterDrain));

    // Drained only recently: not stuck.
    let recent = ProbeConfig {
        lock_ttl_ms: LOCK_TTL_MS,
        drained_since_ms: Some(p.at_ms),
        id_prefix: None,
    };
    let p = probe::probe(&mut c, &recent).await.unwrap();
    let ok = p.locks.iter().find(|l| l.delivery == "ok").unwrap();
    assert_eq!(ok.stuck, None);

    // Narrowed to one run's ids: only the `r-` states, and no lock (none has that prefix).
    let this_run = ProbeConfig {
        lock_ttl_ms: LOCK_TTL_MS,
        drained_since_ms: None,
        id_prefix: Some("r-".into()),
    };
    let p = probe::probe(&mut c, &this_run).await.unwrap();
    assert_eq!(p.states.len(), 1, "unexpected states: {:?}", p.states);
    assert_eq!(p.states.get("received"), Some(&2));
    assert!(p.locks.is_empty());

    // The group vanishes (a Redis that lost it): pending is unknown again, not an error.
    run(&mut c, &["XGROUP", "DESTROY", STREAM, GROUP]).await;
    let p = probe::probe(&mut c, &cfg).await.unwrap();
    assert_eq!((p.stream_len, p.pending), (3, None));
}

#[tokio::test]
async fn probe_of_an_unreachable_redis_fails_within_the_connect_timeout() {
    // A port nobody listens on: a bounded error, never a hang.
    let port = free_port();
    let Err(err) = probe::connect(&format!("redis://127.0.0.1:{port}/")).await else {
        panic!("connecting to a closed port must fail");
    };
    assert!(
        format!("{err:#}").contains(&format!("127.0.0.1:{port}")),
        "error does not name the address: {err:#}"
    );
}
