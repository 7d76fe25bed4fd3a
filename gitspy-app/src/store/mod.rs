//! The board store behind a small interface that does not leak SQLite or PostgreSQL. The embedded
//! default is [`sqlite::SqliteStore`]; `GITSPY_DB=postgres://…` selects [`postgres::PgStore`], which
//! servers and workers on several machines can share.

pub mod postgres;
pub mod sqlite;

use std::path::Path;
use std::sync::Arc;

use serde::Serialize;
use thiserror::Error;

use crate::delivery::Delivery;
use crate::github::board::Board;
use crate::github::fold::{CardKey, CardState, RepoState};

pub use self::postgres::PgStore;
pub use sqlite::SqliteStore;

/// Opens the store `db` names: a `postgres://` / `postgresql://` URL, else a SQLite file path.
pub fn open(db: &Path, opts: StoreOptions) -> Result<Arc<dyn Store>, StoreError> {
    match db.to_str() {
        Some(url) if self::postgres::is_url(url) => Ok(Arc::new(PgStore::open(url, opts)?)),
        _ => Ok(Arc::new(SqliteStore::open(db, opts)?)),
    }
}

/// `db` as it may be logged: a PostgreSQL URL without its password.
pub fn describe(db: &Path) -> String {
    match db.to_str() {
        Some(url) if self::postgres::is_url(url) => self::postgres::redact(url),
        _ => db.display().to_string(),
    }
}

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("store: corrupt row: {0}")]
    Corrupt(String),
    #[error("store: {0}")]
    Io(#[from] std::io::Error),
    /// A PostgreSQL error, with the server's message and SQLSTATE when it sent one.
    #[error("store: {0}")]
    Postgres(String),
    /// The PostgreSQL connection was gone (closed, terminated by the server): the operation is
    /// retried once on a new connection before this reaches a caller.
    #[error("store: {0}")]
    PostgresLost(String),
}

/// What happened to one delivery of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyOutcome {
    pub delivery: String,
    /// `false` when an earlier attempt had already committed it (`applied_deliveries` hit): nothing
    /// was written again.
    pub applied: bool,
    /// The card the delivery touched, if any.
    pub card: Option<CardKey>,
}

/// Per-delivery facts from the store, counted from the rows themselves (never from a uniqueness
/// constraint that would hide a second row): the harness detects duplication with them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeliveryRows {
    pub delivery: String,
    /// Rows for this id in the event log.
    pub logged: u64,
    /// `card_history` rows for this id.
    pub effects: u64,
    /// When it was applied, unix ms (`None` if never).
    pub applied_at: Option<i64>,
    /// The consumer name of the worker whose transaction applied it (the first one, should there
    /// be more); `None` if never applied, or applied before this was recorded.
    pub applied_by: Option<String>,
}

/// One processed delivery of the listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppliedRow {
    pub delivery: String,
    /// When it was (first) applied, unix ms.
    pub applied_at: i64,
    /// The consumer that applied it (see [`DeliveryRows::applied_by`]).
    pub applied_by: Option<String>,
}

/// One event-log row.
#[derive(Debug, Clone)]
pub struct LoggedDelivery {
    pub delivery: Delivery,
    pub logged_at_ms: i64,
}

/// The live store's fold state, for `gitspy replay --verify`.
#[derive(Debug, Clone, Default)]
pub struct StoreSnapshot {
    pub repos: Vec<(i64, RepoState)>,
    pub cards: Vec<(CardKey, CardState)>,
}

/// Options of the store that change its semantics.
#[derive(Debug, Clone, Copy)]
pub struct StoreOptions {
    /// Test-only: `false` skips the `applied_deliveries` check, so a redelivered delivery is applied
    /// twice. Exists so the harness can prove it detects duplicate effects.
    pub dedupe: bool,
    /// How long a write waits for another connection's lock (SQLite `busy_timeout`, PostgreSQL
    /// `lock_timeout`).
    pub busy_timeout: std::time::Duration,
    /// SQLite only: when a commit reaches the disk (`GITSPY_SQLITE_SYNC`).
    pub sqlite_sync: SqliteSync,
}

/// When a SQLite commit is on the disk: the database's `PRAGMA synchronous` in WAL mode. Both
/// survive a crash of the process (a commit is in the WAL file, in the OS's page cache, before
/// `COMMIT` returns); they differ on a power loss or kernel crash.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum SqliteSync {
    /// `synchronous=FULL`: the WAL is fsynced at every commit; a committed batch survives a
    /// power loss too (the default).
    #[default]
    Full,
    /// `synchronous=NORMAL`: the WAL is fsynced at checkpoints only; a power loss may roll back
    /// the last commits, which Redis may already have marked `processed` (so they would be
    /// missing from the board). A crash of the process loses nothing. For throughput runs.
    Normal,
}

impl SqliteSync {
    fn pragma(self) -> &'static str {
        match self {
            SqliteSync::Full => "FULL",
            SqliteSync::Normal => "NORMAL",
        }
    }
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            dedupe: true,
            busy_timeout: std::time::Duration::from_secs(10),
            sqlite_sync: SqliteSync::Full,
        }
    }
}

/// The board store.
pub trait Store: Send + Sync + 'static {
    /// Applies a batch of deliveries in ONE write transaction: per delivery, skip it if
    /// `applied_deliveries` has it, else append it to the event log, fold it into its card, write
    /// `card_history`, record it in `applied_deliveries`.
    /// `applied_by` is the worker's consumer name, recorded with each delivery it applies.
    fn apply_batch(
        &self,
        batch: &[Delivery],
        applied_by: &str,
    ) -> Result<Vec<ApplyOutcome>, StoreError>;
    /// The board of a repository by its current `owner/name`; `None` if no card was ever seen there.
    fn board(&self, full_name: &str) -> Result<Option<Board>, StoreError>;
    /// Row counts per delivery id (unknown ids get zeros).
    fn lookup(&self, ids: &[String]) -> Result<Vec<DeliveryRows>, StoreError>;
    /// Processed deliveries with id after `after` (exclusive, in id order), at most `limit`.
    fn list_applied(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AppliedRow>, StoreError>;
    /// Visits the event log for received-at in `[from_ms, to_ms)`, in log order.
    fn scan_log(
        &self,
        from_ms: i64,
        to_ms: i64,
        visit: &mut dyn FnMut(LoggedDelivery) -> Result<(), StoreError>,
    ) -> Result<(), StoreError>;
    /// Every card and repository state (for replay verification).
    fn snapshot(&self) -> Result<StoreSnapshot, StoreError>;
    /// Cheap liveness query.
    fn ping(&self) -> Result<(), StoreError>;
    /// Event-log retention: deletes log rows logged before `cutoff_ms` and returns how many.
    /// `applied_deliveries`, cards and `card_history` stay, so redeliveries are still deduplicated;
    /// replays and `logged` counts only see what is kept.
    fn prune_log(&self, cutoff_ms: i64) -> Result<u64, StoreError>;
}
