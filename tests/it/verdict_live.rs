//! The verdict against real runs, both ways: a correct GitSpy passes, a broken one fails the
//! check that should catch it. Poison deliveries end `poisoned`; a spooled record that never
//! leaves the spool (`spool-stuck-last`, a `gitspy --features failpoints,sabotage` build from
//! `GITSPY_SABOTAGE_BIN` or built as `explore.rs` does) fails the backlog check; a scenario that
//! lists no data check is still judged by the baseline ones.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::{check_names, root};

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

/// Runs `scenario` on the process backend with `bin`; exit code and run.json.
fn run(scenario: &str, bin: &Path, extra: &[&str]) -> (i32, serde_json::Value, String) {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_gitspy-chaos"))
        .args(["run", scenario, "--backend", "process", "--report-dir"])
        .arg(dir.path())
        .arg("--gitspy-bin")
        .arg(bin)
        .args(extra)
        .current_dir(root())
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .output()
        .expect("gitspy-chaos runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let run_dir = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .next()
        .unwrap_or_else(|| panic!("no run directory: {stderr}"));
    let text = std::fs::read_to_string(run_dir.path().join("run.json")).unwrap();
    (
        out.status.code().unwrap_or(-1),
        serde_json::from_str(&text).unwrap(),
        stderr,
    )
}

fn check<'a>(run: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    run["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name}: {run}"))
}

#[test]
fn poison_deliveries_are_dead_lettered_and_judged_poisoned_not_failed() {
    let (code, v, stderr) = run("tests/it/scenarios/poison.yaml", &gitspy_bin(), &[]);
    assert_eq!(code, 0, "{stderr}\n{:#}", v["checks"]);
    let classes = &v["ledger"]["classes"];
    assert_eq!(classes["poisoned"]["count"], 2, "{classes}");
    assert_eq!(classes["failed"]["count"], 0, "{classes}");
    assert_eq!(classes["ok"]["count"], 10, "{classes}");
    // Each poison went through both attempts before its dead letter.
    assert_eq!(check(&v, "failed")["measured"], 2.0, "{:#}", v["checks"]);
    let send = &v["steps"][0]["send"];
    assert_eq!(send["done"]["distinct_ids"], 12, "{send}");
}

#[test]
fn a_spooled_record_that_never_leaves_the_spool_fails_the_backlog_check() {
    let scenario = "tests/it/scenarios/spool-stuck.yaml";
    // A correct build drains its spool: the same run passes.
    let (code, v, stderr) = run(scenario, &gitspy_bin(), &[]);
    assert_eq!(code, 0, "{stderr}\n{:#}", v["checks"]);
    assert_eq!(check(&v, "backlog")["passed"], true);

    let Some(bin) = crate::explore::sabotage_bin() else {
        return;
    };
    let (code, v, stderr) = run(
        scenario,
        &bin,
        &["--target-env", "GITSPY_SABOTAGE=spool-stuck-last"],
    );
    assert_eq!(code, 1, "{stderr}\n{:#}", v["checks"]);
    let backlog = check(&v, "backlog");
    assert_eq!(backlog["passed"], false, "{backlog}");
    assert!(
        backlog["note"].as_str().unwrap_or("").contains("backlog"),
        "{backlog}"
    );
    // The stuck record is still `spooled`: acknowledged and never processed.
    let classes = &v["ledger"]["classes"];
    assert!(
        classes["lost"]["count"].as_u64().unwrap_or(0) >= 1,
        "{classes}"
    );
    assert_eq!(classes["duplicated"]["count"], 0, "{classes}");
}

#[test]
fn a_scenario_that_lists_no_data_check_is_still_judged_by_the_baseline() {
    let scenario = "tests/it/scenarios/baseline.yaml";
    // A correct build: every baseline check is there, marked as such, and passes.
    let (code, v, stderr) = run(scenario, &gitspy_bin(), &[]);
    assert_eq!(code, 0, "{stderr}\n{:#}", v["checks"]);
    for name in [
        "deliveries.lost",
        "deliveries.duplicated",
        "deliveries.unexpected",
        "board_matches_model",
        "duplicate_answers",
        "processed_matches_store",
        "no_stuck_locks",
    ] {
        let c = check(&v, name);
        assert_eq!(c["passed"], true, "{c}");
        assert!(c["note"].as_str().unwrap_or("").contains("baseline"), "{c}");
    }
    assert!(
        check(&v, "duplicate_answers")["note"]
            .as_str()
            .unwrap_or("")
            .starts_with("6 acknowledged request(s)"),
        "{}",
        check(&v, "duplicate_answers")
    );

    let Some(bin) = crate::explore::sabotage_bin() else {
        return;
    };
    let broken = ["--target-env", "GITSPY_SABOTAGE=enqueue-duplicates"];
    let (code, v, stderr) = run(scenario, &bin, &broken);
    assert_eq!(code, 1, "{stderr}\n{:#}", v["checks"]);
    let dup = check(&v, "duplicate_answers");
    assert_eq!(dup["passed"], false, "{dup}");
    assert_eq!(dup["measured"], 6.0, "{dup}");
    assert_eq!(check(&v, "backlog")["passed"], true, "{:#}", v["checks"]);

    // `baseline: false` judges only what is listed: the same broken build passes the backlog
    // bound alone — which is why the baseline is on unless a scenario says otherwise.
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(root().join(scenario)).unwrap();
    let off = dir.path().join("baseline-off.yaml");
    std::fs::write(
        &off,
        text.replace("checks:\n", "checks:\n  - baseline: false\n"),
    )
    .unwrap();
    let (code, v, stderr) = run(off.to_str().unwrap(), &bin, &broken);
    assert_eq!(check_names(&v, false), ["backlog"], "{stderr}");
    assert_eq!(code, 0, "{stderr}\n{:#}", v["checks"]);
}

#[test]
fn a_server_whose_counters_miss_the_webhooks_it_spooled_fails_ingress_accounting() {
    let scenario = "tests/it/scenarios/spool-stuck.yaml";
    let Some(bin) = crate::explore::sabotage_bin() else {
        return;
    };
    // The same binary unsabotaged: every 202 (queued or spooled) counted once.
    let (code, v, stderr) = run(scenario, &bin, &[]);
    assert_eq!(code, 0, "{stderr}\n{:#}", v["checks"]);
    let ingress = check(&v, "ingress_matches_ledger");
    assert_eq!(ingress["passed"], true, "{ingress}");
    assert!(
        ingress["note"]
            .as_str()
            .unwrap_or("")
            .starts_with("counted/answered: received 11/11"),
        "{ingress}"
    );

    let (code, v, stderr) = run(
        scenario,
        &bin,
        &["--target-env", "GITSPY_SABOTAGE=uncounted-spooled"],
    );
    assert_eq!(code, 1, "{stderr}\n{:#}", v["checks"]);
    let ingress = check(&v, "ingress_matches_ledger");
    assert_eq!(ingress["passed"], false, "{ingress}");
    assert_eq!(ingress["measured"], 6.0, "{ingress}");
    assert!(
        ingress["note"]
            .as_str()
            .unwrap_or("")
            .contains("6 never counted"),
        "{ingress}"
    );
    // Nothing else is wrong with that build: the data is intact.
    assert_eq!(
        check_names(&v, true),
        ["ingress_matches_ledger"],
        "{:#}",
        v["checks"]
    );
}
