//! `validate` and `list`: the shipped scenarios are valid, every broken file is refused with
//! `file:line:column`, a message and a hint (snapshots of the exact text), and `list` shows the
//! shipped scenarios.

use crate::util::{chaos, root, yaml_files};

/// Runs `validate` on one broken file, checks the exit code and the shape of every diagnostic,
/// and snapshots stderr.
fn check(file: &str, expect_problems: usize) {
    let path = format!("tests/it/broken/{file}");
    let out = chaos(&["validate", &path]);
    assert_eq!(out.code, 2, "{path} must be refused\n{}", out.stderr);
    assert_eq!(out.stdout, "", "nothing on stdout for a refused file");
    let lines: Vec<&str> = out.stderr.lines().collect();
    let (summary, diagnostics) = lines.split_last().expect("stderr is not empty");
    let plural = if expect_problems == 1 { "" } else { "s" };
    assert_eq!(
        *summary,
        format!("error: {expect_problems} problem{plural} found")
    );
    assert_eq!(diagnostics.len(), 2 * expect_problems, "{}", out.stderr);
    for pair in diagnostics.chunks(2) {
        let rest = pair[0]
            .strip_prefix(&format!("{path}:"))
            .unwrap_or_else(|| panic!("diagnostic starts with the path: {}", pair[0]));
        let mut parts = rest.splitn(3, ':');
        let line: u32 = parts
            .next()
            .and_then(|l| l.parse().ok())
            .expect("a line number");
        let column: u32 = parts.next().and_then(|c| c.parse().ok()).expect("a column");
        assert!(line >= 1 && column >= 1, "{}", pair[0]);
        let message = parts
            .next()
            .and_then(|m| m.strip_prefix(" error: "))
            .expect("` error: `");
        assert!(!message.is_empty() && !message.ends_with('.'), "{message}");
        assert!(
            !message.starts_with(|c: char| c.is_uppercase()),
            "messages start lowercase: {message}"
        );
        let hint = pair[1].strip_prefix("  hint: ").expect("a hint line");
        assert!(!hint.is_empty(), "{}", pair[1]);
    }
    let name = file.trim_end_matches(".yaml");
    insta::assert_snapshot!(name, out.stderr);
}

macro_rules! broken {
    ($($test:ident: $file:literal => $problems:literal,)*) => {
        $(
            #[test]
            fn $test() {
                check($file, $problems);
            }
        )*

        /// Every file in tests/it/broken/ has a test above: a new broken file cannot be added
        /// without saying what it must produce.
        #[test]
        fn every_broken_file_is_checked() {
            let checked = [$($file),*];
            for path in yaml_files("tests/it/broken") {
                let name = path.file_name().and_then(|n| n.to_str()).expect("a file name");
                assert!(checked.contains(&name), "{name} has no test in validate.rs");
            }
            assert_eq!(yaml_files("tests/it/broken").len(), checked.len());
        }
    };
}

broken! {
    yaml_syntax: "yaml-syntax.yaml" => 1,
    verdict_options: "verdict-options.yaml" => 2,
    tab_indentation: "tab-indent.yaml" => 1,
    empty_file: "empty.yaml" => 1,
    no_steps_no_checks: "nothing-to-do.yaml" => 3,
    duplicate_key: "duplicate-key.yaml" => 1,
    unknown_key: "unknown-key.yaml" => 1,
    unknown_step: "unknown-step.yaml" => 1,
    wrong_type: "wrong-type.yaml" => 1,
    bad_duration: "bad-duration.yaml" => 1,
    bad_rate: "bad-rate.yaml" => 1,
    negative_and_zero_count: "negative-count.yaml" => 3,
    unknown_fault: "unknown-fault.yaml" => 1,
    unknown_event: "unknown-event.yaml" => 1,
    // pause/unpause are SIGSTOP/SIGCONT on the process backend; only `container` is wrong here.
    fault_the_backend_cannot_do: "backend-cannot.yaml" => 1,
    profile_that_does_not_load: "bad-profile.yaml" => 1,
    external_redis_takes_no_fault: "external-no-faults.yaml" => 2,
    missing_target: "missing-target.yaml" => 1,
    missing_nested_key: "missing-nested-key.yaml" => 1,
    mark_used_but_never_set: "mark-never-set.yaml" => 2,
    mark_in_a_parallel_branch_is_not_set_for_its_siblings: "mark-in-parallel-branch.yaml" => 1,
    check_references_nothing: "check-references-nothing.yaml" => 3,
    duplicate_mark: "duplicate-mark.yaml" => 2,
    empty_parallel_and_repeat: "empty-parallel.yaml" => 4,
    worker_fault_without_workers: "worker-fault-no-workers.yaml" => 1,
    worker_faults_misaddressed: "worker-index-out-of-range.yaml" => 4,
    replay_chain_errors: "replay-chain.yaml" => 7,
    attach_mode_incomplete: "attach-incomplete.yaml" => 4,
    every_problem_of_a_file_is_reported: "wait-ambiguous.yaml" => 10,
    fault_triggers_and_target_env_misused: "fault-triggers.yaml" => 10,
    network_faults_misused: "network-faults.yaml" => 11,
    network_link_unknown: "network-link-unknown.yaml" => 1,
    promql_checks_misused: "promql-misused.yaml" => 9,
    promql_check_without_prometheus: "promql-no-prometheus.yaml" => 2,
    alert_checks_and_managed_prometheus_misused: "alert-misused.yaml" => 6,
}

#[test]
fn every_shipped_scenario_validates() {
    let files = yaml_files("scenarios");
    let names: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
    assert_eq!(
        names,
        [
            "scenarios/01-smoke.yaml",
            "scenarios/02-redis-down.yaml",
            "scenarios/02b-redis-down-spool.yaml",
            "scenarios/03-worker-crash.yaml",
            "scenarios/04-duplicates.yaml",
            "scenarios/05-replay.yaml",
            "scenarios/06-combined.yaml",
            "scenarios/07-crash-points.yaml",
            "scenarios/08-store-faults.yaml",
            "scenarios/09-partition.yaml",
            "scenarios/09b-partition-spool.yaml",
            "scenarios/09c-worker-partition.yaml",
            "scenarios/09d-cut-links.yaml",
            "scenarios/09e-docker-partition.yaml",
            "scenarios/10-slow-network.yaml",
            "scenarios/11-alert-redis-down.yaml",
        ]
    );
    let attach: Vec<String> = yaml_files("scenarios/attach")
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    assert_eq!(
        attach,
        [
            "scenarios/attach/compose-promql.yaml",
            "scenarios/attach/compose-smoke.yaml"
        ]
    );
    for file in names.iter().chain(&attach) {
        let out = chaos(&["validate", file]);
        assert_eq!(out.code, 0, "{file}: {}", out.stderr);
        assert_eq!(out.stderr, "");
    }
}

#[test]
fn validate_expands_directories() {
    let out = chaos(&["validate", "scenarios"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    insta::assert_snapshot!("validate_scenarios_dir", out.stdout);
}

#[test]
fn one_bad_file_among_good_ones_fails_the_whole_call() {
    let out = chaos(&[
        "validate",
        "scenarios/01-smoke.yaml",
        "tests/it/broken/duplicate-mark.yaml",
    ]);
    assert_eq!(out.code, 2);
    assert_eq!(out.stdout, "scenarios/01-smoke.yaml: ok (smoke)\n");
    assert!(out.stderr.starts_with(
        "tests/it/broken/duplicate-mark.yaml:6:11: error: mark `before` is set twice\n"
    ));
}

#[test]
fn validate_on_the_broken_directory_reports_every_file() {
    let out = chaos(&["validate", "tests/it/broken"]);
    assert_eq!(out.code, 2);
    for file in yaml_files("tests/it/broken") {
        assert!(
            out.stderr.contains(&format!("{}:", file.display())),
            "{} missing from\n{}",
            file.display(),
            out.stderr
        );
    }
}

#[test]
fn a_missing_path_is_an_error() {
    let out = chaos(&["validate", "no/such/file.yaml"]);
    assert_eq!(out.code, 2);
    let mut lines = out.stderr.lines();
    let first = lines.next().unwrap_or_default();
    assert!(
        first.starts_with("no/such/file.yaml: error: cannot read: "),
        "{}",
        out.stderr
    );
    assert_eq!(
        lines.next(),
        Some("  hint: give a scenario file or a directory of them")
    );
    assert_eq!(lines.next(), Some("error: 1 problem found"));
    assert_eq!(lines.next(), None);
}

#[test]
fn an_empty_directory_is_an_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().to_str().expect("UTF-8 temp path");
    let out = chaos(&["validate", path]);
    assert_eq!(out.code, 2);
    assert_eq!(
        out.stderr,
        "error: no scenario files found (looked for *.yaml and *.yml)\n"
    );
}

#[test]
fn list_shows_the_shipped_scenarios() {
    let out = chaos(&["list", "scenarios"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stderr, "");
    insta::assert_snapshot!("list_scenarios", out.stdout);
}

#[test]
fn list_defaults_to_the_scenarios_directory() {
    let default = chaos(&["list"]);
    let explicit = chaos(&["list", "scenarios"]);
    assert_eq!(default.code, 0);
    assert_eq!(default.stdout, explicit.stdout);
}

#[test]
fn list_of_a_directory_with_broken_files_exits_2() {
    let out = chaos(&["list", "tests/it/broken"]);
    assert_eq!(out.code, 2);
    assert!(out
        .stderr
        .ends_with("error: some scenarios are invalid; run `gitspy-chaos validate` on them\n"));
}

#[test]
fn run_flags_are_parsed_before_the_command_is_refused() {
    let out = chaos(&[
        "run",
        "scenarios/01-smoke.yaml",
        "--backend",
        "process",
        "--seed",
        "7",
        "--poll-interval",
        "5s",
        "--time-scale",
        "0.1",
        "--report-dir",
        "/nonexistent/reports",
        "--gitspy-bin",
        "/nonexistent/gitspy",
    ]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr
            .contains("--gitspy-bin /nonexistent/gitspy: no such file"),
        "{}",
        out.stderr
    );

    let bad = chaos(&["run", "scenarios/01-smoke.yaml", "--time-scale", "0"]);
    assert_eq!(bad.code, 2);
    assert!(
        bad.stderr.contains("`0` is not a positive number"),
        "{}",
        bad.stderr
    );

    let bad = chaos(&["run", "scenarios/01-smoke.yaml", "--poll-interval", "10"]);
    assert_eq!(bad.code, 2);
    assert!(
        bad.stderr
            .contains("invalid duration `10`: the number has no unit"),
        "{}",
        bad.stderr
    );
}

/// SPEC §2.3: every field of the format is documented. The model is the reference, so each
/// `pub` field and variant in it must carry a `///` comment.
#[test]
fn every_model_field_is_documented() {
    let text = std::fs::read_to_string(root().join("src/scenario/model.rs")).expect("model.rs");
    let lines: Vec<&str> = text.lines().collect();
    let mut in_enum = false;
    for (i, line) in lines.iter().enumerate() {
        let t = line.trim_start();
        if t.starts_with("pub enum ") {
            in_enum = true;
        } else if t.starts_with("pub struct ") || t.starts_with("impl") || *line == "}" {
            in_enum = false;
        }
        let is_field = t.starts_with("pub ")
            && t.contains(':')
            && !t.contains('(')
            && line.starts_with("    ");
        let indent = line.len() - t.len();
        let is_variant = in_enum
            && indent == 4
            && t.starts_with(|c: char| c.is_ascii_uppercase())
            && (t.ends_with(',') || t.ends_with("),"));
        if !(is_field || is_variant) {
            continue;
        }
        let doc = lines[..i]
            .iter()
            .rev()
            .map(|l| l.trim_start())
            .find(|l| !l.starts_with("#["))
            .unwrap_or("");
        assert!(
            doc.starts_with("///"),
            "model.rs:{}: `{t}` has no `///` doc",
            i + 1
        );
    }
}
