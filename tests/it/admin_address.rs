//! The harness against a GitSpy whose public address serves only `POST /webhooks`
//! (`GITSPY_ADMIN_ADDR`): in managed mode (`target.admin_address: true`) and in attach mode
//! (`target.attach.admin_url`), webhooks go to the public address and every lookup, board read,
//! readiness probe and scrape to the admin address. Were any read sent to the public address, it
//! would get a 404 and the run could not pass.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::util::root;

struct Kill(Vec<Child>);
impl Drop for Kill {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn gitspy_bin() -> PathBuf {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_gitspy-chaos")).with_file_name("gitspy");
    assert!(bin.is_file(), "build gitspy first: cargo build -p gitspy");
    bin
}

/// Starts `gitspy <args>` and returns it with its first `lines` stdout lines.
fn gitspy(args: &[&str], env: &[(&str, String)], lines: usize) -> (Child, Vec<String>) {
    let mut c = Command::new(gitspy_bin());
    c.args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .env("NO_COLOR", "1");
    for (k, v) in env {
        c.env(k, v);
    }
    let mut child = c.spawn().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut got = Vec::new();
    for _ in 0..lines {
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        got.push(line.trim().to_string());
    }
    // Keep the pipe drained so the process never blocks on a full stdout.
    std::thread::spawn(move || for _ in out.lines() {});
    (child, got)
}

fn addr_of(line: &str, prefix: &str) -> String {
    line.strip_prefix(prefix)
        .unwrap_or_else(|| panic!("line `{line}` lacks `{prefix}`"))
        .to_string()
}

fn run(scenario: &Path, reports: &Path, secret: Option<&str>) -> (i32, String, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_gitspy-chaos"));
    c.arg("run")
        .arg(scenario)
        .arg("--report-dir")
        .arg(reports)
        .current_dir(root())
        .env("GITSPY_BIN", gitspy_bin())
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG");
    if let Some(s) = secret {
        c.env("GITHUB_WEBHOOK_SECRET", s);
    }
    let out = c.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn run_json(reports: &Path) -> serde_json::Value {
    let dir = std::fs::read_dir(reports)
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    serde_json::from_slice(&std::fs::read(dir.join("run.json")).unwrap()).unwrap()
}

#[test]
fn managed_mode_with_an_admin_address_reads_there_and_passes() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("admin.yaml");
    std::fs::write(
        &file,
        r#"name: admin-managed
description: managed server with an admin address; a worker kill and a server restart
seed: 3
target:
  redis: { backend: process }
  workers: 2
  admin_address: true
observe:
  poll_interval: 1s
steps:
  - send: { count: 20, rate: 50/s, duplicates: { copies: 2, fraction: 0.2 } }
  - wait: { drained: true, timeout: 60s }
  - fault: { server: restart }
  - send: { count: 10, rate: 50/s }
  - wait: { drained: true, timeout: 60s }
checks:
  - deliveries: { lost: 0, duplicated: 0, unexpected: 0, failed: 0, unacknowledged: 0 }
  - processed_matches_store
  - board_matches_model
  - duplicate_answers
  - faults_effective: { min: 0 }
"#,
    )
    .unwrap();
    let reports = dir.path().join("reports");
    let (code, stdout, stderr) = run(&file, &reports, None);
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    let v = run_json(&reports);
    assert_eq!(v["ledger"]["classes"]["ok"]["count"], 30, "{}", v["ledger"]);
}

#[test]
fn attach_mode_sends_to_the_public_address_and_reads_the_admin_address() {
    let dir = tempfile::tempdir().unwrap();
    let redis = crate::util::Redis::start();
    let redis_url = redis.url.trim_end_matches('/').to_owned();
    let db = dir.path().join("gitspy.db").display().to_string();
    let mut kids = Kill(Vec::new());
    let (server, lines) = gitspy(
        &["serve"],
        &[
            ("REDIS_URL", redis_url.clone()),
            ("GITSPY_DB", db.clone()),
            ("GITSPY_LISTEN", "127.0.0.1:0".into()),
            ("GITSPY_ADMIN_ADDR", "127.0.0.1:0".into()),
            ("GITHUB_WEBHOOK_SECRET", "admin-secret".into()),
        ],
        2,
    );
    kids.0.push(server);
    let public = addr_of(&lines[0], "listening on ");
    let admin = addr_of(&lines[1], "admin listening on ");
    let (worker, wl) = gitspy(
        &["worker"],
        &[
            ("REDIS_URL", redis_url.clone()),
            ("GITSPY_DB", db),
            ("WORKER_METRICS_PORT", "0".into()),
        ],
        1,
    );
    kids.0.push(worker);
    let worker_url = addr_of(&wl[0], "listening on ");
    let scenario = |admin_lines: &str| {
        format!(
            r#"name: admin-attach
description: attach to a server whose public address serves only webhooks
seed: 4
target:
  redis: {{ backend: external, url: "{redis_url}" }}
  workers: 1
  attach:
    server_url: "{public}"
{admin_lines}    worker_metrics_urls: ["{worker_url}/metrics/prom"]
observe:
  poll_interval: 1s
steps:
  - send: {{ count: 20, rate: 50/s }}
  - wait: {{ drained: true, timeout: 60s }}
checks:
  - deliveries: {{ lost: 0, duplicated: 0, unexpected: 0, failed: 0 }}
  - board_matches_model
"#
        )
    };
    let with_admin = dir.path().join("with.yaml");
    std::fs::write(
        &with_admin,
        scenario(&format!(
            "    admin_url: \"{admin}\"\n    server_metrics_urls: [\"{admin}/metrics/prom\"]\n"
        )),
    )
    .unwrap();
    let reports = dir.path().join("reports");
    let (code, stdout, stderr) = run(&with_admin, &reports, Some("admin-secret"));
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    let v = run_json(&reports);
    assert_eq!(v["ledger"]["classes"]["ok"]["count"], 20, "{}", v["ledger"]);

    // Without `admin_url` the harness reads the public address, which answers 404 to /readyz:
    // it cannot run (exit 2) rather than passing blind.
    let without = dir.path().join("without.yaml");
    std::fs::write(&without, scenario("")).unwrap();
    let (code, stdout, stderr) = run(&without, &dir.path().join("r2"), Some("admin-secret"));
    assert_eq!(code, 2, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stderr.contains("/readyz"), "{stderr}");
}
