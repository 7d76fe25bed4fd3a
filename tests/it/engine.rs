//! `gitspy-chaos run` end to end against the real GitSpy binary and a real redis-server:
//! the verdict is right both ways, reports validate against the schema, and nothing is left
//! behind — after success, after a failed check, after Ctrl-C, after a panic, and (with
//! `cleanup`) after the harness itself was SIGKILLed.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::root;

fn gitspy_bin() -> PathBuf {
    let me = PathBuf::from(env!("CARGO_BIN_EXE_gitspy-chaos"));
    let bin = me.with_file_name("gitspy");
    assert!(
        bin.is_file(),
        "{} is missing: build it with `cargo build -p gitspy` (scripts/test.sh does)",
        bin.display()
    );
    bin
}

fn chaos_cmd(args: &[&str], report_dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_gitspy-chaos"));
    c.args(args)
        .arg("--report-dir")
        .arg(report_dir)
        .current_dir(root())
        .env("GITSPY_BIN", gitspy_bin())
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG");
    c
}

struct Ran {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run(args: &[&str], report_dir: &Path, extra_env: &[(&str, &str)]) -> Ran {
    let mut c = chaos_cmd(args, report_dir);
    for (k, v) in extra_env {
        c.env(k, v);
    }
    let out = c.output().expect("gitspy-chaos runs");
    Ran {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The single run directory written under `report_dir`.
fn run_json(report_dir: &Path) -> serde_json::Value {
    let dirs: Vec<_> = std::fs::read_dir(report_dir).unwrap().flatten().collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    let text = std::fs::read_to_string(dirs[0].path().join("run.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("schema/run.schema.json")).unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&v)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "run.json does not match the schema: {errors:?}"
    );
    for f in ["report.md", "report.html", "junit.xml"] {
        assert!(dirs[0].path().join(f).is_file(), "{f} missing");
    }
    v
}

/// Processes whose command line or environment mention `dir` (GitSpy's GITSPY_DB, redis --dir).
fn procs_mentioning(dir: &Path) -> Vec<(u32, String)> {
    let want = dir.display().to_string();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        let text = format!(
            "{}\n{}",
            String::from_utf8_lossy(&cmd),
            String::from_utf8_lossy(&env)
        );
        if text.contains(&want) {
            out.push((pid, String::from_utf8_lossy(&cmd).replace('\0', " ")));
        }
    }
    out
}

fn assert_nothing_left(dir: &Path) {
    // Processes exit asynchronously after SIGKILL; give them a moment, then insist.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = procs_mentioning(dir);
        if left.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "processes left behind: {left:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

const SMALL: &str = "tests/it/scenarios/e2e-small.yaml";

#[test]
fn a_small_scenario_passes_against_the_real_gitspy_and_leaves_nothing_behind() {
    let reports = tempfile::tempdir().unwrap();
    let r = run(&["run", SMALL, "--backend", "process"], reports.path(), &[]);
    assert_eq!(r.code, 0, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("PASSED e2e-small"), "{}", r.stdout);
    let v = run_json(reports.path());
    assert_eq!(v["verdict"], "passed");
    assert_eq!(v["ledger"]["classes"]["duplicated"]["count"], 0);
    assert_eq!(v["ledger"]["classes"]["lost"]["count"], 0);
    // The outage rejected 5 deliveries that the redelivery recovered.
    assert_eq!(
        v["ledger"]["classes"]["recovered"]["count"], 5,
        "{}",
        v["ledger"]
    );
    assert!(
        v["ledger"]["duplicates"].as_u64().unwrap() > 0,
        "the scenario sends duplicates"
    );
    let faults: Vec<String> = v["faults"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            format!(
                "{} of {}",
                f["kind"].as_str().unwrap(),
                f["target"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        faults,
        [
            "worker kill of worker-0",
            "server restart of server",
            "redis stop of redis",
            "worker kill of worker-1",
            "redis stop of redis"
        ],
        "{faults:?}"
    );
    // The typed fault log: a kill is a crash fault, applied, with what it hit measured.
    let kill = &v["faults"][0];
    assert_eq!(kill["outcome"], "applied");
    assert_eq!(kill["crash"], true);
    assert!(kill["hit"]["pending"].is_array(), "{kill}");
    assert!(kill["requested_ms"].as_u64().unwrap() <= kill["start_ms"].as_u64().unwrap());
    // Every fault window is closed: the last two were undone by the harness at the end.
    assert!(
        v["faults"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| !f["end_ms"].is_null()),
        "{}",
        v["faults"]
    );
    let server = v["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["role"] == "server")
        .unwrap();
    assert_eq!(server["restarts"], 1);
    assert_nothing_left(reports.path());
}

#[test]
fn the_same_scenario_fails_with_duplicates_when_gitspy_does_not_dedupe() {
    let reports = tempfile::tempdir().unwrap();
    // Test-only switch: the managed GitSpy runs with GITSPY_TEST_DISABLE_DEDUPE (every duplicate
    // check off), which is exactly the bug the harness exists to catch.
    let r = run(
        &["run", SMALL, "--backend", "process"],
        reports.path(),
        &[("GITSPY_CHAOS_TEST_TARGET_NO_DEDUPE", "1")],
    );
    assert_eq!(r.code, 1, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    let v = run_json(reports.path());
    assert_eq!(v["verdict"], "failed");
    let dup = v["ledger"]["classes"]["duplicated"]["count"]
        .as_u64()
        .unwrap();
    assert!(dup > 0, "{}", v["ledger"]);
    let check = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "deliveries.duplicated")
        .unwrap();
    assert_eq!(check["passed"], false);
    assert_eq!(check["measured"].as_f64(), Some(dup as f64));
    assert_nothing_left(reports.path());
}

fn spawn_run(scenario: &str, report_dir: &Path, extra: &[(&str, &str)]) -> std::process::Child {
    let mut c = chaos_cmd(&["run", scenario, "--backend", "process"], report_dir);
    for (k, v) in extra {
        c.env(k, v);
    }
    c.stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits until the run has started its system (a gitspy worker mentions the report dir).
fn wait_system_up(dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while procs_mentioning(dir).len() < 3 {
        assert!(
            Instant::now() < deadline,
            "the run never started its system"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

const SLOW: &str = "tests/it/scenarios/slow.yaml";

#[test]
fn ctrl_c_tears_everything_down() {
    let reports = tempfile::tempdir().unwrap();
    let mut child = spawn_run(SLOW, reports.path(), &[]);
    wait_system_up(reports.path());
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(2));
    assert_nothing_left(reports.path());
    // A partial report, marked interrupted, in every format.
    let v = run_json(reports.path());
    assert_eq!(v["interrupted"], true);
    assert_eq!(v["verdict"], "error");
    let run_dir = std::fs::read_dir(reports.path())
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    for f in ["report.md", "report.html", "junit.xml"] {
        let text = std::fs::read_to_string(run_dir.join(f)).unwrap();
        assert!(text.contains("interrupted (Ctrl-C)"), "{f}: {text}");
    }
}

#[test]
fn a_panic_in_a_step_still_tears_everything_down() {
    let reports = tempfile::tempdir().unwrap();
    let child = spawn_run(
        SMALL,
        reports.path(),
        &[("GITSPY_CHAOS_TEST_PANIC_AT_STEP", "2")],
    );
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let v = run_json(reports.path());
    let steps = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "steps")
        .unwrap();
    assert_eq!(steps["passed"], false);
    assert_nothing_left(reports.path());
}

#[test]
fn cleanup_undoes_what_a_killed_harness_left() {
    let reports = tempfile::tempdir().unwrap();
    let mut child = spawn_run(SLOW, reports.path(), &[]);
    wait_system_up(reports.path());
    // Redis is stopped by the scenario's first fault; wait until the steps got there.
    std::thread::sleep(Duration::from_secs(2));
    child.kill().unwrap();
    child.wait().unwrap();
    // The killed harness could not tear down; its run file says what it had started.
    let runs = std::env::temp_dir().join("gitspy-chaos/runs");
    let recorded = std::fs::read_dir(&runs).unwrap().flatten().any(|e| {
        std::fs::read_to_string(e.path())
            .unwrap_or_default()
            .contains(&reports.path().display().to_string())
    });
    assert!(
        recorded,
        "no run file in {} mentions the run",
        runs.display()
    );
    let out = Command::new(env!("CARGO_BIN_EXE_gitspy-chaos"))
        .arg("cleanup")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("of run"), "{stdout}");
    assert_nothing_left(reports.path());
}

#[test]
fn a_docker_backed_run_passes_and_removes_its_container() {
    let docker_ps = || {
        let out = Command::new("docker")
            .args([
                "ps",
                "-a",
                "--filter",
                "name=^/gitspy-chaos-e2e-redis$",
                "--format",
                "{{.Names}} {{.Status}}",
            ])
            .output()
            .expect("the docker CLI runs (apt-get install -y docker.io; scripts/setup-docker.sh)");
        assert!(
            out.status.success(),
            "docker ps failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let reports = tempfile::tempdir().unwrap();
    let r = run(
        &["run", "tests/it/scenarios/e2e-docker.yaml"],
        reports.path(),
        &[],
    );
    assert_eq!(r.code, 0, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    let v = run_json(reports.path());
    assert!(
        v["target"]["redis_backend"]
            .as_str()
            .unwrap()
            .starts_with("docker"),
        "{}",
        v["target"]
    );
    let kinds: Vec<String> = v["faults"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let (kind, target) = (f["kind"].as_str().unwrap(), f["target"].as_str().unwrap());
            if kind.starts_with("worker") {
                format!("{target} kill")
            } else {
                kind.to_string()
            }
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "worker-0 kill",
            "server restart",
            "redis pause",
            "redis stop",
            "worker-1 kill",
            "redis stop"
        ]
    );
    assert_eq!(docker_ps(), "", "the run's Redis container is still there");
    assert_nothing_left(reports.path());
}

#[test]
fn the_same_seed_gives_the_same_fault_plan_and_payload_sequence() {
    let plan = |seed: &str| {
        let reports = tempfile::tempdir().unwrap();
        let r = run(
            &[
                "run",
                "tests/it/scenarios/seeded.yaml",
                "--backend",
                "process",
                "--seed",
                seed,
            ],
            reports.path(),
            &[],
        );
        assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
        let v = run_json(reports.path());
        assert_eq!(v["scenario"]["seed"].as_u64(), Some(seed.parse().unwrap()));
        let targets: Vec<String> = v["faults"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["target"].as_str().unwrap().to_string())
            .collect();
        let dir = std::fs::read_dir(reports.path())
            .unwrap()
            .flatten()
            .next()
            .unwrap()
            .path();
        let ledger: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("ledger.json")).unwrap()).unwrap();
        // Ids carry a per-run nonce; the sequence of events and duplicate pattern must not differ.
        let seq: Vec<String> = ledger["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                format!(
                    "{} {}",
                    e["event"].as_str().unwrap(),
                    e["duplicate_of"].is_null()
                )
            })
            .collect();
        let nonce = ledger["entries"][0]["delivery"]
            .as_str()
            .unwrap()
            .split('-')
            .next()
            .unwrap()
            .to_string();
        (targets, seq, nonce)
    };
    let (t1, s1, n1) = plan("42");
    let (t2, s2, n2) = plan("42");
    assert_eq!(t1, t2, "fault targets differ for the same seed");
    assert_eq!(s1, s2, "payload sequence differs for the same seed");
    assert_ne!(n1, n2, "two runs must not share delivery ids");
    assert_eq!(t1.len(), 4);
}

#[test]
fn doctor_reports_docker_redis_server_and_the_gitspy_binary() {
    let out = Command::new(env!("CARGO_BIN_EXE_gitspy-chaos"))
        .arg("doctor")
        .env("GITSPY_BIN", gitspy_bin())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for what in ["docker", "redis-server", "gitspy binary", "API"] {
        assert!(
            stdout.contains(what),
            "doctor does not mention {what}:\n{stdout}"
        );
    }
}

/// A healthy GitSpy raises no alarm in the runs that used to fail with hand-set tolerances:
/// Redis paused 5 s under a steady flood, a worker stopped gracefully for 40 s while webhooks
/// arrive, the server restarted mid-flood with duplicates.
fn healthy(scenario: &str) {
    let reports = tempfile::tempdir().unwrap();
    let path = format!("tests/it/scenarios/{scenario}.yaml");
    let r = run(&["run", &path], reports.path(), &[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let v = run_json(reports.path());
    let failed: Vec<&serde_json::Value> = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["passed"] != true)
        .collect();
    assert!(failed.is_empty(), "{failed:?}");
    let names = crate::util::check_names(&v, false);
    for must in [
        "processed_matches_store",
        "board_matches_model",
        "duplicate_answers",
    ] {
        assert!(names.contains(&must), "{must} missing from {names:?}");
    }
}

#[test]
fn healthy_redis_paused_under_a_flood_raises_no_alarm() {
    healthy("healthy-redis-pause");
}

#[test]
fn healthy_worker_stopped_for_40s_raises_no_alarm() {
    healthy("healthy-worker-stop");
}

#[test]
fn healthy_server_restarted_mid_flood_with_duplicates_raises_no_alarm() {
    healthy("healthy-server-restart");
}

/// Network faults end to end: every link of the managed run goes through a proxy (recorded
/// with its real address), a server↔Redis partition makes ingress answer 503 and holds what
/// GitSpy sent, a latency toxic delays the worker's traffic, a toxic left in force is healed
/// before the final drain, and every delivery ends processed exactly once.
#[test]
fn network_faults_act_on_the_proxied_links_and_are_logged_with_what_they_hit() {
    let reports = tempfile::tempdir().unwrap();
    let r = run(
        &[
            "run",
            "tests/it/scenarios/e2e-network.yaml",
            "--backend",
            "process",
        ],
        reports.path(),
        &[],
    );
    assert_eq!(r.code, 0, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    let v = run_json(reports.path());
    let links = v["target"]["links"].as_array().expect("target.links");
    let names: Vec<&str> = links.iter().filter_map(|l| l["name"].as_str()).collect();
    assert_eq!(names, ["server-redis", "sender-server", "worker-0-redis"]);
    for l in links {
        assert_ne!(l["listen"], l["upstream"], "{l}");
    }
    let faults = v["faults"].as_array().expect("faults");
    let by_kind = |k: &str| {
        faults
            .iter()
            .find(|f| f["kind"] == k)
            .unwrap_or_else(|| panic!("no {k} in {faults:?}"))
    };
    let part = by_kind("network partition");
    assert_eq!(part["target"], "network server-redis");
    assert_eq!(part["outcome"], "applied");
    let net = &part["hit"]["network"];
    assert!(
        net["bytes_held"].as_u64().unwrap() > 0 || net["held_connections"].as_u64().unwrap() > 0,
        "the partition held nothing: {net}"
    );
    assert!(
        part["hit"]["rejected"].as_u64().unwrap() > 0,
        "no webhook was refused during the partition: {part}"
    );
    assert!(part["end_ms"].as_u64().unwrap() > part["start_ms"].as_u64().unwrap());
    let lat = by_kind("network latency");
    assert!(
        lat["hit"]["network"]["bytes_delayed"].as_u64().unwrap() > 0,
        "{lat}"
    );
    // The sender's link was left partitioned: healed by the final heal, before the drain.
    let left = faults
        .iter()
        .find(|f| f["target"] == "network sender-server")
        .expect("the partition left in force");
    assert!(left["end_ms"].is_u64(), "never healed: {left}");
    assert_eq!(v["verdict"], "passed");
    assert_eq!(v["ledger"]["classes"]["lost"]["count"], 0);
    assert_eq!(v["ledger"]["classes"]["duplicated"]["count"], 0);
}
