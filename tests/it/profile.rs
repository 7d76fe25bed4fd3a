//! Target profiles in real runs: the same scenario against the real GitSpy, once with GitSpy's
//! names (the default profile) and once with a second, differently named profile. GitSpy's
//! names are compile-time constants, so the second profile cannot match it; what this proves is
//! that the run reads every name from the profile — the Redis probe's state keys and the metric
//! names behind the checks — and never from a literal of its own. (The probe and the metric
//! reading against keys and an exposition that really are in the other naming:
//! `probe_redis::a_second_profile_drives_the_probe_and_the_metric_names`.)

use std::path::Path;
use std::process::Command;

use crate::util::root;

const SCENARIO: &str = "\
name: profile-e2e
description: a few deliveries, read through the profile the scenario names
seed: 3
target:
  redis: { backend: process }
  workers: 1
PROFILE
steps:
  - send: { count: 8, rate: 50/s }
  - wait: { drained: true, timeout: 60s }
checks:
  - deliveries: { lost: 0, duplicated: 0, unexpected: 0, failed: 0, unacknowledged: 0 }
  - processed_matches_store
";

/// Runs `scenario.yaml` of `dir` and returns (exit code, run.json).
fn run(dir: &Path, extra: &[&str]) -> (i32, serde_json::Value) {
    let reports = dir.join("reports");
    let bin = std::path::PathBuf::from(env!("CARGO_BIN_EXE_gitspy-chaos")).with_file_name("gitspy");
    assert!(bin.is_file(), "build gitspy first: cargo build -p gitspy");
    let out = Command::new(env!("CARGO_BIN_EXE_gitspy-chaos"))
        .arg("run")
        .arg(dir.join("scenario.yaml"))
        .args(extra)
        .arg("--report-dir")
        .arg(&reports)
        .current_dir(root())
        .env("GITSPY_BIN", &bin)
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .output()
        .expect("gitspy-chaos runs");
    let code = out.status.code().unwrap_or(-1);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let run_dir = std::fs::read_dir(&reports)
        .unwrap_or_else(|e| panic!("no report dir ({e}); stderr:\n{stderr}"))
        .flatten()
        .next()
        .expect("one run directory")
        .path();
    let json = std::fs::read_to_string(run_dir.join("run.json")).expect("run.json");
    (code, serde_json::from_str(&json).expect("run.json parses"))
}

fn check<'a>(run: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    run["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no check {name} in {}", run["checks"]))
}

#[test]
fn a_second_profile_drives_a_real_run_its_probe_and_its_metric_checks() {
    // GitSpy's names: the run passes and the probe counts the processed states.
    let own = tempfile::tempdir().unwrap();
    std::fs::write(
        own.path().join("scenario.yaml"),
        SCENARIO.replace("PROFILE\n", ""),
    )
    .unwrap();
    let (code, gitspy) = run(own.path(), &[]);
    assert_eq!(code, 0, "{}", gitspy["checks"]);
    assert_eq!(gitspy["probe"]["states"]["processed"], 8);
    assert_eq!(check(&gitspy, "processed_matches_store")["passed"], true);

    // A second system's names, from `target.profile` (relative to the scenario file).
    let other = tempfile::tempdir().unwrap();
    std::fs::write(
        other.path().join("scenario.yaml"),
        SCENARIO.replace("PROFILE\n", "  profile: acme.yaml\n"),
    )
    .unwrap();
    std::fs::write(
        other.path().join("acme.yaml"),
        "name: acme-hooks\n\
         redis: { state_key: \"acme:{id}:st\", lock_key: \"acme:{id}:lk\" }\n\
         metrics: { jobs_processed: acme_jobs_done_total }\n",
    )
    .unwrap();
    let (code, acme) = run(other.path(), &[]);
    // The deliveries are judged from GitSpy's HTTP answers, the same under any profile...
    for class in ["lost", "duplicated", "unexpected", "unacknowledged"] {
        assert_eq!(
            check(&acme, &format!("deliveries.{class}"))["passed"],
            true,
            "{}",
            acme["checks"]
        );
    }
    // ...but the probe looked for acme's state keys and the processed count for acme's metric:
    // GitSpy has neither, so the probe finds no state and the metric check cannot pass.
    assert_eq!(
        acme["probe"]["states"],
        serde_json::json!({}),
        "{}",
        acme["probe"]
    );
    assert_eq!(
        check(&acme, "processed_matches_store")["passed"],
        false,
        "{}",
        acme["checks"]
    );
    assert_eq!(code, 1);

    // `--profile` wins over the scenario's; a profile that does not load is "could not run".
    let missing = other.path().join("missing.yaml");
    let out = Command::new(env!("CARGO_BIN_EXE_gitspy-chaos"))
        .arg("run")
        .arg(other.path().join("scenario.yaml"))
        .arg("--profile")
        .arg(&missing)
        .arg("--report-dir")
        .arg(other.path().join("reports-missing"))
        .env("NO_COLOR", "1")
        .output()
        .expect("gitspy-chaos runs");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot read the target profile") && stderr.contains("missing.yaml"),
        "{stderr}"
    );
}
