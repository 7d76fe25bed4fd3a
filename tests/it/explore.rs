//! `gitspy-chaos explore` end to end: against a deliberately broken GitSpy (the `sabotage`
//! feature, variant `drop-one-in-twenty`), exploration must find a failing scenario and shrink
//! it to a minimal scenario of at most 4 steps that `validate` accepts.
//!
//! The broken build: `GITSPY_SABOTAGE_BIN` when set (a `gitspy --features failpoints,sabotage`
//! binary), else the test builds it with cargo into `<target>/sabotage` as
//! `scripts/sabotage.sh` does. Only when cargo itself cannot be started is the test skipped,
//! saying so.

use std::path::PathBuf;
use std::process::Command;

pub fn sabotage_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("GITSPY_SABOTAGE_BIN") {
        return Some(PathBuf::from(p));
    }
    let me = PathBuf::from(env!("CARGO_BIN_EXE_gitspy-chaos"));
    let target = me
        .parent()
        .and_then(|d| d.parent())
        .expect("the binary lies in <target>/debug")
        .join("sabotage");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(&cargo)
        .args(["build", "-p", "gitspy", "--features", "failpoints,sabotage"])
        .env("CARGO_TARGET_DIR", &target)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status();
    match status {
        Err(e) => {
            eprintln!(
                "SKIPPED: cargo ({cargo}) cannot be started ({e}), so the sabotage build cannot \
                 be made; set GITSPY_SABOTAGE_BIN to a `gitspy --features failpoints,sabotage` binary"
            );
            None
        }
        Ok(s) => {
            assert!(
                s.success(),
                "building gitspy --features failpoints,sabotage failed"
            );
            Some(target.join("debug").join("gitspy"))
        }
    }
}

#[test]
fn explore_finds_drop_one_in_twenty_and_shrinks_it_to_at_most_four_steps() {
    let Some(bin) = sabotage_bin() else { return };
    let version = Command::new(&bin)
        .arg("--version")
        .output()
        .expect("gitspy --version runs");
    let version = String::from_utf8_lossy(&version.stdout).to_string();
    assert!(
        version.contains("sabotage"),
        "{} is not a sabotage build: {version}",
        bin.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_gitspy-chaos"))
        .args(["explore", "--seed", "1", "--runs", "6", "--budget", "8m"])
        .args([
            "--max-episodes",
            "1",
            "--max-count",
            "40",
            "--confirm",
            "1/1",
        ])
        .args([
            "--shrink-budget",
            "8m",
            "--backend",
            "process",
            "--time-scale",
            "0.5",
        ])
        .arg("--gitspy-bin")
        .arg(&bin)
        .args(["--target-env", "GITSPY_SABOTAGE=drop-one-in-twenty"])
        .arg("--report-dir")
        .arg(dir.path())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("GITSPY_BIN")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "explore found nothing\n{stdout}\n{stderr}"
    );
    let root = dir.path().join("explore-1");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("explore.json")).unwrap()).unwrap();
    let found = summary["found"].as_u64().expect("a failing run is named");
    let run = &summary["runs"][found as usize];
    assert_eq!(run["verdict"], "FAILED", "{run}");
    assert!(run["replay"].as_str().unwrap().contains("--only"), "{run}");
    // Every run of the summary has its own report, written as usual.
    for r in summary["runs"].as_array().unwrap() {
        let report = PathBuf::from(r["report"].as_str().expect("each run has a report"));
        assert!(report.join("run.json").is_file(), "{r}");
    }
    let shrink = &summary["shrink"];
    let steps = shrink["steps"].as_u64().unwrap();
    assert!(steps <= 4, "shrunk to {steps} steps: {shrink}");
    assert_eq!(shrink["confirm"], "1/1");
    let reproduces: Vec<&str> = shrink["reproduces"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(
        reproduces
            .iter()
            .any(|c| c.starts_with("deliveries") || *c == "board_matches_model"),
        "{reproduces:?}"
    );
    // The minimal scenario validates as it is, ready to commit.
    let minimal = root.join("minimal.yaml");
    let v = Command::new(env!("CARGO_BIN_EXE_gitspy-chaos"))
        .arg("validate")
        .arg(&minimal)
        .output()
        .unwrap();
    assert!(
        v.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&v.stderr),
        std::fs::read_to_string(&minimal).unwrap()
    );
    assert!(stdout.contains("minimal scenario"), "{stdout}");
}

#[test]
fn explore_rejects_a_bad_confirm_ratio_with_exit_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_gitspy-chaos"))
        .args(["explore", "--seed", "1", "--confirm", "3/2"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("K/M"));
}
