//! `gitspy replay` (SPEC §1.6): folds the event log of a received-at window `[from, to)` into a
//! replay state — the same [`FoldState`] the store keeps — and renders boards from it.
//!
//! It lives apart from the worker and the store because it must never write the live store: the
//! database is opened read-only, and everything it produces goes to stdout or to `--out`. The
//! fold and the board renderer are the ones the worker uses ([`crate::github`]), so a replay of
//! the whole log reproduces the live boards byte for byte, which `--verify` checks.
//!
//! # Decisions
//!
//! - **Instants** (`--from`, `--to`): an RFC 3339 timestamp, or a bare integer that is unix
//!   seconds when it is below 100 000 000 000 and unix milliseconds otherwise (10^11 seconds is the
//!   year 5138; 10^11 milliseconds is March 1973, before any GitHub webhook). A suffix `s` or
//!   `ms` forces the unit. Both bounds default to open ends.
//! - **`--repo`** restricts the boards printed and written; the fold still reads the whole window
//!   (a repository's address depends on every repository's name), and the state file holds the
//!   whole window's state, so it can seed any later replay.
//! - **Files** are written to a temporary name and renamed, so a crash leaves either the old or
//!   the new file. Board files hold the canonical bytes exactly (no trailing newline); the state
//!   file is pretty JSON of sorted maps, so equal states give equal bytes.
//! - **`--verify`** needs a window that starts at the beginning of the log (no `--from`, or a
//!   `--from` with no logged delivery before it) and no `--state` (a seed from elsewhere would
//!   make the comparison meaningless). It compares repository names and card states (every
//!   per-field version and tombstone), then the rendered boards, and reports the first
//!   difference in key order.
//! - **`--shuffle-seed N [--duplicates K]`** reads the window into memory, shuffles it with a
//!   seeded Fisher–Yates (splitmix64, so the order depends only on the seed and the window, not
//!   on a library version), inserts K extra copies of seeded rows at seeded positions, and folds
//!   that. A correct fold is order-independent and idempotent, so the boards and digests equal
//!   the in-order replay's; the harness compares the two.
//! - **`--reverse`** folds the window newest first: every older snapshot arrives after the newer
//!   one and after any tombstone, the order a fold that lets arrival decide gets wrong most surely.
//! - **`--json`** replaces the per-board lines with one JSON object (see `gitspy replay --help`).
//!   Its `digest` is `sha256:` of the lines `<repo> <board digest>\n` in repository-name order,
//!   one value for "every board of the window".
//! - **Exit codes**: 0 done (and, with `--verify`, no difference), 1 `--verify` found a
//!   difference, 2 the replay could not run (bad flags, unreadable store or state file).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;

use anyhow::{bail, Context as _};

use crate::config::ReplayArgs;
use crate::github::board::{self, Board, Column};
use crate::github::fold::{address_boards, CardKey, CardState, FoldState, RepoState};
use crate::store::{PgStore, SqliteStore, Store, StoreError, StoreSnapshot};

/// What a replay produced.
#[derive(Debug)]
pub struct Replayed {
    /// The folded state (seed included).
    pub state: FoldState,
    /// Event-log rows read in the window.
    pub deliveries: u64,
    /// Rows whose payload was not JSON (skipped, as the worker logs them without effect).
    pub unparseable: u64,
}

/// A small seeded generator (splitmix64): the shuffled order depends only on the seed.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`), without modulo bias worth caring about for these sizes.
    fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next()) * n as u128) >> 64) as usize
    }
}

/// The order `--shuffle-seed` folds in: indexes into the window's rows, shuffled, with
/// `duplicates` extra copies of seeded rows at seeded positions.
pub fn shuffled_order(rows: usize, seed: u64, duplicates: u64) -> Vec<usize> {
    let mut rng = SplitMix(seed);
    let mut order: Vec<usize> = (0..rows).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i + 1));
    }
    if rows > 0 {
        for _ in 0..duplicates {
            let copy = rng.below(rows);
            let at = rng.below(order.len() + 1);
            order.insert(at, copy);
        }
    }
    order
}

/// [`fold_window`] in the order of [`shuffled_order`]; `deliveries` counts the folds, copies
/// included.
pub fn fold_window_shuffled(
    store: &dyn Store,
    from_ms: i64,
    to_ms: i64,
    seed: FoldState,
    shuffle_seed: u64,
    duplicates: u64,
) -> Result<Replayed, StoreError> {
    let rows = window_rows(store, from_ms, to_ms)?;
    let order = shuffled_order(rows.len(), shuffle_seed, duplicates);
    Ok(fold_rows(seed, order.into_iter().map(|i| &rows[i])))
}

/// [`fold_window`] newest first (reverse log order).
pub fn fold_window_reversed(
    store: &dyn Store,
    from_ms: i64,
    to_ms: i64,
    seed: FoldState,
) -> Result<Replayed, StoreError> {
    let rows = window_rows(store, from_ms, to_ms)?;
    Ok(fold_rows(seed, rows.iter().rev()))
}

/// The window's logged deliveries in log order, in memory (for the orders other than the log's).
fn window_rows(
    store: &dyn Store,
    from_ms: i64,
    to_ms: i64,
) -> Result<Vec<crate::delivery::Delivery>, StoreError> {
    let mut rows = Vec::new();
    store.scan_log(from_ms, to_ms, &mut |row| {
        rows.push(row.delivery);
        Ok(())
    })?;
    Ok(rows)
}

/// Folds `rows` in the order given onto `seed`.
fn fold_rows<'a>(
    seed: FoldState,
    rows: impl Iterator<Item = &'a crate::delivery::Delivery>,
) -> Replayed {
    let mut out = Replayed {
        state: seed,
        deliveries: 0,
        unparseable: 0,
    };
    for d in rows {
        fold_row(&mut out, d);
    }
    out
}

/// Folds one logged delivery into `out` (a payload that is not JSON is counted and skipped).
fn fold_row(out: &mut Replayed, d: &crate::delivery::Delivery) {
    out.deliveries += 1;
    match serde_json::from_slice::<serde_json::Value>(&d.body) {
        Ok(payload) => {
            out.state.apply(&d.event, &payload);
        }
        Err(e) => {
            out.unparseable += 1;
            tracing::warn!(delivery = %d.id, "payload is not JSON, skipped: {e}");
        }
    }
}

/// The overall digest of a set of boards (see the module docs).
pub fn overall_digest(boards: &[Board]) -> String {
    use sha2::Digest as _;
    let mut sorted: Vec<&Board> = boards.iter().collect();
    sorted.sort_by(|a, b| a.repo.cmp(&b.repo));
    let mut h = sha2::Sha256::new();
    for b in sorted {
        h.update(format!("{} {}\n", b.repo, b.digest).as_bytes());
    }
    format!("sha256:{}", hex::encode(h.finalize()))
}

/// Folds the window `[from_ms, to_ms)` of the store's event log into `seed`.
pub fn fold_window(
    store: &dyn Store,
    from_ms: i64,
    to_ms: i64,
    seed: FoldState,
) -> Result<Replayed, StoreError> {
    let mut out = Replayed {
        state: seed,
        deliveries: 0,
        unparseable: 0,
    };
    store.scan_log(from_ms, to_ms, &mut |row| {
        fold_row(&mut out, &row.delivery);
        Ok(())
    })?;
    Ok(out)
}

/// The first difference between a replayed state and the live store, if any.
#[derive(Debug, Clone, PartialEq)]
pub enum Difference {
    /// A card's state differs (or exists on one side only).
    Card {
        key: CardKey,
        /// The repository's current name, when either side knows it.
        repo: Option<String>,
        replayed: Option<Box<CardState>>,
        live: Option<Box<CardState>>,
    },
    /// A repository's name register differs.
    Repo {
        repo_id: i64,
        replayed: Option<RepoState>,
        live: Option<RepoState>,
    },
    /// A rendered board differs (or exists on one side only).
    Board { repo: String },
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Difference::Card {
                key,
                repo,
                replayed,
                live,
            } => write!(
                f,
                "card {}#{} (repository id {}) differs: replay has {}, live store has {}",
                repo.as_deref().unwrap_or("<unnamed>"),
                key.number,
                key.repo_id,
                json(replayed),
                json(live)
            ),
            Difference::Repo {
                repo_id,
                replayed,
                live,
            } => write!(
                f,
                "repository id {repo_id} differs: replay has {}, live store has {}",
                json(replayed),
                json(live)
            ),
            Difference::Board { repo } => write!(f, "board {repo} differs"),
        }
    }
}

/// Either side of a difference as compact JSON (`null` when absent).
fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|e| format!("<unprintable: {e}>"))
}

/// The boards of a store snapshot, rendered exactly as the live store renders them.
pub fn snapshot_boards(snap: &StoreSnapshot) -> Vec<Board> {
    let mut cards: BTreeMap<i64, Vec<(i64, &CardState)>> = BTreeMap::new();
    for (key, card) in &snap.cards {
        cards
            .entry(key.repo_id)
            .or_default()
            .push((key.number, card));
    }
    let addressed = address_boards(
        snap.repos
            .iter()
            .filter(|(id, _)| cards.contains_key(id))
            .map(|(id, repo)| (*id, repo)),
    );
    addressed
        .into_iter()
        .map(|(name, repo_id)| {
            let list = cards.get(&repo_id).map(Vec::as_slice).unwrap_or_default();
            board::render(name, list.iter().copied())
        })
        .collect()
}

/// Compares a replayed state with the live store: repository names, then every card, then the
/// rendered boards; `only_repo` limits the comparison to the cards and board of that address.
pub fn compare(
    replayed: &FoldState,
    live: &StoreSnapshot,
    only_repo: Option<&str>,
) -> Option<Difference> {
    let live_repos: BTreeMap<i64, &RepoState> = live.repos.iter().map(|(i, r)| (*i, r)).collect();
    let replay_repos: BTreeMap<i64, &RepoState> = replayed.repos().collect();
    let name_of = |id: i64| {
        replay_repos
            .get(&id)
            .or_else(|| live_repos.get(&id))
            .and_then(|r| r.full_name())
            .map(str::to_owned)
    };
    let in_scope = |id: i64| only_repo.is_none_or(|want| name_of(id).as_deref() == Some(want));

    let mut repo_ids: Vec<i64> = live_repos
        .keys()
        .chain(replay_repos.keys())
        .copied()
        .collect();
    repo_ids.sort_unstable();
    repo_ids.dedup();
    for id in repo_ids.into_iter().filter(|id| in_scope(*id)) {
        let (a, b) = (replay_repos.get(&id), live_repos.get(&id));
        if a != b {
            return Some(Difference::Repo {
                repo_id: id,
                replayed: a.map(|r| (*r).clone()),
                live: b.map(|r| (*r).clone()),
            });
        }
    }

    let live_cards: BTreeMap<CardKey, &CardState> =
        live.cards.iter().map(|(k, c)| (*k, c)).collect();
    let replay_cards: BTreeMap<CardKey, &CardState> = replayed.cards().collect();
    let mut keys: Vec<CardKey> = live_cards
        .keys()
        .chain(replay_cards.keys())
        .copied()
        .collect();
    keys.sort_unstable();
    keys.dedup();
    for key in keys.into_iter().filter(|k| in_scope(k.repo_id)) {
        let (a, b) = (replay_cards.get(&key), live_cards.get(&key));
        if a != b {
            return Some(Difference::Card {
                key,
                repo: name_of(key.repo_id),
                replayed: a.map(|c| Box::new((*c).clone())),
                live: b.map(|c| Box::new((*c).clone())),
            });
        }
    }

    let live_boards: BTreeMap<String, Board> = snapshot_boards(live)
        .into_iter()
        .map(|b| (b.repo.clone(), b))
        .collect();
    let replay_boards: BTreeMap<String, Board> = replayed
        .boards()
        .into_iter()
        .map(|b| (b.repo.clone(), b))
        .collect();
    let mut names: Vec<&String> = live_boards.keys().chain(replay_boards.keys()).collect();
    names.sort_unstable();
    names.dedup();
    names
        .into_iter()
        .filter(|n| only_repo.is_none_or(|want| n.as_str() == want))
        .find(|n| live_boards.get(*n).map(|b| &b.json) != replay_boards.get(*n).map(|b| &b.json))
        .map(|n| Difference::Board { repo: n.clone() })
}

/// The file name of a board: `<owner>_<repo>.kanban.json`, with anything outside
/// `[A-Za-z0-9._-]` replaced by `_` so a name can never leave the output directory.
pub fn board_file_name(full_name: &str) -> String {
    let safe: String = full_name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{safe}.kanban.json")
}

/// The state file inside the output directory.
pub const STATE_FILE: &str = "replay-state.json";

/// The exact bytes of a state file.
pub fn state_bytes(state: &FoldState) -> anyhow::Result<Vec<u8>> {
    let mut bytes = serde_json::to_vec_pretty(state).context("serialising the replay state")?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// Reads a state file written by an earlier replay.
pub fn read_state(path: &Path) -> anyhow::Result<FoldState> {
    let bytes =
        std::fs::read(path).with_context(|| format!("reading replay state {}", path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| {
        format!(
            "{} is not a replay state (expected the {STATE_FILE} of an earlier `gitspy replay`)",
            path.display()
        )
    })
}

fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f =
        std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))
}

/// One stdout line per board: name, count per column, digest.
pub fn summary_line(b: &Board) -> String {
    let counts: Vec<String> = Column::ALL
        .iter()
        .map(|c| format!("{}={}", c.as_str(), b.counts.get(c).copied().unwrap_or(0)))
        .collect();
    format!("{} {} {}", b.repo, counts.join(" "), b.digest)
}

/// How a replay ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Done; with `--verify`, no difference.
    Ok,
    /// `--verify` found this difference.
    Differs(Difference),
}

/// Runs `gitspy replay`.
pub fn run(args: &ReplayArgs) -> anyhow::Result<Outcome> {
    let from = args.from.unwrap_or(i64::MIN);
    let to = args.to.unwrap_or(i64::MAX);
    if from >= to {
        bail!("empty window: --from ({from} ms) must be before --to ({to} ms)");
    }
    if args.verify && args.state.is_some() {
        bail!("--verify compares a replay of the whole log with the live store; drop --state");
    }
    let store: Box<dyn Store> = match args.db.to_str() {
        Some(url) if crate::store::postgres::is_url(url) => {
            Box::new(PgStore::open_read_only(url).with_context(|| {
                format!("opening {} read-only", crate::store::describe(&args.db))
            })?)
        }
        _ => {
            if !args.db.is_file() {
                bail!(
                    "no store at {}: pass --db (or GITSPY_DB) pointing at the gitspy database",
                    args.db.display()
                );
            }
            Box::new(
                SqliteStore::open_read_only(&args.db)
                    .with_context(|| format!("opening {} read-only", args.db.display()))?,
            )
        }
    };
    let store = store.as_ref();
    if args.verify && from != i64::MIN {
        let mut earlier = 0u64;
        store
            .scan_log(i64::MIN, from, &mut |_| {
                earlier += 1;
                Ok(())
            })
            .context("reading the event log")?;
        if earlier > 0 {
            bail!(
                "--verify needs a window starting at the beginning of the log, but {earlier} \
                 deliveries were received before --from; drop --from"
            );
        }
    }
    let seed = match &args.state {
        Some(path) => read_state(path)?,
        None => FoldState::default(),
    };
    let replayed = match args.shuffle_seed {
        Some(s) => fold_window_shuffled(store, from, to, seed, s, args.duplicates),
        None if args.reverse => fold_window_reversed(store, from, to, seed),
        None => fold_window(store, from, to, seed),
    }
    .context("reading the event log")?;
    tracing::info!(
        deliveries = replayed.deliveries,
        unparseable = replayed.unparseable,
        from,
        to,
        "replayed the window"
    );
    let boards: Vec<Board> = match &args.repo {
        Some(name) => replayed.state.board(name).into_iter().collect(),
        None => replayed.state.boards(),
    };
    if let (Some(name), true) = (&args.repo, boards.is_empty()) {
        tracing::warn!("no board for {name} in this window");
    }

    let mut out = std::io::stdout().lock();
    if !args.json {
        for b in &boards {
            writeln!(out, "{}", summary_line(b)).context("writing to stdout")?;
        }
    }
    if !args.dry_run {
        write_outputs(&args.out, &boards, &replayed.state)?;
        if !args.json {
            writeln!(
                out,
                "wrote {} board(s) and {STATE_FILE} to {}",
                boards.len(),
                args.out.display()
            )
            .context("writing to stdout")?;
        }
    }

    let difference = if args.verify {
        let snap = store.snapshot().context("reading the live store")?;
        let d = compare(&replayed.state, &snap, args.repo.as_deref());
        if d.is_none() {
            tracing::info!("verify: the replay matches the live store");
        }
        d
    } else {
        None
    };
    if args.json {
        let doc = json_summary(args, &replayed, &boards, difference.as_ref());
        writeln!(out, "{doc}").context("writing to stdout")?;
    }
    out.flush().context("writing to stdout")?;
    Ok(match difference {
        Some(diff) => Outcome::Differs(diff),
        None => Outcome::Ok,
    })
}

/// The `--json` document.
pub fn json_summary(
    args: &ReplayArgs,
    replayed: &Replayed,
    boards: &[Board],
    difference: Option<&Difference>,
) -> serde_json::Value {
    let boards_json: Vec<serde_json::Value> = boards
        .iter()
        .map(|b| {
            let counts: serde_json::Map<String, serde_json::Value> = Column::ALL
                .iter()
                .map(|c| {
                    (
                        c.as_str().to_owned(),
                        b.counts.get(c).copied().unwrap_or(0).into(),
                    )
                })
                .collect();
            serde_json::json!({ "repo": b.repo, "digest": b.digest, "counts": counts })
        })
        .collect();
    let mut doc = serde_json::json!({
        "window": { "from_ms": args.from, "to_ms": args.to },
        "deliveries": replayed.deliveries,
        "unparseable": replayed.unparseable,
        "order": {
            "shuffle_seed": args.shuffle_seed,
            "duplicates": args.duplicates,
            "reverse": args.reverse,
        },
        "boards": boards_json,
        "digest": overall_digest(boards),
        "wrote": (!args.dry_run).then(|| args.out.display().to_string()),
    });
    if args.verify {
        doc["verify"] = serde_json::json!({
            "matches": difference.is_none(),
            "difference": difference.map(ToString::to_string),
        });
    }
    doc
}

fn write_outputs(dir: &Path, boards: &[Board], state: &FoldState) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for b in boards {
        write_atomically(&dir.join(board_file_name(&b.repo)), &b.json)?;
    }
    write_atomically(&dir.join(STATE_FILE), &state_bytes(state)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shuffled_order_is_a_seeded_permutation_plus_copies() {
        let a = shuffled_order(50, 7, 0);
        assert_eq!(a, shuffled_order(50, 7, 0));
        assert_ne!(a, shuffled_order(50, 8, 0));
        assert_ne!(a, (0..50).collect::<Vec<_>>());
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
        let with = shuffled_order(50, 7, 5);
        assert_eq!(with.len(), 55);
        assert!(with.iter().all(|i| *i < 50));
        assert!(shuffled_order(0, 7, 5).is_empty());
    }

    #[test]
    fn board_file_names_stay_inside_the_directory() {
        assert_eq!(board_file_name("octo/demo"), "octo_demo.kanban.json");
        assert_eq!(board_file_name("o/my_repo.js"), "o_my_repo.js.kanban.json");
        assert_eq!(board_file_name("../../etc"), ".._.._etc.kanban.json");
    }
}
