//! `target.store: postgres` end to end: the harness starts a real PostgreSQL server for the run,
//! GitSpy's server and workers use it, the store faults act on it (`lock` through `LOCK TABLE`,
//! `terminate_connections` through `pg_terminate_backend`) and say what they hit, and everything
//! is processed exactly once; `terminate_connections` on a SQLite run is refused with exit 2.
//! Every GitSpy process reaches PostgreSQL through a proxy of the harness (`server-store`,
//! `worker-<i>-store`): a reset of the workers' links is retried, and logged with what it hit.

use crate::util::{chaos, only_run_dir, root, run_managed as run};

#[test]
fn a_postgres_run_survives_a_table_lock_and_terminated_connections_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pg.yaml");
    // One attempt each: an apply that waits out GitSpy's lock_timeout (3 s here) is dead-lettered
    // and requeued; then every GitSpy connection is terminated while deliveries are in flight (a
    // fast send and 50 ms of work per batch, so a backlog builds on an idle machine too).
    std::fs::write(
        &file,
        "name: pg-store\ntarget:\n  store: postgres\n  redis: { backend: process }\n  workers: 2\n\
         \x20 env: { GITSPY_MAX_ATTEMPTS: \"1\", GITSPY_WORKER_CONCURRENCY: \"2\", GITSPY_STORE_BUSY_TIMEOUT: 3s, GITSPY_TEST_PROCESSING_DELAY: 50ms }\n\
         observe: { poll_interval: 1s }\nsteps:\n  - send: { count: 6, rate: 20/s }\n  - wait: { drained: true, timeout: 60s }\n\
         \x20 - fault: { store: { lock: 5s } }\n  - send: { count: 4, rate: 10/s }\n  - sleep: 5s\n\
         \x20 - wait: { drained: true, timeout: 60s }\n  - dead_requeue: all\n  - wait: { drained: true, timeout: 60s }\n\
         \x20 - parallel:\n      - send: { count: 80, rate: 400/s }\n      - fault: { store: { terminate_connections: true }, when: { backlog: 3 }, within: 20s }\n\
         \x20 - wait: { drained: true, timeout: 60s }\n\
         checks:\n  - deliveries: { lost: 0, duplicated: 0, failed: 0, unexpected: 0 }\n  - processed_matches_store\n  - board_matches_model\n",
    )
    .unwrap();
    let reports = dir.path().join("reports");
    let (code, stdout, stderr) = run(&["run", file.to_str().unwrap()], &reports);
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    let run_dir = only_run_dir(&reports);
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("run.json")).unwrap()).unwrap();
    assert_eq!(v["target"]["store"], "postgres", "{}", v["target"]);
    let faults = v["faults"].as_array().unwrap();
    let lock = faults
        .iter()
        .find(|f| f["kind"] == "store lock")
        .expect("the lock fault is logged");
    assert!(
        lock["note"]
            .as_str()
            .unwrap()
            .starts_with("LOCK TABLE applied_deliveries IN EXCLUSIVE MODE on PostgreSQL"),
        "{lock}"
    );
    let term = faults
        .iter()
        .find(|f| f["kind"] == "store terminate connections")
        .expect("the terminate fault is logged");
    let note = term["note"].as_str().unwrap();
    assert!(
        note.starts_with("pg_terminate_backend on ")
            && !note.starts_with("pg_terminate_backend on 0 "),
        "it ended GitSpy's connections: {note}"
    );
    let requeue = v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["kind"] == "dead_requeue")
        .expect("the requeue step ran");
    let rq = requeue["note"].as_str().unwrap();
    assert!(
        rq.starts_with("requeued ") && !rq.starts_with("requeued 0 "),
        "the lock dead-lettered something: {rq}"
    );
    let logs: String = (0..2)
        .map(|i| {
            std::fs::read_to_string(run_dir.join(format!("system/worker-{i}.log")))
                .unwrap_or_default()
        })
        .collect();
    assert!(
        logs.contains("SQLSTATE 55P03"),
        "lock_timeout reached GitSpy: {logs}"
    );
    // No SQLite file: the store was PostgreSQL.
    assert!(!run_dir.join("system/gitspy.db").exists());
}

#[test]
fn a_reset_of_the_workers_postgres_links_is_retried_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pg-net.yaml");
    // Fast sends and 50 ms of work per batch, so the workers hold transactions when the reset
    // comes; then a 2 s blackhole on worker 1's link.
    std::fs::write(
        &file,
        "name: pg-net\ntarget:\n  store: postgres\n  redis: { backend: process }\n  workers: 2\n\
         \x20 env: { GITSPY_STORE_BUSY_TIMEOUT: 3s, GITSPY_RETRY_BASE: 200ms, GITSPY_TEST_PROCESSING_DELAY: 50ms }\n\
         observe: { poll_interval: 1s }\nsteps:\n  - send: { count: 6, rate: 20/s }\n  - wait: { drained: true, timeout: 60s }\n\
         \x20 - parallel:\n      - send: { count: 80, rate: 400/s }\n      - fault: { network: { link: workers-store, reset: true, for: 2s }, when: { backlog: 3 }, within: 20s }\n\
         \x20 - fault: { network: { link: worker-1-store, partition: true, for: 2s } }\n\
         \x20 - wait: { drained: true, timeout: 60s }\n\
         checks:\n  - deliveries: { lost: 0, duplicated: 0, failed: 0, unexpected: 0 }\n  - processed_matches_store\n  - board_matches_model\n",
    )
    .unwrap();
    let reports = dir.path().join("reports");
    let (code, stdout, stderr) = run(&["run", file.to_str().unwrap()], &reports);
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    let run_dir = only_run_dir(&reports);
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("run.json")).unwrap()).unwrap();
    let links: Vec<&str> = v["target"]["links"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].as_str().unwrap())
        .collect();
    for want in ["server-store", "worker-0-store", "worker-1-store"] {
        assert!(links.contains(&want), "{want} in {links:?}");
    }
    let faults = v["faults"].as_array().unwrap();
    let reset = faults
        .iter()
        .find(|f| f["kind"] == "network reset")
        .expect("the reset is logged");
    assert_eq!(reset["target"], "network workers-store", "{reset}");
    let net = &reset["hit"]["network"];
    assert_eq!(
        net["links"],
        serde_json::json!(["worker-0-store", "worker-1-store"]),
        "{reset}"
    );
    assert!(
        net["resets"].as_u64().unwrap() > 0,
        "it reset GitSpy's PostgreSQL connections: {reset}"
    );
    let part = faults
        .iter()
        .find(|f| f["kind"] == "network partition")
        .expect("the partition is logged");
    assert_eq!(
        part["hit"]["network"]["links"],
        serde_json::json!(["worker-1-store"])
    );
    assert!(
        part["hit"]["network"]["connections"].as_u64().unwrap() > 0,
        "worker 1's pool had connections open: {part}"
    );
    assert!(run_dir.join("system/postgres.log").is_file());
}

#[test]
fn terminate_connections_needs_postgres_and_one_store_action() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t.yaml");
    std::fs::write(
        &file,
        "name: t\ntarget: { redis: { backend: process } }\nsteps:\n  - fault: { store: { terminate_connections: true } }\nchecks:\n  - no_stuck_locks\n",
    )
    .unwrap();
    let reports = dir.path().join("reports");
    let (code, _, stderr) = run(&["run", file.to_str().unwrap()], &reports);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--store postgres"), "{stderr}");

    // A link to the store exists only on PostgreSQL.
    let link = dir.path().join("link.yaml");
    std::fs::write(
        &link,
        "name: t\ntarget: { redis: { backend: process }, workers: 1 }\nsteps:\n  - fault: { network: { link: worker-0-store, reset: true, for: 1s } }\nchecks:\n  - no_stuck_locks\n",
    )
    .unwrap();
    let (code, _, stderr) = run(&["run", link.to_str().unwrap()], &reports);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("link `worker-0-store`") && stderr.contains("--store postgres"),
        "{stderr}"
    );
    let out = chaos(&["validate", link.to_str().unwrap()]);
    assert_eq!(
        out.code, 0,
        "valid as a file: --store postgres may run it: {}",
        out.stderr
    );
    let far = dir.path().join("far.yaml");
    std::fs::write(
        &far,
        "name: t\ntarget: { store: postgres, workers: 1 }\nsteps:\n  - fault: { network: { link: worker-3-store, reset: true, for: 1s } }\nchecks:\n  - no_stuck_locks\n",
    )
    .unwrap();
    let out = chaos(&["validate", far.to_str().unwrap()]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("link `worker-3-store`: the target has 1 worker(s)"),
        "{}",
        out.stderr
    );

    let both = dir.path().join("both.yaml");
    std::fs::write(
        &both,
        "name: t\ntarget: { store: postgres }\nsteps:\n  - fault: { store: { lock: 5s, terminate_connections: true } }\nchecks:\n  - no_stuck_locks\n",
    )
    .unwrap();
    let out = chaos(&["validate", both.to_str().unwrap()]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("a store fault names both `lock` and `terminate_connections`"),
        "{}",
        out.stderr
    );
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "name: t\ntarget: { store: mysql }\nsteps: []\nchecks:\n  - no_stuck_locks\n",
    )
    .unwrap();
    let out = chaos(&["validate", bad.to_str().unwrap()]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("bad.yaml:2:"), "{}", out.stderr);
}

#[test]
fn the_postgres_scenarios_are_valid() {
    let files = crate::util::yaml_files("scenarios/postgres");
    assert!(!files.is_empty());
    for f in files {
        let out = chaos(&["validate", f.to_str().unwrap()]);
        assert_eq!(out.code, 0, "{}: {}", f.display(), out.stderr);
        let text = std::fs::read_to_string(root().join(&f)).unwrap();
        assert!(text.contains("store: postgres"), "{}", f.display());
    }
}
