//! Store faults: the store's write lock held by the harness — on SQLite an exclusive lock on the
//! run's file (`BEGIN EXCLUSIVE` through rusqlite), on PostgreSQL a transaction holding `LOCK
//! TABLE applied_deliveries IN EXCLUSIVE MODE` (the claim every batch writes first) — so GitSpy's
//! writes wait and, past their busy timeout, fail ("database is locked" / `lock_timeout`):
//! retries, backoff and dead letters happen. The lock is held on a blocking thread; the step
//! returns at once and the lock is released after its duration, or by the final heal. On
//! PostgreSQL also `terminate_connections` (`pg_terminate_backend` on every GitSpy connection).
//! Also the `dead_requeue` step, the operator's repair for what the lock dead-lettered.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::run::steps::Ctx;

use super::log::{self, Entry};
use super::Pending;

/// The fault-log target of store faults.
pub const TARGET: &str = "store";

/// A held lock: the way to release it early, and the thread that holds it (returns when it
/// let go).
pub struct HeldLock {
    release: mpsc::Sender<()>,
    thread: tokio::task::JoinHandle<Instant>,
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// Whether the run's store (`ctx.db`) is a PostgreSQL URL.
fn postgres_url(ctx: &Ctx) -> Option<String> {
    ctx.db
        .to_str()
        .filter(|u| u.starts_with("postgres://") || u.starts_with("postgresql://"))
        .map(str::to_owned)
}

/// What the lock thread holds until it is released.
enum Locked {
    Sqlite(rusqlite::Connection),
    Postgres(tokio_postgres::Client),
}

/// GitSpy's connections to the run's database: `(pid, state)` of every backend that is neither
/// this session nor another harness session.
async fn gitspy_backends(c: &tokio_postgres::Client) -> anyhow::Result<Vec<(i32, String)>> {
    let rows = c
        .query(
            "SELECT pid, COALESCE(state, '') FROM pg_stat_activity
             WHERE datname = current_database() AND pid <> pg_backend_pid()
             AND COALESCE(application_name, '') <> 'gitspy-chaos' ORDER BY pid",
            &[],
        )
        .await
        .context("reading pg_stat_activity")?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

fn in_transaction(state: &str) -> bool {
    state == "active" || state.starts_with("idle in transaction")
}

pub async fn inject(ctx: &Ctx, hold: Duration, pending: &Pending) -> anyhow::Result<String> {
    // One lock at a time: a second one first releases the first.
    heal(ctx).await;
    let db = ctx.db.clone();
    let pg = postgres_url(ctx);
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<anyhow::Result<String>>();
    let (release, release_rx) = mpsc::channel::<()>();
    let rt = tokio::runtime::Handle::current();
    let thread = tokio::task::spawn_blocking(move || {
        let locked = match &pg {
            None => (|| -> anyhow::Result<(Locked, String)> {
                let conn = rusqlite::Connection::open(&db)
                    .with_context(|| format!("opening {}", db.display()))?;
                // Wait for a write GitSpy has in progress, like any other writer would.
                conn.busy_timeout(Duration::from_secs(30))?;
                conn.execute_batch("BEGIN EXCLUSIVE")
                    .context("BEGIN EXCLUSIVE on the store")?;
                Ok((
                    Locked::Sqlite(conn),
                    format!(
                        "BEGIN EXCLUSIVE on gitspy.db for {:.1}s",
                        hold.as_secs_f64()
                    ),
                ))
            })(),
            Some(url) => rt.block_on(async {
                let (client, conn) = crate::system::postgres::connect(url).await?;
                tokio::spawn(conn);
                let before = gitspy_backends(&client).await?;
                let busy = before.iter().filter(|(_, st)| in_transaction(st)).count();
                // Wait (30 s at most) for GitSpy's transactions in progress, like any writer.
                client
                    .batch_execute(
                        "SET lock_timeout = '30s'; BEGIN; \
                         LOCK TABLE applied_deliveries IN EXCLUSIVE MODE",
                    )
                    .await
                    .context("LOCK TABLE applied_deliveries on the PostgreSQL store")?;
                Ok((
                    Locked::Postgres(client),
                    format!(
                        "LOCK TABLE applied_deliveries IN EXCLUSIVE MODE on PostgreSQL for {:.1}s \
                         ({} GitSpy connections, {busy} in a transaction when it was requested)",
                        hold.as_secs_f64(),
                        before.len()
                    ),
                ))
            }),
        };
        match locked {
            Ok((held, note)) => {
                let _ = ready_tx.send(Ok(note));
                let _ = release_rx.recv_timeout(hold);
                match held {
                    Locked::Sqlite(conn) => {
                        let _ = conn.execute_batch("ROLLBACK");
                    }
                    Locked::Postgres(client) => {
                        let _ = rt.block_on(client.batch_execute("ROLLBACK"));
                    }
                }
            }
            Err(e) => {
                let _ = ready_tx.send(Err(e));
            }
        }
        Instant::now()
    });
    let note = ready_rx
        .await
        .map_err(|_| anyhow::anyhow!("the store-lock thread ended early"))??;
    log::applied(
        ctx,
        Entry {
            kind: "store lock".into(),
            target: TARGET.into(),
            pending,
            crash: false,
            hit: None,
            note,
            instant: false,
        },
    );
    *lock(&ctx.store_lock) = Some(HeldLock { release, thread });
    Ok(format!("store locked for {:.1}s", hold.as_secs_f64()))
}

/// `store: {terminate_connections: true}`: `pg_terminate_backend` on every GitSpy connection to
/// the run's PostgreSQL database, logged with how many it ended and how many of those were in a
/// transaction (those transactions fail and GitSpy retries them).
pub async fn terminate(ctx: &Ctx, pending: &Pending) -> anyhow::Result<String> {
    let Some(url) = postgres_url(ctx) else {
        anyhow::bail!(
            "`store: {{terminate_connections: true}}` needs a PostgreSQL store (target.store: postgres)"
        );
    };
    let (client, conn) = crate::system::postgres::connect(&url).await?;
    let conn = tokio::spawn(conn);
    let backends = gitspy_backends(&client).await?;
    let mut ended = Vec::new();
    let mut busy = 0;
    for (pid, state) in &backends {
        let row = client
            .query_one("SELECT pg_terminate_backend($1)", &[pid])
            .await
            .context("pg_terminate_backend")?;
        if row.get::<_, bool>(0) {
            ended.push(pid.to_string());
            busy += usize::from(in_transaction(state));
        }
    }
    drop(client);
    let _ = conn.await;
    let note = format!(
        "pg_terminate_backend on {} GitSpy connection(s), {busy} in a transaction (pids {})",
        ended.len(),
        if ended.is_empty() {
            "none".to_owned()
        } else {
            ended.join(", ")
        }
    );
    log::applied(
        ctx,
        Entry {
            kind: "store terminate connections".into(),
            target: TARGET.into(),
            pending,
            crash: false,
            hit: None,
            note: note.clone(),
            instant: true,
        },
    );
    Ok(note)
}

/// Releases a lock still held (or notes when it let go on its own).
pub async fn heal(ctx: &Ctx) {
    let held = lock(&ctx.store_lock).take();
    let Some(h) = held else { return };
    let _ = h.release.send(());
    if let Ok(at) = h.thread.await {
        let rel = at.saturating_duration_since(ctx.t0.into_std()).as_millis() as u64;
        log::healed_at(ctx, TARGET, rel);
    }
}

/// `gitspy dead requeue --all` against the run's Redis; fails when fewer than `min` deliveries
/// were dead-lettered.
pub async fn dead_requeue(ctx: &Ctx, min: u64) -> anyhow::Result<String> {
    let url = ctx.sys.lock().await.redis.url()?;
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new(&ctx.gitspy_bin)
            .args(["dead", "requeue", "--all"])
            .env(&ctx.profile.env.redis_url, url)
            .env("NO_COLOR", "1")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .map_err(|_| anyhow::anyhow!("gitspy dead requeue did not finish within 120 s"))?
    .context("running gitspy dead requeue")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    anyhow::ensure!(
        out.status.success(),
        "gitspy dead requeue --all failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    let requeued = stdout.lines().filter(|l| l.starts_with("requeued")).count();
    anyhow::ensure!(
        requeued as u64 >= min,
        "requeued {requeued} dead-lettered deliveries, expected at least {min}: nothing ran out of attempts"
    );
    Ok(format!("requeued {requeued} dead-lettered deliveries"))
}
