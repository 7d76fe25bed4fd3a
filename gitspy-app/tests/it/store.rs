//! ONE store test suite, run against both backends: the embedded SQLite store and a real
//! PostgreSQL server (started per test on a free port with its own data directory). Each test is
//! a generic function over a [`Backend`]; `store_suite!` instantiates it once per backend, so
//! both are held to the same assertions. Cross-backend tests (the board digests must be
//! byte-identical) follow the suite.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use gitspy::delivery::Delivery;
use gitspy::github::fold::CardKey;
use gitspy::store::{PgStore, SqliteStore, Store, StoreError, StoreOptions};

use crate::util::{fixture, Postgres};

/// One backend under test: opens stores on one database (each open is like another process) and
/// holds its write lock from outside, as another client would.
pub trait Backend: Sync {
    fn open(&self, opts: StoreOptions) -> Arc<dyn Store>;
    /// Holds the lock every store write needs, until the returned guard is dropped.
    fn hold_write_lock(&self) -> Box<dyn std::any::Any>;
    /// Writes a raw extra `card_history` row (a non-idempotent handler's second effect).
    fn raw_history(&self, delivery: &str, key: CardKey);
    /// Ends every other client's connection (PostgreSQL: `pg_terminate_backend`); returns how
    /// many. SQLite has no connections to end.
    fn terminate_connections(&self) -> usize;
}

pub struct Sqlite {
    dir: tempfile::TempDir,
}

impl Sqlite {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn path(&self) -> std::path::PathBuf {
        self.dir.path().join("gitspy.db")
    }
}

struct SqliteLock(rusqlite::Connection);
impl Drop for SqliteLock {
    fn drop(&mut self) {
        let _ = self.0.execute_batch("ROLLBACK");
    }
}

impl Backend for Sqlite {
    fn open(&self, opts: StoreOptions) -> Arc<dyn Store> {
        Arc::new(SqliteStore::open(&self.path(), opts).unwrap())
    }
    fn hold_write_lock(&self) -> Box<dyn std::any::Any> {
        let c = rusqlite::Connection::open(self.path()).unwrap();
        c.execute_batch("BEGIN IMMEDIATE").unwrap();
        Box::new(SqliteLock(c))
    }
    fn raw_history(&self, delivery: &str, key: CardKey) {
        SqliteStore::open(&self.path(), StoreOptions::default())
            .unwrap()
            .insert_raw_card_history(delivery, key)
            .unwrap();
    }
    fn terminate_connections(&self) -> usize {
        0
    }
}

pub struct Pg {
    server: Postgres,
    url: String,
}

impl Pg {
    pub fn new() -> Self {
        let server = Postgres::start();
        let url = server.create_db("gitspy");
        Self { server, url }
    }
}

/// A transaction holding `LOCK TABLE applied_deliveries IN EXCLUSIVE MODE` (what the harness's
/// `store: {lock}` fault does on PostgreSQL); rolled back when dropped.
struct PgLock(Option<::postgres::Client>);
impl Drop for PgLock {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.batch_execute("ROLLBACK");
        }
    }
}

impl Backend for Pg {
    fn open(&self, opts: StoreOptions) -> Arc<dyn Store> {
        Arc::new(PgStore::open(&self.url, opts).unwrap())
    }
    fn hold_write_lock(&self) -> Box<dyn std::any::Any> {
        let mut c = self.server.client("gitspy");
        c.batch_execute("BEGIN; LOCK TABLE applied_deliveries IN EXCLUSIVE MODE")
            .unwrap();
        Box::new(PgLock(Some(c)))
    }
    fn raw_history(&self, delivery: &str, key: CardKey) {
        PgStore::open(&self.url, StoreOptions::default())
            .unwrap()
            .insert_raw_card_history(delivery, key)
            .unwrap();
    }
    fn terminate_connections(&self) -> usize {
        let mut c = self.server.client("postgres");
        let rows = c
            .query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                 WHERE datname = 'gitspy' AND pid <> pg_backend_pid()",
                &[],
            )
            .unwrap();
        rows.len()
    }
}

/// A delivery made from a fixture (`issues/opened.json`), as the ingress would queue it.
pub fn delivery(id: &str, rel: &str) -> Delivery {
    let body = fixture(rel);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    Delivery {
        id: id.into(),
        event: rel.split('/').next().unwrap().into(),
        action: v["action"].as_str().map(str::to_owned),
        repository: v["repository"]["full_name"].as_str().map(str::to_owned),
        received_at_ms: 1_000,
        body,
    }
}

/// `issues/opened.json` with its `updated_at` and labels changed: a new state of the same card.
fn issue_version(id: &str, day: u32, labels: &[&str]) -> Delivery {
    let mut v: serde_json::Value = serde_json::from_slice(&fixture("issues/opened.json")).unwrap();
    v["issue"]["updated_at"] = format!("2030-01-{day:02}T00:00:00Z").into();
    v["issue"]["labels"] = labels
        .iter()
        .map(|l| serde_json::json!({ "name": l }))
        .collect();
    let mut d = delivery(id, "issues/opened.json");
    d.body = serde_json::to_vec(&v).unwrap();
    d
}

/// Every fixture that touches a card, with a stable id each.
fn fixture_deliveries() -> Vec<Delivery> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/github");
    let mut out = Vec::new();
    let mut dirs: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    dirs.sort();
    for dir in dirs {
        let mut files: Vec<_> = std::fs::read_dir(root.join(&dir))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|f| f.ends_with(".json"))
            .collect();
        files.sort();
        for f in files {
            let rel = format!("{dir}/{f}");
            out.push(delivery(&format!("fx-{dir}-{f}"), &rel));
        }
    }
    out
}

const CARD: CardKey = CardKey {
    repo_id: 186853002,
    number: 1,
};

fn rows(store: &dyn Store, id: &str) -> (u64, u64, Option<String>) {
    let r = store.lookup(&[id.to_owned()]).unwrap().remove(0);
    (r.logged, r.effects, r.applied_by)
}

// ---- the suite: each fn runs against both backends ----

pub fn applies_once_and_lookup_counts_rows(b: &dyn Backend) {
    let store = b.open(StoreOptions::default());
    let out = store
        .apply_batch(&[delivery("d1", "issues/opened.json")], "w1")
        .unwrap();
    assert!(out[0].applied);
    assert_eq!(out[0].card, Some(CARD));
    // A redelivery: nothing written again.
    let again = store
        .apply_batch(&[delivery("d1", "issues/opened.json")], "w2")
        .unwrap();
    assert!(!again[0].applied, "{again:?}");
    assert_eq!(rows(store.as_ref(), "d1"), (1, 1, Some("w1".into())));
    let r = store.lookup(&["nope".into(), "d1".into()]).unwrap();
    assert_eq!(r[0].delivery, "nope");
    assert_eq!((r[0].logged, r[0].effects, r[0].applied_at), (0, 0, None));
    assert!(r[1].applied_at.is_some());
    // Effects are counted from rows, never hidden by a constraint.
    b.raw_history("d1", CARD);
    assert_eq!(rows(store.as_ref(), "d1").1, 2);
    store.ping().unwrap();
}

pub fn a_copy_in_the_same_batch_is_applied_once(b: &dyn Backend) {
    let store = b.open(StoreOptions::default());
    let out = store
        .apply_batch(
            &[
                delivery("x", "issues/opened.json"),
                delivery("y", "issues/labeled.json"),
                delivery("x", "issues/opened.json"),
            ],
            "w",
        )
        .unwrap();
    assert_eq!(
        out.iter().map(|o| o.applied).collect::<Vec<_>>(),
        vec![true, true, false]
    );
    assert_eq!(rows(store.as_ref(), "x"), (1, 1, Some("w".into())));
}

pub fn without_dedupe_a_redelivery_is_applied_twice(b: &dyn Backend) {
    let store = b.open(StoreOptions {
        dedupe: false,
        ..StoreOptions::default()
    });
    for w in ["w1", "w2"] {
        let out = store
            .apply_batch(&[delivery("dup", "issues/opened.json")], w)
            .unwrap();
        assert!(out[0].applied);
    }
    let (logged, effects, by) = rows(store.as_ref(), "dup");
    assert_eq!((logged, effects), (2, 2), "both effects visible");
    assert_eq!(by.as_deref(), Some("w1"), "the first application");
}

pub fn listing_pages_in_byte_order(b: &dyn Backend) {
    let store = b.open(StoreOptions::default());
    // Upper case sorts before lower case and '_' between them in byte order (not in most
    // natural-language collations).
    let ids = ["b", "B", "_x", "a", "A1", "é"];
    let batch: Vec<Delivery> = ids.iter().map(|i| delivery(i, "ping/ping.json")).collect();
    store.apply_batch(&batch, "lister").unwrap();
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store.list_applied(after.as_deref(), 4).unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page
            .iter()
            .all(|r| r.applied_by.as_deref() == Some("lister")));
        after = page.last().map(|r| r.delivery.clone());
        seen.extend(page.into_iter().map(|r| r.delivery));
    }
    let mut expected: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
    expected.sort();
    assert_eq!(seen, expected);
}

pub fn the_log_is_scanned_by_window_in_log_order_and_pruned(b: &dyn Backend) {
    let store = b.open(StoreOptions::default());
    let mut batch = Vec::new();
    for (i, t) in [(0, 300), (1, 100), (2, 200)] {
        let mut d = delivery(&format!("log{i}"), "issues/opened.json");
        d.received_at_ms = t;
        batch.push(d);
    }
    store.apply_batch(&batch, "w").unwrap();
    let mut seen = Vec::new();
    store
        .scan_log(100, 300, &mut |l| {
            assert_eq!(
                l.delivery.body,
                fixture("issues/opened.json"),
                "payload bytes kept"
            );
            seen.push((l.delivery.id, l.delivery.received_at_ms));
            Ok(())
        })
        .unwrap();
    assert_eq!(seen, vec![("log1".into(), 100), ("log2".into(), 200)]);
    // A visitor's error ends the scan with that error.
    let e = store.scan_log(i64::MIN, i64::MAX, &mut |_| {
        Err(StoreError::Corrupt("stop".into()))
    });
    assert!(matches!(e, Err(StoreError::Corrupt(_))), "{e:?}");
    // Retention: the log goes, what deduplicates stays.
    assert_eq!(store.prune_log(0).unwrap(), 0);
    assert_eq!(
        store.prune_log(gitspy::delivery::now_ms() + 1000).unwrap(),
        3
    );
    let r = store.lookup(&["log0".into()]).unwrap().remove(0);
    assert_eq!((r.logged, r.effects), (0, 1));
    assert!(r.applied_at.is_some());
    assert!(!store.apply_batch(&batch[..1], "w2").unwrap()[0].applied);
}

pub fn board_and_snapshot_follow_the_fold(b: &dyn Backend) {
    let store = b.open(StoreOptions::default());
    assert!(store.board("Codertocat/Hello-World").unwrap().is_none());
    store
        .apply_batch(
            &[
                issue_version("v2", 2, &["bug"]),
                issue_version("v1", 1, &[]),
            ],
            "w",
        )
        .unwrap();
    let board = store.board("Codertocat/Hello-World").unwrap().unwrap();
    let snap = store.snapshot().unwrap();
    assert_eq!(snap.cards.len(), 1);
    assert_eq!(snap.cards[0].0, CARD);
    let mut fold = gitspy::github::fold::FoldState::default();
    for d in [
        issue_version("v1", 1, &[]),
        issue_version("v2", 2, &["bug"]),
    ] {
        let v: serde_json::Value = serde_json::from_slice(&d.body).unwrap();
        fold.apply(&d.event, &v);
    }
    assert_eq!(
        fold.board("Codertocat/Hello-World").unwrap(),
        board,
        "the store's board is the fold's"
    );
    assert!(store.board("nobody/nothing").unwrap().is_none());
}

/// Two stores (two processes) apply the same delivery at the same moment: exactly one applies it.
pub fn concurrent_copies_apply_once(b: &dyn Backend) {
    let stores: Vec<Arc<dyn Store>> = (0..4).map(|_| b.open(StoreOptions::default())).collect();
    for round in 0..5 {
        let id = format!("race{round}");
        let barrier = Arc::new(std::sync::Barrier::new(stores.len()));
        let handles: Vec<_> = stores
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let (s, barrier, id) = (s.clone(), barrier.clone(), id.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    s.apply_batch(
                        &[
                            delivery(&format!("{id}-own{i}"), "issues/labeled.json"),
                            delivery(&id, "issues/opened.json"),
                        ],
                        &format!("w{i}"),
                    )
                    .unwrap()
                })
            })
            .collect();
        let applied: usize = handles
            .into_iter()
            .map(|h| h.join().unwrap()[1].applied as usize)
            .sum();
        assert_eq!(applied, 1, "round {round}: one worker applies it");
        let (logged, effects, _) = rows(stores[0].as_ref(), &id);
        assert_eq!((logged, effects), (1, 1), "round {round}");
    }
}

/// Concurrent batches folding into the same cards, in opposite orders: no update is lost (the
/// final states equal a sequential fold of everything) and no batch fails.
pub fn concurrent_batches_lose_no_update(b: &dyn Backend) {
    let all: Vec<Delivery> = (1..=12)
        .map(|day| issue_version(&format!("u{day}"), day, &[&format!("l{day}")]))
        .chain(fixture_deliveries())
        .collect();
    let stores: Vec<Arc<dyn Store>> = (0..3).map(|_| b.open(StoreOptions::default())).collect();
    let handles: Vec<_> = stores
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let s = s.clone();
            let mut mine: Vec<Delivery> = all
                .iter()
                .enumerate()
                .filter(|(n, _)| n % 3 == i)
                .map(|(_, d)| d.clone())
                .collect();
            if i == 1 {
                mine.reverse();
            }
            std::thread::spawn(move || {
                for chunk in mine.chunks(4) {
                    s.apply_batch(chunk, &format!("w{i}")).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let reference = Sqlite::new();
    let seq = reference.open(StoreOptions::default());
    seq.apply_batch(&all, "seq").unwrap();
    let (got, want) = (stores[0].snapshot().unwrap(), seq.snapshot().unwrap());
    assert_eq!(format!("{:?}", got.cards), format!("{:?}", want.cards));
    assert_eq!(format!("{:?}", got.repos), format!("{:?}", want.repos));
}

/// A write lock held by another client longer than the busy timeout fails the batch (nothing
/// committed); once it is released the same batch applies. The worker's retry path rests on this.
pub fn a_held_lock_fails_the_batch_then_it_applies(b: &dyn Backend) {
    let store = b.open(StoreOptions {
        busy_timeout: Duration::from_millis(300),
        ..StoreOptions::default()
    });
    let batch = [delivery("held", "issues/opened.json")];
    {
        let _lock = b.hold_write_lock();
        let e = store.apply_batch(&batch, "w").unwrap_err().to_string();
        assert!(
            e.contains("locked") || e.contains("lock timeout"),
            "a lock error, not: {e}"
        );
        // Reads still answer while the write lock is held.
        assert_eq!(rows(store.as_ref(), "held").0, 0);
    }
    assert!(store.apply_batch(&batch, "w").unwrap()[0].applied);
    assert_eq!(rows(store.as_ref(), "held"), (1, 1, Some("w".into())));
}

/// Opening is idempotent, also when several processes open a fresh database at once.
pub fn opening_again_and_concurrently_migrates_once(b: &dyn Backend) {
    let stores: Vec<_> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..4)
            .map(|_| s.spawn(|| b.open(StoreOptions::default())))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    stores[0]
        .apply_batch(&[delivery("m", "ping/ping.json")], "w")
        .unwrap();
    let again = b.open(StoreOptions::default());
    assert_eq!(rows(again.as_ref(), "m").0, 1);
}

/// Every connection the store holds is ended by the server (a restart, `pg_terminate_backend`,
/// an idle cut): the next calls reconnect instead of failing.
pub fn ended_connections_are_replaced_without_failing_a_call(b: &dyn Backend) {
    let store = b.open(StoreOptions::default());
    store
        .apply_batch(&[delivery("before", "issues/opened.json")], "w")
        .unwrap();
    let ended = b.terminate_connections();
    if ended == 0 {
        return; // SQLite: nothing to end.
    }
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(rows(store.as_ref(), "before").0, 1, "a read after the cut");
    b.terminate_connections();
    std::thread::sleep(Duration::from_millis(200));
    let out = store
        .apply_batch(&[delivery("after", "issues/labeled.json")], "w")
        .unwrap();
    assert!(out[0].applied, "a write after the cut");
    b.terminate_connections();
    std::thread::sleep(Duration::from_millis(200));
    assert!(store.board("Codertocat/Hello-World").unwrap().is_some());
    let mut n = 0;
    store
        .scan_log(i64::MIN, i64::MAX, &mut |_| {
            n += 1;
            Ok(())
        })
        .unwrap();
    assert_eq!(n, 2);
}

/// A TCP forwarder in front of PostgreSQL whose connections can be reset (a RST, no goodbye from
/// the server), as the network between GitSpy and its database can.
struct ResetProxy {
    port: u16,
    reset: Arc<tokio::sync::Notify>,
    live: Arc<std::sync::atomic::AtomicUsize>,
}

impl ResetProxy {
    fn start(upstream: u16) -> ResetProxy {
        use std::sync::atomic::Ordering::SeqCst;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let reset = Arc::new(tokio::sync::Notify::new());
        let live = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (r, l) = (reset.clone(), live.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                while let Ok((mut client, _)) = listener.accept().await {
                    let Ok(mut server) =
                        tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                    else {
                        continue;
                    };
                    let (r, l) = (r.clone(), l.clone());
                    l.fetch_add(1, SeqCst);
                    tokio::spawn(async move {
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                            _ = r.notified() => {
                                // Linger 0, then close: the client gets a RST.
                                let _ = client.set_zero_linger();
                            }
                        }
                        l.fetch_sub(1, SeqCst);
                    });
                }
            });
        });
        ResetProxy { port, reset, live }
    }

    /// Resets every open connection; how many there were.
    fn reset_all(&self) -> usize {
        let n = self.live.load(std::sync::atomic::Ordering::SeqCst);
        self.reset.notify_waiters();
        std::thread::sleep(Duration::from_millis(200));
        n
    }
}

/// A reset by the network (no message from the server, unlike `pg_terminate_backend`) of an
/// idle pooled connection: the next read and the next write go through on a new connection.
#[test]
fn postgres_connections_reset_by_the_network_are_replaced_without_failing_a_call() {
    let server = Postgres::start();
    server.create_db("gitspy");
    let proxy = ResetProxy::start(server.port);
    let url = format!("postgres://postgres@127.0.0.1:{}/gitspy", proxy.port);
    let store = PgStore::open(&url, StoreOptions::default()).unwrap();
    store
        .apply_batch(&[delivery("before", "issues/opened.json")], "w")
        .unwrap();
    assert!(proxy.reset_all() > 0, "the store had a connection open");
    assert_eq!(rows(&store, "before").0, 1, "a read after the reset");
    assert!(proxy.reset_all() > 0);
    let out = store
        .apply_batch(&[delivery("after", "issues/labeled.json")], "w")
        .unwrap();
    assert!(out[0].applied, "a write after the reset");
    assert_eq!(rows(&store, "after").0, 1);
}

macro_rules! store_suite {
    ($backend:ident, $make:expr) => {
        mod $backend {
            use super::*;
            fn backend() -> impl Backend {
                $make
            }
            #[test]
            fn applies_once_and_lookup_counts_rows() {
                super::applies_once_and_lookup_counts_rows(&backend());
            }
            #[test]
            fn a_copy_in_the_same_batch_is_applied_once() {
                super::a_copy_in_the_same_batch_is_applied_once(&backend());
            }
            #[test]
            fn without_dedupe_a_redelivery_is_applied_twice() {
                super::without_dedupe_a_redelivery_is_applied_twice(&backend());
            }
            #[test]
            fn listing_pages_in_byte_order() {
                super::listing_pages_in_byte_order(&backend());
            }
            #[test]
            fn the_log_is_scanned_by_window_in_log_order_and_pruned() {
                super::the_log_is_scanned_by_window_in_log_order_and_pruned(&backend());
            }
            #[test]
            fn board_and_snapshot_follow_the_fold() {
                super::board_and_snapshot_follow_the_fold(&backend());
            }
            #[test]
            fn concurrent_copies_apply_once() {
                super::concurrent_copies_apply_once(&backend());
            }
            #[test]
            fn concurrent_batches_lose_no_update() {
                super::concurrent_batches_lose_no_update(&backend());
            }
            #[test]
            fn a_held_lock_fails_the_batch_then_it_applies() {
                super::a_held_lock_fails_the_batch_then_it_applies(&backend());
            }
            #[test]
            fn ended_connections_are_replaced_without_failing_a_call() {
                super::ended_connections_are_replaced_without_failing_a_call(&backend());
            }
            #[test]
            fn opening_again_and_concurrently_migrates_once() {
                super::opening_again_and_concurrently_migrates_once(&backend());
            }
        }
    };
}

store_suite!(sqlite, Sqlite::new());
store_suite!(postgres, Pg::new());

/// The same deliveries give byte-identical boards (and digests) on both backends.
#[test]
fn board_digests_are_byte_identical_on_sqlite_and_postgres() {
    let (lite, pg) = (Sqlite::new(), Pg::new());
    let (a, b) = (
        lite.open(StoreOptions::default()),
        pg.open(StoreOptions::default()),
    );
    let all = fixture_deliveries();
    assert!(all.len() > 40, "fixtures found: {}", all.len());
    for chunk in all.chunks(7) {
        a.apply_batch(chunk, "w").unwrap();
        b.apply_batch(chunk, "w").unwrap();
    }
    let names: BTreeMap<String, ()> = all
        .iter()
        .filter_map(|d| d.repository.clone())
        .map(|r| (r, ()))
        .collect();
    let mut compared = 0;
    for name in names.keys() {
        let (x, y) = (a.board(name).unwrap(), b.board(name).unwrap());
        assert_eq!(x.is_some(), y.is_some(), "{name}");
        if let (Some(x), Some(y)) = (x, y) {
            assert_eq!(x.digest, y.digest, "{name}");
            assert_eq!(x.json, y.json, "{name}: canonical bytes");
            compared += 1;
        }
    }
    assert!(compared > 0, "no board compared");
    let (sa, sb) = (a.snapshot().unwrap(), b.snapshot().unwrap());
    assert_eq!(format!("{:?}", sa.cards), format!("{:?}", sb.cards));
    let la = a.list_applied(None, 1000).unwrap();
    let lb = b.list_applied(None, 1000).unwrap();
    assert_eq!(
        la.iter().map(|r| &r.delivery).collect::<Vec<_>>(),
        lb.iter().map(|r| &r.delivery).collect::<Vec<_>>()
    );
}
