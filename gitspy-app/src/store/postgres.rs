//! The PostgreSQL store, selected by `GITSPY_DB=postgres://…`: servers and workers on several
//! machines share one database. Same tables and guarantees as [`super::sqlite::SqliteStore`]; the
//! schema is `gitspy-app/migrations/postgres/*.sql`, applied at start-up under an advisory lock.
//!
//! Client: the synchronous `postgres` crate (tokio-postgres underneath). Every [`Store`] method is
//! synchronous and already called from `spawn_blocking` (as for rusqlite), so a blocking client
//! fits without a second async interface; a small hand-made pool ([`Pool`]) keeps a few
//! connections. Calls that may run on an async thread (opening the store, dropping it) run on a
//! plain thread of their own, because each blocking client drives its connection with its own
//! runtime.
//!
//! Concurrency of [`Store::apply_batch`] (READ COMMITTED, ordered row locks):
//! 1. claim every delivery id of the batch, in id order, with `INSERT INTO applied_deliveries …
//!    ON CONFLICT DO NOTHING RETURNING`: a row returned is ours to apply; none means an earlier
//!    committed transaction applied it. A concurrent transaction claiming the same id waits on the
//!    unique-index entry until the first one commits (then it gets nothing and skips) or rolls back
//!    (then it gets the claim);
//! 2. lock every repository and card row the claimed deliveries touch, in key order (created empty
//!    first if missing, then `SELECT … FOR UPDATE`), so the state read is the latest committed one
//!    and no other batch can fold into it before we commit;
//! 3. fold, append the event log and `card_history`, write the states, commit.
//!
//! Every transaction takes its locks in one global order (claims by id, then repositories, then
//! cards), so batches never deadlock each other. A lock held longer than `lock_timeout` (the
//! store busy timeout), a lost connection or any other error fails the batch: nothing of it
//! committed, and the worker retries it with backoff like SQLite's "database is locked".

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use postgres::{Client, NoTls, Transaction};

use super::{
    AppliedRow, ApplyOutcome, DeliveryRows, LoggedDelivery, Store, StoreError, StoreOptions,
    StoreSnapshot,
};
use crate::delivery::{now_ms, Delivery};
use crate::github::board::{self, Board};
use crate::github::fold::{self, CardKey, CardState, RepoState};

/// The migrations, in order: (version, SQL). Each runs once, in its own transaction.
const MIGRATIONS: &[(i64, &str)] = &[(1, include_str!("../../migrations/postgres/0001_init.sql"))];

/// Advisory-lock key serialising migrations between processes starting together ("gitspy" in ASCII).
const MIGRATION_LOCK: i64 = 0x0000_6769_7473_7079;

/// Connections kept open; more concurrent callers wait for one.
const POOL_SIZE: usize = 8;

/// Whether `db` names a PostgreSQL database rather than a SQLite file.
pub fn is_url(db: &str) -> bool {
    db.starts_with("postgres://") || db.starts_with("postgresql://")
}

/// The error's whole text: the client's own `Display` says only "db error" for server errors.
fn pg_error(e: postgres::Error) -> StoreError {
    let text = match e.as_db_error() {
        Some(db) => format!(
            "postgres: {}: {} (SQLSTATE {})",
            db.severity(),
            db.message(),
            db.code().code()
        ),
        None => format!("postgres: {e}"),
    };
    // Connection exceptions (class 08), the server ending the session (57P01-57P03), a closed
    // socket, an I/O error on it (a connection reset by the network while it sat idle: the
    // blocking client notices only at its next call, as an I/O error, never as "closed"): the
    // connection is gone, not the statement wrong.
    let io = std::error::Error::source(&e).is_some_and(|s| s.is::<std::io::Error>());
    let lost = e.is_closed()
        || io
        || e.code().is_some_and(|c| {
            let c = c.code();
            c.starts_with("08") || matches!(c, "57P01" | "57P02" | "57P03")
        });
    if lost {
        StoreError::PostgresLost(text)
    } else {
        StoreError::Postgres(text)
    }
}

trait PgResult<T> {
    fn pg(self) -> Result<T, StoreError>;
}

impl<T> PgResult<T> for Result<T, postgres::Error> {
    fn pg(self) -> Result<T, StoreError> {
        self.map_err(pg_error)
    }
}

/// Runs `f` on a thread of its own when called from an async thread (a blocking client may not
/// start its runtime there), inline otherwise.
fn off_async<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    // A `spawn_blocking` thread has a handle too (and may block); there is no direct test for an
    // async worker thread, so every thread with a runtime handle gets a thread of its own.
    if tokio::runtime::Handle::try_current().is_ok() {
        std::thread::scope(|s| match s.spawn(f).join() {
            Ok(v) => v,
            Err(p) => std::panic::resume_unwind(p),
        })
    } else {
        f()
    }
}

/// A few connections, opened on demand, handed out one caller at a time.
struct Pool {
    config: postgres::Config,
    /// `SET` statements run on every new connection.
    session: String,
    idle: Mutex<PoolState>,
    freed: Condvar,
}

#[derive(Default)]
struct PoolState {
    idle: Vec<Client>,
    /// Connections handed out or idle.
    open: usize,
}

/// A connection borrowed from the pool; returned on drop unless it broke.
struct Conn<'a> {
    pool: &'a Pool,
    client: Option<Client>,
}

impl Conn<'_> {
    fn client(&mut self) -> Result<&mut Client, StoreError> {
        self.client
            .as_mut()
            .ok_or_else(|| StoreError::Postgres("postgres: connection already returned".into()))
    }

    /// Closes this connection instead of returning it to the pool.
    fn discard(&mut self) {
        self.client = None;
    }
}

impl Drop for Conn<'_> {
    fn drop(&mut self) {
        let mut st = self.pool.lock();
        match self.client.take() {
            Some(c) if !c.is_closed() => st.idle.push(c),
            // A broken connection is dropped (closing a closed client does not block).
            _ => st.open = st.open.saturating_sub(1),
        }
        drop(st);
        self.pool.freed.notify_one();
    }
}

impl Pool {
    fn lock(&self) -> std::sync::MutexGuard<'_, PoolState> {
        match self.idle.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn connect(&self) -> Result<Client, StoreError> {
        let mut c = self.config.connect(NoTls).pg()?;
        c.batch_execute(&self.session).pg()?;
        Ok(c)
    }

    fn get(&self) -> Result<Conn<'_>, StoreError> {
        let mut st = self.lock();
        loop {
            if let Some(c) = st.idle.pop() {
                if c.is_closed() {
                    st.open = st.open.saturating_sub(1);
                    continue;
                }
                return Ok(Conn {
                    pool: self,
                    client: Some(c),
                });
            }
            if st.open < POOL_SIZE {
                st.open += 1;
                drop(st);
                return match self.connect() {
                    Ok(c) => Ok(Conn {
                        pool: self,
                        client: Some(c),
                    }),
                    Err(e) => {
                        self.lock().open -= 1;
                        self.freed.notify_one();
                        Err(e)
                    }
                };
            }
            st = match self.freed.wait(st) {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
        }
    }
}

/// PostgreSQL-backed [`Store`].
pub struct PgStore {
    pool: Pool,
    opts: StoreOptions,
}

impl Drop for PgStore {
    fn drop(&mut self) {
        // Closing a client blocks on its runtime: never on an async thread.
        let idle = std::mem::take(&mut self.pool.lock().idle);
        off_async(move || drop(idle));
    }
}

/// `url` without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let userinfo = &url[s + 3..at];
            match userinfo.find(':') {
                Some(c) => format!("{}{}:***{}", &url[..s + 3], &userinfo[..c], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

impl PgStore {
    /// Connects to `url`, applies the migrations that are missing, and keeps the connection.
    pub fn open(url: &str, opts: StoreOptions) -> Result<Self, StoreError> {
        let store = Self::new(url, opts, false)?;
        off_async(|| {
            let mut conn = store.pool.get()?;
            migrate(conn.client()?)
        })?;
        Ok(store)
    }

    /// Connects with every transaction read-only (used by `gitspy replay`, which must never write
    /// the live store); applies no migration.
    pub fn open_read_only(url: &str) -> Result<Self, StoreError> {
        let store = Self::new(url, StoreOptions::default(), true)?;
        off_async(|| store.ping())?;
        Ok(store)
    }

    fn new(url: &str, opts: StoreOptions, read_only: bool) -> Result<Self, StoreError> {
        let mut config: postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Postgres(format!("invalid PostgreSQL URL: {e}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(5));
        }
        if config.get_application_name().is_none() {
            config.application_name("gitspy");
        }
        let lock_ms = opts.busy_timeout.as_millis().max(1);
        let mut session = format!("SET lock_timeout = {lock_ms}; SET TIME ZONE 'UTC';");
        if read_only {
            session.push_str(" SET default_transaction_read_only = on;");
        }
        Ok(Self {
            pool: Pool {
                config,
                session,
                idle: Mutex::new(PoolState::default()),
                freed: Condvar::new(),
            },
            opts,
        })
    }

    fn conn(&self) -> Result<Conn<'_>, StoreError> {
        self.pool.get()
    }

    /// Runs `f` on a pooled connection; when that connection turns out to be gone (the server
    /// restarted, `pg_terminate_backend`, a network cut while it sat idle), once more on a new
    /// one. `f` must commit nothing before it fails for this to be safe: [`Store::apply_batch`]
    /// reports a connection lost during its COMMIT as a plain error, never as "lost".
    fn retrying<T>(
        &self,
        mut f: impl FnMut(&mut Client) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.conn()?;
        match f(conn.client()?) {
            Err(StoreError::PostgresLost(first)) => {
                conn.discard();
                drop(conn);
                tracing::warn!(error = %first, "postgres connection lost; retrying on a new one");
                let mut conn = self.conn()?;
                f(conn.client()?)
            }
            r => r,
        }
    }

    /// Test support: writes a raw extra `card_history` row, exactly what a non-idempotent handler would
    /// do. Lets tests prove `effects` is counted from rows.
    pub fn insert_raw_card_history(&self, delivery: &str, key: CardKey) -> Result<(), StoreError> {
        self.conn()?
            .client()?
            .execute(
                "INSERT INTO card_history (delivery_id, repo_id, number, column_name, applied_at_ms) VALUES ($1, $2, $3, NULL, $4)",
                &[&delivery, &key.repo_id, &key.number, &now_ms()],
            )
            .pg()?;
        Ok(())
    }

    /// Test support: overwrites one card's stored state (to check `replay --verify` catches it).
    pub fn tamper_card(&self, key: CardKey, state: &CardState) -> Result<(), StoreError> {
        let json = to_json(state)?;
        self.conn()?
            .client()?
            .execute(
                "UPDATE cards SET state = $3 WHERE repo_id = $1 AND number = $2",
                &[&key.repo_id, &key.number, &json],
            )
            .pg()?;
        Ok(())
    }
}

/// Applies the migrations not yet recorded, one transaction each, under an advisory lock so that
/// processes starting together apply each once. An up-to-date database takes the lock briefly.
fn migrate(client: &mut Client) -> Result<(), StoreError> {
    let mut tx = client.transaction().pg()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .pg()?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS gitspy_schema_migrations (
             version       BIGINT PRIMARY KEY,
             applied_at_ms BIGINT NOT NULL
         )",
    )
    .pg()?;
    let done: HashSet<i64> = tx
        .query("SELECT version FROM gitspy_schema_migrations", &[])
        .pg()?
        .iter()
        .map(|r| r.get(0))
        .collect();
    for (version, sql) in MIGRATIONS {
        if done.contains(version) {
            continue;
        }
        tx.batch_execute(sql).pg()?;
        tx.execute(
            "INSERT INTO gitspy_schema_migrations (version, applied_at_ms) VALUES ($1, $2)",
            &[version, &now_ms()],
        )
        .pg()?;
        tracing::info!(version, "postgres store migrated");
    }
    tx.commit().pg()
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

/// Repository and card states of one batch, locked for its transaction.
type LockedStates = (BTreeMap<i64, RepoState>, BTreeMap<CardKey, CardState>);

/// Locks the rows of every repository and card in `repos`/`cards` (in key order; a missing row is
/// created with a NULL state first, so there is a row to lock) and returns their states. Four
/// statements whatever the number of rows; `FOR UPDATE` after `ORDER BY` takes the locks in that
/// order.
fn lock_states(
    tx: &mut Transaction<'_>,
    repos: &BTreeSet<i64>,
    cards: &BTreeSet<CardKey>,
) -> Result<LockedStates, StoreError> {
    let mut repo_states = BTreeMap::new();
    if !repos.is_empty() {
        let ids: Vec<i64> = repos.iter().copied().collect();
        tx.execute(
            "INSERT INTO repos (repo_id, full_name, state)
             SELECT id, NULL, NULL FROM unnest($1::bigint[]) AS t(id) ORDER BY id
             ON CONFLICT (repo_id) DO NOTHING",
            &[&ids],
        )
        .pg()?;
        for row in tx
            .query(
                "SELECT repo_id, state FROM repos WHERE repo_id = ANY($1::bigint[])
                 ORDER BY repo_id FOR UPDATE",
                &[&ids],
            )
            .pg()?
        {
            repo_states.insert(row.get(0), load_json(row.get::<_, Option<String>>(1))?);
        }
    }
    let mut card_states = BTreeMap::new();
    if !cards.is_empty() {
        let rs: Vec<i64> = cards.iter().map(|k| k.repo_id).collect();
        let ns: Vec<i64> = cards.iter().map(|k| k.number).collect();
        tx.execute(
            "INSERT INTO cards (repo_id, number, state)
             SELECT r, n, NULL FROM unnest($1::bigint[], $2::bigint[]) AS t(r, n) ORDER BY r, n
             ON CONFLICT (repo_id, number) DO NOTHING",
            &[&rs, &ns],
        )
        .pg()?;
        for row in tx
            .query(
                "SELECT c.repo_id, c.number, c.state FROM cards c
                 JOIN unnest($1::bigint[], $2::bigint[]) AS t(r, n) ON c.repo_id = t.r AND c.number = t.n
                 ORDER BY c.repo_id, c.number FOR UPDATE OF c",
                &[&rs, &ns],
            )
            .pg()?
        {
            let key = CardKey {
                repo_id: row.get(0),
                number: row.get(1),
            };
            card_states.insert(key, load_json(row.get::<_, Option<String>>(2))?);
        }
    }
    Ok((repo_states, card_states))
}

/// One attempt at [`Store::apply_batch`] on `client` (see the module doc for the design). A
/// fixed number of statements per batch (arrays through `unnest`), not a few per delivery: each
/// is a round trip to the server.
fn apply_in(
    client: &mut Client,
    batch: &[Delivery],
    observed: &[fold::Observations],
    dedupe: bool,
    applied_by: &str,
) -> Result<Vec<ApplyOutcome>, StoreError> {
    let mut tx = client.transaction().pg()?;
    let now = now_ms();

    // 1. Claims, in id order (see the module doc).
    let ids: Vec<&str> = batch
        .iter()
        .map(|d| d.id.as_str())
        .collect::<BTreeSet<&str>>()
        .into_iter()
        .collect();
    let claimed: HashSet<String> = tx
        .query(
            "INSERT INTO applied_deliveries (delivery_id, applied_at_ms, applied_by)
             SELECT id, $2, $3 FROM unnest($1::text[]) AS t(id) ORDER BY id
             ON CONFLICT (delivery_id) DO NOTHING RETURNING delivery_id",
            &[&ids, &now, &applied_by],
        )
        .pg()?
        .iter()
        .map(|r| r.get(0))
        .collect();
    // Which entries of the batch apply: the first occurrence of each claimed id (a second
    // copy in the same batch is a redelivery too), or every entry without dedupe.
    let mut seen: HashSet<&str> = HashSet::new();
    let applies: Vec<bool> = batch
        .iter()
        .map(|d| !dedupe || (claimed.contains(d.id.as_str()) && seen.insert(d.id.as_str())))
        .collect();

    // 2. Row locks on what the applied entries touch, in key order.
    let mut repo_ids = BTreeSet::new();
    let mut card_keys = BTreeSet::new();
    for (obs, applies) in observed.iter().zip(&applies) {
        if *applies {
            if let Some(r) = &obs.repo {
                repo_ids.insert(r.repo_id);
            }
            if let Some(i) = &obs.item {
                card_keys.insert(i.key);
            }
        }
    }
    let (mut repos, mut cards) = lock_states(&mut tx, &repo_ids, &card_keys)?;

    // 3. Fold in batch order; the log and history rows go in one statement each, in batch order.
    let mut log_rows: Vec<&Delivery> = Vec::new();
    let mut history: Vec<(&str, CardKey, Option<String>)> = Vec::new();
    let mut out = Vec::with_capacity(batch.len());
    for ((d, obs), applies) in batch.iter().zip(observed).zip(&applies) {
        if !applies {
            out.push(ApplyOutcome {
                delivery: d.id.clone(),
                applied: false,
                card: None,
            });
            continue;
        }
        log_rows.push(d);
        if let Some(repo) = &obs.repo {
            repos.entry(repo.repo_id).or_default().merge(repo);
        }
        let mut card = None;
        if let Some(item) = &obs.item {
            let key = item.key;
            let state = cards.entry(key).or_default();
            state.merge(item);
            let column = board::column(state).map(|c| {
                serde_json::to_value(c)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            });
            history.push((d.id.as_str(), key, column));
            card = Some(key);
        }
        out.push(ApplyOutcome {
            delivery: d.id.clone(),
            applied: true,
            card,
        });
    }
    if !log_rows.is_empty() {
        let ids: Vec<&str> = log_rows.iter().map(|d| d.id.as_str()).collect();
        let events: Vec<&str> = log_rows.iter().map(|d| d.event.as_str()).collect();
        let actions: Vec<Option<&str>> = log_rows.iter().map(|d| d.action.as_deref()).collect();
        let repositories: Vec<Option<&str>> =
            log_rows.iter().map(|d| d.repository.as_deref()).collect();
        let received: Vec<i64> = log_rows.iter().map(|d| d.received_at_ms).collect();
        let bodies: Vec<&[u8]> = log_rows.iter().map(|d| d.body.as_slice()).collect();
        tx.execute(
            "INSERT INTO deliveries (delivery_id, event, action, repository, received_at_ms, logged_at_ms, payload)
             SELECT i, e, a, r, rcv, $7, p
             FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::bytea[])
                  WITH ORDINALITY AS t(i, e, a, r, rcv, p, n)
             ORDER BY n",
            &[&ids, &events, &actions, &repositories, &received, &bodies, &now],
        )
        .pg()?;
    }
    if !history.is_empty() {
        let ids: Vec<&str> = history.iter().map(|h| h.0).collect();
        let rs: Vec<i64> = history.iter().map(|h| h.1.repo_id).collect();
        let ns: Vec<i64> = history.iter().map(|h| h.1.number).collect();
        let cols: Vec<Option<&str>> = history.iter().map(|h| h.2.as_deref()).collect();
        tx.execute(
            "INSERT INTO card_history (delivery_id, repo_id, number, column_name, applied_at_ms)
             SELECT i, r, n, c, $5
             FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::text[]) WITH ORDINALITY AS t(i, r, n, c, o)
             ORDER BY o",
            &[&ids, &rs, &ns, &cols, &now],
        )
        .pg()?;
    }

    // 4. States back (rows already locked), then commit.
    if !repos.is_empty() {
        let ids: Vec<i64> = repos.keys().copied().collect();
        let names: Vec<Option<String>> = repos
            .values()
            .map(|s| s.full_name().map(str::to_owned))
            .collect();
        let states: Vec<String> = repos.values().map(to_json).collect::<Result<_, _>>()?;
        tx.execute(
            "UPDATE repos SET full_name = t.f, state = t.s
             FROM unnest($1::bigint[], $2::text[], $3::text[]) AS t(id, f, s)
             WHERE repos.repo_id = t.id",
            &[&ids, &names, &states],
        )
        .pg()?;
    }
    if !cards.is_empty() {
        let rs: Vec<i64> = cards.keys().map(|k| k.repo_id).collect();
        let ns: Vec<i64> = cards.keys().map(|k| k.number).collect();
        let states: Vec<String> = cards.values().map(to_json).collect::<Result<_, _>>()?;
        tx.execute(
            "UPDATE cards SET state = t.s
             FROM unnest($1::bigint[], $2::bigint[], $3::text[]) AS t(r, n, s)
             WHERE cards.repo_id = t.r AND cards.number = t.n",
            &[&rs, &ns, &states],
        )
        .pg()?;
    }
    // A connection lost during COMMIT may have committed: never "lost" (no silent retry);
    // the worker's retry finds the claims if it did.
    tx.commit().map_err(|e| match pg_error(e) {
        StoreError::PostgresLost(m) => {
            StoreError::Postgres(format!("{m} (during COMMIT: the batch may have committed)"))
        }
        other => other,
    })?;
    Ok(out)
}

impl Store for PgStore {
    fn apply_batch(
        &self,
        batch: &[Delivery],
        applied_by: &str,
    ) -> Result<Vec<ApplyOutcome>, StoreError> {
        // Parse and observe outside the transaction (as the SQLite store does).
        let observed: Vec<fold::Observations> = batch
            .iter()
            .map(|d| {
                let payload: serde_json::Value =
                    serde_json::from_slice(&d.body).unwrap_or_default();
                fold::observe(&d.event, &payload)
            })
            .collect();
        // Sabotage `apply-twice`: a redelivered entry is applied although its claim is taken.
        let dedupe = self.opts.dedupe && !crate::sabotage::is(crate::sabotage::Variant::ApplyTwice);
        self.retrying(|client| apply_in(client, batch, &observed, dedupe, applied_by))
    }

    fn board(&self, full_name: &str) -> Result<Option<Board>, StoreError> {
        self.retrying(|client| {
            // One snapshot for both reads (a batch committing in between cannot mix two states).
            let mut tx = client
                .build_transaction()
                .isolation_level(postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .pg()?;
            let repos: Vec<(i64, RepoState)> = tx
                .query(
                    "SELECT r.repo_id, r.state FROM repos r WHERE r.full_name = $1 AND r.state IS NOT NULL
                     AND EXISTS (SELECT 1 FROM cards c WHERE c.repo_id = r.repo_id AND c.state IS NOT NULL)",
                    &[&full_name],
                )
                .pg()?
                .into_iter()
                .map(|r| Ok((r.get::<_, i64>(0), load_json(r.get::<_, Option<String>>(1))?)))
                .collect::<Result<_, StoreError>>()?;
            let addressed = fold::address_boards(repos.iter().map(|(id, s)| (*id, s)));
            let Some(repo_id) = addressed.get(full_name).copied() else {
                return Ok(None);
            };
            let cards: Vec<(i64, CardState)> = tx
                .query(
                    "SELECT number, state FROM cards WHERE repo_id = $1 AND state IS NOT NULL",
                    &[&repo_id],
                )
                .pg()?
                .into_iter()
                .map(|r| {
                    Ok((
                        r.get::<_, i64>(0),
                        load_json(r.get::<_, Option<String>>(1))?,
                    ))
                })
                .collect::<Result<_, StoreError>>()?;
            tx.commit().pg()?;
            Ok(Some(board::render(
                full_name,
                cards.iter().map(|(n, c)| (*n, c)),
            )))
        })
    }

    fn lookup(&self, ids: &[String]) -> Result<Vec<DeliveryRows>, StoreError> {
        self.retrying(|client| {
            let rows = client
                .query(
                    "SELECT i.id,
                            (SELECT COUNT(*) FROM deliveries d WHERE d.delivery_id = i.id),
                            (SELECT COUNT(*) FROM card_history h WHERE h.delivery_id = i.id),
                            a.applied_at_ms, a.applied_by
                     FROM unnest($1::text[]) WITH ORDINALITY AS i(id, n)
                     LEFT JOIN applied_deliveries a ON a.delivery_id = i.id
                     ORDER BY i.n",
                    &[&ids],
                )
                .pg()?;
            Ok(rows
                .iter()
                .map(|r| DeliveryRows {
                    delivery: r.get(0),
                    logged: r.get::<_, i64>(1).max(0) as u64,
                    effects: r.get::<_, i64>(2).max(0) as u64,
                    applied_at: r.get(3),
                    applied_by: r.get(4),
                })
                .collect())
        })
    }

    fn list_applied(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AppliedRow>, StoreError> {
        self.retrying(|client| {
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let rows = client
                .query(
                    "SELECT delivery_id, applied_at_ms, applied_by FROM applied_deliveries
                     WHERE delivery_id > $1 ORDER BY delivery_id LIMIT $2",
                    &[&after.unwrap_or(""), &limit],
                )
                .pg()?;
            Ok(rows
                .iter()
                .map(|r| AppliedRow {
                    delivery: r.get(0),
                    applied_at: r.get(1),
                    applied_by: r.get(2),
                })
                .collect())
        })
    }

    fn scan_log(
        &self,
        from_ms: i64,
        to_ms: i64,
        visit: &mut dyn FnMut(LoggedDelivery) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        // Rows already visited are never visited again: a connection lost after the first is
        // a plain error, not retried.
        let mut visited = false;
        self.retrying(|client| {
            // A portal inside one read-only transaction: the log is streamed, not loaded whole.
            let mut tx = client
                .build_transaction()
                .isolation_level(postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .pg()?;
            let stmt = tx
                .prepare(
                    "SELECT delivery_id, event, action, repository, received_at_ms, logged_at_ms, payload
                     FROM deliveries WHERE received_at_ms >= $1 AND received_at_ms < $2 ORDER BY seq",
                )
                .pg()?;
            let portal = tx.bind(&stmt, &[&from_ms, &to_ms]).pg()?;
            loop {
                let rows = match tx.query_portal(&portal, 500).pg() {
                    Ok(rows) => rows,
                    Err(StoreError::PostgresLost(m)) if visited => {
                        return Err(StoreError::Postgres(m))
                    }
                    Err(e) => return Err(e),
                };
                if rows.is_empty() {
                    break;
                }
                for r in rows {
                    visit(LoggedDelivery {
                        delivery: Delivery {
                            id: r.get(0),
                            event: r.get(1),
                            action: r.get(2),
                            repository: r.get(3),
                            received_at_ms: r.get(4),
                            body: r.get(6),
                        },
                        logged_at_ms: r.get(5),
                    })?;
                    visited = true;
                }
            }
            tx.commit().map_err(|e| match pg_error(e) {
                StoreError::PostgresLost(m) => StoreError::Postgres(m),
                other => other,
            })
        })
    }

    fn snapshot(&self) -> Result<StoreSnapshot, StoreError> {
        self.retrying(|client| {
            let mut tx = client
                .build_transaction()
                .isolation_level(postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .pg()?;
            let mut snap = StoreSnapshot::default();
            for r in tx
                .query(
                    "SELECT repo_id, state FROM repos WHERE state IS NOT NULL ORDER BY repo_id",
                    &[],
                )
                .pg()?
            {
                snap.repos
                    .push((r.get(0), load_json(r.get::<_, Option<String>>(1))?));
            }
            for r in tx
                .query(
                    "SELECT repo_id, number, state FROM cards WHERE state IS NOT NULL ORDER BY repo_id, number",
                    &[],
                )
                .pg()?
            {
                snap.cards.push((
                    CardKey {
                        repo_id: r.get(0),
                        number: r.get(1),
                    },
                    load_json(r.get::<_, Option<String>>(2))?,
                ));
            }
            tx.commit().pg()?;
            Ok(snap)
        })
    }

    fn ping(&self) -> Result<(), StoreError> {
        self.retrying(|client| {
            client.query_one("SELECT 1", &[]).pg()?;
            Ok(())
        })
    }

    fn prune_log(&self, cutoff_ms: i64) -> Result<u64, StoreError> {
        self.retrying(|client| {
            client
                .execute(
                    "DELETE FROM deliveries WHERE logged_at_ms < $1",
                    &[&cutoff_ms],
                )
                .pg()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_recognised_and_passwords_redacted() {
        assert!(is_url("postgres://u@h/db"));
        assert!(is_url("postgresql://u@h/db"));
        assert!(!is_url("./data/gitspy.db"));
        assert_eq!(
            redact("postgres://gitspy:s3cret@db:5432/gitspy"),
            "postgres://gitspy:***@db:5432/gitspy"
        );
        assert_eq!(redact("postgres://gitspy@db/x"), "postgres://gitspy@db/x");
        assert_eq!(redact("not a url"), "not a url");
    }

    #[test]
    fn a_bad_url_is_a_clear_error() {
        let e = PgStore::open("postgres://u@h:notaport/db", StoreOptions::default())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("invalid PostgreSQL URL"), "{e}");
    }
}
