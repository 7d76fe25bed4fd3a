//! The fold and the board against real GitHub payloads (tests/fixtures/github) and against
//! generated histories: every fixture lands on the card and column read by hand from the
//! payload, any delivery order with any duplicates gives byte-identical boards, and the board
//! JSON is canonical with a digest pinned from `sha256sum`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use gitspy::github::board::{self, Column};
use gitspy::github::fold::{CardKey, CardState, FoldState, Kind};
use proptest::prelude::*;
use serde_json::{json, Value};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/github");

const CODERTOCAT: (&str, i64) = ("Codertocat/Hello-World", 186_853_002);
const OCTO_ORG: (&str, i64) = ("octo-org/octo-repo", 17_273_051);

/// Reads a fixture; its directory is the `X-GitHub-Event`.
fn load(path: &str) -> (String, Value) {
    let full = Path::new(FIXTURES).join(path);
    let event = Path::new(path)
        .parent()
        .and_then(Path::to_str)
        .unwrap_or_else(|| panic!("fixture {path} is not in an event directory"))
        .to_owned();
    let bytes = std::fs::read(&full).unwrap_or_else(|e| panic!("read {}: {e}", full.display()));
    let payload =
        serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("parse {}: {e}", full.display()));
    (event, payload)
}

/// What folding one fixture alone into an empty state must give.
#[derive(Debug)]
enum Expect {
    /// The payload carries no issue or pull request.
    NoCard,
    /// The card `(repository, number)` of `kind`, shown in `column` (`None`: hidden).
    Card {
        repo: (&'static str, i64),
        number: i64,
        kind: Kind,
        column: Option<Column>,
    },
}

use Expect::NoCard;

fn card(repo: (&'static str, i64), number: i64, kind: Kind, column: Option<Column>) -> Expect {
    Expect::Card {
        repo,
        number,
        kind,
        column,
    }
}

fn check(path: &str, expect: &Expect) {
    let (event, payload) = load(path);
    let mut state = FoldState::default();
    let touched = state.apply(&event, &payload);
    let cards: Vec<(CardKey, &CardState)> = state.cards().collect();
    match expect {
        NoCard => {
            assert_eq!(touched, None, "{path}: no card expected");
            assert!(cards.is_empty(), "{path}: no card expected, got {cards:?}");
            assert!(state.boards().is_empty(), "{path}: no board expected");
        }
        Expect::Card {
            repo: (full_name, repo_id),
            number,
            kind,
            column,
        } => {
            let key = CardKey {
                repo_id: *repo_id,
                number: *number,
            };
            assert_eq!(touched, Some(key), "{path}: touched card");
            assert_eq!(cards.len(), 1, "{path}: exactly one card, got {cards:?}");
            let (got_key, got) = cards[0];
            assert_eq!(got_key, key, "{path}: card key");
            assert_eq!(got.kind(), *kind, "{path}: kind");
            assert_eq!(board::column(got), *column, "{path}: column");
            assert_eq!(
                state.repo(*repo_id).and_then(|r| r.full_name()),
                Some(*full_name),
                "{path}: repository name"
            );
            let shown = state
                .board(full_name)
                .unwrap_or_else(|| panic!("{path}: no board for {full_name}"));
            let total: usize = shown.counts.values().sum();
            match column {
                Some(c) => {
                    assert_eq!((total, shown.counts[c]), (1, 1), "{path}: board counts");
                    let json: Value = serde_json::from_slice(&shown.json).unwrap();
                    assert_eq!(json["columns"][c.as_str()][0]["number"], json!(number));
                    assert_eq!(json["columns"][c.as_str()][0]["kind"], json!(kind.as_str()));
                }
                None => assert_eq!(total, 0, "{path}: hidden card must not be on the board"),
            }
        }
    }
}

/// Every fixture, with the card and column read by hand from the payload (see the notes).
fn table() -> Vec<(&'static str, Expect)> {
    use Column::*;
    use Kind::{Issue, PullRequest as Pr};
    let issue1 = |column| card(CODERTOCAT, 1, Issue, column);
    let pr2 = |column| card(CODERTOCAT, 2, Pr, column);
    vec![
        // Issue #1: open, assignees [Codertocat] → in_progress (the assignee rule comes before
        // its milestone v1.0). Comment deletion is not issue deletion.
        ("issue_comment/created.json", issue1(Some(InProgress))),
        ("issue_comment/deleted.json", issue1(Some(InProgress))),
        ("issue_comment/edited.json", issue1(Some(InProgress))),
        ("issues/assigned.json", issue1(Some(InProgress))),
        ("issues/deleted.json", issue1(None)),
        // Issue object with `pull_request`: PR #2, open, draft false → review.
        ("issues/demilestoned.json", pr2(Some(Review))),
        ("issues/edited.json", issue1(Some(InProgress))),
        ("issues/labeled.json", issue1(Some(InProgress))),
        // `assignee` null but `assignees` [Codertocat]: the list wins.
        ("issues/locked.json", issue1(Some(InProgress))),
        ("issues/milestoned.json", pr2(Some(Review))),
        ("issues/opened.empty-body.json", issue1(Some(InProgress))),
        ("issues/opened.json", issue1(Some(InProgress))),
        ("issues/opened.via-transfer.json", issue1(Some(InProgress))),
        // Partial issue: no `state` → not enough known to show it.
        ("issues/pinned.json", issue1(None)),
        ("issues/reopened.json", issue1(Some(InProgress))),
        // The source repository's card is tombstoned.
        ("issues/transferred.json", card(OCTO_ORG, 1, Issue, None)),
        // The example still lists Codertocat in `assignees`: the snapshot is believed.
        ("issues/unassigned.json", issue1(Some(InProgress))),
        ("issues/unlabeled.json", issue1(Some(InProgress))),
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
        ("pull_request/assigned.json", pr2(Some(Review))),
        ("pull_request/closed.unmerged.json", pr2(Some(Done))),
        (
            "pull_request/converted_to_draft.json",
            pr2(Some(InProgress)),
        ),
        ("pull_request/labeled.json", pr2(Some(Review))),
        ("pull_request/opened.json", pr2(Some(Review))),
        ("pull_request/opened.null-body.json", pr2(Some(Review))),
        ("pull_request/ready_for_review.json", pr2(Some(Review))),
        ("pull_request/reopened.json", pr2(Some(Review))),
        (
            "pull_request/review_request_removed.json",
            pr2(Some(Review)),
        ),
        ("pull_request/review_requested.json", pr2(Some(Review))),
        ("pull_request/synchronize.json", pr2(Some(Review))),
        ("pull_request/unassigned.json", pr2(Some(Review))),
        ("pull_request/unlabeled.json", pr2(Some(Review))),
        ("pull_request_review/dismissed.json", pr2(Some(Review))),
        (
            "pull_request_review/submitted.commented.json",
            pr2(Some(Review)),
        ),
        // No `draft` in this PR object: unknown draft counts as not a draft.
        (
            "pull_request_review_comment/created.json",
            pr2(Some(Review)),
        ),
        (
            "pull_request_review_thread/resolved.json",
            pr2(Some(Review)),
        ),
        ("push/push.json", NoCard),
        ("push/push.new-branch.json", NoCard),
        ("push/push.no-username-committer.json", NoCard),
        ("repository/renamed.json", NoCard),
        ("repository/transferred.json", NoCard),
    ]
}

#[test]
fn every_fixture_lands_on_its_card_and_column() {
    for (path, expect) in table() {
        check(path, &expect);
    }
}

/// Every `*.json` under the fixture directory except SOURCES.json, relative to it.
fn fixture_files() -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut dirs = vec![PathBuf::from(FIXTURES)];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "json")
                && path.file_name().is_some_and(|n| n != "SOURCES.json")
            {
                let rel = path.strip_prefix(FIXTURES).unwrap();
                found.insert(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    found
}

#[test]
fn the_table_covers_every_fixture_file() {
    let listed: BTreeSet<String> = table().iter().map(|(p, _)| (*p).to_owned()).collect();
    assert_eq!(listed.len(), table().len(), "a fixture is listed twice");
    assert_eq!(listed, fixture_files());
}

#[test]
fn renamed_repository_is_known_by_its_id_and_new_name() {
    let (event, payload) = load("repository/renamed.json");
    let mut state = FoldState::default();
    assert_eq!(state.apply(&event, &payload), None);
    assert_eq!(
        state.repo(186_853_261).and_then(|r| r.full_name()),
        Some("Octocoders/Hello-World")
    );
}

/// A pull request seen as an issue (issues.milestoned / demilestoned, issue_comment) lands on
/// the PR's own card.
#[test]
fn pr_seen_as_issue_lands_on_the_pr_card() {
    let (_, mut comment) = load("issue_comment/created.json");
    // The same comment, made on PR #2: GitHub sends the PR as an issue carrying `pull_request`.
    comment["issue"]["number"] = json!(2);
    comment["issue"]["pull_request"] = json!({"url": "https://api.github.com/repos/Codertocat/Hello-World/pulls/2", "merged_at": null});
    let pr_key = CardKey {
        repo_id: CODERTOCAT.1,
        number: 2,
    };
    let mut state = FoldState::default();
    for (event, payload) in [
        load("issues/milestoned.json"),
        load("pull_request/opened.json"),
        load("issues/demilestoned.json"),
        ("issue_comment".to_owned(), comment),
    ] {
        assert_eq!(state.apply(&event, &payload), Some(pr_key), "{event}");
    }
    let keys: Vec<CardKey> = state.cards().map(|(k, _)| k).collect();
    assert_eq!(keys, [pr_key]);
    assert_eq!(
        state.card(pr_key).map(CardState::kind),
        Some(Kind::PullRequest)
    );
}

/// The issue-comment view of a merged PR is enough to put it in `done`.
#[test]
fn merged_at_on_a_pr_seen_as_issue_is_done() {
    let (_, mut comment) = load("issue_comment/created.json");
    comment["issue"]["number"] = json!(2);
    comment["issue"]["pull_request"] = json!({"merged_at": "2019-05-15T15:30:00Z"});
    let mut state = FoldState::default();
    state.apply("issue_comment", &comment);
    let (_, card) = state.cards().next().unwrap();
    assert_eq!(board::column(card), Some(Column::Done));
}

// ---------------------------------------------------------------------------------------------
// Canonical JSON

/// The board below, written by hand; its digest was computed with
/// `printf '%s' '<bytes without digest>' | sha256sum`, not by this code.
const DEMO_WITHOUT_DIGEST: &str = r#"{"columns":{"backlog":[],"done":[{"assignees":[],"kind":"issue","labels":[],"number":3,"state":"closed","title":"Café","updated_at":"2024-01-03T00:00:00Z"}],"in_progress":[{"assignees":["ann","bob"],"kind":"pull_request","labels":[],"number":1,"state":"open","title":"Fix","updated_at":"2024-01-01T00:00:00Z"}],"review":[],"todo":[{"assignees":[],"kind":"issue","labels":["bug","ready"],"number":2,"state":"open","title":"Plan \"it\"","updated_at":"2024-01-02T00:00:00Z"}]},"repo":"octo/demo"}"#;
const DEMO_DIGEST: &str = "sha256:96deebfddbe29917c3292ab28d09a0b68cab5f3f8ae1db5d340185cba6e9bb78";

fn demo_history() -> Vec<(&'static str, Value)> {
    let repo = json!({"id": 1, "full_name": "octo/demo", "updated_at": "2024-01-01T00:00:00Z"});
    vec![
        (
            "pull_request",
            json!({"action": "converted_to_draft", "repository": repo, "pull_request": {
                "number": 1, "title": "Fix", "state": "open", "draft": true, "merged": false,
                "labels": [], "assignees": [{"login": "bob"}, {"login": "ann"}],
                "milestone": null, "updated_at": "2024-01-01T00:00:00Z"}}),
        ),
        (
            "issues",
            json!({"action": "labeled", "repository": repo, "issue": {
                "number": 2, "title": "Plan \"it\"", "state": "open",
                "labels": [{"name": "ready"}, {"name": "bug"}], "assignees": [],
                "milestone": null, "updated_at": "2024-01-02T00:00:00Z"}}),
        ),
        (
            "issues",
            json!({"action": "closed", "repository": repo, "issue": {
                "number": 3, "title": "Café", "state": "closed", "labels": [], "assignees": [],
                "milestone": {"title": "v1"}, "updated_at": "2024-01-03T00:00:00Z"}}),
        ),
        (
            "issues",
            json!({"action": "deleted", "repository": repo, "issue": {
                "number": 4, "title": "Gone", "state": "open", "updated_at": "2024-01-04T00:00:00Z"}}),
        ),
    ]
}

#[test]
fn board_json_is_canonical_with_a_pinned_digest() {
    let mut expected = DEMO_WITHOUT_DIGEST.to_owned();
    // Keys sorted: "digest" goes between "columns" and "repo".
    let at = expected.find(r#","repo":"#).unwrap();
    expected.insert_str(at, &format!(r#","digest":"{DEMO_DIGEST}""#));

    let mut forward = FoldState::default();
    for (event, payload) in demo_history() {
        forward.apply(event, &payload);
    }
    let mut backward = FoldState::default();
    for (event, payload) in demo_history().into_iter().rev() {
        backward.apply(event, &payload);
    }
    for state in [&forward, &backward] {
        let board = state.board("octo/demo").unwrap();
        assert_eq!(String::from_utf8(board.json.clone()).unwrap(), expected);
        assert_eq!(board.digest, DEMO_DIGEST);
        let counts: Vec<usize> = Column::ALL.iter().map(|c| board.counts[c]).collect();
        assert_eq!(counts, [0, 1, 1, 0, 1]);
    }
    // render() itself ignores the order its cards come in.
    let cards: Vec<(i64, CardState)> = forward
        .cards()
        .map(|(k, c)| (k.number, c.clone()))
        .collect();
    let reversed = board::render("octo/demo", cards.iter().rev().map(|(n, c)| (*n, c)));
    assert_eq!(reversed.json, expected.as_bytes());
}

// ---------------------------------------------------------------------------------------------
// Order-independence and idempotence, by property

const TIMES: &[&str] = &[
    "2024-01-01T00:00:00Z",
    "2024-01-02T00:00:00Z",
    // The same instant as the previous one, written differently: a tie with different strings.
    "2024-01-02T00:00:00+00:00",
    "2024-01-03T00:00:00Z",
];

fn time() -> impl Strategy<Value = Option<&'static str>> {
    prop_oneof![1 => Just(None), 6 => proptest::sample::select(TIMES).prop_map(Some)]
}

fn users(names: &'static [&'static str], key: &'static str) -> impl Strategy<Value = Value> {
    proptest::sample::subsequence(names, 0..=names.len())
        .prop_shuffle()
        .prop_map(move |picked| {
            Value::Array(picked.into_iter().map(|n| json!({ key: n })).collect())
        })
}

/// An issue or pull-request object with any subset of its fields present.
fn item_object(is_pr: bool) -> impl Strategy<Value = Value> {
    (
        1..=4i64,
        time(),
        proptest::option::of(proptest::sample::select(&["a", "b", "c"][..])),
        proptest::option::weighted(0.8, prop_oneof![3 => Just("open"), 1 => Just("closed")]),
        proptest::option::of(users(&["bug", "ready", "x"], "name")),
        proptest::option::of(users(&["ann", "bob"], "login")),
        proptest::option::of(any::<bool>()),
        proptest::option::of(proptest::bool::weighted(0.1)),
        0..4u8,
    )
        .prop_map(
            move |(number, at, title, state, labels, assignees, draft, merged, milestone)| {
                let mut o = serde_json::Map::new();
                o.insert("number".into(), json!(number));
                let mut put = |k: &str, v: Option<Value>| {
                    if let Some(v) = v {
                        o.insert(k.into(), v);
                    }
                };
                put("updated_at", at.map(|t| json!(t)));
                put("title", title.map(|t| json!(t)));
                put("state", state.map(|t| json!(t)));
                put("labels", labels);
                put("assignees", assignees);
                put("draft", draft.map(|d| json!(d)));
                put(
                    "milestone",
                    match milestone {
                        0 => None,
                        1 => Some(Value::Null),
                        2 => Some(json!({"title": "v1"})),
                        _ => Some(json!({"title": "v2"})),
                    },
                );
                if is_pr {
                    put("merged", merged.map(|m| json!(m)));
                }
                Value::Object(o)
            },
        )
}

/// `repository` of a payload: two repository ids, each seen under two names at several times.
fn repository() -> impl Strategy<Value = Value> {
    (
        prop_oneof![
            Just((10, ["a/one", "a/uno"])),
            Just((20, ["b/two", "b/dos"]))
        ],
        0..2usize,
        time(),
    )
        .prop_map(|((id, names), which, at)| {
            let mut repo = json!({"id": id, "full_name": names[which]});
            if let Some(at) = at {
                repo["updated_at"] = json!(at);
            }
            repo
        })
}

/// One delivery: `(event, payload)`.
fn delivery() -> impl Strategy<Value = (String, Value)> {
    // Tombstones are rare, so most histories keep visible cards to compare.
    let issue_action = prop_oneof![
        12 => proptest::sample::select(&["opened", "edited", "closed", "labeled"][..]),
        1 => proptest::sample::select(&["deleted", "transferred"][..]),
    ];
    let issue =
        (issue_action, repository(), item_object(false)).prop_map(|(action, repo, issue)| {
            (
                "issues".to_owned(),
                json!({"action": action, "repository": repo, "issue": issue}),
            )
        });
    // A pull request seen as an issue, possibly with merged_at, via issues or issue_comment.
    let pr_as_issue = (
        proptest::sample::select(&["issues", "issue_comment"][..]),
        repository(),
        item_object(false),
        prop_oneof![6 => Just(None), 1 => time().prop_map(Some)],
    )
        .prop_map(|(event, repo, mut issue, merged_at)| {
            issue["pull_request"] = match merged_at {
                None => json!({"url": "u"}),
                Some(at) => json!({"url": "u", "merged_at": at}),
            };
            let action = if event == "issues" {
                "milestoned"
            } else {
                "created"
            };
            (
                event.to_owned(),
                json!({"action": action, "repository": repo, "issue": issue}),
            )
        });
    let pr = (
        proptest::sample::select(&["pull_request", "pull_request_review"][..]),
        repository(),
        item_object(true),
    )
        .prop_map(|(event, repo, pr)| {
            (
                event.to_owned(),
                json!({"action": "edited", "repository": repo, "pull_request": pr}),
            )
        });
    let rename = repository().prop_map(|repo| {
        (
            "repository".to_owned(),
            json!({"action": "renamed", "repository": repo}),
        )
    });
    prop_oneof![4 => issue, 3 => pr_as_issue, 4 => pr, 1 => rename]
}

/// Every fixture in table order, read once.
fn all_fixtures() -> &'static [(String, Value)] {
    static ALL: OnceLock<Vec<(String, Value)>> = OnceLock::new();
    ALL.get_or_init(|| table().iter().map(|(p, _)| load(p)).collect())
}

fn fold<'a>(history: impl IntoIterator<Item = &'a (String, Value)>) -> FoldState {
    let mut state = FoldState::default();
    for (event, payload) in history {
        state.apply(event, payload);
    }
    state
}

/// `(repo, json, digest)` of one board.
type RenderedBoard = (String, Vec<u8>, String);

/// One delivery: `(event, payload)`.
type Delivery = (String, Value);

/// Everything observable about a state: its serialised bytes and every board's bytes.
fn rendered(state: &FoldState) -> (Vec<u8>, Vec<RenderedBoard>) {
    let boards = state
        .boards()
        .into_iter()
        .map(|b| (b.repo, b.json, b.digest))
        .collect();
    (serde_json::to_vec(state).unwrap(), boards)
}

/// A history, and the same history with some deliveries repeated, in a shuffled order.
fn history_and_redelivery() -> impl Strategy<Value = (Vec<Delivery>, Vec<Delivery>)> {
    proptest::collection::vec(delivery(), 1..24).prop_flat_map(|history| {
        let n = history.len();
        (Just(history), proptest::collection::vec(0..n, 0..10)).prop_flat_map(
            |(history, repeats)| {
                let mut all = history.clone();
                all.extend(repeats.iter().map(|i| history[*i].clone()));
                (Just(history), Just(all).prop_shuffle())
            },
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_order_with_duplicates_gives_identical_boards(
        (history, redelivered) in history_and_redelivery()
    ) {
        let once = fold(&history);
        let again = fold(&redelivered);
        prop_assert_eq!(&once, &again);
        prop_assert_eq!(rendered(&once), rendered(&again));
    }

    #[test]
    fn merging_split_histories_equals_folding_the_whole(
        (history, sides) in proptest::collection::vec(delivery(), 1..24)
            .prop_flat_map(|h| { let n = h.len(); (Just(h), proptest::collection::vec(any::<bool>(), n)) })
    ) {
        let whole = fold(&history);
        let left = fold(history.iter().zip(&sides).filter(|(_, s)| **s).map(|(d, _)| d));
        let right = fold(history.iter().zip(&sides).filter(|(_, s)| !**s).map(|(d, _)| d));
        let mut lr = left.clone();
        lr.merge_state(&right);
        let mut rl = right.clone();
        rl.merge_state(&left);
        prop_assert_eq!(&lr, &whole);
        prop_assert_eq!(&rl, &whole);
        prop_assert_eq!(rendered(&lr), rendered(&whole));
        // Idempotent: merging a state into itself, or a part into the whole, changes nothing.
        let mut twice = whole.clone();
        twice.merge_state(&whole);
        twice.merge_state(&left);
        prop_assert_eq!(&twice, &whole);
    }

    /// The real fixtures, in any order with duplicates, converge to the same boards too (their
    /// shared timestamps exercise the tie-break; they are not an ordering oracle).
    #[test]
    fn fixtures_in_any_order_give_identical_boards(
        order in Just((0..table().len()).collect::<Vec<usize>>()).prop_shuffle(),
        repeats in proptest::collection::vec(0..table().len(), 0..10),
    ) {
        let all = all_fixtures();
        let sorted = fold(all);
        let shuffled = fold(order.iter().chain(&repeats).map(|i| &all[*i]));
        prop_assert_eq!(&sorted, &shuffled);
        prop_assert_eq!(rendered(&sorted), rendered(&shuffled));
    }
}
