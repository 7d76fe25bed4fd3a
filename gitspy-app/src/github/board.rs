//! The Kanban board of one repository: which column a card belongs in, and the canonical board
//! JSON with its digest (SPEC §1.5).
//!
//! Pure functions of [`CardState`]s, so the live store and `gitspy replay` render byte-identical
//! boards from equal states.
//!
//! # Decisions
//!
//! - **Columns** (first match wins): tombstoned → no card; merged PR → `done`; state `closed` →
//!   `done`; state unknown (or neither `open` nor `closed`) → no card, since nothing honest can be
//!   shown; open draft PR → `in_progress`; open PR → `review` (an unknown draft flag counts as not
//!   a draft: PRs seen only as issue objects often lack it); open issue with an assignee →
//!   `in_progress`; open issue with a milestone or a label named `ready` (ASCII
//!   case-insensitive, as GitHub treats label names) → `todo`; else `backlog`.
//! - **Canonical JSON**: compact, object keys sorted by their UTF-8 bytes at every level (so the
//!   top level reads `columns`, `digest`, `repo` — SPEC's example shows the members, not their
//!   order), all five columns always present, cards in each column sorted by number. Card:
//!   `{"assignees":[logins],"kind","labels":[names],"number","state","title","updated_at"}`
//!   with `null` for a title, state or `updated_at` never observed and `[]` for unknown lists.
//! - **Digest**: `"sha256:" + hex(sha256(canonical bytes of {"columns":…,"repo":…}))`, i.e. the
//!   same object without the `digest` member.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::fold::{CardState, FoldState, Kind};

/// A board column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Column {
    /// Open issues nobody has picked up or planned.
    Backlog,
    /// Open issues with a milestone or a `ready` label.
    Todo,
    /// Assigned open issues and draft pull requests.
    InProgress,
    /// Open, non-draft pull requests.
    Review,
    /// Closed issues and closed or merged pull requests.
    Done,
}

impl Column {
    /// Every column, in board order.
    pub const ALL: [Column; 5] = [
        Column::Backlog,
        Column::Todo,
        Column::InProgress,
        Column::Review,
        Column::Done,
    ];

    /// The name used in the board JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Column::Backlog => "backlog",
            Column::Todo => "todo",
            Column::InProgress => "in_progress",
            Column::Review => "review",
            Column::Done => "done",
        }
    }
}

/// The column of a card; `None` when it is tombstoned or its state is unknown.
pub fn column(card: &CardState) -> Option<Column> {
    if card.is_tombstoned() {
        return None;
    }
    if card.is_merged() {
        return Some(Column::Done);
    }
    match card.state()? {
        "closed" => return Some(Column::Done),
        "open" => {}
        _ => return None,
    }
    if card.kind() == Kind::PullRequest {
        return Some(if card.draft() == Some(true) {
            Column::InProgress
        } else {
            Column::Review
        });
    }
    if !card.assignees().is_empty() {
        return Some(Column::InProgress);
    }
    let has_milestone = matches!(card.milestone(), Some(Some(_)));
    let ready = card
        .labels()
        .iter()
        .any(|label| label.eq_ignore_ascii_case("ready"));
    if has_milestone || ready {
        Some(Column::Todo)
    } else {
        Some(Column::Backlog)
    }
}

/// A rendered board.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Board {
    /// `owner/name` the board is addressed by.
    pub repo: String,
    /// Canonical JSON bytes, digest included (no trailing newline).
    pub json: Vec<u8>,
    /// `sha256:<hex>` of the canonical bytes without the digest member.
    pub digest: String,
    /// Cards per column; every column present.
    pub counts: BTreeMap<Column, usize>,
}

/// Boards of a folded state: the same rendering the store and `gitspy replay` use.
impl FoldState {
    /// One board per repository that has cards and a name, sorted by name.
    pub fn boards(&self) -> Vec<Board> {
        self.addressed()
            .into_iter()
            .map(|(name, repo_id)| render(name, self.repo_cards(repo_id)))
            .collect()
    }

    /// The board addressed by `owner/name`, if that repository has cards.
    pub fn board(&self, full_name: &str) -> Option<Board> {
        let repo_id = *self.addressed().get(full_name)?;
        Some(render(full_name, self.repo_cards(repo_id)))
    }
}

/// Renders the board of `repo_full_name` from its cards (`(number, state)`); hidden cards are
/// skipped. Equal inputs give byte-equal output whatever their order.
pub fn render<'a>(
    repo_full_name: &str,
    cards: impl IntoIterator<Item = (i64, &'a CardState)>,
) -> Board {
    let mut columns: BTreeMap<Column, Vec<(i64, Vec<u8>, Value)>> =
        Column::ALL.iter().map(|c| (*c, Vec::new())).collect();
    for (number, card) in cards {
        let Some(col) = column(card) else {
            continue;
        };
        let value = card_json(number, card);
        let bytes = canonical_json(&value);
        columns.entry(col).or_default().push((number, bytes, value));
    }
    let mut counts = BTreeMap::new();
    let mut columns_json = Map::new();
    for (col, mut cards) in columns {
        // The bytes break ties between equal numbers, so even duplicate input sorts one way.
        cards.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        counts.insert(col, cards.len());
        columns_json.insert(
            col.as_str().to_owned(),
            Value::Array(cards.into_iter().map(|(_, _, v)| v).collect()),
        );
    }
    let mut object = Map::new();
    object.insert("columns".to_owned(), Value::Object(columns_json));
    object.insert("repo".to_owned(), Value::String(repo_full_name.to_owned()));
    let mut object = Value::Object(object);
    let digest = format!(
        "sha256:{}",
        hex::encode(Sha256::digest(canonical_json(&object)))
    );
    if let Value::Object(map) = &mut object {
        map.insert("digest".to_owned(), Value::String(digest.clone()));
    }
    Board {
        repo: repo_full_name.to_owned(),
        json: canonical_json(&object),
        digest,
        counts,
    }
}

/// One card as it appears on the board.
fn card_json(number: i64, card: &CardState) -> Value {
    json!({
        "assignees": card.assignees(),
        "kind": card.kind().as_str(),
        "labels": card.labels(),
        "number": number,
        "state": card.state(),
        "title": card.title(),
        "updated_at": card.updated_at(),
    })
}

/// Canonical JSON bytes: compact, object keys sorted by their UTF-8 bytes at every level.
pub fn canonical_json(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (key, member)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_scalar(&Value::String(key.clone()), out);
                out.push(b':');
                write_canonical(member, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        scalar => write_scalar(scalar, out),
    }
}

/// Writes a string, number, boolean or null as serde_json does. Writing a JSON scalar into a
/// `Vec` cannot fail, so the error arm is unreachable in practice.
fn write_scalar(scalar: &Value, out: &mut Vec<u8>) {
    if serde_json::to_writer(&mut *out, scalar).is_err() {
        out.extend_from_slice(b"null");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::github::fold::{CardKey, ItemObservation, Version};

    /// A snapshot with nothing stated; rows below fill in what they need.
    fn blank() -> ItemObservation {
        ItemObservation {
            key: CardKey {
                repo_id: 1,
                number: 1,
            },
            at: Version(1_000),
            updated_at: Some("1970-01-01T00:00:01Z".to_owned()),
            pull_request: false,
            merged: false,
            tombstone: false,
            title: None,
            state: None,
            draft: None,
            labels: None,
            assignees: None,
            milestone: None,
        }
    }

    fn strings(items: &[&str]) -> Option<Vec<String>> {
        Some(items.iter().map(|s| (*s).to_owned()).collect())
    }

    fn issue(state: &str) -> ItemObservation {
        ItemObservation {
            state: Some(state.to_owned()),
            ..blank()
        }
    }

    fn pr(state: &str, draft: Option<bool>) -> ItemObservation {
        ItemObservation {
            pull_request: true,
            draft,
            ..issue(state)
        }
    }

    /// One row per case: the card a snapshot gives, and the column it must land in.
    fn check(rows: Vec<(&str, ItemObservation, Option<Column>)>) {
        for (name, obs, expect) in rows {
            let card = CardState::from_observation(&obs);
            assert_eq!(column(&card), expect, "row: {name}");
        }
    }

    fn with_assignee(obs: ItemObservation) -> ItemObservation {
        ItemObservation {
            assignees: strings(&["ann"]),
            ..obs
        }
    }

    fn with_milestone(obs: ItemObservation) -> ItemObservation {
        ItemObservation {
            milestone: Some(Some("v1".to_owned())),
            ..obs
        }
    }

    fn with_labels(obs: ItemObservation, labels: &[&str]) -> ItemObservation {
        ItemObservation {
            labels: strings(labels),
            ..obs
        }
    }

    fn merged(obs: ItemObservation) -> ItemObservation {
        ItemObservation {
            merged: true,
            pull_request: true,
            ..obs
        }
    }

    fn tombstoned(obs: ItemObservation) -> ItemObservation {
        ItemObservation {
            tombstone: true,
            ..obs
        }
    }

    #[test]
    fn rule_tombstoned_has_no_column() {
        check(vec![
            ("tombstoned open issue", tombstoned(issue("open")), None),
            (
                "tombstoned merged pr",
                tombstoned(merged(pr("closed", None))),
                None,
            ),
            (
                "tombstoned open draft pr",
                tombstoned(pr("open", Some(true))),
                None,
            ),
            (
                "tombstoned assigned issue",
                tombstoned(with_assignee(issue("open"))),
                None,
            ),
        ]);
    }

    #[test]
    fn rule_merged_pr_is_done() {
        check(vec![
            (
                "merged closed pr",
                merged(pr("closed", Some(false))),
                Some(Column::Done),
            ),
            (
                "merged pr, snapshot still open draft",
                merged(pr("open", Some(true))),
                Some(Column::Done),
            ),
            (
                "merged pr, snapshot still open",
                merged(pr("open", Some(false))),
                Some(Column::Done),
            ),
            (
                "merged pr with unknown state",
                merged(blank()),
                Some(Column::Done),
            ),
        ]);
    }

    #[test]
    fn rule_closed_is_done() {
        check(vec![
            (
                "closed draft pr",
                pr("closed", Some(true)),
                Some(Column::Done),
            ),
            (
                "closed unmerged pr",
                pr("closed", Some(false)),
                Some(Column::Done),
            ),
            ("closed issue", issue("closed"), Some(Column::Done)),
            (
                "closed issue with assignee, milestone and ready",
                with_labels(with_milestone(with_assignee(issue("closed"))), &["ready"]),
                Some(Column::Done),
            ),
        ]);
    }

    #[test]
    fn rule_unknown_state_has_no_column() {
        check(vec![
            ("issue with unknown state", blank(), None),
            (
                "assigned issue with unknown state",
                with_assignee(blank()),
                None,
            ),
            ("issue with an unknown state value", issue("merged"), None),
        ]);
    }

    #[test]
    fn rule_open_draft_pr_is_in_progress() {
        check(vec![
            (
                "open draft pr",
                pr("open", Some(true)),
                Some(Column::InProgress),
            ),
            (
                "open draft pr with milestone and ready",
                with_labels(with_milestone(pr("open", Some(true))), &["ready"]),
                Some(Column::InProgress),
            ),
        ]);
    }

    #[test]
    fn rule_open_pr_is_review() {
        check(vec![
            ("open pr", pr("open", Some(false)), Some(Column::Review)),
            (
                "open pr with unknown draft",
                pr("open", None),
                Some(Column::Review),
            ),
            (
                "open pr with assignee",
                with_assignee(pr("open", Some(false))),
                Some(Column::Review),
            ),
            (
                "open pr with milestone and ready",
                with_labels(with_milestone(pr("open", None)), &["ready"]),
                Some(Column::Review),
            ),
        ]);
    }

    #[test]
    fn rule_open_issue_with_assignee_is_in_progress() {
        check(vec![
            (
                "open issue with assignee",
                with_assignee(issue("open")),
                Some(Column::InProgress),
            ),
            (
                "open issue with assignee, milestone and ready",
                with_labels(with_milestone(with_assignee(issue("open"))), &["ready"]),
                Some(Column::InProgress),
            ),
            (
                "assignee from the issue's draft-less snapshot",
                ItemObservation {
                    draft: Some(true),
                    ..with_assignee(issue("open"))
                },
                Some(Column::InProgress),
            ),
        ]);
    }

    #[test]
    fn rule_open_issue_with_milestone_or_ready_is_todo() {
        check(vec![
            (
                "open issue with milestone",
                with_milestone(issue("open")),
                Some(Column::Todo),
            ),
            (
                "open issue with ready label",
                with_labels(issue("open"), &["bug", "ready"]),
                Some(Column::Todo),
            ),
            (
                "open issue with Ready label",
                with_labels(issue("open"), &["Ready"]),
                Some(Column::Todo),
            ),
            (
                "open issue with milestone and empty assignees",
                ItemObservation {
                    assignees: strings(&[]),
                    ..with_milestone(issue("open"))
                },
                Some(Column::Todo),
            ),
        ]);
    }

    #[test]
    fn rule_else_backlog() {
        check(vec![
            (
                "open issue, nothing else known",
                issue("open"),
                Some(Column::Backlog),
            ),
            (
                "open issue, milestone known null, empty lists",
                ItemObservation {
                    milestone: Some(None),
                    labels: strings(&[]),
                    assignees: strings(&[]),
                    ..issue("open")
                },
                Some(Column::Backlog),
            ),
            (
                "open issue with labels that are not ready",
                with_labels(issue("open"), &["bug", "ready-ish", "not ready"]),
                Some(Column::Backlog),
            ),
        ]);
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let value = json!({"b": 1, "a": {"z": [true, null], "y": "é\"x"}});
        assert_eq!(
            String::from_utf8(canonical_json(&value)).unwrap(),
            r#"{"a":{"y":"é\"x","z":[true,null]},"b":1}"#
        );
    }

    #[test]
    fn empty_board_has_all_columns_and_zero_counts() {
        let board = render("o/r", std::iter::empty());
        let text = String::from_utf8(board.json.clone()).unwrap();
        assert!(
            text.starts_with(
                r#"{"columns":{"backlog":[],"done":[],"in_progress":[],"review":[],"todo":[]},"digest":"sha256:"#
            ),
            "{text}"
        );
        assert!(text.ends_with(r#"","repo":"o/r"}"#), "{text}");
        assert_eq!(board.counts.len(), 5);
        assert!(board.counts.values().all(|n| *n == 0));
    }
}
