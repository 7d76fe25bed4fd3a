//! `/metrics/prom` of server and worker: every SPEC name, right types, promtool-clean, exact gauges.

use std::time::Duration;

use crate::util::*;

const COUNTERS: &[&str] = &[
    "gitspy_events_received_total",
    "gitspy_events_duplicate_total",
    "gitspy_events_rejected_total",
    "gitspy_jobs_processed_total",
    "gitspy_jobs_failed_total",
    "gitspy_jobs_retried_total",
    "gitspy_jobs_duplicate_total",
    "gitspy_redis_data_loss_total",
];
const GAUGES: &[&str] = &[
    "gitspy_queue_waiting",
    "gitspy_queue_active",
    "gitspy_queue_dead",
    "gitspy_spool_depth",
    "gitspy_redis_up",
    "process_start_time_seconds",
];

fn check_names(text: &str) {
    for c in COUNTERS {
        assert!(
            text.contains(&format!("# TYPE {c} counter")),
            "{c} missing:\n{text}"
        );
    }
    for g in GAUGES {
        assert!(
            text.contains(&format!("# TYPE {g} gauge")),
            "{g} missing:\n{text}"
        );
    }
    assert!(text.contains("# TYPE gitspy_job_duration_ms histogram"));
}

fn promtool(text: &str) -> Vec<String> {
    let Ok(mut child) = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    else {
        panic!("promtool is not installed: run `apt-get install -y prometheus` (scripts/test.sh does it)");
    };
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .chain(String::from_utf8_lossy(&out.stderr).lines())
        .map(str::to_owned)
        .filter(|l| !l.trim().is_empty())
        .collect()
}

#[test]
fn server_and_worker_export_every_metric_and_promtool_only_flags_the_ms_unit() {
    let redis = Redis::start();
    let sys = Sys::new();
    let server = sys.serve(&redis, &[]);
    let worker = sys.worker(&redis, &[], "worker");
    let body = fixture("issues/opened.json");
    let ids: Vec<String> = (0..3).map(|i| format!("{}-{i}", id("m"))).collect();
    for id in &ids {
        assert_eq!(
            post(&server, &Post::signed("issues", id, body.clone())).status,
            202
        );
    }
    let _ = post(&server, &Post::signed("issues", &ids[0], body.clone()));
    wait_processed(&server, &ids, Duration::from_secs(30));
    for (who, url) in [
        ("server", server.url("/metrics/prom")),
        ("worker", worker.url("/metrics/prom")),
    ] {
        let (status, text) = get_text(&url);
        assert_eq!(status, 200);
        check_names(&text);
        let findings = promtool(&text);
        for f in &findings {
            assert!(
                f.contains("gitspy_job_duration_ms") && f.contains("unit"),
                "{who}: unexpected promtool finding `{f}`\n{text}"
            );
        }
        assert!(sample(&text, "process_start_time_seconds").unwrap() > 1.0e9);
    }
    let (_, s) = get_text(&server.url("/metrics/prom"));
    assert_eq!(
        sample(&s, "gitspy_events_received_total{event_type=\"issues\"}"),
        Some(3.0)
    );
    assert_eq!(
        sample(&s, "gitspy_events_duplicate_total{event_type=\"issues\"}"),
        Some(1.0)
    );
    let (_, w) = get_text(&worker.url("/metrics/prom"));
    assert_eq!(
        sample(&w, "gitspy_jobs_processed_total{event_type=\"issues\"}"),
        Some(3.0)
    );
    assert_eq!(
        sample(&w, "gitspy_job_duration_ms_count{event_type=\"issues\"}"),
        Some(3.0)
    );
}

#[test]
fn queue_gauges_are_exact_across_acks() {
    let redis = Redis::start();
    let sys = Sys::new();
    let server = sys.serve(&redis, &[]);
    let body = fixture("issues/opened.json");
    let ids: Vec<String> = (0..5).map(|i| format!("{}-{i}", id("g"))).collect();
    for id in &ids {
        assert_eq!(
            post(&server, &Post::signed("issues", id, body.clone())).status,
            202
        );
    }
    let (_, m) = get_text(&server.url("/metrics/prom"));
    assert_eq!(sample(&m, "gitspy_queue_waiting"), Some(5.0), "{m}");
    assert_eq!(sample(&m, "gitspy_queue_active"), Some(0.0), "{m}");
    // A worker holds all five (slow): waiting 0, active 5, on both server and worker.
    let worker = sys.worker(
        &redis,
        &[("GITSPY_TEST_PROCESSING_DELAY", "3s".into())],
        "worker",
    );
    wait_for(Duration::from_secs(20), "all five active", || {
        let (_, m) = get_text(&server.url("/metrics/prom"));
        sample(&m, "gitspy_queue_active") == Some(5.0)
            && sample(&m, "gitspy_queue_waiting") == Some(0.0)
    });
    let (_, wm) = get_text(&worker.url("/metrics/prom"));
    assert_eq!(sample(&wm, "gitspy_queue_active"), Some(5.0), "{wm}");
    wait_processed(&server, &ids, Duration::from_secs(30));
    let (_, m) = get_text(&server.url("/metrics/prom"));
    assert_eq!(
        (
            sample(&m, "gitspy_queue_waiting"),
            sample(&m, "gitspy_queue_active")
        ),
        (Some(0.0), Some(0.0)),
        "{m}"
    );
}
