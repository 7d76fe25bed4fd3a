//! `serve` + `worker` processes on `GITSPY_DB=postgres://…` (a real PostgreSQL server): fixture
//! deliveries and duplicates through the whole pipeline, boards byte-identical to the SQLite
//! store's, a crash after the commit rescued without applying twice, `gitspy replay --verify`
//! reading the PostgreSQL event log.

use std::collections::BTreeSet;
use std::time::Duration;

use gitspy::store::{SqliteStore, Store, StoreOptions};

use crate::replay::gitspy;
use crate::store::delivery as fixture_delivery;
use crate::util::*;

/// Every fixture of a few kinds that land on cards, as `(event, delivery id, relative path)`.
fn fixtures() -> Vec<(String, String, String)> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/github");
    let mut out = Vec::new();
    for dir in [
        "issues",
        "pull_request",
        "issue_comment",
        "projects_v2_item",
    ] {
        let mut files: Vec<String> = std::fs::read_dir(root.join(dir))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|f| f.ends_with(".json"))
            .collect();
        files.sort();
        for f in files {
            out.push((
                dir.to_owned(),
                id(&format!("pg-{dir}-{f}")),
                format!("{dir}/{f}"),
            ));
        }
    }
    out
}

#[test]
fn fixtures_and_duplicates_through_serve_and_workers_on_postgres_match_sqlite_boards() {
    let pg = Postgres::start();
    let redis = Redis::start();
    let sys = Sys::with_postgres(pg.create_db("gitspy"));
    let server = sys.serve(&redis, &[]);
    let _w1 = sys.worker(&redis, &[], "w1");
    let _w2 = sys.worker(&redis, &[], "w2");
    let all = fixtures();
    for (event, d, rel) in &all {
        let r = post(&server, &Post::signed(event, d, fixture(rel)));
        assert_eq!(r.status, 202, "{}", r.body);
    }
    // Duplicates of the first ten: answered, never applied twice.
    for (event, d, rel) in all.iter().take(10) {
        let r = post(&server, &Post::signed(event, d, fixture(rel)));
        assert!(
            r.status == 200 || r.status == 202,
            "{}: {}",
            r.status,
            r.body
        );
    }
    let ids: Vec<String> = all.iter().map(|(_, d, _)| d.clone()).collect();
    wait_processed(&server, &ids, Duration::from_secs(90));
    let (_, v) = post_json(
        &server.url("/deliveries/lookup"),
        serde_json::json!({ "ids": ids }),
    );
    let rows = v["deliveries"].as_array().unwrap();
    assert_eq!(rows.len(), ids.len());
    for d in rows {
        assert_eq!(d["logged"], 1, "{d}");
        assert!(d["effects"].as_u64().unwrap() <= 1, "{d}");
        let by = d["applied_by"].as_str().unwrap_or_default();
        assert!(!by.is_empty(), "applied_by recorded: {d}");
    }
    // The listing pages every processed id in id order.
    let mut listed: Vec<String> = Vec::new();
    let mut after = String::new();
    for _ in 0..100 {
        let (st, page) = get_json(&server.url(&format!("/deliveries?limit=7&after={after}")));
        assert_eq!(st, 200, "{page}");
        for item in page["items"].as_array().unwrap() {
            assert!(
                item["applied_by"].as_str().is_some_and(|w| !w.is_empty()),
                "{item}"
            );
            listed.push(item["delivery"].as_str().unwrap().to_owned());
        }
        match page["next"].as_str() {
            Some(n) => after = n.to_owned(),
            None => break,
        }
    }
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(listed, sorted);

    // The same payloads folded by the SQLite store give byte-identical boards.
    let dir = tempfile::tempdir().unwrap();
    let lite = SqliteStore::open(&dir.path().join("db"), StoreOptions::default()).unwrap();
    let batch: Vec<_> = all
        .iter()
        .map(|(_, d, rel)| fixture_delivery(d, rel))
        .collect();
    lite.apply_batch(&batch, "reference").unwrap();
    let repos: BTreeSet<String> = batch.iter().filter_map(|d| d.repository.clone()).collect();
    let mut compared = 0;
    for repo in &repos {
        let (st, body) = get_text(&server.url(&format!("/boards/{repo}")));
        match lite.board(repo).unwrap() {
            Some(b) => {
                assert_eq!(st, 200, "{repo}: {body}");
                assert_eq!(body.as_bytes(), b.json.as_slice(), "{repo}");
                compared += 1;
            }
            None => assert_eq!(st, 404, "{repo}: {body}"),
        }
    }
    assert!(compared > 0);

    // `gitspy replay --verify` reads the PostgreSQL log and finds the live boards.
    let out = gitspy(&["replay", "--db", &sys.db_env(), "--verify", "--dry-run"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_crash_after_the_postgres_commit_is_rescued_without_applying_twice() {
    let pg = Postgres::start();
    let redis = Redis::start();
    let sys = Sys::with_postgres(pg.create_db("gitspy"));
    let server = sys.serve(&redis, &[]);
    let body = fixture("issues/opened.json");
    let ids: Vec<String> = (0..3)
        .map(|i| {
            let d = format!("{}-{i}", id("pgcommit"));
            let r = post(&server, &Post::signed("issues", &d, body.clone()));
            assert_eq!(r.status, 202, "{}", r.body);
            d
        })
        .collect();
    let ttls = [
        ("GITSPY_LOCK_TTL", "2s".to_string()),
        ("GITSPY_CLAIM_IDLE", "2s".to_string()),
    ];
    let mut env = ttls.to_vec();
    env.push(("GITSPY_TEST_CRASH_AFTER_COMMIT", "true".into()));
    let mut crasher = sys.worker(&redis, &env, "crasher");
    crasher.wait_exit(Duration::from_secs(30));
    for d in &ids {
        let v = delivery(&server, d);
        assert_ne!(v["state"], "processed", "{v}");
        assert_eq!(v["logged"], 1, "committed in PostgreSQL: {v}");
    }
    let mut rescuer = sys.worker(&redis, &ttls, "rescuer");
    wait_processed(&server, &ids, Duration::from_secs(60));
    for d in &ids {
        let v = delivery(&server, d);
        assert_eq!(
            (v["logged"].as_u64(), v["effects"].as_u64()),
            (Some(1), Some(1)),
            "{v}"
        );
    }
    assert!(
        rescuer
            .log_text()
            .contains("already applied by an earlier attempt"),
        "{}",
        rescuer.log_text()
    );
    // A clean shutdown closes the pool's connections without panicking on the async runtime.
    rescuer.sigterm();
    assert_eq!(
        rescuer.wait_exit(Duration::from_secs(30)),
        Some(0),
        "{}",
        rescuer.log_text()
    );
    assert!(
        !rescuer.log_text().contains("panicked"),
        "{}",
        rescuer.log_text()
    );
}

#[test]
fn an_unreachable_postgres_is_a_clear_start_up_error() {
    let redis = Redis::start();
    let port = free_port();
    let sys = Sys::with_postgres(format!("postgres://gitspy:secret@127.0.0.1:{port}/gitspy"));
    let log = sys.dir.path().join("bad.log");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gitspy"))
        .arg("worker")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("REDIS_URL", redis.url())
        .env("GITSPY_DB", sys.db_env())
        .env("WORKER_METRICS_PORT", "0")
        .stderr(std::fs::File::create(&log).unwrap())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("cannot open the store at postgres://gitspy:***@127.0.0.1"),
        "{text}"
    );
    assert!(!text.contains("secret"), "password leaked: {text}");
}
