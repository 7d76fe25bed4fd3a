//! `gitspy dead list|requeue` against real dead letters: a failing worker dead-letters two
//! deliveries, `list` shows them (table and JSON), `requeue <id>` and `requeue --all` put them
//! back with attempts reset, and a healthy worker processes each exactly once.

use std::time::Duration;

use crate::replay::gitspy;
use crate::util::*;

fn dead(redis: &Redis, args: &[&str]) -> std::process::Output {
    let url = redis.url();
    let mut all = vec!["dead", "--redis-url", url.as_str()];
    all.extend_from_slice(args);
    gitspy(&all)
}

fn show(out: &std::process::Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn dead_letters_are_listed_and_requeued_through_the_normal_path() {
    let redis = Redis::start();
    let sys = Sys::new();
    let server = sys.serve(&redis, &[]);
    let (a, b) = (format!("poison-{}", id("a")), format!("poison-{}", id("b")));
    for (d, path, event) in [
        (&a, "issues/opened.json", "issues"),
        (&b, "pull_request/opened.json", "pull_request"),
    ] {
        let r = post(&server, &Post::signed(event, d, fixture(path)));
        assert_eq!(r.status, 202, "{}", r.body);
    }
    let mut failing = sys.worker(
        &redis,
        &[
            ("GITSPY_TEST_FAIL_PREFIX", "poison-".into()),
            ("GITSPY_MAX_ATTEMPTS", "2".into()),
            ("GITSPY_RETRY_BASE", "50ms".into()),
        ],
        "failing",
    );
    wait_for(
        Duration::from_secs(30),
        "both deliveries dead-lettered",
        || {
            [&a, &b]
                .iter()
                .all(|d| get(&redis, &format!("events:{d}:state")).as_deref() == Some("failed"))
        },
    );
    failing.kill9();
    assert_eq!(xlen(&redis, "gitspy:events:dead"), 2);

    // The table: a header and one line per dead letter with id, event, attempts, error.
    let out = dead(&redis, &["list"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(
        lines[0].starts_with("ID") && lines[0].contains("LAST ERROR"),
        "{table}"
    );
    for (line, d, event) in [(lines[1], &a, "issues"), (lines[2], &b, "pull_request")] {
        let cells: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(&cells[..3], [d.as_str(), event, "2"], "{table}");
        assert!(line.contains("injected failure"), "{table}");
    }
    let out = dead(&redis, &["list", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let entries = v.as_array().unwrap();
    assert_eq!(entries.len(), 2, "{v}");
    assert_eq!(entries[0]["delivery"], a.as_str());
    assert_eq!(entries[0]["attempts"], 2);
    assert!(entries[0]["dead_at_ms"].as_i64().unwrap() > 0);

    // An unknown id is an error that says how to find the right one.
    let out = dead(&redis, &["requeue", "no-such-delivery"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("gitspy dead list"),
        "{}",
        show(&out)
    );
    // Neither an id nor --all: a usage error.
    let out = dead(&redis, &["requeue"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));

    // Requeue one: accepted again with attempts reset, out of the dead stream.
    let out = dead(&redis, &["requeue", &a]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with(&format!("requeued {a} as ")));
    assert_eq!(
        get(&redis, &format!("events:{a}:state")).as_deref(),
        Some("received")
    );
    assert_eq!(get(&redis, &format!("events:{a}:attempts")), None);
    assert_eq!(xlen(&redis, "gitspy:events:dead"), 1);
    assert_eq!(xlen(&redis, "gitspy:events"), 1);

    let _healthy = sys.worker(&redis, &[], "healthy");
    wait_processed(&server, std::slice::from_ref(&a), Duration::from_secs(30));

    // Requeue the rest.
    let out = dead(&redis, &["requeue", "--all"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("requeued {b} as ")));
    let ids = vec![a.clone(), b.clone()];
    wait_processed(&server, &ids, Duration::from_secs(30));
    let (_, v) = post_json(
        &server.url("/deliveries/lookup"),
        serde_json::json!({ "ids": ids }),
    );
    for d in v["deliveries"].as_array().unwrap() {
        assert_eq!(
            (d["logged"].as_u64(), d["effects"].as_u64()),
            (Some(1), Some(1)),
            "{d}"
        );
        assert_eq!(d["state"], "processed", "{d}");
    }
    assert_eq!(xlen(&redis, "gitspy:events:dead"), 0);
    let out = dead(&redis, &["list"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("no dead-lettered deliveries"));
}
