//! Boards and read APIs through the real pipeline (server → Redis → worker → SQLite): every GitHub
//! fixture, each in a fresh system, lands on the card and column the pure-level table
//! (tests/fold.rs) expects; the read APIs' limits and paging; `effects` counted from rows; one
//! item's timeline gives the same board in order and shuffled with duplicates.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use crate::util::*;

const CODERTOCAT: &str = "Codertocat/Hello-World";
const CODERTOCAT_ID: i64 = 186_853_002;
const OCTO_ORG: &str = "octo-org/octo-repo";

/// What posting one fixture alone into a fresh system must give.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// No issue or pull request: no board (404), logged once, no effect.
    NoCard,
    /// The card `number` of `kind` on the board of `repo`, in `column`; `None`: on the board's
    /// repository but hidden (tombstoned, or its state unknown).
    Card {
        repo: &'static str,
        number: i64,
        kind: &'static str,
        column: Option<&'static str>,
    },
}

use Expect::NoCard;

/// The table of tests/fold.rs, restated at the HTTP level (see the notes there for why).
fn table() -> Vec<(&'static str, Expect)> {
    let issue1 = |column| Expect::Card {
        repo: CODERTOCAT,
        number: 1,
        kind: "issue",
        column,
    };
    let pr2 = |column| Expect::Card {
        repo: CODERTOCAT,
        number: 2,
        kind: "pull_request",
        column,
    };
    let (ip, review, done) = (Some("in_progress"), Some("review"), Some("done"));
    vec![
        ("issue_comment/created.json", issue1(ip)),
        ("issue_comment/deleted.json", issue1(ip)),
        ("issue_comment/edited.json", issue1(ip)),
        ("issues/assigned.json", issue1(ip)),
        ("issues/deleted.json", issue1(None)),
        ("issues/demilestoned.json", pr2(review)),
        ("issues/edited.json", issue1(ip)),
        ("issues/labeled.json", issue1(ip)),
        ("issues/locked.json", issue1(ip)),
        ("issues/milestoned.json", pr2(review)),
        ("issues/opened.empty-body.json", issue1(ip)),
        ("issues/opened.json", issue1(ip)),
        ("issues/opened.via-transfer.json", issue1(ip)),
        ("issues/pinned.json", issue1(None)),
        ("issues/reopened.json", issue1(ip)),
        (
            "issues/transferred.json",
            Expect::Card {
                repo: OCTO_ORG,
                number: 1,
                kind: "issue",
                column: None,
            },
        ),
        ("issues/unassigned.json", issue1(ip)),
        ("issues/unlabeled.json", issue1(ip)),
        ("label/created.json", NoCard),
        ("label/deleted.json", NoCard),
        ("label/edited.json", NoCard),
        ("milestone/closed.json", NoCard),
        ("ping/ping.app.json", NoCard),
        ("ping/ping.json", NoCard),
        ("ping/ping.organization.json", NoCard),
        ("projects_v2_item/archived.json", NoCard),
        ("projects_v2_item/converted.json", NoCard),
        ("projects_v2_item/created.json", NoCard),
        ("projects_v2_item/edited.json", NoCard),
        ("projects_v2_item/reordered.json", NoCard),
        ("projects_v2_item/restored.json", NoCard),
        ("pull_request/assigned.json", pr2(review)),
        ("pull_request/closed.unmerged.json", pr2(done)),
        ("pull_request/converted_to_draft.json", pr2(ip)),
        ("pull_request/labeled.json", pr2(review)),
        ("pull_request/opened.json", pr2(review)),
        ("pull_request/opened.null-body.json", pr2(review)),
        ("pull_request/ready_for_review.json", pr2(review)),
        ("pull_request/reopened.json", pr2(review)),
        ("pull_request/review_request_removed.json", pr2(review)),
        ("pull_request/review_requested.json", pr2(review)),
        ("pull_request/synchronize.json", pr2(review)),
        ("pull_request/unassigned.json", pr2(review)),
        ("pull_request/unlabeled.json", pr2(review)),
        ("pull_request_review/dismissed.json", pr2(review)),
        ("pull_request_review/submitted.commented.json", pr2(review)),
        ("pull_request_review_comment/created.json", pr2(review)),
        ("pull_request_review_thread/resolved.json", pr2(review)),
        ("push/push.json", NoCard),
        ("push/push.new-branch.json", NoCard),
        ("push/push.no-username-committer.json", NoCard),
        ("repository/renamed.json", NoCard),
        ("repository/transferred.json", NoCard),
    ]
}

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/github")
}

/// Every `<event>/<name>.json` fixture, relative to the fixture directory.
fn fixture_files() -> Vec<String> {
    let mut found = Vec::new();
    for dir in std::fs::read_dir(fixture_dir()).unwrap() {
        let dir = dir.unwrap().path();
        if !dir.is_dir() {
            continue;
        }
        for f in std::fs::read_dir(&dir).unwrap() {
            let f = f.unwrap().path();
            if f.extension().is_some_and(|e| e == "json") {
                found.push(
                    f.strip_prefix(fixture_dir())
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    found.sort();
    found
}

fn board_url(server: &Proc, repo: &str) -> String {
    server.url(&format!("/boards/{repo}"))
}

/// Checks one row in a system of its own.
fn check_row(path: &str, expect: Expect) {
    let redis = Redis::start();
    let sys = Sys::new();
    let server = sys.serve(&redis, &[]);
    let _worker = sys.worker(&redis, &[], "worker");
    let event = path.split('/').next().unwrap();
    let delivery = id("row");
    let r = post(&server, &Post::signed(event, &delivery, fixture(path)));
    assert_eq!(r.status, 202, "{path}: {}", r.body);
    wait_processed(
        &server,
        std::slice::from_ref(&delivery),
        Duration::from_secs(30),
    );
    let d = self::delivery(&server, &delivery);
    match expect {
        NoCard => {
            assert_eq!(
                (d["logged"].as_u64(), d["effects"].as_u64()),
                (Some(1), Some(0)),
                "{path}: {d}"
            );
            for repo in [CODERTOCAT, OCTO_ORG] {
                let (status, body) = get_json(&board_url(&server, repo));
                assert_eq!(status, 404, "{path}: board {repo} must not exist: {body}");
            }
        }
        Expect::Card {
            repo,
            number,
            kind,
            column,
        } => {
            assert_eq!(
                (d["logged"].as_u64(), d["effects"].as_u64()),
                (Some(1), Some(1)),
                "{path}: {d}"
            );
            let (status, board) = get_json(&board_url(&server, repo));
            assert_eq!(status, 200, "{path}: {board}");
            assert_eq!(board["repo"], repo, "{path}");
            let cards: Vec<(String, &Value)> = board["columns"]
                .as_object()
                .unwrap()
                .iter()
                .flat_map(|(col, cards)| {
                    cards
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(move |c| (col.clone(), c))
                })
                .collect();
            match column {
                Some(col) => {
                    assert_eq!(cards.len(), 1, "{path}: exactly one card: {board}");
                    let (got_col, card) = &cards[0];
                    assert_eq!(got_col, col, "{path}: column: {board}");
                    assert_eq!(card["number"], number, "{path}: {board}");
                    assert_eq!(card["kind"], kind, "{path}: {board}");
                }
                None => assert!(cards.is_empty(), "{path}: card must be hidden: {board}"),
            }
        }
    }
}

#[test]
fn every_fixture_through_the_pipeline_lands_on_its_card_and_column() {
    let table = table();
    let listed: Vec<String> = {
        let mut v: Vec<String> = table.iter().map(|(p, _)| (*p).to_owned()).collect();
        v.sort();
        v
    };
    assert_eq!(listed, fixture_files(), "the table must list every fixture");
    for (path, expect) in table {
        check_row(path, expect);
    }
}

#[test]
fn read_apis_404_lookup_limits_and_paging() {
    let redis = Redis::start();
    let sys = Sys::new();
    let server = sys.serve(&redis, &[]);
    let _worker = sys.worker(&redis, &[], "worker");

    let (status, body) = get_json(&board_url(&server, "nobody/nothing"));
    assert_eq!(status, 404, "{body}");
    let message = body.to_string();
    assert!(
        message.contains("nobody/nothing"),
        "the 404 names the repository: {message}"
    );

    let ids: Vec<String> = (0..23)
        .map(|i| {
            let d = format!("{}-{i:02}", id("page"));
            let r = post(
                &server,
                &Post::signed("issues", &d, fixture("issues/opened.json")),
            );
            assert_eq!(r.status, 202, "{}", r.body);
            d
        })
        .collect();
    wait_processed(&server, &ids, Duration::from_secs(60));

    let one = self::delivery(&server, &ids[0]);
    assert_eq!(one["delivery"], ids[0].as_str());
    assert_eq!(one["state"], "processed", "{one}");
    assert_eq!(
        (one["logged"].as_u64(), one["effects"].as_u64()),
        (Some(1), Some(1))
    );
    let unknown = self::delivery(&server, "never-sent");
    assert_eq!(unknown["state"], "unknown", "{unknown}");
    assert_eq!(
        (unknown["logged"].as_u64(), unknown["effects"].as_u64()),
        (Some(0), Some(0))
    );

    // 10 000 ids (the limit) work; 10 001 are refused.
    let mut many: Vec<String> = ids.clone();
    many.extend((many.len()..10_000).map(|i| format!("absent-{i}")));
    let (status, v) = post_json(&server.url("/deliveries/lookup"), json!({ "ids": many }));
    assert_eq!(status, 200);
    let rows = v["deliveries"].as_array().unwrap();
    assert_eq!(rows.len(), 10_000);
    assert!(rows[..ids.len()].iter().all(|d| d["state"] == "processed"));
    assert!(rows[ids.len()..]
        .iter()
        .all(|d| d["state"] == "unknown" && d["logged"] == 0));
    many.push("one-too-many".into());
    let (status, v) = post_json(&server.url("/deliveries/lookup"), json!({ "ids": many }));
    assert_eq!(status, 400, "{v}");

    // Paging: every processed id exactly once across pages.
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let url = match &after {
            Some(a) => server.url(&format!("/deliveries?limit=5&after={a}")),
            None => server.url("/deliveries?limit=5"),
        };
        let (status, page) = get_json(&url);
        assert_eq!(status, 200, "{page}");
        let got: Vec<String> = page["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_str().unwrap().to_owned())
            .collect();
        assert!(got.len() <= 5);
        seen.extend(got);
        pages += 1;
        assert!(pages <= 10, "paging does not end");
        match page["next"].as_str() {
            Some(n) => after = Some(n.to_owned()),
            None => break,
        }
    }
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(seen, expected, "each processed id once, in id order");
}

#[test]
fn effects_are_counted_from_card_history_rows() {
    let redis = Redis::start();
    let sys = Sys::new();
    let server = sys.serve(&redis, &[]);
    let _worker = sys.worker(&redis, &[], "worker");
    let d = id("effects");
    let r = post(
        &server,
        &Post::signed("issues", &d, fixture("issues/opened.json")),
    );
    assert_eq!(r.status, 202, "{}", r.body);
    wait_processed(&server, std::slice::from_ref(&d), Duration::from_secs(30));
    assert_eq!(self::delivery(&server, &d)["effects"], 1);

    let store = gitspy::store::SqliteStore::open(&sys.db(), Default::default()).unwrap();
    store
        .insert_raw_card_history(
            &d,
            gitspy::github::fold::CardKey {
                repo_id: CODERTOCAT_ID,
                number: 1,
            },
        )
        .unwrap();
    let v = self::delivery(&server, &d);
    assert_eq!(
        (v["logged"].as_u64(), v["effects"].as_u64()),
        (Some(1), Some(2)),
        "{v}"
    );
}

/// Snapshots of issue #1 with increasing `updated_at`, each a different state of the card.
fn timeline() -> Vec<Vec<u8>> {
    let base: Value = serde_json::from_slice(&fixture("issues/opened.json")).unwrap();
    let steps: [(&str, &str, &[&str], &[&str]); 6] = [
        ("2030-01-01T00:00:00Z", "open", &[], &[]),
        ("2030-01-02T00:00:00Z", "open", &["ready"], &[]),
        (
            "2030-01-03T00:00:00Z",
            "open",
            &["ready", "bug"],
            &["Codertocat"],
        ),
        ("2030-01-04T00:00:00Z", "closed", &["bug"], &["Codertocat"]),
        ("2030-01-05T00:00:00Z", "open", &["bug"], &[]),
        (
            "2030-01-06T00:00:00Z",
            "open",
            &["bug", "ready"],
            &["octocat"],
        ),
    ];
    steps
        .iter()
        .enumerate()
        .map(|(i, (at, state, labels, assignees))| {
            let mut p = base.clone();
            let issue = &mut p["issue"];
            issue["updated_at"] = json!(at);
            issue["state"] = json!(state);
            issue["title"] = json!(format!("Spelling error, take {i}"));
            issue["labels"] = json!(labels
                .iter()
                .map(|n| json!({"name": n}))
                .collect::<Vec<_>>());
            issue["assignees"] = json!(assignees
                .iter()
                .map(|l| json!({"login": l}))
                .collect::<Vec<_>>());
            issue["assignee"] = assignees
                .first()
                .map_or(Value::Null, |l| json!({"login": l}));
            issue["milestone"] = Value::Null;
            serde_json::to_vec(&p).unwrap()
        })
        .collect()
}

/// Posts `(delivery id, body)` in order into a fresh system; returns the board.
fn board_after(posts: &[(String, Vec<u8>)]) -> Value {
    let redis = Redis::start();
    let sys = Sys::new();
    let server = sys.serve(&redis, &[]);
    let _worker = sys.worker(&redis, &[], "worker");
    for (d, body) in posts {
        let r = post(&server, &Post::signed("issues", d, body.clone()));
        assert!(
            r.status == 202 || r.status == 200,
            "{d}: {} {}",
            r.status,
            r.body
        );
    }
    let mut ids: Vec<String> = posts.iter().map(|(d, _)| d.clone()).collect();
    ids.sort();
    ids.dedup();
    wait_processed(&server, &ids, Duration::from_secs(60));
    let (status, board) = get_json(&board_url(&server, CODERTOCAT));
    assert_eq!(status, 200, "{board}");
    board
}

#[test]
fn one_items_timeline_in_order_and_shuffled_with_duplicates_gives_the_same_board() {
    let snapshots = timeline();
    let in_order: Vec<(String, Vec<u8>)> = snapshots
        .iter()
        .enumerate()
        .map(|(i, b)| (format!("{}-{i}", id("ordered")), b.clone()))
        .collect();
    // Reversed and interleaved, every snapshot twice: once re-sent under the same delivery id
    // (an ingress duplicate) and once under a new id (a second delivery of an equal payload).
    let prefix = id("shuffled");
    let mut shuffled: Vec<(String, Vec<u8>)> = Vec::new();
    for i in [5, 2, 4, 0, 3, 1] {
        shuffled.push((format!("{prefix}-{i}"), snapshots[i].clone()));
    }
    for i in [1, 5, 0, 3, 2, 4] {
        shuffled.push((format!("{prefix}-{i}"), snapshots[i].clone()));
        shuffled.push((format!("{prefix}-{i}-again"), snapshots[i].clone()));
    }

    let a = board_after(&in_order);
    let b = board_after(&shuffled);
    assert_eq!(a["digest"], b["digest"], "\n{a}\n{b}");
    assert_eq!(a, b);
    // The newest snapshot wins: open, assigned → in_progress, its title and labels.
    let card = &a["columns"]["in_progress"][0];
    assert_eq!(card["title"], "Spelling error, take 5", "{a}");
    assert_eq!(card["labels"], json!(["bug", "ready"]));
    assert_eq!(card["assignees"], json!(["octocat"]));
}
