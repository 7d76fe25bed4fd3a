//! `gitspy replay` against a store filled by the real pipeline: dry run writes nothing, a live
//! run writes the boards and the state, the same window twice gives the same bytes, overlapping
//! windows folded with `--state` equal one replay over their union, `--verify` is clean on a
//! correct store and names the first differing card after tampering, and the store's files are
//! never written.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::util::*;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Runs the built `gitspy` with `args` and a clean environment.
pub fn gitspy(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gitspy"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("GITSPY_LOG", "info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .expect("run gitspy")
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A store filled by the pipeline in three batches, received in three disjoint time ranges.
struct Filled {
    sys: Sys,
    /// Instants between the batches: every delivery of batch k was received before `cuts[k]`
    /// and after `cuts[k-1]`.
    cuts: [i64; 2],
}

impl Filled {
    fn db(&self) -> String {
        self.sys.db().display().to_string()
    }
    fn out(&self, name: &str) -> PathBuf {
        self.sys.dir.path().join(name)
    }
}

/// Waits until the wall clock has moved past `t` (received-at is in milliseconds).
fn after(t: i64) {
    wait_for(Duration::from_secs(5), "the clock to move on", || {
        now_ms() > t
    });
}

fn fill() -> Filled {
    let redis = Redis::start();
    let sys = Sys::new();
    let server = sys.serve(&redis, &[]);
    let mut worker = sys.worker(&redis, &[], "worker");
    let batches: [&[&str]; 3] = [
        &["issues/opened.json", "pull_request/opened.json"],
        &[
            "pull_request_review/dismissed.json",
            "issues/transferred.json",
            "issue_comment/created.json",
        ],
        &["pull_request/closed.unmerged.json", "issues/reopened.json"],
    ];
    let mut cuts = [0i64; 2];
    for (k, batch) in batches.iter().enumerate() {
        let mut ids = Vec::new();
        for path in *batch {
            let d = id("replay");
            let event = path.split('/').next().unwrap();
            let r = post(&server, &Post::signed(event, &d, fixture(path)));
            assert_eq!(r.status, 202, "{}", r.body);
            ids.push(d);
        }
        wait_processed(&server, &ids, Duration::from_secs(30));
        if k < 2 {
            let t = now_ms();
            after(t);
            cuts[k] = t + 1;
            after(cuts[k]);
        }
    }
    // Stop the writers cleanly, so nothing but replay touches the files from here on.
    worker.sigterm();
    assert_eq!(worker.wait_exit(Duration::from_secs(30)), Some(0));
    server.sigterm();
    let mut server = server;
    assert_eq!(server.wait_exit(Duration::from_secs(30)), Some(0));
    Filled { sys, cuts }
}

/// Bytes and modification times of the database and its side files.
fn files_of(db: &Path) -> Vec<(PathBuf, Vec<u8>, SystemTime)> {
    let mut out = Vec::new();
    for suffix in ["", "-wal"] {
        let p = PathBuf::from(format!("{}{suffix}", db.display()));
        if let Ok(meta) = std::fs::metadata(&p) {
            out.push((
                p.clone(),
                std::fs::read(&p).unwrap(),
                meta.modified().unwrap(),
            ));
        }
    }
    out
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn replay_dry_run_files_windows_state_and_never_writes_the_store() {
    let f = fill();
    let db = f.db();
    let before = files_of(&f.sys.db());
    assert!(!before.is_empty());

    // Dry run: counts and digests on stdout, nothing written, not even the out dir.
    let dry_dir = f.out("dry");
    let out = gitspy(&[
        "replay",
        "--db",
        &db,
        "--dry-run",
        "--out",
        dry_dir.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "one line per board: {}", text(&out));
    assert!(
        lines[0].starts_with(
            "Codertocat/Hello-World backlog=0 todo=0 in_progress=1 review=0 done=1 sha256:"
        ),
        "{}",
        text(&out)
    );
    assert!(
        lines[1].starts_with(
            "octo-org/octo-repo backlog=0 todo=0 in_progress=0 review=0 done=0 sha256:"
        ),
        "{}",
        text(&out)
    );
    assert!(!dry_dir.exists(), "dry run created {}", dry_dir.display());

    // --repo limits the output to that board.
    let out = gitspy(&[
        "replay",
        "--db",
        &db,
        "--dry-run",
        "--repo",
        "octo-org/octo-repo",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim_end(), lines[1]);

    // Live run: board files and the state; their digests match the dry run's.
    let full = f.out("full");
    let out = gitspy(&["replay", "--db", &db, "--out", full.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let board = read(&full.join("Codertocat_Hello-World.kanban.json"));
    let v: serde_json::Value = serde_json::from_slice(&board).unwrap();
    let digest = v["digest"].as_str().unwrap();
    assert!(lines[0].ends_with(digest), "{} vs {digest}", lines[0]);
    assert!(full.join("octo-org_octo-repo.kanban.json").is_file());
    assert!(full.join("replay-state.json").is_file());

    // The same window again: byte-identical files.
    let again = f.out("again");
    let out = gitspy(&["replay", "--db", &db, "--out", again.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    for name in [
        "Codertocat_Hello-World.kanban.json",
        "octo-org_octo-repo.kanban.json",
        "replay-state.json",
    ] {
        assert_eq!(read(&full.join(name)), read(&again.join(name)), "{name}");
    }

    // Two overlapping windows, the second seeded with the first's state, equal the union.
    let (cut1, cut2) = (f.cuts[0].to_string(), f.cuts[1].to_string());
    let w1 = f.out("w1");
    let out = gitspy(&[
        "replay",
        "--db",
        &db,
        "--to",
        &cut2,
        "--out",
        w1.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // The first window alone is not the whole story (batch 3 closes the PR).
    assert_ne!(read(&w1.join("Codertocat_Hello-World.kanban.json")), board);
    let w2 = f.out("w2");
    let state = w1.join("replay-state.json");
    let out = gitspy(&[
        "replay",
        "--db",
        &db,
        "--from",
        &cut1,
        "--state",
        state.to_str().unwrap(),
        "--out",
        w2.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    for name in [
        "Codertocat_Hello-World.kanban.json",
        "octo-org_octo-repo.kanban.json",
        "replay-state.json",
    ] {
        assert_eq!(read(&full.join(name)), read(&w2.join(name)), "{name}");
    }

    // A window given as RFC 3339 selects the same rows as the same instant in milliseconds.
    let rfc = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(f.cuts[1]) * 1_000_000)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let out_ms = gitspy(&["replay", "--db", &db, "--dry-run", "--from", &cut2]);
    let out_rfc = gitspy(&["replay", "--db", &db, "--dry-run", "--from", &rfc]);
    assert_eq!(out_ms.status.code(), Some(0), "{}", text(&out_ms));
    assert_eq!(
        out_ms.stdout,
        out_rfc.stdout,
        "{}\n{}",
        text(&out_ms),
        text(&out_rfc)
    );

    // Replay never wrote the store. (A reader of a WAL database may create an EMPTY `-wal`
    // when the writers had checkpointed and removed theirs: SQLite's doing, and no data.)
    let after = files_of(&f.sys.db());
    for (p, bytes, mtime) in &after {
        match before.iter().find(|(q, _, _)| q == p) {
            Some((_, bytes0, mtime0)) => {
                assert!(bytes == bytes0, "{} changed", p.display());
                assert_eq!(mtime, mtime0, "{} was touched", p.display());
            }
            None => assert!(bytes.is_empty(), "{} was written", p.display()),
        }
    }
    assert_eq!(after[0].0, f.sys.db(), "the database file is still there");
}

#[test]
fn replay_verify_is_clean_then_names_a_tampered_card() {
    let f = fill();
    let db = f.db();
    let out = gitspy(&["replay", "--db", &db, "--verify", "--dry-run"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // A window that does not start at the beginning of the log cannot be verified.
    let cut = f.cuts[0].to_string();
    let out = gitspy(&[
        "replay",
        "--db",
        &db,
        "--verify",
        "--dry-run",
        "--from",
        &cut,
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("beginning of the log"),
        "{}",
        text(&out)
    );

    let store = gitspy::store::SqliteStore::open(&f.sys.db(), Default::default()).unwrap();
    let key = gitspy::github::fold::CardKey {
        repo_id: 186_853_002,
        number: 2,
    };
    store
        .tamper_card(key, &gitspy::github::fold::CardState::default())
        .unwrap();
    drop(store);
    let out = gitspy(&["replay", "--db", &db, "--verify", "--dry-run"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("card Codertocat/Hello-World#2 (repository id 186853002) differs"),
        "{}",
        text(&out)
    );

    // Bad input is exit 2 with a message naming the value.
    let out = gitspy(&["replay", "--db", &db, "--from", "yesterday"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("yesterday"));
    let missing = f.out("missing.db");
    let out = gitspy(&["replay", "--db", missing.to_str().unwrap(), "--dry-run"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        !missing.exists(),
        "replay created the store it was pointed at"
    );
}

fn replay_json(db: &str, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["replay", "--db", db, "--dry-run", "--json"];
    args.extend_from_slice(extra);
    let out = gitspy(&args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().count(), 1, "one JSON object: {}", text(&out));
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)))
}

#[test]
fn replay_json_and_a_shuffled_replay_with_duplicates_give_the_same_boards() {
    let f = fill();
    let db = f.db();
    let human = gitspy(&["replay", "--db", &db, "--dry-run"]);
    let human = String::from_utf8_lossy(&human.stdout).into_owned();

    let plain = replay_json(&db, &["--verify"]);
    assert_eq!(plain["deliveries"], 7, "{plain}");
    assert_eq!(
        plain["window"]["from_ms"],
        serde_json::Value::Null,
        "{plain}"
    );
    assert_eq!(plain["wrote"], serde_json::Value::Null, "{plain}");
    assert_eq!(plain["verify"]["matches"], true, "{plain}");
    let boards = plain["boards"].as_array().unwrap();
    assert_eq!(boards.len(), 2, "{plain}");
    // The same digests as the human lines, which stay the default output.
    for (b, line) in boards.iter().zip(human.lines()) {
        assert!(line.starts_with(b["repo"].as_str().unwrap()), "{line}");
        assert!(line.ends_with(b["digest"].as_str().unwrap()), "{line}");
    }
    assert_eq!(boards[0]["counts"]["done"], 1, "{plain}");
    assert!(plain["digest"].as_str().unwrap().starts_with("sha256:"));

    let shuffled = replay_json(&db, &["--shuffle-seed", "3", "--duplicates", "4"]);
    assert_eq!(shuffled["deliveries"], 11, "{shuffled}");
    assert_eq!(
        shuffled["order"],
        serde_json::json!({"shuffle_seed": 3, "duplicates": 4, "reverse": false})
    );
    assert_eq!(shuffled["boards"], plain["boards"]);
    assert_eq!(shuffled["digest"], plain["digest"]);

    // Newest first: the same boards (the fold is order-independent).
    let reversed = replay_json(&db, &["--reverse"]);
    assert_eq!(reversed["deliveries"], 7, "{reversed}");
    assert_eq!(reversed["order"]["reverse"], true, "{reversed}");
    assert_eq!(reversed["boards"], plain["boards"]);
    let out = gitspy(&["replay", "--db", &db, "--reverse", "--shuffle-seed", "1"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));

    // A window is reported as given.
    let windowed = replay_json(&db, &["--to", &f.cuts[0].to_string()]);
    assert_eq!(windowed["window"]["to_ms"], f.cuts[0], "{windowed}");
    assert_eq!(windowed["deliveries"], 2, "{windowed}");

    let out = gitspy(&["replay", "--db", &db, "--duplicates", "2"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--shuffle-seed"),
        "{}",
        text(&out)
    );
}
