//! Webhook deliveries to send: generated from real GitHub payload shapes, or read from the user's
//! files, in a sequence fixed by the seed.
//!
//! The generator simulates a small repository: a pool of [`POOL`] issue/PR numbers whose state
//! (title, labels, assignees, milestone, open/closed, draft, merged) evolves event by event, so
//! every card receives several snapshots and the board ends up non-trivial. Each payload is the
//! matching fixture from `payloads/` (copied from octokit/webhooks, see `payloads/SOURCES.json`)
//! with the item's current state written in, the run's repository, and an `updated_at` from a
//! seeded clock that only moves forward. A seeded fraction of neighbouring deliveries is swapped,
//! as GitHub does not promise delivery order.
//!
//! Determinism: the same seed gives byte-identical bodies in the same order; only the delivery
//! ids differ between runs, because they carry the run's [`RunNonce`] (SPEC §2.3).

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context as _};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Issue/PR numbers the generator draws from: small, so cards see several events each.
pub const POOL: u64 = 12;

/// The events the generator can produce (and that `--event` may name).
pub const EVENTS: &[&str] = &["issues", "pull_request", "issue_comment", "ping"];

/// At most this many issues of a run are deleted or transferred (tombstones), so the board keeps
/// most of its cards while the tombstone rule is still exercised.
const MAX_TOMBSTONES: usize = 2;

/// An issue is deleted or transferred only after this many events, so earlier snapshots of it
/// can be redelivered or reordered around its tombstone.
const EVENTS_BEFORE_TOMBSTONE: u64 = 2;

/// Probability that an event names the previous event's item again within the same second (as
/// GitHub sends `labeled` and `assigned` together): same `updated_at`, different values, so the
/// fold's tie-break is exercised.
const SAME_SECOND_P: f64 = 0.15;

/// Probability that two neighbouring deliveries go out in swapped order.
const REORDER_P: f64 = 0.1;

/// Salt for the duplicate-pattern generator, so choosing duplicates never shifts the payload
/// sequence.
const DUPLICATE_SALT: u64 = 0x9e37_79b9_7f4a_7c15;

/// One webhook delivery: the `X-GitHub-Delivery` id, the `X-GitHub-Event` name and the exact
/// body bytes (what gets signed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub id: String,
    pub event: String,
    /// Shared, so sending a delivery (or a copy of it) never copies the body.
    pub body: bytes::Bytes,
    /// The generator's own record of the item this delivery describes (its true state right
    /// after the event); `None` for events without an item (`ping`) and for user payloads.
    pub snapshot: Option<ItemSnapshot>,
}

/// The true state of one issue or pull request as the generator wrote it into a payload: the
/// harness's independent model of what the board must show (`board_matches_model`). Written
/// from the simulation's own fields, never parsed back from the JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemSnapshot {
    /// `owner/name` of the repository.
    pub repo: String,
    /// `repository.id`.
    pub repo_id: u64,
    /// Issue or pull-request number.
    pub number: u64,
    /// Whether the item is a pull request.
    pub pull_request: bool,
    pub title: String,
    /// `open` or `closed`.
    pub open: bool,
    /// Label names, sorted.
    pub labels: Vec<String>,
    /// Assignee logins, sorted.
    pub assignees: Vec<String>,
    pub milestone: bool,
    pub draft: bool,
    pub merged: bool,
    /// The item's `updated_at`, unix seconds.
    pub updated_at: i64,
    /// The event deleted or transferred the item (a tombstone).
    pub tombstone: bool,
}

/// Per-run component of every delivery id: random for each run, even with the same seed, so a
/// second run against the same Redis never collides with the first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunNonce(String);

impl RunNonce {
    /// 12 hex digits from the OS-seeded thread RNG.
    pub fn random() -> Self {
        Self(format!("{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff))
    }

    /// A fixed nonce, for tests and for re-sending a recorded run.
    pub fn new(nonce: impl Into<String>) -> Self {
        Self(nonce.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for RunNonce {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// How many exact duplicates (same id, same body) a batch contains. `count` always means HTTP
/// requests: duplicates take slots, they are not added on top.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Duplicates {
    /// Every request carries the first delivery (one id for the whole batch).
    pub same: bool,
    /// Each new delivery is followed right away by this many copies (concurrent duplicates,
    /// which race in the server's atomic enqueue).
    pub copies: u32,
    /// Chance (0..=1) that a slot is a copy of an earlier delivery of this batch, chosen by the
    /// seed (late duplicates, which hit the server's state check).
    pub fraction: f64,
}

/// One request of a batch, in schedule order.
#[derive(Clone, Debug)]
pub struct PlannedSend {
    pub delivery: Arc<Delivery>,
    /// The id this request deliberately duplicates (always `delivery.id` itself: duplicates are
    /// exact); `None` for an original.
    pub duplicate_of: Option<String>,
}

/// A deterministic source of deliveries for one run.
pub struct PayloadGen {
    rng: StdRng,
    dup_rng: StdRng,
    nonce: RunNonce,
    seq: u64,
    source: Source,
    /// Generated but not yet emitted, so neighbours can be swapped.
    pending: VecDeque<(String, bytes::Bytes, Option<ItemSnapshot>)>,
}

enum Source {
    Generated(Box<Sim>),
    User(Vec<UserPayload>),
}

/// A payload read from the user's `--payload FILE|DIR`, sent verbatim.
#[derive(Clone, Debug)]
pub struct UserPayload {
    pub path: PathBuf,
    pub event: String,
    pub body: bytes::Bytes,
}

impl PayloadGen {
    /// Generated payloads for `repo` (`owner/name`) with repository id `repo_id`, all events.
    pub fn new(seed: u64, nonce: RunNonce, repo: &str, repo_id: u64) -> anyhow::Result<Self> {
        let sim = Sim::new(repo, repo_id, EVENTS.to_vec())?;
        Ok(Self::with_source(
            seed,
            nonce,
            Source::Generated(Box::new(sim)),
        ))
    }

    /// Restricts generated payloads to these events (empty = all of [`EVENTS`]).
    pub fn with_events(mut self, events: &[String]) -> anyhow::Result<Self> {
        if events.is_empty() {
            return Ok(self);
        }
        if let Source::User(payloads) = &mut self.source {
            payloads.retain(|p| events.contains(&p.event));
            if payloads.is_empty() {
                bail!("no payload file has event {}", events.join(" or "));
            }
            return Ok(self);
        }
        self.set_generated_events(events)?;
        Ok(self)
    }

    fn set_generated_events(&mut self, events: &[String]) -> anyhow::Result<()> {
        let mut chosen = Vec::new();
        for e in events {
            match EVENTS.iter().find(|known| **known == e.as_str()) {
                Some(known) => chosen.push(*known),
                None => bail!(
                    "unknown event {e:?}: the generator knows {}\n\
                     hint: send other events with --payload FILE|DIR",
                    EVENTS.join(", ")
                ),
            }
        }
        if let Source::Generated(sim) = &mut self.source {
            if !chosen.is_empty() {
                sim.events = chosen;
            }
        }
        Ok(())
    }

    /// The user's payload files (a file, or every `*.json` under a directory), sent verbatim in
    /// an order chosen by the seed. `events` filters them (and names the event of a single file
    /// whose event cannot be told otherwise).
    pub fn from_path(
        seed: u64,
        nonce: RunNonce,
        path: &Path,
        events: &[String],
    ) -> anyhow::Result<Self> {
        let mut payloads = load_user_payloads(path, events)?;
        if !events.is_empty() {
            payloads.retain(|p| events.contains(&p.event));
        }
        if payloads.is_empty() {
            bail!(
                "no payload to send under {} (event filter: {})",
                path.display(),
                if events.is_empty() {
                    "none".to_string()
                } else {
                    events.join(",")
                }
            );
        }
        Ok(Self::with_source(seed, nonce, Source::User(payloads)))
    }

    fn with_source(seed: u64, nonce: RunNonce, source: Source) -> Self {
        Self {
            rng: StdRng::seed_from_u64(seed),
            dup_rng: StdRng::seed_from_u64(seed ^ DUPLICATE_SALT),
            nonce,
            seq: 0,
            source,
            pending: VecDeque::new(),
        }
    }

    pub fn nonce(&self) -> &RunNonce {
        &self.nonce
    }

    /// The next delivery; its id is `<nonce>-<seq>` with `seq` counting from 1 over the run.
    pub fn next_delivery(&mut self) -> Delivery {
        let (event, body, snapshot) = match &mut self.source {
            Source::User(payloads) => {
                let i = self.rng.random_range(0..payloads.len());
                (payloads[i].event.clone(), payloads[i].body.clone(), None)
            }
            Source::Generated(sim) => {
                while self.pending.len() < 2 {
                    let (ev, snapshot) = sim.generate(&mut self.rng);
                    let mut body = Vec::new();
                    sim.write(&ev, &mut body);
                    self.pending
                        .push_back((ev.event.to_string(), body.into(), snapshot));
                }
                let swapped = self.rng.random_bool(REORDER_P);
                let next = if swapped {
                    self.pending.pop_back()
                } else {
                    self.pending.pop_front()
                };
                next.unwrap_or_default()
            }
        };
        self.seq += 1;
        Delivery {
            id: format!("{}-{:06}", self.nonce, self.seq),
            event,
            body,
            snapshot,
        }
    }

    /// A poison delivery (`send.poison`): the run's next id, an `issues` event with a valid
    /// repository and an `issue` that is a string instead of an object — signed like any other,
    /// accepted by the ingress (a JSON object), but a body no fold can read. No snapshot: the
    /// board oracle must never expect it on a card.
    pub fn poison_delivery(&mut self) -> Delivery {
        let (repo, repo_id) = match &self.source {
            Source::Generated(sim) => (sim.repo.clone(), sim.repo_id),
            Source::User(_) => ("gitspy-chaos/poison".to_string(), 0),
        };
        self.seq += 1;
        let body = serde_json::json!({
            "action": "opened",
            "issue": "gitspy-chaos poison: this should be an issue object",
            "repository": { "id": repo_id, "full_name": repo },
            "sender": { "login": "gitspy-chaos" },
        });
        Delivery {
            id: format!("{}-{:06}", self.nonce, self.seq),
            event: "issues".to_string(),
            body: body.to_string().into_bytes().into(),
            snapshot: None,
        }
    }

    /// `count` new deliveries (no copies) from this same simulated repository, each of an
    /// event drawn from `weights` (`X-GitHub-Event` name → weight) by the seed; then back to the
    /// previous event set. Generated payloads only.
    pub fn plan_weighted(
        &mut self,
        count: usize,
        weights: &[(String, u32)],
    ) -> anyhow::Result<Vec<PlannedSend>> {
        let Source::Generated(sim) = &self.source else {
            bail!("an event mix needs generated payloads");
        };
        let before = sim.events.clone();
        let mut table: Vec<(&'static str, u32)> = Vec::new();
        for (e, w) in weights {
            match EVENTS.iter().find(|known| **known == e.as_str()) {
                Some(known) => table.push((known, *w)),
                None => bail!(
                    "unknown event {e:?}: the generator knows {}",
                    EVENTS.join(", ")
                ),
            }
        }
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            if let (Some(event), Source::Generated(sim)) =
                (weighted(&mut self.rng, &table), &mut self.source)
            {
                sim.events = vec![event];
            }
            out.push(PlannedSend {
                delivery: Arc::new(self.next_delivery()),
                duplicate_of: None,
            });
        }
        if let Source::Generated(sim) = &mut self.source {
            sim.events = before;
        }
        Ok(out)
    }

    /// A batch of `count` requests with the duplicate pattern `dups` (see [`Duplicates`]).
    pub fn plan(&mut self, count: usize, dups: &Duplicates) -> Vec<PlannedSend> {
        self.plan_iter(count, dups).collect()
    }

    /// The same batch as [`PayloadGen::plan`], generated lazily as the sender consumes it, so a
    /// long flood holds only the deliveries in flight (and the recent ones duplicates may copy).
    pub fn plan_iter(&mut self, count: usize, dups: &Duplicates) -> Plan<'_> {
        let fraction = if dups.fraction.is_finite() {
            dups.fraction.clamp(0.0, 1.0)
        } else {
            0.0
        };
        Plan {
            gen: self,
            remaining: count,
            same: dups.same,
            copies: dups.copies,
            fraction,
            current: None,
            copies_left: 0,
            recent: VecDeque::new(),
        }
    }
}

/// Late duplicates copy one of this many most recent originals of the batch.
const DUPLICATE_WINDOW: usize = 100;

/// A batch being generated; see [`PayloadGen::plan_iter`].
pub struct Plan<'a> {
    gen: &'a mut PayloadGen,
    remaining: usize,
    same: bool,
    copies: u32,
    fraction: f64,
    /// The latest original (the one `same` repeats, or whose copies are due).
    current: Option<Arc<Delivery>>,
    copies_left: u32,
    recent: VecDeque<Arc<Delivery>>,
}

impl Plan<'_> {
    fn duplicate(d: &Arc<Delivery>) -> PlannedSend {
        PlannedSend {
            delivery: d.clone(),
            duplicate_of: Some(d.id.clone()),
        }
    }
}

impl Iterator for Plan<'_> {
    type Item = PlannedSend;

    fn next(&mut self) -> Option<PlannedSend> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        if let Some(d) = &self.current {
            if self.same {
                return Some(Self::duplicate(d));
            }
            if self.copies_left > 0 {
                self.copies_left -= 1;
                return Some(Self::duplicate(d));
            }
        }
        if !self.recent.is_empty() && self.gen.dup_rng.random_bool(self.fraction) {
            let i = self.gen.dup_rng.random_range(0..self.recent.len());
            return Some(Self::duplicate(&self.recent[i]));
        }
        let d = Arc::new(self.gen.next_delivery());
        self.current = Some(d.clone());
        self.copies_left = self.copies;
        if self.fraction > 0.0 {
            self.recent.push_back(d.clone());
            if self.recent.len() > DUPLICATE_WINDOW {
                self.recent.pop_front();
            }
        }
        Some(PlannedSend {
            delivery: d,
            duplicate_of: None,
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

// ---------------------------------------------------------------------------------------------
// User payloads

fn load_user_payloads(path: &Path, events: &[String]) -> anyhow::Result<Vec<UserPayload>> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("reading payloads {}", path.display()))?;
    let mut files = Vec::new();
    if meta.is_dir() {
        collect_json_files(path, &mut files)?;
        files.sort();
    } else {
        files.push(path.to_path_buf());
    }
    let fallback = match events {
        [only] => Some(only.as_str()),
        _ => None,
    };
    files
        .into_iter()
        .map(|file| {
            let body =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let value: Value = serde_json::from_slice(&body)
                .with_context(|| format!("{} is not JSON", file.display()))?;
            let event = event_of(&file, &value)
                .or(fallback)
                .map(str::to_string)
                .with_context(|| {
                    format!(
                        "cannot tell the event of {}\n\
                         hint: put it in a directory named after the event (issues/, ping/, …) \
                         or pass --event",
                        file.display()
                    )
                })?;
            Ok(UserPayload {
                path: file,
                event,
                body: body.into(),
            })
        })
        .collect()
}

fn collect_json_files(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        let path = entry.path();
        let kind = entry
            .file_type()
            .with_context(|| format!("inspecting {}", path.display()))?;
        if kind.is_dir() {
            collect_json_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "json") {
            out.push(path);
        }
    }
    Ok(())
}

/// The event of a payload file: its directory's name when that is a known event, else the shape
/// of the payload.
fn event_of<'a>(file: &'a Path, value: &Value) -> Option<&'a str> {
    const KNOWN: &[&str] = &[
        "issues",
        "pull_request",
        "issue_comment",
        "ping",
        "label",
        "milestone",
        "push",
        "repository",
        "pull_request_review",
        "pull_request_review_comment",
        "pull_request_review_thread",
        "projects_v2_item",
    ];
    let dir = file
        .parent()
        .and_then(|p| p.file_name())
        .and_then(|n| n.to_str());
    if let Some(dir) = dir.filter(|d| KNOWN.contains(d)) {
        return Some(dir);
    }
    let has = |k: &str| value.get(k).is_some();
    if has("zen") && has("hook_id") {
        Some("ping")
    } else if has("comment") && has("issue") {
        Some("issue_comment")
    } else if has("pull_request") && !has("review") && !has("comment") {
        Some("pull_request")
    } else if has("issue") {
        Some("issues")
    } else {
        None
    }
}

// ---------------------------------------------------------------------------------------------
// Generated payloads

struct Fixture {
    event: &'static str,
    action: &'static str,
    text: &'static str,
}

macro_rules! fixture {
    ($event:literal, $action:literal, $file:literal) => {
        Fixture {
            event: $event,
            action: $action,
            text: include_str!(concat!("../../payloads/", $event, "/", $file)),
        }
    };
}

/// The shapes the generator fills in, keyed by (event, action). Actions GitHub sends but no
/// fixture shows (`issues.closed`, `pull_request.unlabeled`, `pull_request.unassigned`) reuse the
/// nearest shape with the action renamed.
const FIXTURES: &[Fixture] = &[
    fixture!("issues", "opened", "opened.json"),
    fixture!("issues", "edited", "edited.json"),
    fixture!("issues", "labeled", "labeled.json"),
    fixture!("issues", "unlabeled", "unlabeled.json"),
    fixture!("issues", "assigned", "assigned.json"),
    fixture!("issues", "unassigned", "unassigned.json"),
    fixture!("issues", "milestoned", "milestoned.json"),
    fixture!("issues", "demilestoned", "demilestoned.json"),
    fixture!("issues", "reopened", "reopened.json"),
    fixture!("issues", "closed", "reopened.json"),
    fixture!("issues", "deleted", "deleted.json"),
    fixture!("issues", "transferred", "transferred.json"),
    fixture!("pull_request", "opened", "opened.json"),
    fixture!("pull_request", "labeled", "labeled.json"),
    fixture!("pull_request", "unlabeled", "labeled.json"),
    fixture!("pull_request", "assigned", "assigned.json"),
    fixture!("pull_request", "unassigned", "assigned.json"),
    fixture!(
        "pull_request",
        "converted_to_draft",
        "converted_to_draft.json"
    ),
    fixture!("pull_request", "ready_for_review", "ready_for_review.json"),
    fixture!("pull_request", "synchronize", "synchronize.json"),
    fixture!("pull_request", "closed", "closed.unmerged.json"),
    fixture!("pull_request", "reopened", "reopened.json"),
    fixture!("pull_request", "review_requested", "review_requested.json"),
    fixture!("issue_comment", "created", "created.json"),
    fixture!("issue_comment", "edited", "edited.json"),
    fixture!("ping", "ping", "ping.json"),
];

/// The repositories the fixtures were recorded in; replaced by the run's repository.
const FIXTURE_REPOS: &[&str] = &["Codertocat/Hello-World", "Octocoders/Hello-World"];

const LABELS: &[(&str, &str)] = &[
    ("bug", "d73a4a"),
    ("enhancement", "a2eeef"),
    ("documentation", "0075ca"),
    ("ready", "0e8a16"),
    ("help-wanted", "008672"),
    ("priority-high", "b60205"),
];
const USERS: &[&str] = &["octocat", "hubot", "monalisa", "mona-bot"];
const VERBS: &[&str] = &[
    "Fix",
    "Improve",
    "Refactor",
    "Document",
    "Speed up",
    "Handle errors in",
    "Add tests for",
    "Simplify",
];
const THINGS: &[&str] = &[
    "the webhook parser",
    "board rendering",
    "the retry loop",
    "label sync",
    "the README",
    "the CLI flags",
    "card ordering",
    "the metrics endpoint",
];

/// 2025-01-01T00:00:00Z: the generator's clock starts within a month after this.
const CLOCK_START: i64 = 1_735_689_600;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Issue,
    PullRequest,
}

#[derive(Default)]
struct Item {
    kind: Option<Kind>,
    opened: bool,
    title: String,
    labels: Vec<usize>,
    assignees: Vec<usize>,
    milestone: bool,
    closed: bool,
    closed_at: Option<i64>,
    draft: bool,
    merged: bool,
    merged_at: Option<i64>,
    created_at: i64,
    comments: u64,
    /// Events generated for the item so far.
    events: u64,
    /// Deleted or transferred: no event names it again.
    gone: bool,
}

struct Sim {
    templates: HashMap<(&'static str, &'static str), Value>,
    /// Byte templates, one per payload shape, built on first use from the JSON tree (see
    /// [`Shape`]).
    shapes: HashMap<ShapeKey, Shape>,
    /// Compact JSON of each label, user and of the milestone, as the tree writes them.
    label_bytes: Vec<Vec<u8>>,
    user_bytes: Vec<Vec<u8>>,
    milestone_bytes: Vec<u8>,
    repo: String,
    repo_id: u64,
    events: Vec<&'static str>,
    items: Vec<Item>,
    /// Unix seconds; moves forward by a seeded step per generated event.
    clock: i64,
    started: bool,
    comment_ids: u64,
    /// Items deleted or transferred so far.
    tombstones: usize,
    /// The item of the previous item event.
    last: Option<u64>,
}

impl Sim {
    fn new(repo: &str, repo_id: u64, events: Vec<&'static str>) -> anyhow::Result<Self> {
        let valid = |part: &str| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        };
        match repo.split_once('/') {
            Some((owner, name)) if valid(owner) && valid(name) => {}
            _ => bail!("repository {repo:?} is not of the form owner/name"),
        }
        let mut templates = HashMap::new();
        for f in FIXTURES {
            let mut text = f.text.to_string();
            for old in FIXTURE_REPOS {
                text = text.replace(old, repo);
            }
            let value: Value = serde_json::from_str(&text).with_context(|| {
                format!("embedded fixture {}/{} is not JSON", f.event, f.action)
            })?;
            templates.insert((f.event, f.action), value);
        }
        let label_bytes = (0..LABELS.len())
            .map(|l| label_json(repo, l).to_string().into_bytes())
            .collect();
        let user_bytes = (0..USERS.len())
            .map(|u| user_json(u).to_string().into_bytes())
            .collect();
        let mut sim = Self {
            templates,
            shapes: HashMap::new(),
            label_bytes,
            user_bytes,
            milestone_bytes: Vec::new(),
            repo: repo.to_string(),
            repo_id,
            events,
            items: (0..POOL).map(|_| Item::default()).collect(),
            clock: CLOCK_START,
            started: false,
            comment_ids: 0,
            tombstones: 0,
            last: None,
        };
        sim.milestone_bytes = sim.milestone_json().to_string().into_bytes();
        Ok(sim)
    }

    fn allows(&self, event: &str) -> bool {
        self.events.contains(&event)
    }

    fn tick(&mut self, rng: &mut StdRng) -> i64 {
        if !self.started {
            self.started = true;
            self.clock += rng.random_range(0..30 * 86_400);
        }
        self.clock += rng.random_range(1..=300);
        self.clock
    }

    /// The next event of the simulation: moves the item's state and returns what the payload
    /// must say, with the item's true state right after it (`None` for a ping).
    fn generate(&mut self, rng: &mut StdRng) -> (Event, Option<ItemSnapshot>) {
        let only_ping = self.events.iter().all(|e| *e == "ping");
        if only_ping || (self.allows("ping") && rng.random_bool(0.03)) {
            return (Event::ping(rng), None);
        }
        let same_second = rng.random_bool(SAME_SECOND_P);
        // An item whose kind has no allowed event is skipped (an issue when only pull_request
        // events are wanted), so an event mix never turns into pings.
        // A deleted or transferred item never appears again.
        let fits = |it: &Item| match it.kind {
            _ if it.gone => false,
            None => true,
            Some(Kind::Issue) => self.allows("issues") || self.allows("issue_comment"),
            Some(Kind::PullRequest) => {
                self.allows("pull_request") || self.allows("issue_comment") || self.allows("issues")
            }
        };
        let mut number = rng.random_range(1..=POOL);
        for _ in 0..4 * POOL {
            if fits(&self.items[(number - 1) as usize]) {
                break;
            }
            number = rng.random_range(1..=POOL);
        }
        if self.items[(number - 1) as usize].gone {
            // At most MAX_TOMBSTONES of POOL items are gone, so a live one exists.
            match (1..=POOL).find(|n| !self.items[(*n - 1) as usize].gone) {
                Some(n) => number = n,
                None => return (Event::ping(rng), None),
            }
        }
        let now = match self.last {
            Some(last) if same_second && fits(&self.items[(last - 1) as usize]) => {
                number = last;
                self.clock
            }
            _ => self.tick(rng),
        };
        self.last = Some(number);
        let index = (number - 1) as usize;
        let can_issue = self.allows("issues") || self.allows("issue_comment");
        // Pull requests only where their own events are wanted (or where comments are all that
        // is wanted, which GitHub sends for both kinds).
        let can_pr = self.allows("pull_request") || !self.allows("issues");
        if self.items[index].kind.is_none() {
            let kind = if can_issue && can_pr {
                if rng.random_bool(0.4) {
                    Kind::PullRequest
                } else {
                    Kind::Issue
                }
            } else if can_pr {
                Kind::PullRequest
            } else {
                Kind::Issue
            };
            self.items[index].kind = Some(kind);
        }
        let kind = self.items[index].kind.unwrap_or(Kind::Issue);
        let opener = match kind {
            Kind::Issue => "issues",
            Kind::PullRequest => "pull_request",
        };

        let (event, action) = if !self.items[index].opened && self.allows(opener) {
            (opener, "opened")
        } else {
            let candidates: Vec<(&'static str, u32)> = match kind {
                Kind::Issue => vec![("issues", 6), ("issue_comment", 2)],
                Kind::PullRequest => {
                    vec![("pull_request", 6), ("issue_comment", 2), ("issues", 1)]
                }
            }
            .into_iter()
            .filter(|(e, _)| self.allows(e))
            .collect();
            let Some(event) = weighted(rng, &candidates) else {
                return (Event::ping(rng), None);
            };
            let action = self.pick_action(rng, index, kind, event);
            (event, action)
        };

        let extra = self.apply(rng, index, kind, event, action, now);
        if event == "issue_comment" && action == "created" {
            self.comment_ids += 1;
        }
        let snapshot = self.snapshot(number, now);
        let ev = Event {
            event,
            action,
            pull_request: kind == Kind::PullRequest,
            number,
            extra,
            now,
            comment_seq: self.comment_ids,
            hook_id: 0,
        };
        (ev, Some(snapshot))
    }

    /// Appends the payload of `ev` to `out`: the shape's byte template with the values of this
    /// delivery written into its slots. The same bytes as `self.tree(ev, true).to_string()`
    /// (test `byte_templates_write_what_the_tree_writes`), without a JSON tree per delivery.
    fn write(&mut self, ev: &Event, out: &mut Vec<u8>) {
        let key = ev.shape_key();
        if !self.shapes.contains_key(&key) {
            let shape = Shape::of(&self.tree(ev, false));
            self.shapes.insert(key, shape);
        }
        let Some(shape) = self.shapes.get(&key) else {
            return;
        };
        out.reserve(shape.len + 512);
        let mut at = 0;
        for (end, slot) in &shape.slots {
            out.extend_from_slice(&shape.text[at..*end]);
            at = *end;
            self.write_slot(*slot, ev, out);
        }
        out.extend_from_slice(&shape.text[at..]);
    }

    /// The compact JSON of one slot's value for `ev`, byte for byte what `serde_json` writes
    /// for the value [`Sim::tree`] puts there.
    fn write_slot(&self, slot: Slot, ev: &Event, out: &mut Vec<u8>) {
        let index = (ev.number.max(1) - 1) as usize;
        let Some(it) = self.items.get(index) else {
            out.extend_from_slice(b"null");
            return;
        };
        let list = |out: &mut Vec<u8>, all: &[Vec<u8>], chosen: &[usize]| {
            out.push(b'[');
            for (i, c) in chosen.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(&all[*c % all.len()]);
            }
            out.push(b']');
        };
        match slot {
            Slot::Title => json_str(out, &it.title),
            Slot::State => json_str(out, if it.closed { "closed" } else { "open" }),
            Slot::ClosedAt => json_time(out, it.closed_at),
            Slot::CreatedAt => json_time(out, Some(it.created_at)),
            Slot::Now => json_time(out, Some(ev.now)),
            Slot::Labels => list(out, &self.label_bytes, &it.labels),
            Slot::Assignees => list(out, &self.user_bytes, &it.assignees),
            Slot::Assignee => match it.assignees.first() {
                Some(u) => out.extend_from_slice(&self.user_bytes[*u % USERS.len()]),
                None => out.extend_from_slice(b"null"),
            },
            Slot::Milestone if it.milestone => out.extend_from_slice(&self.milestone_bytes),
            Slot::Milestone => out.extend_from_slice(b"null"),
            Slot::Draft => json_bool(out, it.draft),
            Slot::Merged => json_bool(out, it.merged),
            Slot::Comments => json_u64(out, it.comments),
            Slot::MergedAt => json_time(out, it.merged_at),
            Slot::MergedBy if it.merged => out.extend_from_slice(&self.user_bytes[0]),
            Slot::MergedBy => out.extend_from_slice(b"null"),
            Slot::Extra => match &ev.extra {
                Some(Extra::Changes(from)) => {
                    out.extend_from_slice(br#"{"title":{"from":"#);
                    json_str(out, from);
                    out.extend_from_slice(b"}}");
                }
                Some(Extra::Label(l)) => {
                    out.extend_from_slice(&self.label_bytes[*l % LABELS.len()]);
                }
                Some(Extra::Assignee(u)) => {
                    out.extend_from_slice(&self.user_bytes[*u % USERS.len()]);
                }
                Some(Extra::Milestone) => out.extend_from_slice(&self.milestone_bytes),
                None => out.extend_from_slice(b"null"),
            },
            Slot::CommentId => json_u64(out, self.comment_id(ev)),
            Slot::CommentBody => json_str(out, &self.comment_body(ev)),
            Slot::HookId => json_u64(out, ev.hook_id),
        }
    }

    fn comment_id(&self, ev: &Event) -> u64 {
        self.repo_id
            .wrapping_mul(100_000)
            .wrapping_add(ev.comment_seq)
    }

    fn comment_body(&self, ev: &Event) -> String {
        format!("Comment {} on #{}", ev.comment_seq, ev.number)
    }

    /// The payload of `ev` as a JSON tree: the fixture with the item's state written in. With
    /// `real` false every value that changes between deliveries of one shape is a slot marker
    /// instead ([`Shape::of`] cuts the byte template at them).
    fn tree(&self, ev: &Event, real: bool) -> Value {
        let mut payload = self.template(ev.event, ev.action);
        if ev.event == "ping" {
            payload["hook_id"] = slot(real, Slot::HookId, || json!(ev.hook_id));
            self.set_repository(&mut payload);
            return payload;
        }
        let number = ev.number;
        let item = &self.items[(number.max(1) - 1) as usize];
        let kind = if ev.pull_request {
            Kind::PullRequest
        } else {
            Kind::Issue
        };
        let item_json = match (ev.event, kind) {
            ("pull_request", _) => {
                self.render_pr(&payload["pull_request"], number, item, ev.now, real)
            }
            (_, kind) => self.render_issue(&payload["issue"], number, item, kind, ev.now, real),
        };
        match ev.event {
            "pull_request" => {
                payload["pull_request"] = item_json;
                payload["number"] = json!(number);
            }
            _ => payload["issue"] = item_json,
        }
        payload["action"] = json!(ev.action);
        if let Some(extra) = &ev.extra {
            let value = slot(real, Slot::Extra, || match extra {
                Extra::Changes(from) => json!({ "title": { "from": from } }),
                Extra::Label(l) => label_json(&self.repo, *l),
                Extra::Assignee(u) => user_json(*u),
                Extra::Milestone => self.milestone_json(),
            });
            payload[extra.key()] = value;
        }
        if ev.event == "issue_comment" {
            let comment = self.render_comment(&payload["comment"], ev, real);
            payload["comment"] = comment;
        }
        self.set_repository(&mut payload);
        if ev.action == "transferred" {
            // The issue moved to another repository (its card there starts with its own
            // `issues.opened`, which this run does not send).
            let moved = &mut payload["changes"]["new_repository"];
            if moved.is_object() {
                moved["id"] = json!(self.repo_id.wrapping_add(1));
                moved["name"] = json!(format!(
                    "{}-moved",
                    moved["name"].as_str().unwrap_or("repo")
                ));
                moved["full_name"] = json!(format!("{}-moved", self.repo));
            }
        }
        payload
    }

    /// The item's state as it was just written into a payload.
    fn snapshot(&self, number: u64, now: i64) -> ItemSnapshot {
        let it = &self.items[(number - 1) as usize];
        let mut labels: Vec<String> = it
            .labels
            .iter()
            .map(|l| LABELS[*l % LABELS.len()].0.to_string())
            .collect();
        labels.sort();
        labels.dedup();
        let mut assignees: Vec<String> = it
            .assignees
            .iter()
            .map(|u| USERS[*u % USERS.len()].to_string())
            .collect();
        assignees.sort();
        assignees.dedup();
        ItemSnapshot {
            repo: self.repo.clone(),
            repo_id: self.repo_id,
            number,
            pull_request: it.kind == Some(Kind::PullRequest),
            title: it.title.clone(),
            open: !it.closed,
            labels,
            assignees,
            milestone: it.milestone,
            draft: it.draft,
            merged: it.merged,
            updated_at: now,
            tombstone: it.gone,
        }
    }

    fn pick_action(
        &self,
        rng: &mut StdRng,
        index: usize,
        kind: Kind,
        event: &'static str,
    ) -> &'static str {
        let it = &self.items[index];
        let has_labels = !it.labels.is_empty();
        let has_assignees = !it.assignees.is_empty();
        // Issues (never pull requests: GitHub cannot delete or transfer those) end now and then.
        let ends = u32::from(
            kind == Kind::Issue
                && event == "issues"
                && self.tombstones < MAX_TOMBSTONES
                && it.events >= EVENTS_BEFORE_TOMBSTONE,
        );
        let mut options: Vec<(&'static str, u32)> = match (event, kind) {
            ("issue_comment", _) => vec![("created", 4), ("edited", u32::from(it.comments > 0))],
            ("issues", Kind::PullRequest) => vec![
                ("milestoned", u32::from(!it.milestone)),
                ("demilestoned", u32::from(it.milestone)),
            ],
            ("issues", Kind::Issue) if it.closed => {
                vec![("reopened", 3), ("labeled", 1), ("edited", 1)]
            }
            ("issues", Kind::Issue) => vec![
                ("edited", 2),
                ("labeled", 3),
                ("unlabeled", 2 * u32::from(has_labels)),
                ("assigned", 3),
                ("unassigned", u32::from(has_assignees)),
                ("milestoned", 2 * u32::from(!it.milestone)),
                ("demilestoned", u32::from(it.milestone)),
                ("closed", 2),
            ],
            (_, _) if it.merged => vec![
                ("labeled", 1),
                ("unlabeled", u32::from(has_labels)),
                ("assigned", 1),
            ],
            (_, _) if it.closed => vec![("reopened", 3), ("labeled", 1)],
            (_, _) => vec![
                ("labeled", 3),
                ("unlabeled", u32::from(has_labels)),
                ("assigned", 2),
                ("unassigned", u32::from(has_assignees)),
                ("converted_to_draft", u32::from(!it.draft)),
                ("ready_for_review", 2 * u32::from(it.draft)),
                ("synchronize", 3),
                ("review_requested", 2),
                ("closed", 2),
            ],
        };
        if ends == 1 {
            options.extend([("deleted", 3), ("transferred", 1)]);
        }
        weighted(rng, &options).unwrap_or("created")
    }

    /// Moves the item's state by the action; returns the top-level extra the payload carries
    /// (`label`, `assignee`, `milestone`, `changes`).
    fn apply(
        &mut self,
        rng: &mut StdRng,
        index: usize,
        kind: Kind,
        event: &str,
        action: &str,
        now: i64,
    ) -> Option<Extra> {
        let mut extra = None;
        let new_title = title(rng);
        let it = &mut self.items[index];
        if !it.opened {
            it.opened = true;
            it.created_at = now;
            it.title = title(rng);
            if kind == Kind::PullRequest {
                it.draft = rng.random_bool(0.25);
            }
            if rng.random_bool(0.3) {
                it.labels.push(rng.random_range(0..LABELS.len()));
            }
        }
        it.events += 1;
        match (event, action) {
            ("issue_comment", "created") => it.comments += 1,
            ("issues", "deleted" | "transferred") => it.gone = true,
            (_, "edited") if event != "issue_comment" => {
                extra = Some(Extra::Changes(std::mem::replace(&mut it.title, new_title)));
            }
            (_, "labeled") => {
                let l = rng.random_range(0..LABELS.len());
                if !it.labels.contains(&l) {
                    it.labels.push(l);
                    it.labels.sort_unstable();
                }
                extra = Some(Extra::Label(l));
            }
            (_, "unlabeled") if !it.labels.is_empty() => {
                let l = it.labels.remove(rng.random_range(0..it.labels.len()));
                extra = Some(Extra::Label(l));
            }
            (_, "assigned") => {
                let u = rng.random_range(0..USERS.len());
                if !it.assignees.contains(&u) {
                    it.assignees.push(u);
                }
                extra = Some(Extra::Assignee(u));
            }
            (_, "unassigned") if !it.assignees.is_empty() => {
                let u = it.assignees.remove(rng.random_range(0..it.assignees.len()));
                extra = Some(Extra::Assignee(u));
            }
            (_, "milestoned") => {
                it.milestone = true;
                extra = Some(Extra::Milestone);
            }
            (_, "demilestoned") => {
                it.milestone = false;
                extra = Some(Extra::Milestone);
            }
            (_, "closed") => {
                it.closed = true;
                it.closed_at = Some(now);
                if kind == Kind::PullRequest && rng.random_bool(0.7) {
                    it.merged = true;
                    it.merged_at = Some(now);
                }
            }
            (_, "reopened") => {
                it.closed = false;
                it.closed_at = None;
            }
            (_, "converted_to_draft") => it.draft = true,
            (_, "ready_for_review") => it.draft = false,
            _ => {}
        }
        if it.gone {
            self.tombstones += 1;
        }
        extra
    }

    fn template(&self, event: &'static str, action: &'static str) -> Value {
        self.templates
            .get(&(event, action))
            .cloned()
            .unwrap_or_else(|| json!({}))
    }

    fn set_repository(&self, payload: &mut Value) {
        let (owner, name) = self.repo.split_once('/').unwrap_or((&self.repo, ""));
        let repo = &mut payload["repository"];
        if repo.is_object() {
            repo["id"] = json!(self.repo_id);
            repo["name"] = json!(name);
            repo["full_name"] = json!(self.repo);
            if repo["owner"].is_object() {
                repo["owner"]["login"] = json!(owner);
            }
        }
    }

    fn milestone_json(&self) -> Value {
        let mut m = self
            .templates
            .get(&("issues", "milestoned"))
            .map(|t| t["milestone"].clone())
            .unwrap_or_else(|| json!({}));
        m["number"] = json!(1);
        m["title"] = json!("v1.0");
        m
    }

    /// Common fields of issue- and PR-shaped items.
    fn render_common(
        &self,
        template: &Value,
        number: u64,
        it: &Item,
        now: i64,
        real: bool,
    ) -> Value {
        let mut v = template.clone();
        if let Some(old) = template["number"].as_u64() {
            rewrite_urls(&mut v, old, number);
        }
        v["number"] = json!(number);
        v["title"] = slot(real, Slot::Title, || json!(it.title));
        v["state"] = slot(real, Slot::State, || {
            json!(if it.closed { "closed" } else { "open" })
        });
        v["closed_at"] = slot(real, Slot::ClosedAt, || {
            it.closed_at.map_or(Value::Null, |t| json!(timestamp(t)))
        });
        v["created_at"] = slot(real, Slot::CreatedAt, || json!(timestamp(it.created_at)));
        v["updated_at"] = slot(real, Slot::Now, || json!(timestamp(now)));
        v["labels"] = slot(real, Slot::Labels, || {
            it.labels
                .iter()
                .map(|l| label_json(&self.repo, *l))
                .collect()
        });
        v["assignees"] = slot(real, Slot::Assignees, || {
            it.assignees.iter().map(|u| user_json(*u)).collect()
        });
        v["assignee"] = slot(real, Slot::Assignee, || {
            it.assignees.first().map_or(Value::Null, |u| user_json(*u))
        });
        v["milestone"] = slot(real, Slot::Milestone, || {
            if it.milestone {
                self.milestone_json()
            } else {
                Value::Null
            }
        });
        v["draft"] = slot(real, Slot::Draft, || json!(it.draft));
        v
    }

    fn render_issue(
        &self,
        template: &Value,
        number: u64,
        it: &Item,
        kind: Kind,
        now: i64,
        real: bool,
    ) -> Value {
        let mut v = self.render_common(template, number, it, now, real);
        v["id"] = json!(self.repo_id.wrapping_mul(1_000).wrapping_add(number));
        v["comments"] = slot(real, Slot::Comments, || json!(it.comments));
        if let Some(obj) = v.as_object_mut() {
            obj.remove("pull_request");
        }
        if kind == Kind::PullRequest {
            let html = format!("https://github.com/{}/pull/{number}", self.repo);
            v["pull_request"] = json!({
                "url": format!("https://api.github.com/repos/{}/pulls/{number}", self.repo),
                "html_url": html,
                "diff_url": format!("{html}.diff"),
                "patch_url": format!("{html}.patch"),
                "merged_at": slot(real, Slot::MergedAt, || json!(it.merged_at.map(timestamp))),
            });
        }
        v
    }

    fn render_pr(&self, template: &Value, number: u64, it: &Item, now: i64, real: bool) -> Value {
        let mut v = self.render_common(template, number, it, now, real);
        v["id"] = json!(self.repo_id.wrapping_mul(1_000).wrapping_add(500 + number));
        v["merged"] = slot(real, Slot::Merged, || json!(it.merged));
        v["merged_at"] = slot(real, Slot::MergedAt, || {
            it.merged_at.map_or(Value::Null, |t| json!(timestamp(t)))
        });
        v["merged_by"] = slot(real, Slot::MergedBy, || {
            if it.merged {
                user_json(0)
            } else {
                Value::Null
            }
        });
        v
    }

    fn render_comment(&self, template: &Value, ev: &Event, real: bool) -> Value {
        let mut v = template.clone();
        v["id"] = slot(real, Slot::CommentId, || json!(self.comment_id(ev)));
        v["body"] = slot(real, Slot::CommentBody, || json!(self.comment_body(ev)));
        v["created_at"] = slot(real, Slot::Now, || json!(timestamp(ev.now)));
        v["updated_at"] = slot(real, Slot::Now, || json!(timestamp(ev.now)));
        v["issue_url"] = json!(format!(
            "https://api.github.com/repos/{}/issues/{}",
            self.repo, ev.number
        ));
        v
    }
}

/// What one generated payload says beyond its fixture: the event, the item and the values that
/// change from one delivery to the next (the item's state is read from the simulation).
#[derive(Clone, Debug)]
struct Event {
    event: &'static str,
    action: &'static str,
    /// The item is a pull request (an `issues` or `issue_comment` payload then carries
    /// `issue.pull_request`).
    pull_request: bool,
    number: u64,
    /// The top-level field the action adds (`changes`, `label`, `assignee`, `milestone`).
    extra: Option<Extra>,
    /// The simulation's clock at this event (the item's `updated_at`).
    now: i64,
    /// The comment counter after this event (comment ids and bodies).
    comment_seq: u64,
    /// `hook_id` of a ping.
    hook_id: u64,
}

impl Event {
    fn ping(rng: &mut StdRng) -> Self {
        Self {
            event: "ping",
            action: "ping",
            pull_request: false,
            number: 0,
            extra: None,
            now: 0,
            comment_seq: 0,
            hook_id: rng.random_range(100_000_000u64..999_999_999),
        }
    }

    /// What decides the payload's structure (its keys, their order, the static values).
    fn shape_key(&self) -> ShapeKey {
        (
            self.event,
            self.action,
            self.pull_request,
            self.number,
            self.extra.as_ref().map(Extra::key),
        )
    }
}

/// The top-level field an action adds to the payload.
#[derive(Clone, Debug)]
enum Extra {
    /// `changes.title.from`: the title before an edit.
    Changes(String),
    Label(usize),
    Assignee(usize),
    Milestone,
}

impl Extra {
    fn key(&self) -> &'static str {
        match self {
            Extra::Changes(_) => "changes",
            Extra::Label(_) => "label",
            Extra::Assignee(_) => "assignee",
            Extra::Milestone => "milestone",
        }
    }
}

type ShapeKey = (&'static str, &'static str, bool, u64, Option<&'static str>);

/// A value of a generated payload that changes between deliveries of the same shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    Title,
    State,
    ClosedAt,
    CreatedAt,
    /// `updated_at` of the item, `created_at`/`updated_at` of a comment.
    Now,
    Labels,
    Assignees,
    Assignee,
    Milestone,
    Draft,
    Comments,
    MergedAt,
    Merged,
    MergedBy,
    Extra,
    CommentId,
    CommentBody,
    HookId,
}

const SLOTS: &[Slot] = &[
    Slot::Title,
    Slot::State,
    Slot::ClosedAt,
    Slot::CreatedAt,
    Slot::Now,
    Slot::Labels,
    Slot::Assignees,
    Slot::Assignee,
    Slot::Milestone,
    Slot::Draft,
    Slot::Comments,
    Slot::MergedAt,
    Slot::Merged,
    Slot::MergedBy,
    Slot::Extra,
    Slot::CommentId,
    Slot::CommentBody,
    Slot::HookId,
];

/// The marker [`Sim::tree`] puts where a slot's value goes when building a [`Shape`]; a control
/// character no fixture contains, which `serde_json` writes as `\u0001`.
fn slot(real: bool, slot: Slot, value: impl FnOnce() -> Value) -> Value {
    if real {
        value()
    } else {
        let index = SLOTS.iter().position(|s| *s == slot).unwrap_or(0);
        Value::String(format!("\u{1}S{index}\u{1}"))
    }
}

/// A byte template: the compact JSON of one payload shape with the slot markers cut out.
/// Writing a delivery is copying `text` with each slot's value written at its offset.
struct Shape {
    text: Vec<u8>,
    /// (offset in `text`, slot) in order.
    slots: Vec<(usize, Slot)>,
    len: usize,
}

impl Shape {
    fn of(tree: &Value) -> Self {
        const OPEN: &[u8] = br#""\u0001S"#;
        const CLOSE: &[u8] = br#"\u0001""#;
        let full = tree.to_string().into_bytes();
        let mut text = Vec::with_capacity(full.len());
        let mut slots = Vec::new();
        let mut i = 0;
        while i < full.len() {
            if full[i..].starts_with(OPEN) {
                let digits = &full[i + OPEN.len()..];
                let n = digits.iter().take_while(|b| b.is_ascii_digit()).count();
                let index: Option<usize> = std::str::from_utf8(&digits[..n])
                    .ok()
                    .and_then(|d| d.parse().ok());
                if let Some(slot) = index.and_then(|k| SLOTS.get(k)) {
                    if digits[n..].starts_with(CLOSE) {
                        slots.push((text.len(), *slot));
                        i += OPEN.len() + n + CLOSE.len();
                        continue;
                    }
                }
            }
            text.push(full[i]);
            i += 1;
        }
        let len = text.len();
        Self { text, slots, len }
    }
}

fn json_str(out: &mut Vec<u8>, s: &str) {
    // Writing a &str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

fn json_u64(out: &mut Vec<u8>, n: u64) {
    use std::io::Write as _;
    let _ = write!(out, "{n}");
}

fn json_bool(out: &mut Vec<u8>, b: bool) {
    out.extend_from_slice(if b { b"true" } else { b"false" });
}

fn json_time(out: &mut Vec<u8>, unix: Option<i64>) {
    match unix {
        Some(t) => json_str(out, &timestamp(t)),
        None => out.extend_from_slice(b"null"),
    }
}

/// Rewrites the fixture's own item number in the item's URL fields.
fn rewrite_urls(v: &mut Value, old: u64, new: u64) {
    let Some(obj) = v.as_object_mut() else {
        return;
    };
    for field in obj.values_mut() {
        if let Value::String(s) = field {
            for kind in ["issues", "pulls", "pull"] {
                let from = format!("/{kind}/{old}");
                if s.ends_with(&from)
                    || s.contains(&format!("{from}/"))
                    || s.contains(&format!("{from}."))
                {
                    *s = s.replacen(&from, &format!("/{kind}/{new}"), 1);
                }
            }
        }
    }
}

fn weighted<T: Copy>(rng: &mut StdRng, options: &[(T, u32)]) -> Option<T> {
    let total: u32 = options.iter().map(|(_, w)| w).sum();
    if total == 0 {
        return None;
    }
    let mut pick = rng.random_range(0..total);
    for (value, weight) in options {
        if pick < *weight {
            return Some(*value);
        }
        pick -= weight;
    }
    None
}

fn title(rng: &mut StdRng) -> String {
    let verb = VERBS[rng.random_range(0..VERBS.len())];
    let thing = THINGS[rng.random_range(0..THINGS.len())];
    format!("{verb} {thing}")
}

fn label_json(repo: &str, index: usize) -> Value {
    let (name, color) = LABELS[index % LABELS.len()];
    json!({
        "id": 1_000_000 + index,
        "node_id": format!("LA_chaos{index}"),
        "url": format!("https://api.github.com/repos/{repo}/labels/{name}"),
        "name": name,
        "color": color,
        "default": false,
        "description": null,
    })
}

fn user_json(index: usize) -> Value {
    let login = USERS[index % USERS.len()];
    json!({
        "login": login,
        "id": 2_000_000 + index,
        "node_id": format!("U_chaos{index}"),
        "url": format!("https://api.github.com/users/{login}"),
        "html_url": format!("https://github.com/{login}"),
        "type": "User",
        "site_admin": false,
    })
}

/// RFC 3339 in UTC with a `Z`, as GitHub writes timestamps.
fn timestamp(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bodies(gen: &mut PayloadGen, n: usize) -> Vec<(String, bytes::Bytes)> {
        (0..n)
            .map(|_| {
                let d = gen.next_delivery();
                (d.event, d.body)
            })
            .collect()
    }

    fn gen(seed: u64) -> PayloadGen {
        PayloadGen::new(seed, RunNonce::random(), "chaos/board", 4242).unwrap()
    }

    #[test]
    fn a_weighted_mix_is_honored_and_every_item_carries_its_snapshot() {
        let mut g = gen(9);
        let weights = vec![("issues".to_string(), 3), ("pull_request".to_string(), 1)];
        let plan = g.plan_weighted(400, &weights).unwrap();
        assert_eq!(plan.len(), 400);
        let count = |e: &str| plan.iter().filter(|p| p.delivery.event == e).count();
        let (issues, prs) = (count("issues"), count("pull_request"));
        assert_eq!(issues + prs, 400, "only the mix's events");
        // 3:1 by weight, from one seeded draw per delivery.
        assert!((250..=350).contains(&issues), "{issues} issues, {prs} prs");
        for p in &plan {
            let snap = p
                .delivery
                .snapshot
                .as_ref()
                .expect("an item event has a snapshot");
            let body: Value = serde_json::from_slice(&p.delivery.body).unwrap();
            let item = if p.delivery.event == "pull_request" {
                &body["pull_request"]
            } else {
                &body["issue"]
            };
            assert_eq!(item["number"].as_u64(), Some(snap.number));
            assert_eq!(item["title"].as_str(), Some(snap.title.as_str()));
        }
        // The generator's own mix is back afterwards.
        let rest = g.plan(200, &Duplicates::default());
        assert!(rest.iter().any(|p| p.delivery.event == "issue_comment"));
        assert!(g.plan_weighted(1, &[("push".to_string(), 1)]).is_err());
    }

    #[test]
    fn issues_end_as_tombstones_and_never_appear_again() {
        for seed in 0..20 {
            let mut g = gen(seed);
            let mut gone: HashMap<u64, (String, i64)> = HashMap::new();
            for _ in 0..600 {
                let d = g.next_delivery();
                let Some(snap) = d.snapshot else { continue };
                let body: Value = serde_json::from_slice(&d.body).unwrap();
                // Only a neighbour swap may send an older event after the tombstone.
                if let Some((_, at)) = gone.get(&snap.number) {
                    assert!(
                        snap.updated_at <= *at,
                        "seed {seed}: #{} has a newer event after it ended",
                        snap.number
                    );
                }
                let action = body["action"].as_str().unwrap().to_string();
                if snap.tombstone {
                    assert_eq!(d.event, "issues");
                    assert!(!snap.pull_request, "only issues are deleted or transferred");
                    assert!(matches!(action.as_str(), "deleted" | "transferred"));
                    assert_eq!(body["issue"]["number"].as_u64(), Some(snap.number));
                    if action == "transferred" {
                        assert_ne!(
                            body["changes"]["new_repository"]["full_name"],
                            body["repository"]["full_name"]
                        );
                    }
                    gone.insert(snap.number, (action, snap.updated_at));
                } else {
                    assert!(!matches!(action.as_str(), "deleted" | "transferred"));
                }
            }
            assert!(gone.len() <= MAX_TOMBSTONES, "seed {seed}: {gone:?}");
            assert!(!gone.is_empty(), "seed {seed}: 600 events and no tombstone");
        }
        // A short run (05-replay sends 80) has one too, nearly always.
        let short = (0..40)
            .filter(|seed| {
                let mut g = gen(*seed);
                (0..80).any(|_| g.next_delivery().snapshot.is_some_and(|s| s.tombstone))
            })
            .count();
        assert!(
            short >= 39,
            "only {short} of 40 seeds have a tombstone in 80 deliveries"
        );
    }

    #[test]
    fn same_seed_same_sequence_different_ids() {
        let mut a = gen(7);
        let mut b = gen(7);
        assert_ne!(a.nonce(), b.nonce(), "each run draws its own nonce");
        let da: Vec<Delivery> = (0..200).map(|_| a.next_delivery()).collect();
        let db: Vec<Delivery> = (0..200).map(|_| b.next_delivery()).collect();
        for (x, y) in da.iter().zip(&db) {
            assert_eq!(x.event, y.event);
            assert_eq!(x.body, y.body);
            assert_ne!(x.id, y.id);
        }
        assert_eq!(da[0].id, format!("{}-000001", a.nonce()));
        assert_eq!(da[199].id, format!("{}-000200", a.nonce()));
    }

    /// The byte templates are an optimisation only: every payload is byte for byte what the
    /// fixture's JSON tree with the item's state written in serialises to.
    #[test]
    fn byte_templates_write_what_the_tree_writes() {
        let mixes: &[(u64, &[&'static str])] = &[
            (1, EVENTS),
            (2, &["issues"]),
            (3, &["pull_request"]),
            (4, &["issue_comment"]),
            (5, &["issues", "ping"]),
            (6, &["pull_request", "issue_comment"]),
        ];
        for (seed, events) in mixes {
            let mut sim = Sim::new("chaos/board", 4242, events.to_vec()).unwrap();
            let mut rng = StdRng::seed_from_u64(*seed);
            for i in 0..2_000 {
                let (ev, _) = sim.generate(&mut rng);
                let mut bytes = Vec::new();
                sim.write(&ev, &mut bytes);
                let text = String::from_utf8(bytes).unwrap();
                assert_eq!(
                    text,
                    sim.tree(&ev, true).to_string(),
                    "seed {seed}, delivery {i}: {ev:?}"
                );
            }
            assert!(!sim.shapes.is_empty());
            for shape in sim.shapes.values() {
                let text = String::from_utf8_lossy(&shape.text);
                assert!(!text.contains("u0001S"), "an uncut slot marker: {text}");
            }
        }
    }

    #[test]
    fn different_seed_different_sequence() {
        assert_ne!(bodies(&mut gen(1), 20), bodies(&mut gen(2), 20));
    }

    #[test]
    fn nonces_differ() {
        let nonces: std::collections::HashSet<_> =
            (0..100).map(|_| RunNonce::random().to_string()).collect();
        assert_eq!(nonces.len(), 100);
    }

    #[test]
    fn payloads_carry_the_run_repository_and_vary() {
        let mut g = gen(3);
        let mut numbers = std::collections::HashMap::<u64, usize>::new();
        let mut events = std::collections::HashSet::new();
        let mut titles = std::collections::HashSet::new();
        let mut updated = Vec::new();
        let mut ended = std::collections::HashSet::new();
        let mut items = Vec::new();
        for _ in 0..300 {
            let d = g.next_delivery();
            let v: Value = serde_json::from_slice(&d.body).unwrap();
            assert_eq!(v["repository"]["id"], json!(4242));
            assert_eq!(v["repository"]["full_name"], json!("chaos/board"));
            let text = String::from_utf8(d.body.to_vec()).unwrap();
            assert!(!text.contains("Codertocat/Hello-World"), "{text}");
            events.insert(d.event.clone());
            if d.event == "ping" {
                continue;
            }
            let item = if d.event == "pull_request" {
                assert_eq!(v["number"], v["pull_request"]["number"]);
                &v["pull_request"]
            } else {
                &v["issue"]
            };
            let n = item["number"].as_u64().unwrap();
            assert!((1..=POOL).contains(&n));
            *numbers.entry(n).or_default() += 1;
            if d.snapshot.as_ref().is_some_and(|s| s.tombstone) {
                ended.insert(n);
            }
            titles.insert(item["title"].as_str().unwrap().to_string());
            updated.push(item["updated_at"].as_str().unwrap().to_string());
            items.push(n);
        }
        assert_eq!(events.len(), 4, "{events:?}");
        assert_eq!(numbers.len() as u64, POOL);
        // Every item that was not deleted or transferred sees several events.
        assert!(
            numbers
                .iter()
                .all(|(n, c)| *c >= 5
                    || (ended.contains(n) && *c > EVENTS_BEFORE_TOMBSTONE as usize)),
            "{numbers:?}, ended {ended:?}"
        );
        assert!(titles.len() > 5, "{titles:?}");
        // Timestamps come from a clock that only moves forward; only the seeded swaps of
        // neighbours put one out of order, and never by more than one step. A few repeat: the
        // same item again within the same second.
        let mut sorted = updated.clone();
        sorted.sort();
        sorted.dedup();
        let repeats = updated.len() - sorted.len();
        assert!(
            repeats > 0 && repeats < updated.len() / 4,
            "{repeats} repeated timestamps"
        );
        for (i, w) in items.windows(2).enumerate() {
            if updated[i] == updated[i + 1] {
                assert_eq!(w[0], w[1], "a repeated second is the same item");
            }
        }
        let inversions = updated.windows(2).filter(|w| w[0] > w[1]).count();
        assert!(
            inversions > 0 && inversions < updated.len() / 4,
            "{inversions}"
        );
    }

    #[test]
    fn pull_requests_in_issue_events_carry_pull_request() {
        let mut g = gen(11);
        let mut kinds = std::collections::HashMap::<u64, bool>::new();
        for _ in 0..400 {
            let d = g.next_delivery();
            let v: Value = serde_json::from_slice(&d.body).unwrap();
            let (n, is_pr) = match d.event.as_str() {
                "pull_request" => (v["number"].as_u64().unwrap(), true),
                "issues" | "issue_comment" => (
                    v["issue"]["number"].as_u64().unwrap(),
                    v["issue"].get("pull_request").is_some(),
                ),
                _ => continue,
            };
            // A number is either always a PR or never one.
            assert_eq!(*kinds.entry(n).or_insert(is_pr), is_pr, "#{n}");
        }
        assert!(kinds.values().any(|pr| *pr) && kinds.values().any(|pr| !*pr));
    }

    #[test]
    fn event_filter() {
        let mut g = gen(5).with_events(&["pull_request".to_string()]).unwrap();
        for _ in 0..50 {
            assert_eq!(g.next_delivery().event, "pull_request");
        }
        let mut g = gen(5).with_events(&["ping".to_string()]).unwrap();
        assert_eq!(g.next_delivery().event, "ping");
        let mut g = gen(5)
            .with_events(&["issues".to_string(), "issue_comment".to_string()])
            .unwrap();
        for _ in 0..50 {
            let d = g.next_delivery();
            assert!(
                d.event == "issues" || d.event == "issue_comment",
                "{}",
                d.event
            );
            let v: Value = serde_json::from_slice(&d.body).unwrap();
            assert!(v["issue"].get("pull_request").is_none());
        }
        assert!(gen(5).with_events(&["push".to_string()]).is_err());
    }

    #[test]
    fn bad_repository_is_refused() {
        assert!(PayloadGen::new(1, RunNonce::random(), "noslash", 1).is_err());
        assert!(PayloadGen::new(1, RunNonce::random(), "a/b\"c", 1).is_err());
    }

    #[test]
    fn plan_same_uses_one_id() {
        let plan = gen(1).plan(
            5,
            &Duplicates {
                same: true,
                ..Default::default()
            },
        );
        assert_eq!(plan.len(), 5);
        let id = &plan[0].delivery.id;
        assert!(plan.iter().all(|p| &p.delivery.id == id));
        assert_eq!(plan[0].duplicate_of, None);
        assert!(plan[1..]
            .iter()
            .all(|p| p.duplicate_of.as_ref() == Some(id)));
    }

    #[test]
    fn plan_copies_follow_their_original() {
        let plan = gen(1).plan(
            7,
            &Duplicates {
                copies: 2,
                ..Default::default()
            },
        );
        let shape: Vec<bool> = plan.iter().map(|p| p.duplicate_of.is_some()).collect();
        assert_eq!(shape, [false, true, true, false, true, true, false]);
        assert_eq!(plan[1].delivery, plan[0].delivery);
        assert_eq!(plan[5].delivery, plan[3].delivery);
    }

    #[test]
    fn plan_fraction_is_seeded_and_keeps_the_payload_sequence() {
        let dups = Duplicates {
            fraction: 0.3,
            ..Default::default()
        };
        let a = gen(9).plan(100, &dups);
        let b = gen(9).plan(100, &dups);
        let pattern = |p: &[PlannedSend]| -> Vec<Option<usize>> {
            p.iter()
                .map(|s| {
                    s.duplicate_of.as_ref().map(|_| {
                        p.iter()
                            .position(|o| o.delivery.id == s.delivery.id)
                            .unwrap()
                    })
                })
                .collect()
        };
        assert_eq!(pattern(&a), pattern(&b));
        let dup_count = a.iter().filter(|p| p.duplicate_of.is_some()).count();
        assert!((10..=50).contains(&dup_count), "{dup_count}");
        // Duplicates are exact and point back at an earlier original.
        for (i, p) in a.iter().enumerate() {
            if let Some(of) = &p.duplicate_of {
                assert_eq!(of, &p.delivery.id);
                let first = a.iter().position(|o| &o.delivery.id == of).unwrap();
                assert!(first < i && a[first].duplicate_of.is_none());
            }
        }
        // The originals are the seed's payload sequence, whatever the duplicate pattern.
        let originals: Vec<bytes::Bytes> = a
            .iter()
            .filter(|p| p.duplicate_of.is_none())
            .map(|p| p.delivery.body.clone())
            .collect();
        let plain: Vec<bytes::Bytes> = bodies(&mut gen(9), originals.len())
            .into_iter()
            .map(|(_, b)| b)
            .collect();
        assert_eq!(originals, plain);
    }

    #[test]
    fn user_payloads_from_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("issues")).unwrap();
        std::fs::write(
            dir.path().join("issues/a.json"),
            br#"{"issue":{"number":1}}"#,
        )
        .unwrap();
        std::fs::write(dir.path().join("p.json"), br#"{"zen":"z","hook_id":1}"#).unwrap();
        std::fs::write(dir.path().join("notes.txt"), b"not a payload").unwrap();
        let mut g = PayloadGen::from_path(1, RunNonce::new("n"), dir.path(), &[]).unwrap();
        let mut seen = std::collections::HashMap::new();
        for _ in 0..40 {
            let d = g.next_delivery();
            seen.insert(d.event.clone(), d.body.clone());
        }
        assert_eq!(seen["issues"], &br#"{"issue":{"number":1}}"#[..]);
        assert_eq!(seen["ping"], &br#"{"zen":"z","hook_id":1}"#[..]);
        assert_eq!(seen.len(), 2);

        let mut only =
            PayloadGen::from_path(1, RunNonce::new("n"), dir.path(), &["ping".into()]).unwrap();
        assert!((0..10).all(|_| only.next_delivery().event == "ping"));
    }

    #[test]
    fn user_payload_with_unknown_event_needs_a_hint() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("x.json");
        std::fs::write(&file, br#"{"something":1}"#).unwrap();
        let err = PayloadGen::from_path(1, RunNonce::new("n"), &file, &[])
            .err()
            .unwrap();
        assert!(
            format!("{err:#}").contains("cannot tell the event"),
            "{err:#}"
        );
        let mut g = PayloadGen::from_path(1, RunNonce::new("n"), &file, &["push".into()]).unwrap();
        assert_eq!(g.next_delivery().event, "push");
        assert!(
            PayloadGen::from_path(1, RunNonce::new("n"), &dir.path().join("nope"), &[]).is_err()
        );
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(timestamp(CLOCK_START), "2025-01-01T00:00:00Z");
    }
}
