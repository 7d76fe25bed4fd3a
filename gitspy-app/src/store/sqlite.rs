//! The embedded SQLite store: WAL, `busy_timeout`, `BEGIN IMMEDIATE` for every write, one transaction
//! per batch of deliveries. Several worker processes may share one database file.
//!
//! Tables: `deliveries` (the event log, raw payloads kept for replay — deliberately NOT unique on the
//! delivery id, so a second row would be visible), `applied_deliveries` (what committed), `repos` and
//! `cards` (fold state as JSON with per-field versions and tombstones), `card_history` (one row per
//! applied delivery that touched a card — the side effect whose duplication the harness checks).

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::{
    AppliedRow, ApplyOutcome, DeliveryRows, LoggedDelivery, Store, StoreError, StoreOptions,
    StoreSnapshot,
};
use crate::delivery::{now_ms, Delivery};
use crate::github::board::{self, Board};
use crate::github::fold::{self, CardKey, CardState, RepoState};

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS deliveries (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id    TEXT    NOT NULL,
    event          TEXT    NOT NULL,
    action         TEXT,
    repository     TEXT,
    received_at_ms INTEGER NOT NULL,
    logged_at_ms   INTEGER NOT NULL,
    payload        BLOB    NOT NULL
);
CREATE INDEX IF NOT EXISTS deliveries_by_id ON deliveries(delivery_id);
CREATE INDEX IF NOT EXISTS deliveries_by_received ON deliveries(received_at_ms);
CREATE TABLE IF NOT EXISTS applied_deliveries (
    delivery_id   TEXT    NOT NULL,
    applied_at_ms INTEGER NOT NULL,
    applied_by    TEXT
);
CREATE INDEX IF NOT EXISTS applied_by_id ON applied_deliveries(delivery_id);
CREATE TABLE IF NOT EXISTS repos (
    repo_id   INTEGER PRIMARY KEY,
    full_name TEXT,
    state     TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS repos_by_name ON repos(full_name);
CREATE TABLE IF NOT EXISTS cards (
    repo_id INTEGER NOT NULL,
    number  INTEGER NOT NULL,
    state   TEXT    NOT NULL,
    PRIMARY KEY (repo_id, number)
);
CREATE TABLE IF NOT EXISTS card_history (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id   TEXT    NOT NULL,
    repo_id       INTEGER NOT NULL,
    number        INTEGER NOT NULL,
    column_name   TEXT,
    applied_at_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS card_history_by_delivery ON card_history(delivery_id);
"#;

/// SQLite-backed [`Store`].
pub struct SqliteStore {
    conn: Mutex<Connection>,
    opts: StoreOptions,
}

impl SqliteStore {
    /// Opens (creating when missing) the database at `path`, and its parent directory.
    pub fn open(path: &Path, opts: StoreOptions) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir)?;
            }
        }
        // Processes that open a fresh file at once race on its first write (page size, WAL
        // mode, schema); SQLite answers the loser `SQLITE_BUSY` without waiting when waiting
        // could deadlock, so the whole opening is tried again within the busy timeout.
        let deadline = std::time::Instant::now() + opts.busy_timeout;
        loop {
            let conn = Connection::open(path)?;
            match Self::init(conn, opts) {
                Err(StoreError::Sqlite(e))
                    if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy)
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(20));
                }
                r => return r,
            }
        }
    }

    /// Opens the database read-only (used by `gitspy replay`, which must never write the live store).
    pub fn open_read_only(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(Duration::from_secs(10))?;
        Ok(Self {
            conn: Mutex::new(conn),
            opts: StoreOptions::default(),
        })
    }

    fn init(conn: Connection, opts: StoreOptions) -> Result<Self, StoreError> {
        // Several processes write this file: wait for the lock rather than failing at once.
        conn.busy_timeout(opts.busy_timeout)?;
        // A new database gets 16 KiB pages: a delivery's payload (a real one is 7–30 KB) then
        // takes one or two pages of the log instead of three to eight 4 KiB ones, and a batch's
        // commit writes several times fewer WAL frames. Only takes effect on a file with no
        // tables yet (an existing database keeps its page size), so it must come first.
        conn.pragma_update(None, "page_size", 16384)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // FULL (the default): a committed batch survives a power loss, not only a process crash —
        // the worker marks deliveries `processed` in Redis right after the commit. NORMAL
        // (`GITSPY_SQLITE_SYNC=normal`) keeps the process-crash guarantee only.
        conn.pragma_update(None, "synchronous", opts.sqlite_sync.pragma())?;
        conn.execute_batch(SCHEMA)?;
        migrate(&conn)?;
        Ok(Self {
            conn: Mutex::new(conn),
            opts,
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave a half-applied transaction (rusqlite rolls back
        // on drop), so a poisoned lock is still safe to use.
        match self.conn.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Test support: writes a raw extra `card_history` row, exactly what a non-idempotent handler would
    /// do. Lets tests prove `effects` is counted from rows.
    pub fn insert_raw_card_history(&self, delivery: &str, key: CardKey) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO card_history (delivery_id, repo_id, number, column_name, applied_at_ms) VALUES (?1, ?2, ?3, NULL, ?4)",
            params![delivery, key.repo_id, key.number, now_ms()],
        )?;
        Ok(())
    }

    /// Test support: overwrites one card's stored state (to check `replay --verify` catches it).
    pub fn tamper_card(&self, key: CardKey, state: &CardState) -> Result<(), StoreError> {
        let json = serde_json::to_string(state).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.conn().execute(
            "UPDATE cards SET state = ?3 WHERE repo_id = ?1 AND number = ?2",
            params![key.repo_id, key.number, json],
        )?;
        Ok(())
    }
}

/// Brings a database created by an older gitspy up to date. A step that is needed is checked again
/// inside one `BEGIN IMMEDIATE`, so processes opening the same file at once never apply it twice;
/// an up-to-date file takes no write lock (a process can start while another holds the store).
fn migrate(conn: &Connection) -> Result<(), StoreError> {
    let has_applied_by = || -> Result<bool, rusqlite::Error> {
        conn.query_row(
            "SELECT COUNT(*) FROM pragma_table_info('applied_deliveries') WHERE name = 'applied_by'",
            [],
            |r| r.get::<_, i64>(0).map(|n| n > 0),
        )
    };
    if has_applied_by()? {
        return Ok(());
    }
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let result = (|| {
        if !has_applied_by()? {
            // Rows applied before this column existed keep `NULL`: "unknown consumer".
            conn.execute_batch("ALTER TABLE applied_deliveries ADD COLUMN applied_by TEXT")?;
            tracing::info!("store migrated: applied_deliveries.applied_by added");
        }
        Ok::<(), rusqlite::Error>(())
    })();
    match result {
        Ok(()) => conn.execute_batch("COMMIT")?,
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(e.into());
        }
    }
    Ok(())
}

fn load_json<T: serde::de::DeserializeOwned + Default>(s: Option<String>) -> Result<T, StoreError> {
    match s {
        None => Ok(T::default()),
        Some(s) => serde_json::from_str(&s).map_err(|e| StoreError::Corrupt(e.to_string())),
    }
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Repository and card states touched by the batch in progress: each is read from its row once
/// per transaction, folded in memory delivery after delivery, and written back once before the
/// commit (a batch over 12 cards writes 12 card rows, not one per delivery).
#[derive(Default)]
struct BatchStates {
    repos: std::collections::HashMap<i64, RepoState>,
    cards: std::collections::HashMap<CardKey, CardState>,
}

impl BatchStates {
    fn repo<'a>(
        &'a mut self,
        tx: &rusqlite::Transaction<'_>,
        repo_id: i64,
    ) -> Result<&'a mut RepoState, StoreError> {
        if let std::collections::hash_map::Entry::Vacant(v) = self.repos.entry(repo_id) {
            let cur: Option<String> = tx
                .prepare_cached("SELECT state FROM repos WHERE repo_id = ?1")?
                .query_row([repo_id], |r| r.get(0))
                .optional()?;
            v.insert(load_json(cur)?);
        }
        self.repos
            .get_mut(&repo_id)
            .ok_or_else(|| StoreError::Corrupt("repository state vanished".into()))
    }

    fn card<'a>(
        &'a mut self,
        tx: &rusqlite::Transaction<'_>,
        key: CardKey,
    ) -> Result<&'a mut CardState, StoreError> {
        if let std::collections::hash_map::Entry::Vacant(v) = self.cards.entry(key) {
            let cur: Option<String> = tx
                .prepare_cached("SELECT state FROM cards WHERE repo_id = ?1 AND number = ?2")?
                .query_row([key.repo_id, key.number], |r| r.get(0))
                .optional()?;
            v.insert(load_json(cur)?);
        }
        self.cards
            .get_mut(&key)
            .ok_or_else(|| StoreError::Corrupt("card state vanished".into()))
    }

    /// Writes every state the batch touched; called once, right before the commit.
    fn write(&self, tx: &rusqlite::Transaction<'_>) -> Result<(), StoreError> {
        for (repo_id, state) in &self.repos {
            tx.prepare_cached(
                "INSERT INTO repos (repo_id, full_name, state) VALUES (?1, ?2, ?3)
                 ON CONFLICT(repo_id) DO UPDATE SET full_name = excluded.full_name, state = excluded.state",
            )?
            .execute(params![repo_id, state.full_name(), to_json(state)?])?;
        }
        for (key, state) in &self.cards {
            tx.prepare_cached(
                "INSERT INTO cards (repo_id, number, state) VALUES (?1, ?2, ?3)
                 ON CONFLICT(repo_id, number) DO UPDATE SET state = excluded.state",
            )?
            .execute(params![key.repo_id, key.number, to_json(state)?])?;
        }
        Ok(())
    }
}

fn apply_one(
    tx: &rusqlite::Transaction<'_>,
    states: &mut BatchStates,
    d: &Delivery,
    obs: &fold::Observations,
    dedupe: bool,
    now: i64,
    applied_by: &str,
) -> Result<ApplyOutcome, StoreError> {
    if dedupe {
        let hit: Option<i64> = tx
            .prepare_cached("SELECT 1 FROM applied_deliveries WHERE delivery_id = ?1 LIMIT 1")?
            .query_row([&d.id], |r| r.get(0))
            .optional()?;
        if hit.is_some() {
            return Ok(ApplyOutcome {
                delivery: d.id.clone(),
                applied: false,
                card: None,
            });
        }
    }
    tx.prepare_cached(
        "INSERT INTO deliveries (delivery_id, event, action, repository, received_at_ms, logged_at_ms, payload)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![d.id, d.event, d.action, d.repository, d.received_at_ms, now, d.body])?;
    if let Some(repo) = &obs.repo {
        states.repo(tx, repo.repo_id)?.merge(repo);
    }
    let mut card = None;
    if let Some(item) = &obs.item {
        let key = item.key;
        let state = states.card(tx, key)?;
        state.merge(item);
        let column = board::column(state).map(|c| {
            serde_json::to_value(c)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default()
        });
        tx.prepare_cached(
            "INSERT INTO card_history (delivery_id, repo_id, number, column_name, applied_at_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![d.id, key.repo_id, key.number, column, now])?;
        card = Some(key);
    }
    tx.prepare_cached(
        "INSERT INTO applied_deliveries (delivery_id, applied_at_ms, applied_by) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![d.id, now, applied_by])?;
    Ok(ApplyOutcome {
        delivery: d.id.clone(),
        applied: true,
        card,
    })
}

impl Store for SqliteStore {
    fn apply_batch(
        &self,
        batch: &[Delivery],
        applied_by: &str,
    ) -> Result<Vec<ApplyOutcome>, StoreError> {
        // Parsing and observing the payloads is most of the CPU and needs no lock: done before the
        // transaction (and the parse builds only the fields the fold reads), so the database's single writer is held for the SQL only (another worker
        // parses its batch meanwhile). The ingress only queues JSON objects; a payload that does
        // not parse here is logged and touches no card rather than blocking the queue.
        let observed: Vec<fold::Observations> = batch
            .iter()
            .map(|d| {
                let payload = fold::parse_for_observe(&d.body).unwrap_or_default();
                fold::observe(&d.event, &payload)
            })
            .collect();
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let now = now_ms();
        let mut out = Vec::with_capacity(batch.len());
        // Sabotage `apply-twice`: a redelivered entry is not checked against applied_deliveries.
        let dedupe = self.opts.dedupe && !crate::sabotage::is(crate::sabotage::Variant::ApplyTwice);
        let mut states = BatchStates::default();
        for (d, obs) in batch.iter().zip(&observed) {
            out.push(apply_one(
                &tx,
                &mut states,
                d,
                obs,
                dedupe,
                now,
                applied_by,
            )?);
        }
        states.write(&tx)?;
        tx.commit()?;
        Ok(out)
    }

    fn board(&self, full_name: &str) -> Result<Option<Board>, StoreError> {
        let conn = self.conn();
        // Repositories currently named `full_name` that have cards; the fold's addressing rule picks
        // one, exactly as `gitspy replay` does.
        let mut stmt = conn.prepare(
            "SELECT r.repo_id, r.state FROM repos r WHERE r.full_name = ?1
             AND EXISTS (SELECT 1 FROM cards c WHERE c.repo_id = r.repo_id)",
        )?;
        let repos: Vec<(i64, RepoState)> = stmt
            .query_map([full_name], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
            })?
            .map(|row| {
                let (id, s) = row?;
                Ok((id, load_json(Some(s))?))
            })
            .collect::<Result<_, StoreError>>()?;
        let addressed = fold::address_boards(repos.iter().map(|(id, s)| (*id, s)));
        let Some(repo_id) = addressed.get(full_name).copied() else {
            return Ok(None);
        };
        let mut stmt = conn.prepare("SELECT number, state FROM cards WHERE repo_id = ?1")?;
        let mut cards: Vec<(i64, CardState)> = Vec::new();
        for row in stmt.query_map([repo_id], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
        })? {
            let (n, s) = row?;
            cards.push((n, load_json(Some(s))?));
        }
        Ok(Some(board::render(
            full_name,
            cards.iter().map(|(n, c)| (*n, c)),
        )))
    }

    fn lookup(&self, ids: &[String]) -> Result<Vec<DeliveryRows>, StoreError> {
        let conn = self.conn();
        let mut logged =
            conn.prepare_cached("SELECT COUNT(*) FROM deliveries WHERE delivery_id = ?1")?;
        let mut effects =
            conn.prepare_cached("SELECT COUNT(*) FROM card_history WHERE delivery_id = ?1")?;
        // The first application (SQLite takes bare columns from the MIN() row).
        let mut applied = conn.prepare_cached(
            "SELECT MIN(applied_at_ms), applied_by FROM applied_deliveries WHERE delivery_id = ?1",
        )?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let (applied_at, applied_by) = applied.query_row([id], |r| {
                Ok((r.get::<_, Option<i64>>(0)?, r.get::<_, Option<String>>(1)?))
            })?;
            out.push(DeliveryRows {
                delivery: id.clone(),
                logged: logged.query_row([id], |r| r.get::<_, i64>(0))?.max(0) as u64,
                effects: effects.query_row([id], |r| r.get::<_, i64>(0))?.max(0) as u64,
                applied_at,
                applied_by,
            });
        }
        Ok(out)
    }

    fn list_applied(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AppliedRow>, StoreError> {
        let conn = self.conn();
        // One row per id: its first application (bare columns come from the MIN() row).
        let mut stmt = conn.prepare(
            "SELECT delivery_id, MIN(applied_at_ms), applied_by FROM applied_deliveries
             WHERE delivery_id > ?1 GROUP BY delivery_id ORDER BY delivery_id LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![after.unwrap_or(""), limit as i64], |r| {
            Ok(AppliedRow {
                delivery: r.get(0)?,
                applied_at: r.get(1)?,
                applied_by: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn scan_log(
        &self,
        from_ms: i64,
        to_ms: i64,
        visit: &mut dyn FnMut(LoggedDelivery) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT delivery_id, event, action, repository, received_at_ms, logged_at_ms, payload
             FROM deliveries WHERE received_at_ms >= ?1 AND received_at_ms < ?2 ORDER BY seq",
        )?;
        let mut rows = stmt.query(params![from_ms, to_ms])?;
        while let Some(r) = rows.next()? {
            visit(LoggedDelivery {
                delivery: Delivery {
                    id: r.get(0)?,
                    event: r.get(1)?,
                    action: r.get(2)?,
                    repository: r.get(3)?,
                    received_at_ms: r.get(4)?,
                    body: r.get(6)?,
                },
                logged_at_ms: r.get(5)?,
            })?;
        }
        Ok(())
    }

    fn snapshot(&self) -> Result<StoreSnapshot, StoreError> {
        let conn = self.conn();
        let mut snap = StoreSnapshot::default();
        let mut stmt = conn.prepare("SELECT repo_id, state FROM repos ORDER BY repo_id")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?;
        for row in rows {
            let (id, s) = row?;
            snap.repos.push((id, load_json(Some(s))?));
        }
        let mut stmt =
            conn.prepare("SELECT repo_id, number, state FROM cards ORDER BY repo_id, number")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?;
        for row in rows {
            let (repo_id, number, s) = row?;
            snap.cards
                .push((CardKey { repo_id, number }, load_json(Some(s))?));
        }
        Ok(snap)
    }

    fn prune_log(&self, cutoff_ms: i64) -> Result<u64, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let n = tx.execute(
            "DELETE FROM deliveries WHERE logged_at_ms < ?1",
            [cutoff_ms],
        )?;
        tx.commit()?;
        Ok(n as u64)
    }

    fn ping(&self) -> Result<(), StoreError> {
        self.conn()
            .query_row("SELECT 1", [], |r| r.get::<_, i64>(0))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(id: &str) -> Delivery {
        Delivery {
            id: id.into(),
            event: "ping".into(),
            action: None,
            repository: None,
            received_at_ms: 1,
            body: br#"{"zen":"x"}"#.to_vec(),
        }
    }

    #[test]
    fn the_sync_setting_is_the_connections_synchronous_pragma() {
        let dir = tempfile::tempdir().unwrap();
        let sync = |store: &SqliteStore| {
            store
                .conn()
                .query_row("PRAGMA synchronous", [], |r| r.get::<_, i64>(0))
                .unwrap()
        };
        let full = SqliteStore::open(&dir.path().join("a"), StoreOptions::default()).unwrap();
        assert_eq!(sync(&full), 2, "FULL by default");
        let normal = SqliteStore::open(
            &dir.path().join("b"),
            StoreOptions {
                sqlite_sync: super::super::SqliteSync::Normal,
                ..StoreOptions::default()
            },
        )
        .unwrap();
        assert_eq!(sync(&normal), 1, "NORMAL");
        // Still WAL, and a batch still commits.
        normal.apply_batch(&[delivery("n")], "w").unwrap();
        assert_eq!(normal.lookup(&["n".into()]).unwrap()[0].logged, 1);
    }

    #[test]
    fn pruning_the_log_keeps_what_dedupes_redeliveries() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("db"), StoreOptions::default()).unwrap();
        store
            .apply_batch(&[delivery("a"), delivery("b")], "w1")
            .unwrap();
        // Nothing is older than a cutoff in the past.
        assert_eq!(store.prune_log(0).unwrap(), 0);
        assert_eq!(store.lookup(&["a".into()]).unwrap()[0].logged, 1);
        // Everything logged before "now + 1 s" goes.
        assert_eq!(store.prune_log(now_ms() + 1000).unwrap(), 2);
        let rows = store.lookup(&["a".into()]).unwrap();
        assert_eq!(rows[0].logged, 0);
        assert!(
            rows[0].applied_at.is_some(),
            "applied_deliveries must survive retention"
        );
        // A redelivery of a pruned delivery is still recognised as already applied.
        let again = store.apply_batch(&[delivery("a")], "w2").unwrap();
        assert!(!again[0].applied);
        assert_eq!(store.lookup(&["a".into()]).unwrap()[0].logged, 0);
    }

    #[test]
    fn applied_by_is_recorded_and_an_old_database_is_migrated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        {
            // A database as an older gitspy left it: no applied_by column.
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE applied_deliveries (delivery_id TEXT NOT NULL, applied_at_ms INTEGER NOT NULL);
                 INSERT INTO applied_deliveries VALUES ('old', 5);",
            )
            .unwrap();
        }
        let store = SqliteStore::open(&path, StoreOptions::default()).unwrap();
        // Opening again (another process) finds the column and does nothing.
        let _again = SqliteStore::open(&path, StoreOptions::default()).unwrap();
        store.apply_batch(&[delivery("new")], "worker-7").unwrap();
        let rows = store.lookup(&["old".into(), "new".into()]).unwrap();
        assert_eq!(
            (rows[0].applied_at, rows[0].applied_by.as_deref()),
            (Some(5), None)
        );
        assert_eq!(rows[1].applied_by.as_deref(), Some("worker-7"));
        let listed = store.list_applied(None, 10).unwrap();
        assert_eq!(
            listed
                .iter()
                .map(|r| (r.delivery.as_str(), r.applied_by.as_deref()))
                .collect::<Vec<_>>(),
            vec![("new", Some("worker-7")), ("old", None)]
        );
    }
}
