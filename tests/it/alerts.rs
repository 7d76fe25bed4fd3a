//! `docker/prometheus/alerts.yml` under Prometheus' own rule checker and unit tester: every rule
//! parses (`promtool check rules`) and each failure mode's alert fires in its window and resolves
//! after it (`promtool test rules docker/prometheus/alerts.test.yml`).

use std::process::Command;

use crate::util::root;

fn promtool(args: &[&str]) -> (bool, String) {
    let out = match Command::new("promtool")
        .args(args)
        .current_dir(root().join("docker/prometheus"))
        .output()
    {
        Ok(o) => o,
        Err(e) => panic!(
            "promtool is needed for this test ({e}): apt-get install -y prometheus (it ships promtool)"
        ),
    };
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn alert_rules_parse_and_pass_their_promtool_unit_tests() {
    let (ok, out) = promtool(&["check", "rules", "alerts.yml"]);
    assert!(ok, "promtool check rules failed:\n{out}");
    let (ok, out) = promtool(&["test", "rules", "alerts.test.yml"]);
    assert!(ok, "promtool test rules failed:\n{out}");
    assert!(out.contains("SUCCESS"), "{out}");
}

#[test]
fn every_alert_has_a_unit_test() {
    let rules = std::fs::read_to_string(root().join("docker/prometheus/alerts.yml")).unwrap();
    let tests = std::fs::read_to_string(root().join("docker/prometheus/alerts.test.yml")).unwrap();
    let alerts: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    assert!(alerts.len() >= 5, "{alerts:?}");
    for a in alerts {
        assert!(
            tests.contains(&format!("alertname: {a}\n")),
            "alert {a} has no test in alerts.test.yml"
        );
    }
}

#[test]
fn alert_rules_use_only_metric_names_of_the_contract() {
    use gitspy_contract::metrics as m;
    let known = [
        m::EVENTS_RECEIVED,
        m::EVENTS_REJECTED,
        m::JOBS_PROCESSED,
        m::JOBS_FAILED,
        m::QUEUE_WAITING,
        m::QUEUE_ACTIVE,
        m::QUEUE_DEAD,
        m::SPOOL_DEPTH,
        m::REDIS_UP,
    ];
    let rules = std::fs::read_to_string(root().join("docker/prometheus/alerts.yml")).unwrap();
    let expr_lines = rules.lines().map(str::trim).filter(|l| {
        !l.starts_with('#') && !l.starts_with("summary") && !l.starts_with("description")
    });
    let mut used = 0;
    for line in expr_lines {
        for word in line.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':')) {
            if word.starts_with("gitspy_") {
                used += 1;
                assert!(
                    known.contains(&word),
                    "{word} is not a metric of the contract"
                );
            }
        }
    }
    assert!(used > 10, "only {used} metric uses found");
}
