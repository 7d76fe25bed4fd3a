//! Store faults: an exclusive lock on the run's SQLite file, held by the harness (`BEGIN
//! EXCLUSIVE` through rusqlite), so GitSpy's writes wait and, past their busy timeout, fail
//! with "database is locked" — retries, backoff and dead letters happen. The lock is held on a
//! blocking thread; the step returns at once and the lock is released after its duration, or
//! by the final heal. Also the `dead_requeue` step, the operator's repair for what the lock
//! dead-lettered.

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

pub async fn inject(ctx: &Ctx, hold: Duration, pending: &Pending) -> anyhow::Result<String> {
    // One lock at a time: a second one first releases the first.
    heal(ctx).await;
    let db = ctx.db.clone();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<anyhow::Result<()>>();
    let (release, release_rx) = mpsc::channel::<()>();
    let thread = tokio::task::spawn_blocking(move || {
        let locked = (|| -> anyhow::Result<rusqlite::Connection> {
            let conn = rusqlite::Connection::open(&db)
                .with_context(|| format!("opening {}", db.display()))?;
            // Wait for a write GitSpy has in progress, like any other writer would.
            conn.busy_timeout(Duration::from_secs(30))?;
            conn.execute_batch("BEGIN EXCLUSIVE")
                .context("BEGIN EXCLUSIVE on the store")?;
            Ok(conn)
        })();
        match locked {
            Ok(conn) => {
                let _ = ready_tx.send(Ok(()));
                let _ = release_rx.recv_timeout(hold);
                let _ = conn.execute_batch("ROLLBACK");
                drop(conn);
            }
            Err(e) => {
                let _ = ready_tx.send(Err(e));
            }
        }
        Instant::now()
    });
    ready_rx
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
            note: format!(
                "BEGIN EXCLUSIVE on gitspy.db for {:.1}s",
                hold.as_secs_f64()
            ),
            instant: false,
        },
    );
    *lock(&ctx.store_lock) = Some(HeldLock { release, thread });
    Ok(format!("store locked for {:.1}s", hold.as_secs_f64()))
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
