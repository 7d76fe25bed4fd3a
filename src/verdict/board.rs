//! The board oracle (`board_matches_model`): the board GitSpy must show, computed from the payload
//! generator's own record of every item ([`ItemSnapshot`], the simulation's true state right
//! after each event) for the deliveries the store reports processed — and its comparison with
//! the live `GET /boards/{owner}/{repo}`.
//!
//! Written from the fold rules of the board contract, not from GitSpy's code:
//! - a card is keyed by (repository id, number);
//! - every field takes the value of the snapshot with the newest `updated_at`; when snapshots
//!   share the newest `updated_at` but disagree, every one of their values is accepted, and every
//!   column a combination of them gives (GitSpy's tie-break is its own business; the generator
//!   sends a few same-second events on one item, and `replay_order_independent` is what checks
//!   that the tie-break does not depend on arrival order);
//! - a card is a pull request once any snapshot says so; `merged` only goes false → true;
//! - a tombstone (deleted/transferred) always wins: no card;
//! - columns, first match wins: merged PR → `done`; closed → `done`; open draft PR →
//!   `in_progress`; open PR → `review`; open issue with an assignee → `in_progress`; open issue
//!   with a milestone or a `ready` label → `todo`; else `backlog`.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::load::ItemSnapshot;

/// The board columns in board order.
pub const COLUMNS: [&str; 5] = ["backlog", "todo", "in_progress", "review", "done"];

/// Every item snapshot the generator wrote, by delivery id.
#[derive(Debug, Clone, Default)]
pub struct BoardModel {
    snapshots: BTreeMap<String, ItemSnapshot>,
}

impl BoardModel {
    /// Records the snapshot a delivery carries (re-recording the same id is a no-op: copies are
    /// exact).
    pub fn record(&mut self, delivery: &str, snapshot: &ItemSnapshot) {
        self.snapshots
            .entry(delivery.to_owned())
            .or_insert_with(|| snapshot.clone());
    }

    /// The repositories (`owner/name`) the model knows.
    pub fn repos(&self) -> BTreeSet<String> {
        self.snapshots.values().map(|s| s.repo.clone()).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.snapshots.is_empty()
    }

    /// The expected board of every repository, folded from the snapshots of the deliveries for
    /// which `processed` holds.
    pub fn expected(&self, processed: impl Fn(&str) -> bool) -> BTreeMap<String, ExpectedBoard> {
        let mut by_card: BTreeMap<(String, u64, u64), Vec<&ItemSnapshot>> = BTreeMap::new();
        let mut folded = 0;
        for (id, s) in &self.snapshots {
            if processed(id) {
                folded += 1;
                by_card
                    .entry((s.repo.clone(), s.repo_id, s.number))
                    .or_default()
                    .push(s);
            }
        }
        let mut boards: BTreeMap<String, ExpectedBoard> = BTreeMap::new();
        for ((repo, _, number), snaps) in by_card {
            let board = boards.entry(repo).or_default();
            match fold_card(number, &snaps) {
                Some(card) => {
                    board.cards.insert(number, card);
                }
                None => {
                    board.tombstoned.insert(number);
                }
            }
        }
        for b in boards.values_mut() {
            b.deliveries = folded;
        }
        boards
    }
}

/// What one card must look like. Each field lists the values accepted (one, unless snapshots
/// tie on the newest `updated_at` with different values).
#[derive(Debug, Clone, PartialEq)]
pub struct ExpectedCard {
    pub number: u64,
    pub kind: &'static str,
    pub columns: BTreeSet<&'static str>,
    pub title: BTreeSet<String>,
    pub state: BTreeSet<&'static str>,
    pub labels: BTreeSet<Vec<String>>,
    pub assignees: BTreeSet<Vec<String>>,
    /// Unix seconds.
    pub updated_at: i64,
}

/// The expected board of one repository.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExpectedBoard {
    /// Cards by number (tombstoned items have none).
    pub cards: BTreeMap<u64, ExpectedCard>,
    /// Processed deliveries with an item that were folded (over all repositories).
    pub deliveries: usize,
    /// Numbers of the items deleted or transferred: they must have no card.
    pub tombstoned: BTreeSet<u64>,
}

fn fold_card(number: u64, snaps: &[&ItemSnapshot]) -> Option<ExpectedCard> {
    if snaps.iter().any(|s| s.tombstone) {
        return None;
    }
    let newest_at = snaps.iter().map(|s| s.updated_at).max()?;
    let newest: Vec<&ItemSnapshot> = snaps
        .iter()
        .copied()
        .filter(|s| s.updated_at == newest_at)
        .collect();
    let pull_request = snaps.iter().any(|s| s.pull_request);
    let merged = snaps.iter().any(|s| s.merged);
    // GitSpy keeps each field apart, so on a tie the live card may combine fields of different
    // tied snapshots: every combination's column is accepted.
    let set = |f: &dyn Fn(&ItemSnapshot) -> bool| -> BTreeSet<bool> {
        newest.iter().map(|s| f(s)).collect()
    };
    let (opens, drafts, assigned, milestones, ready) = (
        set(&|s| s.open),
        set(&|s| s.draft),
        set(&|s| !s.assignees.is_empty()),
        set(&|s| s.milestone),
        set(&|s| s.labels.iter().any(|l| l.eq_ignore_ascii_case("ready"))),
    );
    let mut columns = BTreeSet::new();
    for &open in &opens {
        for &draft in &drafts {
            for &assigned in &assigned {
                for &milestone in &milestones {
                    for &ready in &ready {
                        columns.insert(column(
                            pull_request,
                            merged,
                            Fields {
                                open,
                                draft,
                                assigned,
                                milestone,
                                ready,
                            },
                        ));
                    }
                }
            }
        }
    }
    Some(ExpectedCard {
        number,
        kind: if pull_request {
            "pull_request"
        } else {
            "issue"
        },
        columns,
        title: newest.iter().map(|s| s.title.clone()).collect(),
        state: newest
            .iter()
            .map(|s| if s.open { "open" } else { "closed" })
            .collect(),
        labels: newest.iter().map(|s| s.labels.clone()).collect(),
        assignees: newest.iter().map(|s| s.assignees.clone()).collect(),
        updated_at: newest_at,
    })
}

/// The fields of a card its column depends on.
struct Fields {
    open: bool,
    draft: bool,
    assigned: bool,
    milestone: bool,
    /// A label named `ready` (any case).
    ready: bool,
}

fn column(pull_request: bool, merged: bool, f: Fields) -> &'static str {
    if (pull_request && merged) || !f.open {
        "done"
    } else if pull_request && f.draft {
        "in_progress"
    } else if pull_request {
        "review"
    } else if f.assigned {
        "in_progress"
    } else if f.milestone || f.ready {
        "todo"
    } else {
        "backlog"
    }
}

/// One card of a live board.
#[derive(Debug, Clone, PartialEq)]
struct LiveCard {
    column: String,
    kind: Option<String>,
    title: Option<String>,
    state: Option<String>,
    labels: Vec<String>,
    assignees: Vec<String>,
    updated_at: Option<String>,
}

fn live_cards(board: &Value) -> Result<BTreeMap<u64, LiveCard>, String> {
    let columns = board
        .get("columns")
        .and_then(Value::as_object)
        .ok_or("the board has no `columns` object")?;
    let mut out = BTreeMap::new();
    for (column, cards) in columns {
        let cards = cards
            .as_array()
            .ok_or_else(|| format!("column `{column}` is not a list"))?;
        for c in cards {
            let number = c
                .get("number")
                .and_then(Value::as_u64)
                .ok_or_else(|| format!("a card in `{column}` has no number"))?;
            let strings = |k: &str| -> Vec<String> {
                let mut v: Vec<String> = c
                    .get(k)
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|x| x.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default();
                v.sort();
                v
            };
            let text = |k: &str| c.get(k).and_then(Value::as_str).map(str::to_owned);
            let card = LiveCard {
                column: column.clone(),
                kind: text("kind"),
                title: text("title"),
                state: text("state"),
                labels: strings("labels"),
                assignees: strings("assignees"),
                updated_at: text("updated_at"),
            };
            if out.insert(number, card).is_some() {
                return Err(format!("card #{number} appears twice on the board"));
            }
        }
    }
    Ok(out)
}

/// The differences between the expected board and a live one: one line per differing card,
/// naming every differing field as `field live ≠ expected`.
pub fn compare(expected: &ExpectedBoard, live: &Value) -> Result<Vec<String>, String> {
    let live = live_cards(live)?;
    let numbers: BTreeSet<u64> = expected.cards.keys().chain(live.keys()).copied().collect();
    let mut diffs = Vec::new();
    for n in numbers {
        match (expected.cards.get(&n), live.get(&n)) {
            (Some(_), None) => diffs.push(format!("card #{n}: missing from the board")),
            (None, Some(l)) if expected.tombstoned.contains(&n) => diffs.push(format!(
                "card #{n}: on the board ({}) but a processed delivery deleted or transferred it",
                l.column
            )),
            (None, Some(l)) => diffs.push(format!(
                "card #{n}: on the board ({}) but no processed delivery puts it there",
                l.column
            )),
            (Some(e), Some(l)) => {
                let fields = card_diff(e, l);
                if !fields.is_empty() {
                    diffs.push(format!("card #{n}: {}", fields.join(", ")));
                }
            }
            (None, None) => {}
        }
    }
    Ok(diffs)
}

fn one_of<T: std::fmt::Debug>(set: &BTreeSet<T>) -> String {
    let v: Vec<String> = set.iter().map(|x| format!("{x:?}")).collect();
    v.join(" or ")
}

fn card_diff(e: &ExpectedCard, l: &LiveCard) -> Vec<String> {
    let mut out = Vec::new();
    if !e.columns.contains(l.column.as_str()) {
        out.push(format!("column {:?} ≠ {}", l.column, one_of(&e.columns)));
    }
    if l.kind.as_deref() != Some(e.kind) {
        out.push(format!("kind {:?} ≠ {:?}", l.kind, e.kind));
    }
    if !l.title.as_ref().is_some_and(|t| e.title.contains(t)) {
        out.push(format!("title {:?} ≠ {}", l.title, one_of(&e.title)));
    }
    if !l.state.as_deref().is_some_and(|s| e.state.contains(s)) {
        out.push(format!("state {:?} ≠ {}", l.state, one_of(&e.state)));
    }
    if !e.labels.contains(&l.labels) {
        out.push(format!("labels {:?} ≠ {}", l.labels, one_of(&e.labels)));
    }
    if !e.assignees.contains(&l.assignees) {
        out.push(format!(
            "assignees {:?} ≠ {}",
            l.assignees,
            one_of(&e.assignees)
        ));
    }
    let live_at = l.updated_at.as_deref().and_then(parse_rfc3339);
    if live_at != Some(e.updated_at) {
        out.push(format!(
            "updated_at {:?} ≠ {:?}",
            l.updated_at,
            format_rfc3339(e.updated_at)
        ));
    }
    out
}

fn parse_rfc3339(s: &str) -> Option<i64> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp())
}

fn format_rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| unix.to_string())
}

/// The expected board rendered in the board JSON shape (for the report and for tests).
pub fn render(repo: &str, expected: &ExpectedBoard) -> Value {
    let mut columns = serde_json::Map::new();
    for c in COLUMNS {
        columns.insert(c.to_owned(), Value::Array(Vec::new()));
    }
    for card in expected.cards.values() {
        let column = card.columns.iter().next().copied().unwrap_or("backlog");
        if let Some(Value::Array(list)) = columns.get_mut(column) {
            list.push(serde_json::json!({
                "number": card.number,
                "kind": card.kind,
                "title": card.title.iter().next(),
                "state": card.state.iter().next(),
                "labels": card.labels.iter().next(),
                "assignees": card.assignees.iter().next(),
                "updated_at": format_rfc3339(card.updated_at),
            }));
        }
    }
    serde_json::json!({ "repo": repo, "columns": columns })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(number: u64, at: i64) -> ItemSnapshot {
        ItemSnapshot {
            repo: "o/r".into(),
            repo_id: 7,
            number,
            pull_request: false,
            title: format!("t{at}"),
            open: true,
            labels: vec![],
            assignees: vec![],
            milestone: false,
            draft: false,
            merged: false,
            updated_at: at,
            tombstone: false,
        }
    }

    fn model(snaps: &[(&str, ItemSnapshot)]) -> BoardModel {
        let mut m = BoardModel::default();
        for (id, s) in snaps {
            m.record(id, s);
        }
        m
    }

    #[test]
    fn newest_snapshot_wins_whatever_the_order_and_only_processed_ones_count() {
        let mut older = snap(1, 100);
        older.labels = vec!["ready".into()];
        let mut newer = snap(1, 200);
        newer.assignees = vec!["hubot".into()];
        let m = model(&[("b", newer), ("a", older), ("c", snap(2, 50))]);
        let all = m.expected(|_| true);
        let card = &all["o/r"].cards[&1];
        assert_eq!(card.title, BTreeSet::from(["t200".to_owned()]));
        assert_eq!(card.columns, BTreeSet::from(["in_progress"]));
        assert_eq!(card.updated_at, 200);
        assert_eq!(all["o/r"].cards.len(), 2);
        // Without the newer delivery processed, the older snapshot is what the board shows.
        let some = m.expected(|id| id != "b");
        assert_eq!(some["o/r"].cards[&1].columns, BTreeSet::from(["todo"]));
    }

    #[test]
    fn merged_only_goes_true_kind_is_sticky_and_tombstones_win() {
        let mut pr = snap(3, 100);
        pr.pull_request = true;
        pr.merged = true;
        pr.open = false;
        let mut later = snap(3, 200);
        later.open = true; // a stale-looking later snapshot cannot unmerge
        let mut gone = snap(4, 100);
        gone.tombstone = true;
        let m = model(&[("a", pr), ("b", later), ("c", gone), ("d", snap(4, 300))]);
        let b = &m.expected(|_| true)["o/r"];
        assert_eq!(b.cards[&3].kind, "pull_request");
        assert_eq!(b.cards[&3].columns, BTreeSet::from(["done"]));
        assert!(!b.cards.contains_key(&4));
    }

    #[test]
    fn a_live_board_equal_to_the_model_passes_and_a_tampered_field_is_named() {
        let mut s = snap(5, 1_735_689_700);
        s.labels = vec!["bug".into(), "ready".into()];
        let m = model(&[("a", s), ("b", snap(6, 1_735_689_800))]);
        let expected = &m.expected(|_| true)["o/r"];
        let live = render("o/r", expected);
        assert_eq!(compare(expected, &live), Ok(vec![]));

        let mut tampered = live.clone();
        tampered["columns"]["todo"][0]["title"] = Value::from("something else");
        let diffs = compare(expected, &tampered).unwrap();
        assert_eq!(
            diffs,
            vec![r#"card #5: title Some("something else") ≠ "t1735689700""#.to_owned()]
        );

        let mut moved = live.clone();
        let card = moved["columns"]["backlog"][0].clone();
        moved["columns"]["backlog"] = Value::Array(vec![]);
        moved["columns"]["done"] = Value::Array(vec![card]);
        let diffs = compare(expected, &moved).unwrap();
        assert_eq!(
            diffs,
            vec![r#"card #6: column "done" ≠ "backlog""#.to_owned()]
        );

        let mut missing = live;
        missing["columns"]["todo"] = Value::Array(vec![]);
        assert_eq!(
            compare(expected, &missing).unwrap(),
            vec!["card #5: missing from the board".to_owned()]
        );
    }

    #[test]
    fn on_a_tie_every_combination_of_the_tied_fields_gives_an_accepted_column() {
        let a = snap(8, 1_735_689_900);
        let mut b = snap(8, 1_735_689_900);
        b.assignees = vec!["hubot".into()];
        b.milestone = true;
        let m = model(&[("a", a), ("b", b)]);
        let card = &m.expected(|_| true)["o/r"].cards[&8];
        // a alone: backlog; b alone: in_progress; a's assignees with b's milestone: todo.
        assert_eq!(
            card.columns,
            BTreeSet::from(["backlog", "in_progress", "todo"])
        );
        assert_eq!(card.assignees.len(), 2);
    }

    #[test]
    fn a_card_left_on_the_board_after_its_tombstone_is_named() {
        let mut gone = snap(7, 1_735_689_900);
        gone.tombstone = true;
        let m = model(&[("a", snap(7, 1_735_689_800)), ("b", gone)]);
        let expected = &m.expected(|_| true)["o/r"];
        assert!(expected.cards.is_empty());
        assert_eq!(expected.tombstoned, BTreeSet::from([7]));
        // A GitSpy that ignored the delete still shows the card from the earlier snapshot.
        let still = model(&[("a", snap(7, 1_735_689_800))]);
        let live = render("o/r", &still.expected(|_| true)["o/r"]);
        assert_eq!(
            compare(expected, &live).unwrap(),
            vec![
                "card #7: on the board (backlog) but a processed delivery deleted or transferred it"
                    .to_owned()
            ]
        );
        // The delete not processed yet: the card must still be there.
        let before = &m.expected(|id| id == "a")["o/r"];
        assert_eq!(compare(before, &live), Ok(vec![]));
    }
}
