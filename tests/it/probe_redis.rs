//! The Redis probe against a real `redis-server` spawned by the test on a free port with its
//! own temporary directory, filled with keys and streams the test creates itself.

use crate::util::{free_port, Redis};
use gitspy_chaos::observe::probe::{self, ProbeConfig, StuckReason};
use gitspy_contract::keys::{DEAD_STREAM, GROUP, STREAM};

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

/// A second, differently named system: keys, stream, group, state values and metric names all
/// differ from GitSpy's. Loaded from a profile file, it drives the probe against a real
/// redis-server holding keys in that naming, and the metric reading of an exposition in it;
/// GitSpy's default profile over the same data sees none of it.
#[tokio::test]
async fn a_second_profile_drives_the_probe_and_the_metric_names() {
    use gitspy_chaos::observe::prom::{names, Scrape};
    use gitspy_chaos::system::profile::load_profile;

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("acme.yaml");
    std::fs::write(
        &file,
        r#"name: acme-hooks
redis:
  stream: "acme:inbox"
  dead_stream: "acme:inbox:dlq"
  group: "acme-crew"
  state_key: "acme/{id}/st"
  lock_key: "acme/{id}/lk"
states:
  processed: done
  failed: gave_up
metrics:
  jobs_processed: acme_jobs_done_total
  queue_waiting: acme_backlog
  job_duration: acme_job_ms
"#,
    )
    .unwrap();
    let acme = load_profile(&file).unwrap();

    let redis = spawn_redis().await;
    let mut c = probe::connect(&redis.url).await.unwrap();
    for (key, value) in [
        ("acme/run7-a/st", "done"),
        ("acme/run7-b/st", "done"),
        ("acme/run7-c/st", "gave_up"),
        ("acme/run7-d/st", "received"),
        ("acme/run7-e/st", "teleported"),
        ("acme/other-x/st", "done"),
        // GitSpy's naming of the same kind of key: not this system's.
        ("events:run7-z:state", "processed"),
    ] {
        run(&mut c, &["SET", key, value]).await;
    }
    run(&mut c, &["SET", "acme/run7-a/lk", "tok:1"]).await;
    for i in 0..3 {
        run(&mut c, &["XADD", "acme:inbox", "*", "d", &i.to_string()]).await;
    }
    run(
        &mut c,
        &["XGROUP", "CREATE", "acme:inbox", "acme-crew", "0"],
    )
    .await;
    run(
        &mut c,
        &[
            "XREADGROUP",
            "GROUP",
            "acme-crew",
            "w",
            "COUNT",
            "1",
            "STREAMS",
            "acme:inbox",
            ">",
        ],
    )
    .await;
    run(&mut c, &["XADD", "acme:inbox:dlq", "*", "d", "c"]).await;

    let cfg = ProbeConfig {
        lock_ttl_ms: LOCK_TTL_MS,
        id_prefix: Some("run7".into()),
        ..ProbeConfig::default()
    };
    let p = probe::probe_as(&mut c, &cfg, &acme).await.unwrap();
    let states: Vec<(&str, u64)> = p.states.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    assert_eq!(
        states,
        [
            ("failed", 1),
            ("processed", 2),
            ("received", 1),
            ("teleported", 1)
        ],
        "states in the contract's names; an unknown value kept as found"
    );
    assert_eq!(p.locks.len(), 1);
    assert_eq!(p.locks[0].delivery, "run7-a");
    assert_eq!(p.locks[0].stuck, Some(StuckReason::NoTtl));
    assert_eq!(
        (p.stream_exists, p.stream_len, p.pending, p.dead_len),
        (true, 3, Some(1), 1)
    );

    // GitSpy's profile over the same Redis sees only its own key.
    let g = probe::probe(&mut c, &cfg).await.unwrap();
    assert_eq!(g.states.get("processed"), Some(&1));
    assert_eq!((g.stream_exists, g.dead_len, g.locks.len()), (false, 0, 0));

    // Metric names: the acme exposition read through its profile lands on the contract's names.
    let text = "\
# TYPE acme_jobs_done_total counter
acme_jobs_done_total 42
# TYPE acme_backlog gauge
acme_backlog 5
# TYPE acme_job_ms histogram
acme_job_ms_bucket{le=\"10\"} 3
acme_job_ms_bucket{le=\"+Inf\"} 4
acme_job_ms_sum 31
acme_job_ms_count 4
# TYPE gitspy_queue_waiting gauge
gitspy_queue_waiting 999
";
    let s = Scrape::parse("worker-0", 0, text)
        .unwrap()
        .canonical(&acme.metrics);
    assert_eq!(s.counter(names::JOBS_PROCESSED), Some(42.0));
    assert_eq!(
        s.gauge(names::QUEUE_WAITING),
        Some(5.0),
        "a sample in GitSpy's name that the profile does not use is dropped, not misread"
    );
    let h = s.histogram(names::JOB_DURATION_MS).expect("the histogram");
    assert_eq!((h.sum, h.count), (Some(31.0), Some(4.0)));
    // Read with GitSpy's names, the same exposition has no processed counter.
    let plain = Scrape::parse("worker-0", 0, text).unwrap();
    assert_eq!(plain.counter(names::JOBS_PROCESSED), None);
}
