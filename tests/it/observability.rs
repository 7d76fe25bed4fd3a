//! Observability of a real run (issue 16): `scenarios/02-redis-down.yaml` against the real GitSpy
//! and a real redis-server. The run directory keeps every managed process's full log, the report
//! counts their warnings in the Redis outage's window with links from the HTML, and the exact
//! per-second series show the rejected burst inside the outage.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::root;

fn gitspy_bin() -> PathBuf {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_gitspy-chaos")).with_file_name("gitspy");
    assert!(
        bin.is_file(),
        "{} is missing: build it with `cargo build -p gitspy`",
        bin.display()
    );
    bin
}

fn points(v: &serde_json::Value, name: &str) -> Vec<(u64, f64)> {
    let s = v["series"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("series {name} missing"));
    s["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_u64().unwrap(), p[1].as_f64().unwrap()))
        .collect()
}

#[test]
fn a_redis_down_run_keeps_full_logs_counts_warnings_per_fault_and_charts_exact_seconds() {
    let reports = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_gitspy-chaos"))
        .args([
            "run",
            "scenarios/02-redis-down.yaml",
            "--backend",
            "process",
        ])
        .arg("--report-dir")
        .arg(reports.path())
        .current_dir(root())
        .env("GITSPY_BIN", gitspy_bin())
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .output()
        .expect("gitspy-chaos runs");
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let dirs: Vec<_> = std::fs::read_dir(reports.path())
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(dirs.len(), 1);
    let dir: &Path = &dirs[0].path();
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("run.json")).unwrap()).unwrap();

    // Every managed process, Redis included, with its full log kept as a file.
    let procs = v["processes"].as_array().unwrap();
    let roles: Vec<&str> = procs.iter().map(|p| p["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["server", "worker-0", "worker-1", "redis"]);
    for p in procs {
        let file = p["log_file"].as_str().unwrap_or_else(|| panic!("{p}"));
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        let s = &p["log_summary"];
        assert_eq!(
            s["lines"].as_u64().unwrap(),
            text.lines().count() as u64,
            "{file}"
        );
        // The tail is the end of the full log.
        let tail = p["log_tail"].as_str().unwrap();
        assert!(text.trim_end().ends_with(tail.trim_end()), "{file}");
    }
    let server = &procs[0]["log_summary"];
    let redis_stop = v["faults"]
        .as_array()
        .unwrap()
        .iter()
        .position(|f| f["kind"] == "redis stop")
        .expect("a redis stop fault");
    // Each of the 10 rejected webhooks was logged as a warning, inside the outage's window.
    let in_outage = server["per_fault"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["fault"] == redis_stop)
        .unwrap_or_else(|| panic!("no server warnings in the outage: {server}"));
    assert!(in_outage["warnings"].as_u64().unwrap() >= 10, "{server}");
    assert_eq!(server["outside_errors"], 0, "{server}");
    assert_eq!(server["outside_warnings"], 0, "{server}");
    assert!(
        server["examples"][0]
            .as_str()
            .unwrap()
            .contains("redis unreachable"),
        "{server}"
    );

    // Exact series: the rejected burst lies inside the outage, every attempt is counted once.
    let f = &v["faults"][redis_stop];
    let (start, end) = (
        f["start_ms"].as_u64().unwrap(),
        f["end_ms"].as_u64().unwrap(),
    );
    let rejected = points(&v, "rejected_rate");
    let mut counted = 0.0;
    let mut prev = 0;
    for (t, rate) in &rejected {
        let n = rate * (t - prev) as f64 / 1000.0;
        if n > 0.0 {
            assert!(
                *t > start && t.saturating_sub(1000) <= end,
                "rejections at {t} ms outside the outage {start}..{end}: {rejected:?}"
            );
        }
        counted += n;
        prev = *t;
    }
    assert!(
        (counted - 10.0).abs() < 1e-6,
        "{counted} rejected in {rejected:?}"
    );
    let mut sent = 0.0;
    let mut prev = 0;
    for (t, rate) in points(&v, "sent_rate") {
        sent += rate * (t - prev) as f64 / 1000.0;
        prev = t;
    }
    assert!((sent - v["ledger"]["sent"].as_f64().unwrap()).abs() < 1e-6);
    assert_eq!(points(&v, "unprocessed").last().unwrap().1, 0.0);

    // The HTML links to the logs and to the fault they fall in.
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    for file in [
        "system/server.log",
        "system/worker-0.log",
        "system/redis/redis-server.log",
    ] {
        assert!(
            html.contains(&format!("<a class=\"log\" href=\"{file}\">")),
            "no link to {file}"
        );
    }
    assert!(html.contains(&format!("<a href=\"#fault-{redis_stop}\">redis stop")));
    assert!(html.contains(&format!("<tr id=\"fault-{redis_stop}\"")));
    assert!(html.contains("<svg class=\"chart\" id=\"chart-exact-rates\""));
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(md.contains("### Logs"), "{md}");
}
