//! Faults, after Jepsen's nemesis: every fault kind is one [`Nemesis`] variant with `inject`
//! and `heal`, implemented in a file of its own (`redis.rs`, `worker.rs`, `server.rs`; the
//! process signals both share are in `process.rs`). Around every injection this module waits
//! for the fault's trigger (`trigger.rs`), measures what the fault hit (`efficacy.rs`) and
//! writes one typed entry of the fault log (`log.rs`, [`crate::report::FaultWindow`]).
//!
//! Network faults (`network.rs`) act on the TCP proxies of `crate::netproxy`.
//!
//! A new fault kind is one file here plus its entry in `scenario::model::Fault`.

pub mod crash;
pub mod efficacy;
pub mod log;
pub mod network;
pub mod process;
pub mod redis;
pub mod server;
pub mod store;
pub mod trigger;
pub mod worker;

use std::sync::atomic::Ordering;

use rand::Rng as _;

use crate::report::FaultHit;
use crate::run::steps::Ctx;
use crate::scenario::model::{CrashAt, Fault, FaultKind, ProcessAction, RedisAction, Which};

/// One fault kind, ready to inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nemesis {
    /// Stop, kill, pause (and their repairs) on Redis.
    Redis(RedisAction),
    /// A signal to the chosen worker processes.
    Worker(ProcessAction, Which),
    /// A signal to the `gitspy serve` process.
    Server(ProcessAction),
    /// The store's write lock, held this long.
    Store(crate::scenario::Dur),
    /// PostgreSQL: every GitSpy connection terminated.
    StoreTerminate,
    /// A toxic on proxied links, or their heal.
    Network(crate::scenario::model::NetworkFault),
    /// A crash point armed in a worker (`Some(which)`) or the server (`None`).
    CrashAt(CrashAt, Option<Which>),
}

impl Nemesis {
    /// The nemesis a (validated) fault step names.
    pub fn of(f: &Fault) -> Option<Nemesis> {
        Some(match f.kind()? {
            FaultKind::Redis(a) => Nemesis::Redis(a),
            FaultKind::Worker(a, w) => Nemesis::Worker(a, w),
            FaultKind::Server(a) => Nemesis::Server(a),
            FaultKind::Store(d) => Nemesis::Store(d),
            FaultKind::StoreTerminate => Nemesis::StoreTerminate,
            FaultKind::Network(n) => Nemesis::Network(n),
            FaultKind::WorkerCrashAt(c, w) => Nemesis::CrashAt(c, Some(w)),
            FaultKind::ServerCrashAt(c) => Nemesis::CrashAt(c, None),
        })
    }

    /// Whether this fault can cut a delivery's processing short (judged by `faults_effective`).
    pub fn is_crash(self) -> bool {
        match self {
            Nemesis::Redis(a) => a == RedisAction::Kill,
            Nemesis::Worker(a, _) | Nemesis::Server(a) => a.is_crash(),
            Nemesis::Store(_) => false,
            // Transactions in progress fail and are retried: nothing is cut short for good.
            Nemesis::StoreTerminate => false,
            Nemesis::Network(n) => network::is_crash(&n),
            Nemesis::CrashAt(..) => true,
        }
    }

    /// Injects the fault (or its repair) now; returns the step note. `within` bounds how long
    /// a crash point may take to fire.
    pub async fn inject(
        self,
        ctx: &Ctx,
        pending: &Pending,
        within: std::time::Duration,
    ) -> anyhow::Result<String> {
        match self {
            Nemesis::CrashAt(c, w) => crash::inject(ctx, c, w, within, pending).await,
            Nemesis::Redis(a) => redis::inject(ctx, a, pending).await,
            Nemesis::Worker(a, w) => worker::inject(ctx, a, w, pending).await,
            Nemesis::Server(a) => server::inject(ctx, a, pending).await,
            Nemesis::Store(d) => store::inject(ctx, d.get(), pending).await,
            Nemesis::StoreTerminate => store::terminate(ctx, pending).await,
            Nemesis::Network(n) => network::inject(ctx, n, pending).await,
        }
    }
}

/// What the step knows before the fault is applied: when it was requested, the trigger, and
/// (for a triggered worker fault) the worker already chosen.
#[derive(Debug, Clone, Default)]
pub struct Pending {
    pub requested_ms: u64,
    pub trigger: Option<String>,
    pub worker: Option<usize>,
}

/// Runs one fault step: wait for the trigger (if any), inject, record.
pub async fn run(ctx: &Ctx, f: &Fault) -> anyhow::Result<String> {
    let Some(nemesis) = Nemesis::of(f) else {
        anyhow::bail!("a fault names exactly one of redis, worker, server, store, network");
    };
    let mut pending = Pending {
        requested_ms: ctx.now_ms(),
        trigger: f.when.map(|w| w.to_string()),
        worker: None,
    };
    if let Some(when) = f.when {
        // A `holding` trigger watches one worker: choose it first (by the seed).
        if let (Nemesis::Worker(_, which), Some(_)) = (nemesis, when.holding) {
            let matcher = {
                let sys = ctx.sys.lock().await;
                match &sys.attach {
                    None => Err(sys.workers.len()),
                    Some(a) => Ok(a.worker_matcher.clone()),
                }
            };
            let n = match matcher {
                Err(n) => n,
                // Attach mode: an index into the matched workers (sorted by pid).
                Ok(Some(m)) => process::find_attached(&m).await?.len(),
                Ok(None) => anyhow::bail!("attach mode: no `worker_process` matcher"),
            };
            pending.worker = pick_workers(ctx, which, n)?.first().copied();
        }
        // ... or the one worker whose Redis link a network fault cuts.
        if let Nemesis::Network(n) = nemesis {
            pending.worker = network::single_worker(&n);
        }
        let within = f.within().get();
        let held = trigger::wait(ctx, &when, pending.worker, within).await?;
        if !held {
            let target = match nemesis {
                Nemesis::Redis(_) => "redis".to_string(),
                Nemesis::Worker(..) => pending
                    .worker
                    .map_or_else(|| "workers".to_string(), |i| format!("worker-{i}")),
                Nemesis::Server(_) => "server".to_string(),
                Nemesis::Store(_) | Nemesis::StoreTerminate => store::TARGET.to_string(),
                Nemesis::Network(n) => format!("network {}", n.link),
                Nemesis::CrashAt(_, Some(_)) => "worker".to_string(),
                Nemesis::CrashAt(_, None) => "server".to_string(),
            };
            let kind = kind_name(nemesis);
            log::missed(ctx, &kind, &target, &pending, nemesis.is_crash());
            let msg = format!(
                "missed: {} never held within {}",
                pending.trigger.as_deref().unwrap_or("the condition"),
                f.within()
            );
            ctx.say(format!("fault {kind}: {msg}"));
            return Ok(msg);
        }
    }
    nemesis.inject(ctx, &pending, f.within().get()).await
}

/// `worker kill`, `redis stop`, `server restart`.
pub fn kind_name(n: Nemesis) -> String {
    match n {
        Nemesis::Redis(a) => format!("redis {}", a.as_str()),
        Nemesis::Worker(a, _) => format!("worker {}", a.as_str()),
        Nemesis::Server(a) => format!("server {}", a.as_str()),
        Nemesis::Store(_) => "store lock".to_string(),
        Nemesis::StoreTerminate => "store terminate connections".to_string(),
        Nemesis::Network(n) => network::kind_name(&n),
        Nemesis::CrashAt(c, Some(_)) => format!("worker crash_at {}", c.crash_point()),
        Nemesis::CrashAt(c, None) => format!("server crash_at {}", c.crash_point()),
    }
}

/// The 0-based indexes of the workers `which` names among `n`.
pub fn pick_workers(ctx: &Ctx, which: Which, n: usize) -> anyhow::Result<Vec<usize>> {
    Ok(match which {
        Which::Index(i) => {
            let i = i as usize;
            anyhow::ensure!(
                i < n,
                "worker {i} does not exist (the target has {n} workers)"
            );
            vec![i]
        }
        Which::All => (0..n).collect(),
        Which::Random => {
            anyhow::ensure!(n > 0, "the target has no workers");
            let mut rng = match ctx.rng.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            vec![rng.random_range(0..n)]
        }
    })
}

/// Undoes every fault still in force (Jepsen's final heal): heals the network links, releases a
/// store lock, thaws frozen
/// workers, starts Redis and stopped or killed processes again.
pub async fn heal_all(ctx: &Ctx) {
    network::heal(ctx).await;
    store::heal(ctx).await;
    redis::heal(ctx).await;
    worker::heal(ctx).await;
    server::heal(ctx).await;
}

/// Counts a kill for the `processed_matches_accepted` tolerance note.
pub(crate) fn count_kill(ctx: &Ctx) {
    ctx.kills.fetch_add(1, Ordering::SeqCst);
}

/// A hit that only counts the sender's requests in flight.
pub(crate) fn requests_hit(ctx: &Ctx) -> FaultHit {
    FaultHit {
        in_flight_requests: ctx.sender.in_flight(),
        ..FaultHit::default()
    }
}
