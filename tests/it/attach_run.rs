//! `run` in attach mode against a GitSpy the test started itself (not the harness): the harness
//! signs with the deployment's secret, observes it by URL, and kills a worker it matched by
//! executable and environment marker — and only that worker.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Kill(Vec<Child>);
impl Drop for Kill {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Starts `gitspy <args>` and returns it with the address from its first stdout line.
fn gitspy(bin: &Path, args: &[&str], env: &[(&str, String)]) -> (Child, String) {
    let mut c = Command::new(bin);
    c.args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .env("NO_COLOR", "1");
    for (k, v) in env {
        c.env(k, v);
    }
    let mut child = c.spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("first line `{line}`"))
        .to_string();
    (child, addr)
}

#[test]
fn attach_mode_drives_a_system_it_did_not_start_and_kills_only_the_matched_worker() {
    let bin = std::path::PathBuf::from(env!("CARGO_BIN_EXE_gitspy-chaos")).with_file_name("gitspy");
    assert!(bin.is_file(), "build gitspy first: cargo build -p gitspy");
    let dir = tempfile::tempdir().unwrap();
    let redis = crate::util::Redis::start();
    let redis_url = redis.url.trim_end_matches('/').to_owned();
    let mut kids = Kill(Vec::new());
    let db = dir.path().join("gitspy.db").display().to_string();
    let marker = format!("t-{}", std::process::id());
    let common = vec![("REDIS_URL", redis_url.clone()), ("GITSPY_DB", db)];
    let mut env = common.clone();
    env.extend([
        ("GITSPY_LISTEN", "127.0.0.1:0".to_string()),
        ("GITHUB_WEBHOOK_SECRET", "attach-secret".to_string()),
    ]);
    let (server, server_addr) = gitspy(&bin, &["serve"], &env);
    kids.0.push(server);
    let mut worker_urls = Vec::new();
    let mut worker_pids = Vec::new();
    for i in 0..2 {
        let mut env = common.clone();
        env.push(("WORKER_METRICS_PORT", "0".into()));
        // Only worker 0 carries the marker: the harness may kill it, never worker 1.
        if i == 0 {
            env.push(("GITSPY_CHAOS_TARGET", marker.clone()));
        }
        let (w, addr) = gitspy(&bin, &["worker"], &env);
        worker_pids.push(w.id());
        worker_urls.push(format!("{addr}/metrics/prom"));
        kids.0.push(w);
    }
    let scenario = format!(
        r#"name: attach-test
description: attach mode self-test
seed: 5
target:
  redis: {{ backend: external, url: "{redis_url}" }}
  workers: 2
  attach:
    server_url: "{server_addr}"
    worker_metrics_urls: ["{w0}", "{w1}"]
    worker_process: {{ executable: gitspy, env_marker: "GITSPY_CHAOS_TARGET={marker}" }}
observe:
  poll_interval: 1s
steps:
  - send: {{ count: 10, rate: 50/s }}
  - wait: {{ drained: true, timeout: 60s }}
  - fault: {{ worker: kill, which: all }}
  - send: {{ count: 10, rate: 50/s }}
  - wait: {{ drained: true, timeout: 60s }}
checks:
  - deliveries: {{ lost: 0, duplicated: 0, unexpected: 0 }}
  - faults_effective: {{ min: 0 }}
"#,
        w0 = worker_urls[0],
        w1 = worker_urls[1],
    );
    let file = dir.path().join("attach.yaml");
    std::fs::write(&file, scenario).unwrap();
    let reports = dir.path().join("reports");
    let out = Command::new(env!("CARGO_BIN_EXE_gitspy-chaos"))
        .arg("run")
        .arg(&file)
        .arg("--report-dir")
        .arg(&reports)
        .env("GITHUB_WEBHOOK_SECRET", "attach-secret")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("PASSED attach-test"), "{stdout}");
    // `which: all` matched exactly one process: the marked worker. The other is untouched.
    let alive = |pid: u32| {
        Path::new(&format!("/proc/{pid}")).exists()
            && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .unwrap_or_default()
                .contains(") Z ")
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(worker_pids[0]) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!alive(worker_pids[0]), "the marked worker survived");
    assert!(alive(worker_pids[1]), "the unmarked worker was signalled");
    let run_dir = std::fs::read_dir(&reports)
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run_dir.join("run.json")).unwrap()).unwrap();
    assert_eq!(v["target"]["kind"], "attached");
    assert_eq!(v["ledger"]["classes"]["ok"]["count"], 20);
}

/// `/proc/<pid>/stat`'s state letter (`T` while stopped), `None` when gone.
fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")
        .and_then(|(_, rest)| rest.chars().next())
}

#[test]
fn attach_mode_freezes_a_worker_holding_work_when_triggered_and_its_entries_are_reclaimed_once() {
    let bin = std::path::PathBuf::from(env!("CARGO_BIN_EXE_gitspy-chaos")).with_file_name("gitspy");
    assert!(bin.is_file(), "build gitspy first: cargo build -p gitspy");
    let dir = tempfile::tempdir().unwrap();
    let redis = crate::util::Redis::start();
    let redis_url = redis.url.trim_end_matches('/').to_owned();
    let mut kids = Kill(Vec::new());
    let db = dir.path().join("gitspy.db").display().to_string();
    let marker = format!("f-{}", std::process::id());
    let common = vec![
        ("REDIS_URL", redis_url.clone()),
        ("GITSPY_DB", db),
        ("GITSPY_LOCK_TTL", "2s".to_string()),
        ("GITSPY_CLAIM_IDLE", "2s".to_string()),
        ("GITSPY_BLOCK", "500ms".to_string()),
        // Each batch takes 100 ms of work, so a worker holds deliveries during the flood.
        ("GITSPY_TEST_PROCESSING_DELAY", "100ms".to_string()),
    ];
    let mut env = common.clone();
    env.extend([
        ("GITSPY_LISTEN", "127.0.0.1:0".to_string()),
        ("GITHUB_WEBHOOK_SECRET", "attach-secret".to_string()),
    ]);
    let (server, server_addr) = gitspy(&bin, &["serve"], &env);
    kids.0.push(server);
    let mut worker_urls = Vec::new();
    let mut worker_pids = Vec::new();
    for i in 0..2 {
        let mut env = common.clone();
        env.push(("WORKER_METRICS_PORT", "0".into()));
        // Named consumers: the harness reads the frozen worker's from its environment.
        env.push(("GITSPY_CONSUMER", format!("{marker}-w{i}")));
        if i == 0 {
            env.push(("GITSPY_CHAOS_TARGET", marker.clone()));
        }
        let (w, addr) = gitspy(&bin, &["worker"], &env);
        worker_pids.push(w.id());
        worker_urls.push(format!("{addr}/metrics/prom"));
        kids.0.push(w);
    }
    let scenario = format!(
        r#"name: attach-freeze
description: attach mode freeze, reclaim and thaw
seed: 6
target:
  redis: {{ backend: external, url: "{redis_url}" }}
  workers: 2
  attach:
    server_url: "{server_addr}"
    worker_metrics_urls: ["{w0}", "{w1}"]
    worker_process: {{ executable: gitspy, env_marker: "GITSPY_CHAOS_TARGET={marker}" }}
observe:
  poll_interval: 1s
steps:
  - send: {{ count: 10, rate: 50/s }}
  - wait: {{ drained: true, timeout: 60s }}
  - parallel:
      - send: {{ count: 60, rate: 30/s, concurrency: 8 }}
      - fault: {{ worker: freeze, which: 0, when: {{ holding: 1 }}, within: 20s }}
  # Past the claim idle: the other worker reclaims what the frozen one held. (Not a drained wait:
  # a worker frozen inside its store transaction holds SQLite's one write lock until it thaws.)
  - sleep: 5s
  - fault: {{ worker: thaw, which: 0 }}
  - sleep: 3s
  - send: {{ count: 10, rate: 50/s }}
  - wait: {{ drained: true, timeout: 60s }}
checks:
  - deliveries: {{ lost: 0, duplicated: 0, unexpected: 0, failed: 0, unacknowledged: 0 }}
  - faults_effective: {{ min: 1 }}
"#,
        w0 = worker_urls[0],
        w1 = worker_urls[1],
    );
    let file = dir.path().join("freeze.yaml");
    std::fs::write(&file, scenario).unwrap();
    let reports = dir.path().join("reports");
    let out = Command::new(env!("CARGO_BIN_EXE_gitspy-chaos"))
        .arg("run")
        .arg(&file)
        .arg("--report-dir")
        .arg(&reports)
        .env("GITHUB_WEBHOOK_SECRET", "attach-secret")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    // Thawed and still running; the unmarked worker never stopped.
    for pid in &worker_pids {
        let state = proc_state(*pid);
        assert!(
            matches!(state, Some(s) if s != 'T' && s != 'Z'),
            "worker {pid} is {state:?}"
        );
    }
    let run_dir = std::fs::read_dir(&reports)
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run_dir.join("run.json")).unwrap()).unwrap();
    let freeze = v["faults"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == "worker freeze")
        .unwrap_or_else(|| panic!("no freeze in {:#}", v["faults"]));
    assert_eq!(freeze["target"], format!("worker pid {}", worker_pids[0]));
    assert_eq!(freeze["trigger"], "holding >= 1", "{freeze}");
    let held = freeze["hit"]["pending"].as_array().map_or(0, Vec::len);
    assert!(held >= 1, "the freeze hit nothing: {freeze}");
    assert!(freeze["end_ms"].is_u64(), "never thawed: {freeze}");
    assert_eq!(v["ledger"]["classes"]["ok"]["count"], 80, "{}", v["ledger"]);
}
