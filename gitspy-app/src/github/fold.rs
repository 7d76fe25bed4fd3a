//! The fold: how GitHub webhook payloads become card and repository state (SPEC §1.5).
//!
//! Pure logic plus serde — no HTTP, Redis or SQLite here — so the worker, the store and
//! `gitspy replay` share exactly one definition of "what the board knows".
//!
//! # Model
//!
//! Every payload is read as a **snapshot**, never as an operation: [`observe`] extracts what the
//! payload says about at most one item (issue or pull request) and about the repository it came
//! from. The state built from observations is a join-semilattice — merging is commutative,
//! associative and idempotent — so the result does not depend on delivery order or on
//! duplicates, and two partial states can be unioned with [`FoldState::merge_state`].
//!
//! # Rules decided here
//!
//! - **Card key**: `(repository.id, number)`. Pull requests that arrive as issue objects (the
//!   `issue` of `issues` / `issue_comment` events carrying a non-null `pull_request`) land on the
//!   same card as the `pull_request` object of `pull_request*` events.
//! - **Which events carry an item**: `issues` and `issue_comment` (the `issue` object);
//!   `pull_request`, `pull_request_review`, `pull_request_review_comment` and
//!   `pull_request_review_thread` (the `pull_request` object). Every other event (push, ping,
//!   label, milestone, repository, projects_v2_item, …) carries no item. A payload without an
//!   integer `repository.id` or an integer item `number` carries no item either: it cannot be
//!   keyed.
//! - **Unfoldable deliveries**: a payload of an item event whose `repository` or item object
//!   (`issue` / `pull_request`), or their `id` / `number`, is present with the wrong type (a
//!   string where an object must be, a number as text) is not a snapshot at all; GitHub never
//!   sends one. [`unfoldable`] names it, and the worker fails such a delivery (retried, then
//!   dead-lettered) instead of logging it as processed. Absent fields stay "not said".
//! - **Field versions**: every field present in the item is versioned by the item's own
//!   `updated_at` (RFC 3339, kept as unix milliseconds; integer unix seconds are accepted too).
//!   A missing or unparseable `updated_at` gives the lowest version ([`Version::UNKNOWN`]), so any
//!   dated snapshot beats it.
//! - **Per-field newest wins, ties broken by value**: a field is replaced when the incoming
//!   version is greater, or when the versions are equal and the values differ and the incoming
//!   value ranks higher by `(sha256(json(value)), json(value))` — the bytes compare only after
//!   the hash, which makes the order total even under a hash collision. GitHub's own examples
//!   share timestamps across different states; at such a tie the result is arbitrary but the
//!   same for every delivery order. Fields are independent registers: a tie can pick `state`
//!   from one snapshot and `draft` from another.
//! - **Absent vs null vs empty**: an absent field is unknown and changes nothing; `milestone:
//!   null` is the known value "no milestone"; `labels: []` / `assignees: []` are known empty
//!   lists. When `assignees` is absent but the older singular `assignee` is present, it stands
//!   in (`null` → `[]`, a user → `[login]`). Labels are kept as sorted, de-duplicated names,
//!   assignees as sorted, de-duplicated logins; a milestone by its title.
//! - **Kind and merged are monotonic**: the card is a pull request once any observation says so;
//!   `merged` only goes false → true (from `pull_request.merged == true`, a non-null
//!   `pull_request.merged_at`, or a non-null `issue.pull_request.merged_at`).
//! - **Tombstones**: `issues.deleted` and `issues.transferred` tombstone the card of the issue in
//!   the payload's repository (the source repository for a transfer; the destination receives
//!   its own `issues.opened`). A tombstone always wins and is never lifted. `issue_comment`
//!   `deleted` deletes a comment, not the issue, and is an ordinary snapshot.
//! - **Repository names**: any payload with an integer `repository.id` and a string
//!   `repository.full_name` observes the repository's name (so `repository.renamed` /
//!   `repository.transferred` need no special case). The name is a newest-wins register
//!   versioned by `repository.updated_at` — GitHub bumps it on a rename or transfer, while
//!   `pushed_at` does not move on a rename — with the same value-hash tie-break. A missing
//!   `updated_at` gives [`Version::UNKNOWN`].
//! - **Boards**: a board exists for every repository id that has at least one card (tombstoned
//!   ones included, so a repository whose issues were all deleted shows an empty board) and a
//!   known name. If two repository ids currently carry the same name (a rename we never saw),
//!   the one whose name has the newest version wins the address, then the higher id
//!   ([`address_boards`], which the store shares so live boards and replay agree).
//! - **Touched card**: [`FoldState::apply`] names the payload's card even when the snapshot
//!   changed nothing (a duplicate or an older snapshot), so the caller decides what a
//!   `card_history` row means; [`CardState::merge`] says whether anything changed.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Identity of a card: the repository id (stable across renames) and the issue/PR number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CardKey {
    /// `repository.id` of the payload.
    pub repo_id: i64,
    /// Issue or pull-request number inside that repository.
    pub number: i64,
}

/// Whether a card is an issue or a pull request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A plain issue (nothing has said otherwise yet).
    Issue,
    /// A pull request, seen as one by at least one observation.
    PullRequest,
}

impl Kind {
    /// The name used in the board JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Issue => "issue",
            Kind::PullRequest => "pull_request",
        }
    }
}

/// Version of a snapshot: unix milliseconds of a timestamp, [`Version::UNKNOWN`] when there was
/// none.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Version(pub i64);

impl Version {
    /// The version of a snapshot without a usable timestamp; lower than every real one.
    pub const UNKNOWN: Version = Version(i64::MIN);

    /// Reads a payload timestamp: an RFC 3339 string, or integer unix seconds (GitHub uses both,
    /// e.g. `repository.pushed_at` in push events). Anything else is [`Version::UNKNOWN`].
    pub fn from_json(value: Option<&Value>) -> Version {
        match value {
            Some(Value::String(s)) => Version::parse_rfc3339(s),
            Some(Value::Number(n)) => n
                .as_i64()
                .map_or(Version::UNKNOWN, |secs| Version(secs.saturating_mul(1000))),
            _ => Version::UNKNOWN,
        }
    }

    /// Parses an RFC 3339 timestamp to unix milliseconds; [`Version::UNKNOWN`] if it is not one.
    pub fn parse_rfc3339(s: &str) -> Version {
        let Ok(at) = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        else {
            return Version::UNKNOWN;
        };
        i64::try_from(at.unix_timestamp_nanos() / 1_000_000).map_or(Version::UNKNOWN, Version)
    }
}

/// A value with the version of the snapshot that said it: one newest-wins register.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Versioned<T> {
    /// Version of the snapshot the value came from.
    pub at: Version,
    /// The value itself.
    pub value: T,
}

impl<T: Serialize> Versioned<T> {
    /// Total order of registers: version first, then the value's tie-break rank.
    fn cmp_rank(&self, other: &Versioned<T>) -> Ordering {
        self.at
            .cmp(&other.at)
            .then_with(|| tie_break(&self.value).cmp(&tie_break(&other.value)))
    }
}

/// Tie-break rank of a value: `(sha256(json), json)`. Serialising the plain data types used
/// here (strings, lists of strings, options, booleans) into memory cannot fail.
fn tie_break<T: Serialize>(value: &T) -> ([u8; 32], Vec<u8>) {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    (Sha256::digest(&bytes).into(), bytes)
}

/// Joins `incoming` into `mine`: keeps the higher-ranked register. Returns whether `mine` changed.
fn join_register<T: Serialize + Clone + PartialEq>(
    mine: &mut Option<Versioned<T>>,
    incoming: Option<&Versioned<T>>,
) -> bool {
    let Some(incoming) = incoming else {
        return false;
    };
    match mine {
        Some(current) if current == incoming => false,
        // Sabotage `fold-arrival-order`: whatever arrives last wins.
        Some(_) if crate::sabotage::is(crate::sabotage::Variant::FoldArrivalOrder) => {
            *mine = Some(incoming.clone());
            true
        }
        // Sabotage `tie-by-arrival`: on equal versions the later arrival wins.
        Some(current)
            if current.at == incoming.at
                && crate::sabotage::is(crate::sabotage::Variant::TieByArrival) =>
        {
            *mine = Some(incoming.clone());
            true
        }
        Some(current) if incoming.cmp_rank(current) != Ordering::Greater => false,
        _ => {
            *mine = Some(incoming.clone());
            true
        }
    }
}

/// What one payload says, as snapshots.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observations {
    /// The repository's identity, when the payload carries `repository.id` and `full_name`.
    pub repo: Option<RepoObservation>,
    /// The issue or pull request the payload is about, if any.
    pub item: Option<ItemObservation>,
}

/// A repository's name as of one payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepoObservation {
    /// `repository.id`.
    pub repo_id: i64,
    /// `repository.full_name` (`owner/name`).
    pub full_name: String,
    /// Version of the name: `repository.updated_at`.
    pub at: Version,
}

/// One snapshot of an issue or pull request. `None` fields were absent from the payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ItemObservation {
    /// The card this snapshot belongs to.
    pub key: CardKey,
    /// Version of every field below: the item's `updated_at`.
    pub at: Version,
    /// The item's `updated_at` as written in the payload.
    pub updated_at: Option<String>,
    /// The payload says this is a pull request.
    pub pull_request: bool,
    /// The payload says the pull request is merged.
    pub merged: bool,
    /// `issues.deleted` or `issues.transferred`: the card leaves this repository for good.
    pub tombstone: bool,
    /// `title`.
    pub title: Option<String>,
    /// `state` (`open` / `closed`).
    pub state: Option<String>,
    /// `draft`.
    pub draft: Option<bool>,
    /// Label names, sorted and de-duplicated.
    pub labels: Option<Vec<String>>,
    /// Assignee logins, sorted and de-duplicated.
    pub assignees: Option<Vec<String>>,
    /// `Some(None)` is a known "no milestone"; `Some(Some(title))` a milestone.
    pub milestone: Option<Option<String>>,
}

/// Events whose `issue` object is the item.
const ISSUE_EVENTS: &[&str] = &["issues", "issue_comment"];
/// Events whose `pull_request` object is the item.
const PULL_REQUEST_EVENTS: &[&str] = &[
    "pull_request",
    "pull_request_review",
    "pull_request_review_comment",
    "pull_request_review_thread",
];

/// Which keys of a JSON object [`parse_for_observe`] keeps: `All` keeps the value whole,
/// `Fields` keeps only the listed keys of an object (of each object, for an array) and scalars
/// as they are.
#[derive(Clone, Copy, Debug)]
enum Keep {
    All,
    Fields(&'static [(&'static str, Keep)]),
}

/// The keys [`observe`] reads of an issue or pull request.
const ITEM_KEYS: Keep = Keep::Fields(&[
    ("number", Keep::All),
    ("updated_at", Keep::All),
    ("title", Keep::All),
    ("state", Keep::All),
    ("draft", Keep::All),
    ("labels", Keep::Fields(&[("name", Keep::All)])),
    ("assignees", Keep::Fields(&[("login", Keep::All)])),
    ("assignee", Keep::Fields(&[("login", Keep::All)])),
    (
        "milestone",
        Keep::Fields(&[("title", Keep::All), ("number", Keep::All)]),
    ),
    ("pull_request", Keep::Fields(&[("merged_at", Keep::All)])),
    ("merged", Keep::All),
    ("merged_at", Keep::All),
]);

/// The keys [`observe`] reads of a payload, and nothing else.
const PAYLOAD_KEYS: Keep = Keep::Fields(&[
    ("action", Keep::All),
    (
        "repository",
        Keep::Fields(&[
            ("id", Keep::All),
            ("full_name", Keep::All),
            ("updated_at", Keep::All),
        ]),
    ),
    ("issue", ITEM_KEYS),
    ("pull_request", ITEM_KEYS),
]);

/// Parses a payload keeping only what [`observe`] reads (the repository's id, name and
/// version, the item's fields, the action); everything else is skipped without being built
/// (a real payload is mostly URLs, users and repository settings). `observe` of the result is
/// `observe` of the whole payload (test `observing_a_trimmed_payload_says_the_same`). `None`
/// when the body is not JSON.
pub fn parse_for_observe(body: &[u8]) -> Option<Value> {
    use serde::de::DeserializeSeed as _;
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = PAYLOAD_KEYS.deserialize(&mut de).ok()?;
    de.end().ok()?;
    Some(value)
}

impl<'de> serde::de::DeserializeSeed<'de> for Keep {
    type Value = Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        match self {
            Keep::All => serde::Deserialize::deserialize(d),
            Keep::Fields(fields) => d.deserialize_any(Trim(fields)),
        }
    }
}

/// Builds a [`Value`] as `serde_json` would, with the objects trimmed to `.0`'s keys.
struct Trim(&'static [(&'static str, Keep)]);

impl<'de> serde::de::Visitor<'de> for Trim {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        serde::de::DeserializeSeed::deserialize(Keep::Fields(self.0), d)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(Keep::Fields(self.0))? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = serde_json::Map::new();
        while let Some(key) = map.next_key_seed(KeyOf(self.0))? {
            match key {
                Some((name, keep)) => {
                    let v = map.next_value_seed(keep)?;
                    out.insert(name.to_owned(), v);
                }
                None => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        Ok(Value::Object(out))
    }
}

/// Reads an object key without allocating: the kept key it names, or `None` to skip its value.
struct KeyOf(&'static [(&'static str, Keep)]);

impl<'de> serde::de::DeserializeSeed<'de> for KeyOf {
    type Value = Option<(&'static str, Keep)>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> serde::de::Visitor<'de> for KeyOf {
    type Value = Option<(&'static str, Keep)>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an object key")
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(self.0.iter().find(|(k, _)| *k == v).copied())
    }
}

/// Reads what a payload says. Never panics: anything of an unexpected shape is "not said".
pub fn observe(event: &str, payload: &Value) -> Observations {
    let repository = payload.get("repository");
    let repo_id = repository.and_then(|r| r.get("id")).and_then(Value::as_i64);
    let repo = match (
        repo_id,
        repository
            .and_then(|r| r.get("full_name"))
            .and_then(Value::as_str),
    ) {
        (Some(repo_id), Some(full_name)) => Some(RepoObservation {
            repo_id,
            full_name: full_name.to_owned(),
            at: Version::from_json(repository.and_then(|r| r.get("updated_at"))),
        }),
        _ => None,
    };
    let item = repo_id.and_then(|repo_id| observe_item(event, payload, repo_id));
    Observations { repo, item }
}

/// The parts of a payload [`unfoldable`] looks at — the repository's `id`, the item's `number`
/// — trimmed as [`parse_for_observe`] trims (types kept, other keys skipped unparsed): the
/// check costs a scan of the body, not a JSON tree of its repository and item objects.
const FOLD_KEYS: Keep = Keep::Fields(&[
    ("repository", Keep::Fields(&[("id", Keep::All)])),
    ("issue", Keep::Fields(&[("number", Keep::All)])),
    ("pull_request", Keep::Fields(&[("number", Keep::All)])),
]);

/// Why the body of an item event cannot be folded — its `repository` or item object, or their
/// `id` / `number`, present with the wrong type — or `None` when it can (absent or `null`
/// fields are "not said", and a body that is not a JSON object is the store's to log as it
/// always did).
pub fn unfoldable(event: &str, body: &[u8]) -> Option<String> {
    use serde::de::DeserializeSeed as _;
    let item_key = if ISSUE_EVENTS.contains(&event) {
        "issue"
    } else if PULL_REQUEST_EVENTS.contains(&event) {
        "pull_request"
    } else {
        return None;
    };
    // A JSON array would be read positionally: objects only.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return None;
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let shape = FOLD_KEYS.deserialize(&mut de).ok()?;
    de.end().ok()?;
    let field = |key: &str| shape.get(key).filter(|v| !v.is_null());
    let repository = field("repository");
    let item = field(item_key);
    let wrong = |what: &str, v: &Value, want: &str| {
        Some(format!(
            "cannot fold this {event} delivery: `{what}` is {}, not {want}",
            json_type(v)
        ))
    };
    if let Some(repo) = repository {
        let Some(obj) = repo.as_object() else {
            return wrong("repository", repo, "an object");
        };
        if let Some(id) = obj
            .get("id")
            .filter(|v| !v.is_null() && v.as_i64().is_none())
        {
            return wrong("repository.id", id, "an integer");
        }
    }
    if let Some(item) = item {
        let Some(obj) = item.as_object() else {
            return wrong(item_key, item, "an object");
        };
        if let Some(n) = obj
            .get("number")
            .filter(|v| !v.is_null() && v.as_i64().is_none())
        {
            return wrong(&format!("{item_key}.number"), n, "an integer");
        }
    }
    None
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn observe_item(event: &str, payload: &Value, repo_id: i64) -> Option<ItemObservation> {
    let (object, pull_request, merged) = if ISSUE_EVENTS.contains(&event) {
        let issue = payload.get("issue")?;
        let pr = issue.get("pull_request").filter(|pr| pr.is_object());
        let merged = pr
            .and_then(|pr| pr.get("merged_at"))
            .is_some_and(Value::is_string);
        (issue, pr.is_some(), merged)
    } else if PULL_REQUEST_EVENTS.contains(&event) {
        let pr = payload.get("pull_request")?;
        let merged = pr.get("merged").and_then(Value::as_bool) == Some(true)
            || pr.get("merged_at").is_some_and(Value::is_string);
        (pr, true, merged)
    } else {
        return None;
    };
    let number = object.get("number").and_then(Value::as_i64)?;
    let action = payload.get("action").and_then(Value::as_str);
    let tombstone = event == "issues" && matches!(action, Some("deleted" | "transferred"));
    let updated_at = object.get("updated_at");
    Some(ItemObservation {
        key: CardKey { repo_id, number },
        at: Version::from_json(updated_at),
        updated_at: updated_at.and_then(Value::as_str).map(str::to_owned),
        pull_request,
        merged,
        tombstone,
        title: string_field(object, "title"),
        state: string_field(object, "state"),
        draft: object.get("draft").and_then(Value::as_bool),
        labels: names(object.get("labels"), "name"),
        assignees: names(object.get("assignees"), "login").or_else(|| {
            match object.get("assignee") {
                Some(Value::Null) => Some(Vec::new()),
                Some(user) => user
                    .get("login")
                    .and_then(Value::as_str)
                    .map(|login| vec![login.to_owned()]),
                None => None,
            }
        }),
        milestone: match object.get("milestone") {
            Some(Value::Null) => Some(None),
            Some(m @ Value::Object(_)) => Some(Some(milestone_name(m))),
            _ => None,
        },
    })
}

/// `object[key]` when it is a string.
fn string_field(object: &Value, key: &str) -> Option<String> {
    object.get(key).and_then(Value::as_str).map(str::to_owned)
}

/// Names of a list of objects (`labels` by `name`, `assignees` by `login`); plain strings are
/// taken as they are. Sorted and de-duplicated. `None` when the list is absent or not a list.
fn names(list: Option<&Value>, key: &str) -> Option<Vec<String>> {
    let list = list?.as_array()?;
    let mut names: Vec<String> = list
        .iter()
        .filter_map(|entry| match entry {
            Value::String(s) => Some(s.clone()),
            other => other.get(key).and_then(Value::as_str).map(str::to_owned),
        })
        .collect();
    names.sort();
    names.dedup();
    Some(names)
}

/// A milestone's title, else its number, else the empty string (it still counts as set).
fn milestone_name(milestone: &Value) -> String {
    if let Some(title) = milestone.get("title").and_then(Value::as_str) {
        return title.to_owned();
    }
    milestone
        .get("number")
        .and_then(Value::as_i64)
        .map(|n| n.to_string())
        .unwrap_or_default()
}

/// Persistable state of one card: a newest-wins register per field, plus the monotonic flags.
///
/// `None` registers are fields no observation has stated yet.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CardState {
    /// Some observation said this is a pull request (never goes back).
    pub pull_request: bool,
    /// Some observation said the pull request is merged (never goes back).
    pub merged: bool,
    /// Deleted or transferred away (never goes back; hides the card).
    pub tombstone: bool,
    /// `title`.
    pub title: Option<Versioned<String>>,
    /// `state` (`open` / `closed`).
    pub state: Option<Versioned<String>>,
    /// `draft`.
    pub draft: Option<Versioned<bool>>,
    /// Sorted label names.
    pub labels: Option<Versioned<Vec<String>>>,
    /// Sorted assignee logins.
    pub assignees: Option<Versioned<Vec<String>>>,
    /// Milestone title; `value: None` is a known "no milestone".
    pub milestone: Option<Versioned<Option<String>>>,
    /// The newest `updated_at` seen, as written in the payload.
    pub updated_at: Option<Versioned<String>>,
}

impl CardState {
    /// The state that one observation alone gives.
    pub fn from_observation(obs: &ItemObservation) -> CardState {
        let at = obs.at;
        let reg = |value| Versioned { at, value };
        CardState {
            pull_request: obs.pull_request,
            merged: obs.merged,
            tombstone: obs.tombstone,
            title: obs.title.clone().map(reg),
            state: obs.state.clone().map(reg),
            draft: obs.draft.map(|value| Versioned { at, value }),
            labels: obs.labels.clone().map(|value| Versioned { at, value }),
            assignees: obs.assignees.clone().map(|value| Versioned { at, value }),
            milestone: obs.milestone.clone().map(|value| Versioned { at, value }),
            updated_at: obs.updated_at.clone().map(reg),
        }
    }

    /// Folds one snapshot in. Returns whether anything changed.
    pub fn merge(&mut self, obs: &ItemObservation) -> bool {
        self.join(&CardState::from_observation(obs))
    }

    /// Least upper bound of two states (commutative, associative, idempotent). Returns whether
    /// `self` changed.
    pub fn join(&mut self, other: &CardState) -> bool {
        let mut changed = false;
        // Sabotage `tombstone-by-arrival`: the last-arriving snapshot decides the tombstone.
        if crate::sabotage::is(crate::sabotage::Variant::TombstoneByArrival)
            && self.tombstone != other.tombstone
        {
            self.tombstone = other.tombstone;
            changed = true;
        }
        for (mine, theirs) in [
            (&mut self.pull_request, other.pull_request),
            (&mut self.merged, other.merged),
            (&mut self.tombstone, other.tombstone),
        ] {
            if theirs && !*mine {
                *mine = true;
                changed = true;
            }
        }
        changed |= join_register(&mut self.title, other.title.as_ref());
        changed |= join_register(&mut self.state, other.state.as_ref());
        changed |= join_register(&mut self.draft, other.draft.as_ref());
        changed |= join_register(&mut self.labels, other.labels.as_ref());
        changed |= join_register(&mut self.assignees, other.assignees.as_ref());
        changed |= join_register(&mut self.milestone, other.milestone.as_ref());
        changed |= join_register(&mut self.updated_at, other.updated_at.as_ref());
        changed
    }

    /// Deleted or transferred away: the card is not shown.
    pub fn is_tombstoned(&self) -> bool {
        self.tombstone
    }

    /// Issue or pull request.
    pub fn kind(&self) -> Kind {
        if self.pull_request {
            Kind::PullRequest
        } else {
            Kind::Issue
        }
    }

    /// A merged pull request.
    pub fn is_merged(&self) -> bool {
        self.merged
    }

    /// Current title, if known.
    pub fn title(&self) -> Option<&str> {
        self.title.as_ref().map(|r| r.value.as_str())
    }

    /// Current state (`open` / `closed`), if known.
    pub fn state(&self) -> Option<&str> {
        self.state.as_ref().map(|r| r.value.as_str())
    }

    /// Current draft flag, if known.
    pub fn draft(&self) -> Option<bool> {
        self.draft.as_ref().map(|r| r.value)
    }

    /// Current label names (sorted); empty when unknown.
    pub fn labels(&self) -> &[String] {
        self.labels.as_ref().map_or(&[], |r| r.value.as_slice())
    }

    /// Current assignee logins (sorted); empty when unknown.
    pub fn assignees(&self) -> &[String] {
        self.assignees.as_ref().map_or(&[], |r| r.value.as_slice())
    }

    /// `Some(None)`: known to have no milestone; `Some(Some(title))`: has one; `None`: unknown.
    pub fn milestone(&self) -> Option<Option<&str>> {
        self.milestone.as_ref().map(|r| r.value.as_deref())
    }

    /// The newest `updated_at` seen, as written in the payload.
    pub fn updated_at(&self) -> Option<&str> {
        self.updated_at.as_ref().map(|r| r.value.as_str())
    }
}

/// Current name of one repository id: a newest-wins register.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RepoState {
    /// `full_name`, versioned by `repository.updated_at`.
    pub name: Option<Versioned<String>>,
}

impl RepoState {
    /// Folds one observation in. Returns whether the current name changed.
    pub fn merge(&mut self, obs: &RepoObservation) -> bool {
        let incoming = Versioned {
            at: obs.at,
            value: obs.full_name.clone(),
        };
        join_register(&mut self.name, Some(&incoming))
    }

    /// Least upper bound of two states. Returns whether `self` changed.
    pub fn join(&mut self, other: &RepoState) -> bool {
        join_register(&mut self.name, other.name.as_ref())
    }

    /// The current `owner/name`, if any payload named the repository.
    pub fn full_name(&self) -> Option<&str> {
        self.name.as_ref().map(|r| r.value.as_str())
    }
}

/// The whole fold over many deliveries: repository names and cards.
///
/// Serialises deterministically: maps are keyed by integer ids (written as JSON strings) in
/// ascending order, struct fields in declaration order.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FoldState {
    /// Repository id → current name.
    repos: BTreeMap<i64, RepoState>,
    /// Repository id → number → card.
    cards: BTreeMap<i64, BTreeMap<i64, CardState>>,
}

impl FoldState {
    /// Folds one delivery in. Returns the card the payload is about, if any (whether or not it
    /// changed anything — a duplicate still names its card).
    pub fn apply(&mut self, event: &str, payload: &Value) -> Option<CardKey> {
        self.apply_observations(&observe(event, payload))
    }

    /// Folds already-extracted observations in; see [`FoldState::apply`].
    pub fn apply_observations(&mut self, obs: &Observations) -> Option<CardKey> {
        if let Some(repo) = &obs.repo {
            self.repos.entry(repo.repo_id).or_default().merge(repo);
        }
        let item = obs.item.as_ref()?;
        self.cards
            .entry(item.key.repo_id)
            .or_default()
            .entry(item.key.number)
            .or_default()
            .merge(item);
        Some(item.key)
    }

    /// Union of two states. Folding a history in two parts and merging the results equals
    /// folding the whole history.
    pub fn merge_state(&mut self, other: &FoldState) {
        for (id, repo) in &other.repos {
            self.repos.entry(*id).or_default().join(repo);
        }
        for (repo_id, cards) in &other.cards {
            let mine = self.cards.entry(*repo_id).or_default();
            for (number, card) in cards {
                mine.entry(*number).or_default().join(card);
            }
        }
    }

    /// One card's state.
    pub fn card(&self, key: CardKey) -> Option<&CardState> {
        self.cards.get(&key.repo_id)?.get(&key.number)
    }

    /// Every card, in key order.
    pub fn cards(&self) -> impl Iterator<Item = (CardKey, &CardState)> {
        self.cards.iter().flat_map(|(repo_id, cards)| {
            cards.iter().map(move |(number, card)| {
                (
                    CardKey {
                        repo_id: *repo_id,
                        number: *number,
                    },
                    card,
                )
            })
        })
    }

    /// One repository's state.
    pub fn repo(&self, repo_id: i64) -> Option<&RepoState> {
        self.repos.get(&repo_id)
    }

    /// Every repository, in id order.
    pub fn repos(&self) -> impl Iterator<Item = (i64, &RepoState)> {
        self.repos.iter().map(|(id, repo)| (*id, repo))
    }

    /// Which repository id each board name addresses (see [`address_boards`]).
    pub fn addressed(&self) -> BTreeMap<&str, i64> {
        address_boards(
            self.cards
                .iter()
                .filter(|(_, cards)| !cards.is_empty())
                .filter_map(|(repo_id, _)| Some((*repo_id, self.repos.get(repo_id)?))),
        )
    }

    /// The cards of one repository, by number.
    pub fn repo_cards(&self, repo_id: i64) -> impl Iterator<Item = (i64, &CardState)> {
        self.cards
            .get(&repo_id)
            .into_iter()
            .flatten()
            .map(|(number, card)| (*number, card))
    }
}

/// Board addresses: current `owner/name` → the repository id whose board it shows.
///
/// Give it the repositories that have at least one card. Repositories without a known name get
/// no board. When two ids carry the same current name (a rename that was never delivered), the
/// name with the newest version wins, then the higher id — the store must use this same rule so
/// the live boards and `gitspy replay` agree.
pub fn address_boards<'a>(
    repos: impl IntoIterator<Item = (i64, &'a RepoState)>,
) -> BTreeMap<&'a str, i64> {
    let mut by_name: BTreeMap<&str, (&Versioned<String>, i64)> = BTreeMap::new();
    for (repo_id, repo) in repos {
        let Some(name) = repo.name.as_ref() else {
            continue;
        };
        by_name
            .entry(name.value.as_str())
            .and_modify(|(best, best_id)| {
                if name.cmp_rank(best).then(repo_id.cmp(best_id)) == Ordering::Greater {
                    *best = name;
                    *best_id = repo_id;
                }
            })
            .or_insert((name, repo_id));
    }
    by_name
        .into_iter()
        .map(|(name, (_, id))| (name, id))
        .collect()
}

#[cfg(test)]
mod unfoldable_tests {
    use super::unfoldable;

    #[test]
    fn wrong_types_in_item_events_cannot_be_folded_absent_fields_can() {
        let repo = r#""repository":{"id":7,"full_name":"o/r"}"#;
        let bad = [
            (
                "issues",
                format!(r#"{{"action":"opened","issue":"x",{repo}}}"#),
            ),
            ("issue_comment", format!(r#"{{"issue":[1],{repo}}}"#)),
            (
                "pull_request",
                format!(r#"{{"pull_request":{{"number":"12"}},{repo}}}"#),
            ),
            (
                "issues",
                r#"{"issue":{"number":1},"repository":"o/r"}"#.to_string(),
            ),
            (
                "issues",
                r#"{"issue":{"number":1},"repository":{"id":"7"}}"#.to_string(),
            ),
        ];
        for (event, body) in &bad {
            let why = unfoldable(event, body.as_bytes());
            assert!(why.is_some(), "{event} {body} should be unfoldable");
        }
        let why = unfoldable("issues", bad[0].1.as_bytes()).unwrap_or_default();
        assert_eq!(
            why,
            "cannot fold this issues delivery: `issue` is a string, not an object"
        );
        let good = [
            ("issues", format!(r#"{{"issue":{{"number":1}},{repo}}}"#)),
            ("issues", r#"{"action":"opened"}"#.to_string()),
            ("issues", r#"{"issue":null,"repository":null}"#.to_string()),
            // Not an item event: whatever its shape, nothing to fold.
            ("ping", r#"{"issue":"x","repository":3}"#.to_string()),
            ("push", r#"{"pull_request":"x"}"#.to_string()),
            // Not an object at all: the ingress never queues it; the store logs it as before.
            ("issues", "[1,2]".to_string()),
        ];
        for (event, body) in &good {
            assert_eq!(unfoldable(event, body.as_bytes()), None, "{event} {body}");
        }
    }

    #[test]
    fn every_fixture_payload_can_be_folded() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let mut seen = 0;
        let mut stack = vec![dir];
        while let Some(d) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in entries.flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|x| x == "json") {
                    let event = p
                        .parent()
                        .and_then(|x| x.file_name())
                        .and_then(|x| x.to_str())
                        .unwrap_or("");
                    let body = std::fs::read(&p).unwrap();
                    assert_eq!(unfoldable(event, &body), None, "{}", p.display());
                    seen += 1;
                }
            }
        }
        assert!(seen > 0, "no fixtures found");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn issue_payload(action: &str, issue: Value) -> Value {
        json!({
            "action": action,
            "issue": issue,
            "repository": {"id": 7, "full_name": "o/r", "updated_at": "2024-01-01T00:00:00Z"},
        })
    }

    fn card_after(events: &[(&str, Value)]) -> CardState {
        let mut state = FoldState::default();
        for (event, payload) in events {
            state.apply(event, payload);
        }
        state
            .card(CardKey {
                repo_id: 7,
                number: 1,
            })
            .cloned()
            .unwrap_or_default()
    }

    /// The trimmed parse the worker uses says exactly what the whole payload says, for every
    /// real GitHub fixture and for the odd shapes `observe` accepts.
    #[test]
    fn observing_a_trimmed_payload_says_the_same() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/github");
        let mut seen = 0;
        for dir in std::fs::read_dir(&root).unwrap() {
            let dir = dir.unwrap().path();
            if !dir.is_dir() {
                continue;
            }
            let event = dir.file_name().unwrap().to_str().unwrap().to_string();
            for file in std::fs::read_dir(&dir).unwrap() {
                let file = file.unwrap().path();
                if file.extension().is_none_or(|e| e != "json") {
                    continue;
                }
                let body = std::fs::read(&file).unwrap();
                let whole: Value = serde_json::from_slice(&body).unwrap();
                let trimmed = parse_for_observe(&body).unwrap();
                for e in [event.as_str(), "issues", "pull_request", "issue_comment"] {
                    assert_eq!(observe(e, &trimmed), observe(e, &whole), "{event}: {dir:?}");
                }
                seen += 1;
            }
        }
        assert!(seen > 40, "{seen} fixtures");
        let odd = [
            json!({"action": "labeled", "repository": {"id": 1, "full_name": "a/b", "updated_at": 5},
                   "issue": {"number": 3, "labels": ["x", {"name": "y", "color": "z"}, 7],
                             "assignee": null, "milestone": {"number": 4, "url": "u"},
                             "pull_request": {"merged_at": "2024-01-01T00:00:00Z", "url": "u"},
                             "updated_at": "2024-01-01T00:00:00Z", "draft": true, "state": 1}}),
            json!({"repository": {"id": 1.5, "full_name": "a/b"},
                   "pull_request": {"number": 2, "merged": true, "assignee": {"login": "m", "id": 3},
                                    "milestone": "text", "labels": {"name": "not a list"}}}),
            json!({"issue": {"number": 1}, "repository": {"id": 2, "full_name": "c/d"}, "extra": [1, {"a": []}]}),
        ];
        for v in odd {
            let body = serde_json::to_vec(&v).unwrap();
            let trimmed = parse_for_observe(&body).unwrap();
            for e in ["issues", "pull_request", "issue_comment"] {
                assert_eq!(observe(e, &trimmed), observe(e, &v), "{v}");
            }
        }
        assert_eq!(parse_for_observe(b"{\"a\": "), None);
        assert_eq!(parse_for_observe(b"{} trailing"), None);
    }

    #[test]
    fn odd_payloads_observe_nothing_and_never_panic() {
        let odd = [
            json!(null),
            json!([]),
            json!("issues"),
            json!({"issue": null}),
            json!({"issue": {"number": 1}}),
            json!({"issue": {"number": 1}, "repository": {"id": "7"}}),
            json!({"issue": {"number": "1"}, "repository": {"id": 7}}),
            json!({"issue": [], "repository": {"id": 7}}),
            json!({"pull_request": 5, "repository": {"id": 7, "full_name": 3}}),
        ];
        for payload in &odd {
            for event in ["issues", "issue_comment", "pull_request", "push", ""] {
                assert_eq!(observe(event, payload).item, None, "{event} {payload}");
            }
        }
        // A repository without a full_name still keys the item.
        let obs = observe(
            "issues",
            &json!({"issue": {"number": 3, "labels": "x", "milestone": 4}, "repository": {"id": 7}}),
        );
        assert_eq!(obs.repo, None);
        let item = obs.item.unwrap();
        assert_eq!(
            item.key,
            CardKey {
                repo_id: 7,
                number: 3
            }
        );
        assert_eq!(
            (item.labels, item.milestone, item.at),
            (None, None, Version::UNKNOWN)
        );
    }

    #[test]
    fn absent_null_and_empty_are_different() {
        let first = issue_payload(
            "opened",
            json!({"number": 1, "updated_at": "2024-01-01T00:00:00Z", "state": "open",
                   "title": "t", "labels": [{"name": "ready"}], "milestone": {"title": "v1"},
                   "assignees": [{"login": "ann"}]}),
        );
        // Newer snapshot that says nothing about labels/milestone/assignees: nothing lost.
        let silent = issue_payload(
            "edited",
            json!({"number": 1, "updated_at": "2024-01-02T00:00:00Z", "title": "t2"}),
        );
        let card = card_after(&[("issues", first.clone()), ("issues", silent)]);
        assert_eq!(card.title(), Some("t2"));
        assert_eq!(card.labels(), ["ready"]);
        assert_eq!(card.milestone(), Some(Some("v1")));
        assert_eq!(card.assignees(), ["ann"]);
        // Newer snapshot with null milestone and empty lists: all cleared.
        let cleared = issue_payload(
            "edited",
            json!({"number": 1, "updated_at": "2024-01-02T00:00:00Z", "labels": [],
                   "milestone": null, "assignees": []}),
        );
        let card = card_after(&[("issues", cleared), ("issues", first)]);
        assert_eq!(card.labels(), [] as [String; 0]);
        assert_eq!(card.milestone(), Some(None));
        assert_eq!(card.assignees(), [] as [String; 0]);
        assert_eq!(card.state(), Some("open"));
    }

    #[test]
    fn singular_assignee_stands_in_only_when_assignees_is_absent() {
        let obs = |issue: Value| observe("issues", &issue_payload("x", issue)).item.unwrap();
        assert_eq!(
            obs(json!({"number": 1, "assignee": {"login": "bob"}})).assignees,
            Some(vec!["bob".to_owned()])
        );
        assert_eq!(
            obs(json!({"number": 1, "assignee": null})).assignees,
            Some(vec![])
        );
        assert_eq!(
            obs(json!({"number": 1, "assignee": null, "assignees": [{"login": "b"}, {"login": "a"}, {"login": "b"}]}))
                .assignees,
            Some(vec!["a".to_owned(), "b".to_owned()])
        );
        assert_eq!(obs(json!({"number": 1})).assignees, None);
    }

    #[test]
    fn older_snapshot_loses_and_tie_is_order_free() {
        let at = |ts: &str, state: &str, title: &str| {
            issue_payload(
                "edited",
                json!({"number": 1, "updated_at": ts, "state": state, "title": title}),
            )
        };
        let new = at("2024-01-02T00:00:00Z", "closed", "new");
        let old = at("2024-01-01T00:00:00Z", "open", "old");
        for order in [[&new, &old], [&old, &new]] {
            let card = card_after(&[("issues", order[0].clone()), ("issues", order[1].clone())]);
            assert_eq!((card.state(), card.title()), (Some("closed"), Some("new")));
        }
        // Same instant, different values: both orders pick the same values, per field.
        let a = at("2024-01-03T00:00:00Z", "open", "a");
        let b = at("2024-01-03T00:00:00+00:00", "closed", "b");
        let ab = card_after(&[("issues", a.clone()), ("issues", b.clone())]);
        let ba = card_after(&[("issues", b), ("issues", a)]);
        assert_eq!(ab, ba);
        // The tie-break is sha256 of the JSON value: the larger hash wins.
        let rank = |s: &str| tie_break(&s.to_owned());
        let want_state = if rank("open") > rank("closed") {
            "open"
        } else {
            "closed"
        };
        assert_eq!(ab.state(), Some(want_state));
    }

    #[test]
    fn merged_kind_and_tombstone_only_go_one_way() {
        let pr = |ts: &str, merged: bool| {
            json!({"action": "closed", "repository": {"id": 7, "full_name": "o/r"},
                   "pull_request": {"number": 1, "updated_at": ts, "state": "closed", "merged": merged}})
        };
        let card = card_after(&[
            ("pull_request", pr("2024-01-01T00:00:00Z", true)),
            ("pull_request", pr("2024-01-02T00:00:00Z", false)),
        ]);
        assert!(card.is_merged());
        // A later plain-issue view of the same number does not make it an issue again.
        let as_issue = issue_payload(
            "edited",
            json!({"number": 1, "updated_at": "2024-01-05T00:00:00Z", "state": "open"}),
        );
        let card = card_after(&[
            ("pull_request", pr("2024-01-01T00:00:00Z", false)),
            ("issue_comment", as_issue.clone()),
        ]);
        assert_eq!(card.kind(), Kind::PullRequest);
        // Deleted, then a newer snapshot arrives: the tombstone still wins.
        let deleted = issue_payload(
            "deleted",
            json!({"number": 1, "updated_at": "2024-01-01T00:00:00Z"}),
        );
        let card = card_after(&[("issues", deleted.clone()), ("issues", as_issue)]);
        assert!(card.is_tombstoned());
        // Deleting a comment is not deleting the issue.
        let card = card_after(&[("issue_comment", deleted)]);
        assert!(!card.is_tombstoned());
    }

    #[test]
    fn merged_at_on_an_issue_view_marks_the_pr_merged() {
        let payload = issue_payload(
            "created",
            json!({"number": 1, "state": "closed",
                   "pull_request": {"url": "u", "merged_at": "2024-01-01T00:00:00Z"}}),
        );
        let card = card_after(&[("issue_comment", payload)]);
        assert_eq!((card.kind(), card.is_merged()), (Kind::PullRequest, true));
        let payload = issue_payload(
            "created",
            json!({"number": 1, "pull_request": {"url": "u", "merged_at": null}}),
        );
        let card = card_after(&[("issue_comment", payload)]);
        assert_eq!((card.kind(), card.is_merged()), (Kind::PullRequest, false));
    }

    #[test]
    fn merge_reports_change_only_when_something_changed() {
        let payload = issue_payload(
            "opened",
            json!({"number": 1, "updated_at": "2024-01-01T00:00:00Z", "state": "open"}),
        );
        let item = observe("issues", &payload).item.unwrap();
        let mut card = CardState::default();
        assert!(card.merge(&item));
        assert!(!card.merge(&item));
        let older = ItemObservation {
            at: Version(0),
            state: Some("closed".to_owned()),
            ..item.clone()
        };
        assert!(!card.merge(&older));
        assert!(card.merge(&ItemObservation {
            tombstone: true,
            ..older
        }));
    }

    #[test]
    fn repository_name_is_newest_wins_by_updated_at() {
        let named = |name: &str, ts: &str| json!({"action": "renamed", "repository": {"id": 7, "full_name": name, "updated_at": ts}});
        let old = named("o/old", "2024-01-01T00:00:00Z");
        let new = named("o/new", "2024-02-01T00:00:00Z");
        for order in [[&old, &new], [&new, &old]] {
            let mut repo = RepoState::default();
            for payload in order {
                repo.merge(&observe("repository", payload).repo.unwrap());
            }
            assert_eq!(repo.full_name(), Some("o/new"));
        }
        // Cards follow the id: the board is addressed by the current name only.
        let mut state = FoldState::default();
        state.apply(
            "issues",
            &json!({"action": "opened", "issue": {"number": 1, "state": "open"},
                    "repository": {"id": 7, "full_name": "o/old", "updated_at": "2024-01-01T00:00:00Z"}}),
        );
        assert!(state.board("o/old").is_some());
        state.apply("repository", &new);
        assert!(state.board("o/old").is_none());
        let board = state.board("o/new").unwrap();
        assert_eq!(board.counts.values().sum::<usize>(), 1);
        assert_eq!(state.boards().len(), 1);
    }

    #[test]
    fn a_name_held_by_two_repository_ids_addresses_the_newest() {
        let opened = |id: i64, ts: &str, title: &str| {
            json!({"action": "opened",
                   "repository": {"id": id, "full_name": "o/r", "updated_at": ts},
                   "issue": {"number": 1, "state": "open", "title": title}})
        };
        let older = opened(1, "2024-01-01T00:00:00Z", "from repo 1");
        let newer = opened(2, "2024-02-01T00:00:00Z", "from repo 2");
        for order in [[&older, &newer], [&newer, &older]] {
            let mut state = FoldState::default();
            for payload in order {
                state.apply("issues", payload);
            }
            let boards = state.boards();
            assert_eq!(boards.len(), 1);
            let text = String::from_utf8(boards[0].json.clone()).unwrap();
            assert!(
                text.contains("from repo 2") && !text.contains("from repo 1"),
                "{text}"
            );
            assert_eq!(state.board("o/r"), Some(boards[0].clone()));
        }
    }

    #[test]
    fn version_parses_rfc3339_and_unix_seconds() {
        assert_eq!(
            Version::from_json(Some(&json!("1970-01-01T00:00:01Z"))),
            Version(1000)
        );
        assert_eq!(
            Version::from_json(Some(&json!("1970-01-01T01:00:01+01:00"))),
            Version(1000)
        );
        assert_eq!(Version::from_json(Some(&json!(2))), Version(2000));
        assert_eq!(
            Version::from_json(Some(&json!("yesterday"))),
            Version::UNKNOWN
        );
        assert_eq!(Version::from_json(None), Version::UNKNOWN);
    }

    #[test]
    fn fold_state_round_trips_through_json() {
        let mut state = FoldState::default();
        state.apply(
            "issues",
            &issue_payload(
                "opened",
                json!({"number": 1, "updated_at": "2024-01-01T00:00:00Z", "state": "open",
                       "milestone": null, "labels": []}),
            ),
        );
        let bytes = serde_json::to_vec(&state).unwrap();
        let back: FoldState = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(back, state);
        assert_eq!(serde_json::to_vec(&back).unwrap(), bytes);
    }
}
