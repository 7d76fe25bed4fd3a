//! Faults end to end (`src/fault/`): triggered kills and freezes that land on work in flight and
//! say what they hit, a missed trigger, `target.env` reaching the managed processes, and the
//! INCONCLUSIVE verdict (exit 3) of a run whose kill, or whose outage, hit nothing.

use std::process::Command;

use crate::util::{only_run_json as run_json, run_managed as run};

#[test]
fn triggered_kill_and_freeze_hit_work_in_flight_and_a_missed_trigger_is_logged() {
    let reports = tempfile::tempdir().unwrap();
    let (code, stdout, stderr) = run(
        &[
            "run",
            "tests/it/scenarios/triggered.yaml",
            "--target-env",
            "GITSPY_LOG_RETENTION=1h",
        ],
        reports.path(),
    );
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    let v = run_json(reports.path());
    let faults = v["faults"].as_array().unwrap();
    let kill = &faults[0];
    assert_eq!(kill["kind"], "worker kill", "{kill}");
    assert_eq!(kill["outcome"], "applied");
    assert_eq!(kill["trigger"], "holding >= 3");
    let held = kill["hit"]["pending"].as_array().unwrap().len() as u64;
    assert!(held >= 1, "the kill hit what the worker held: {kill}");
    assert_eq!(
        kill["hit"]["recovered"].as_u64(),
        Some(held),
        "every delivery the kill hit ended processed once: {kill}"
    );
    let freeze = faults
        .iter()
        .find(|f| f["kind"] == "worker freeze")
        .expect("the freeze is logged");
    assert_eq!(freeze["target"], "worker-0");
    assert!(
        !freeze["hit"]["pending"].as_array().unwrap().is_empty(),
        "{freeze}"
    );
    assert!(
        freeze["end_ms"].as_u64() > freeze["start_ms"].as_u64(),
        "the thaw healed it: {freeze}"
    );
    let missed = faults.last().unwrap();
    assert_eq!(missed["outcome"], "missed", "{missed}");
    assert!(missed["hit"].is_null());
    let eff = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "faults_effective")
        .expect("faults_effective is judged");
    assert_eq!(eff["passed"], true, "{eff}");
    assert_eq!(eff["measured"], 2.0, "{eff}");
    assert!(stdout.contains("fault: kill #1 of worker-"), "{stdout}");
    // target.env and --target-env reached run.json (and the processes: the delay held work).
    let env = &v["target"]["env"];
    assert_eq!(env["GITSPY_CLAIM_IDLE"], "2s");
    assert_eq!(env["GITSPY_LOG_RETENTION"], "1h");
    assert_eq!(env["GITSPY_BLOCK"], "1s", "harness default kept: {env}");
}

#[test]
fn a_kill_that_hits_nothing_makes_the_run_inconclusive_with_exit_3() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("idle-kill.yaml");
    std::fs::write(
        &file,
        "name: idle-kill\ntarget: { redis: { backend: process }, workers: 1 }\nobserve: { poll_interval: 1s }\n\
         steps:\n  - send: { count: 5 }\n  - wait: { drained: true, timeout: 60s }\n  - fault: { worker: kill, which: 0 }\n\
         checks:\n  - deliveries: { lost: 0, duplicated: 0 }\n",
    )
    .unwrap();
    let reports = dir.path().join("reports");
    let (code, stdout, stderr) = run(&["run", file.to_str().unwrap()], &reports);
    assert_eq!(code, 3, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.starts_with("INCONCLUSIVE idle-kill"), "{stdout}");
    assert!(
        stdout.contains(
            "inconclusive: the kill hit no in-flight delivery, so this run proves nothing about crash safety"
        ),
        "{stdout}"
    );
    let v = run_json(&reports);
    assert_eq!(v["verdict"], "inconclusive");
}

#[test]
fn an_outage_that_meets_no_traffic_is_inconclusive_and_one_that_does_passes() {
    let dir = tempfile::tempdir().unwrap();
    let head = [
        "target: { redis: { backend: process }, workers: 1, on_redis_down: reject }",
        "observe: { poll_interval: 1s }",
        "steps:",
        "  - send: { count: 5 }",
        "  - wait: { drained: true, timeout: 60s }",
        "  - fault: { redis: stop }",
        "",
    ]
    .join("\n");
    let tail = [
        "  - fault: { redis: start }",
        "  - wait: { for: 1s }",
        "  - wait: { drained: true, timeout: 60s }",
        "checks:",
        "  - deliveries: { lost: 0, duplicated: 0 }",
        "",
    ]
    .join("\n");
    // Nothing arrives and nothing waits while Redis is down: the outage proved nothing.
    let idle = dir.path().join("idle-outage.yaml");
    std::fs::write(
        &idle,
        format!("name: idle-outage\n{head}  - wait: {{ for: 2s }}\n{tail}"),
    )
    .unwrap();
    let reports = dir.path().join("idle");
    let (code, stdout, stderr) = run(&["run", idle.to_str().unwrap()], &reports);
    assert_eq!(code, 3, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        stdout.contains("inconclusive: the redis stop hit nothing"),
        "{stdout}"
    );
    assert!(
        stdout.contains("hit nothing: no request arrived and no delivery waited"),
        "{stdout}"
    );
    let v = run_json(&reports);
    assert_eq!(v["verdict"], "inconclusive");
    let stop = &v["faults"][0];
    assert_eq!(
        (
            stop["hit"]["requests"].as_u64(),
            stop["hit"]["waiting"].as_u64()
        ),
        (Some(0), Some(0)),
        "{stop}"
    );
    // The same outage while webhooks arrive: they are rejected, redelivered, processed.
    let busy = dir.path().join("busy-outage.yaml");
    std::fs::write(
        &busy,
        format!(
            "name: busy-outage\n{head}  - send: {{ count: 4, expect: rejected }}\n{tail}{}",
            "  - faults_effective: { min: 1 }\n"
        )
        .replace(
            "  - wait: { for: 1s }\n",
            "  - wait: { for: 1s }\n  - redeliver: failed\n",
        ),
    )
    .unwrap();
    let reports = dir.path().join("busy");
    let (code, stdout, stderr) = run(&["run", busy.to_str().unwrap()], &reports);
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    let v = run_json(&reports);
    let stop = &v["faults"][0];
    assert_eq!(stop["hit"]["rejected"].as_u64(), Some(4), "{stop}");
    assert_eq!(stop["hit"]["requests"].as_u64(), Some(4), "{stop}");
    assert!(stdout.contains("4 requests rejected"), "{stdout}");
}

#[test]
fn fail_fast_stops_at_the_first_failed_step_and_max_wait_caps_the_drain_waits() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("stalled.yaml");
    std::fs::write(
        &file,
        [
            "name: stalled",
            "target: { redis: { backend: process }, workers: 1 }",
            "steps:",
            "  - fault: { worker: stop, which: 0 }",
            "  - send: { count: 3 }",
            "  - wait: { drained: true, timeout: 10m }",
            "  - mark: never-reached",
            "  - fault: { worker: start, which: 0 }",
            "checks:",
            "  - deliveries: { lost: 0 }",
            "  - faults_effective: { min: 0 }",
            "",
        ]
        .join("\n"),
    )
    .unwrap();
    let reports = dir.path().join("reports");
    let (code, stdout, stderr) = run(
        &[
            "run",
            file.to_str().unwrap(),
            "--fail-fast",
            "--max-wait",
            "2s",
        ],
        &reports,
    );
    // The worker never came back: the capped wait failed, nothing after it ran, and the final
    // heal started the worker again only after the run stopped — no drain was waited for.
    assert_eq!(code, 1, "stdout:\n{stdout}\nstderr:\n{stderr}");
    let v = run_json(&reports);
    let steps = v["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 3, "{steps:?}");
    assert!(
        steps[2]["note"]
            .as_str()
            .unwrap()
            .contains("did not drain within 2s"),
        "{}",
        steps[2]
    );
    assert!(
        v["marks"].as_array().is_none_or(|m| m.is_empty()),
        "{}",
        v["marks"]
    );
    let drain = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "final_drain")
        .expect("final_drain is judged");
    assert_eq!(drain["passed"], false);
    assert!(
        drain["note"]
            .as_str()
            .unwrap()
            .contains("--fail-fast stopped the run when step 3 failed"),
        "{drain}"
    );
}

#[test]
fn docker_a_container_another_run_left_is_refused_with_exit_2_naming_that_run() {
    let name = format!("gitspy-b-iso-{}", std::process::id());
    let owner = format!("20260101T000000Z-other-{}", std::process::id());
    let made = Command::new("docker")
        .args(["create", "--name", &name, "--label"])
        .arg(format!("gitspy-chaos.run={owner}"))
        .arg("gitspy-redis:7")
        .output()
        .expect("docker runs");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("iso.yaml");
    std::fs::write(
        &file,
        format!(
            "name: iso\ntarget: {{ redis: {{ backend: docker, container: {name} }}, workers: 1 }}\n\
             steps:\n  - send: {{ count: 1 }}\nchecks:\n  - deliveries: {{ lost: 0 }}\n"
        ),
    )
    .unwrap();
    let (code, stdout, stderr) = run(&["run", file.to_str().unwrap()], &dir.path().join("r"));
    let _ = Command::new("docker").args(["rm", "-f", &name]).output();
    assert_eq!(code, 2, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        stderr.contains(&format!(
            "container {name} was left by the interrupted run {owner}"
        )),
        "{stderr}"
    );
}

#[test]
fn docker_each_run_gets_its_own_container() {
    let reports = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("own.yaml");
    std::fs::write(
        &file,
        "name: own\ntarget: { redis: { backend: docker }, workers: 1 }\n\
         steps:\n  - send: { count: 3 }\n  - wait: { drained: true, timeout: 60s }\nchecks:\n  - deliveries: { lost: 0 }\n",
    )
    .unwrap();
    let (code, stdout, stderr) = run(&["run", file.to_str().unwrap()], reports.path());
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    let v = run_json(reports.path());
    let backend = v["target"]["redis_backend"].as_str().unwrap();
    assert!(
        backend.contains("gitspy-redis-") && !backend.contains("gitspy-redis "),
        "a per-run container name: {backend}"
    );
}

#[test]
fn a_store_lock_dead_letters_applies_and_dead_requeue_brings_them_back() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("store.yaml");
    // One attempt each: the first apply that waits out GitSpy's 10 s busy timeout is dead-lettered.
    std::fs::write(
        &file,
        "name: store-lock\ntarget:\n  redis: { backend: process }\n  workers: 1\n  env: { GITSPY_MAX_ATTEMPTS: \"1\", GITSPY_WORKER_CONCURRENCY: \"1\" }\n\
         observe: { poll_interval: 1s }\nsteps:\n  - fault: { store: { lock: 12s } }\n  - send: { count: 2, rate: 10/s }\n  - sleep: 12s\n\
         \x20 - wait: { drained: true, timeout: 60s }\n  - dead_requeue: all\n  - wait: { drained: true, timeout: 60s }\n\
         checks:\n  - deliveries: { lost: 0, duplicated: 0, failed: 0 }\n",
    )
    .unwrap();
    let reports = dir.path().join("reports");
    let (code, stdout, stderr) = run(&["run", file.to_str().unwrap()], &reports);
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    let v = run_json(&reports);
    let lock = &v["faults"][0];
    assert_eq!(lock["kind"], "store lock");
    let (start, end) = (
        lock["start_ms"].as_u64().unwrap(),
        lock["end_ms"].as_u64().unwrap(),
    );
    assert!(end - start >= 11_000, "held for its duration: {lock}");
    let requeue = v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["kind"] == "dead_requeue")
        .expect("the requeue step ran");
    let note = requeue["note"].as_str().unwrap();
    assert!(
        note.starts_with("requeued ") && !note.starts_with("requeued 0 "),
        "the lock dead-lettered something: {note}"
    );
    let dirs: Vec<_> = std::fs::read_dir(&reports).unwrap().flatten().collect();
    let log = std::fs::read_to_string(dirs[0].path().join("system/worker-0.log")).unwrap();
    assert!(log.contains("database is locked"), "{log}");
}

#[test]
fn crash_points_need_a_failpoints_build_or_the_run_is_refused_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    // A gitspy that says it was built without features (the check runs before anything starts).
    let fake = dir.path().join("gitspy");
    std::fs::write(&fake, "#!/bin/sh\necho 'gitspy 0.1.0 (features: none)'\n").unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (code, stdout, stderr) = run(
        &[
            "run",
            "scenarios/07-crash-points.yaml",
            "--gitspy-bin",
            fake.to_str().unwrap(),
        ],
        &dir.path().join("reports"),
    );
    assert_eq!(code, 2, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        stderr.contains("has no failpoints")
            && stderr.contains("cargo build -p gitspy --features failpoints"),
        "{stderr}"
    );
}

/// Needs a gitspy built with `--features failpoints` in `GITSPY_FAILPOINTS_BIN` (scripts/test.sh
/// sets it in its feature pass, and leaves it out of the first one); without it the test fails
/// saying how to build one — it never passes silently.
#[test]
fn crash_at_after_commit_fires_in_the_worker_and_says_what_it_hit() {
    let Some(bin) = std::env::var_os("GITSPY_FAILPOINTS_BIN") else {
        panic!(
            "GITSPY_FAILPOINTS_BIN is not set: build `cargo build -p gitspy --features failpoints` \
             and point it at that gitspy (scripts/test.sh does both)"
        );
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("crash.yaml");
    std::fs::write(
        &file,
        "name: crash-at\ntarget: { redis: { backend: process }, workers: 1 }\nobserve: { poll_interval: 1s }\n\
         steps:\n  - parallel:\n      - send: { count: 20, rate: 40/s }\n      - fault: { worker: { crash_at: after-commit, nth: 3 }, which: 0, within: 20s }\n\
         \x20 - fault: { worker: start, which: 0 }\n  - wait: { drained: true, timeout: 60s }\n\
         checks:\n  - deliveries: { lost: 0, duplicated: 0 }\n  - faults_effective: { min: 1 }\n",
    )
    .unwrap();
    let reports = dir.path().join("reports");
    let (code, stdout, stderr) = run(
        &[
            "run",
            file.to_str().unwrap(),
            "--gitspy-bin",
            bin.to_str().unwrap(),
        ],
        &reports,
    );
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    let v = run_json(&reports);
    let f = &v["faults"][0];
    assert_eq!(f["kind"], "worker crash_at after-commit", "{f}");
    assert_eq!(f["outcome"], "applied");
    assert!(
        f["note"]
            .as_str()
            .unwrap()
            .contains("failpoint after-commit fired"),
        "{f}"
    );
    assert!(!f["hit"]["pending"].as_array().unwrap().is_empty(), "{f}");
}
