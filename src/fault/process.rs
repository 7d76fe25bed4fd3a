//! The signals worker and server faults send to a managed process (one the harness started),
//! and to an attached one (found by executable and environment marker, re-checked before
//! every signal).

use std::time::Duration;

use crate::report::FaultHit;
use crate::run::steps::Ctx;
use crate::run::system::STOP_GRACE;
use crate::scenario::model::ProcessAction;
use crate::scenario::ProcessMatcher;
use crate::system::attach::{self, MatchedProc};
use crate::system::procs::ManagedProc;

use super::log::{self, Entry};
use super::Pending;

/// How a process fault learns what it hit.
#[derive(Clone)]
pub enum HitSource {
    /// Not measured.
    None,
    /// Measured by the caller before the signal.
    Given(FaultHit),
    /// A worker's pending entries, read right after the signal: a SIGKILLed or SIGSTOPped
    /// worker cannot acknowledge anything, and nobody reclaims its entries before the claim
    /// idle, so what its consumer holds then is exactly what the fault cut short.
    WorkerAfter {
        redis_url: String,
        consumer: String,
        layout: gitspy_contract::RedisLayout,
    },
}

impl HitSource {
    async fn read(self) -> Option<FaultHit> {
        match self {
            HitSource::None => None,
            HitSource::Given(h) => Some(h),
            HitSource::WorkerAfter {
                redis_url,
                consumer,
                layout,
            } => match super::efficacy::worker_hit(&redis_url, &consumer, &layout).await {
                Ok(h) => Some(h),
                Err(e) => {
                    tracing::warn!(error = %e, %consumer, "reading what the worker held");
                    None
                }
            },
        }
    }
}

/// Applies `action` to one managed process and records it with what it hit.
pub async fn managed(
    ctx: &Ctx,
    p: &mut ManagedProc,
    action: ProcessAction,
    pending: &Pending,
    hit: HitSource,
) -> anyhow::Result<()> {
    let name = p.role.name();
    let role = if name == "server" { "server" } else { "worker" };
    if matches!(
        action,
        ProcessAction::Kill | ProcessAction::Stop | ProcessAction::Freeze
    ) && !p.is_running()
    {
        // Nothing to break: a refused entry, which faults_effective does not count.
        let kind = format!("{role} {}", action.as_str());
        log::refused(ctx, &kind, &name, pending, false, "not running".into());
        return Ok(());
    }
    // A scrape right before the signal keeps the metrics exact up to the fault; a triggered
    // fault skips it, so it strikes while its condition still holds.
    if !matches!(action, ProcessAction::Start | ProcessAction::Thaw) && pending.trigger.is_none() {
        if let Some(url) = p.url(&ctx.profile.endpoints.metrics) {
            if p.is_running() && !p.frozen {
                ctx.scrape_one(&name, &url).await;
            }
        }
    }
    let entry = |note: String, hit: Option<FaultHit>, instant: bool| Entry {
        kind: format!("{role} {}", action.as_str()),
        target: name.clone(),
        pending,
        crash: action.is_crash(),
        hit,
        note,
        instant,
    };
    match action {
        ProcessAction::Kill => {
            p.kill().await?;
            super::count_kill(ctx);
            let hit = hit.read().await;
            log::applied(ctx, entry("SIGKILL".into(), hit, false));
        }
        ProcessAction::Stop => {
            let hit = hit.read().await;
            let code = p.stop(STOP_GRACE).await?;
            log::applied(ctx, entry(format!("SIGTERM, exit {code:?}"), hit, false));
        }
        ProcessAction::Freeze => {
            p.pause(true)?;
            let hit = hit.read().await;
            log::applied(ctx, entry("SIGSTOP".into(), hit, false));
        }
        ProcessAction::Thaw => {
            p.pause(false)?;
            log::healed(ctx, &name);
        }
        ProcessAction::Start => {
            p.start_again().await?;
            log::healed(ctx, &name);
        }
        ProcessAction::Restart => {
            let hit = hit.read().await;
            let began = ctx.now_ms();
            p.restart(STOP_GRACE).await?;
            log::healed(ctx, &name);
            log::applied(ctx, entry("SIGTERM + start".into(), hit, true));
            // The window is the time the process was away: from the signal to its start.
            if let Some(f) = ctx.timeline().faults.last_mut() {
                f.start_ms = began.min(f.start_ms);
            }
        }
    }
    Ok(())
}

/// Applies `action` to the attached processes `picked` (indexes into `found`); only kill,
/// stop, freeze and thaw. Frozen processes are remembered for thaw and the final heal.
pub async fn attached(
    ctx: &Ctx,
    m: &ProcessMatcher,
    found: &[MatchedProc],
    picked: &[usize],
    action: ProcessAction,
    role: &str,
    pending: &Pending,
) -> anyhow::Result<Vec<u32>> {
    attach::check_action(action)?;
    let redis_url = ctx.sys.lock().await.redis.url().ok();
    let mut pids = Vec::new();
    for &i in picked {
        let Some(p) = found.get(i) else { continue };
        let name = format!("{role} pid {}", p.pid);
        // A worker started with `GITSPY_CONSUMER` names its consumer: what it holds is read like
        // a managed worker's (before a graceful stop, right after a kill or freeze).
        let worker_hit = match (role, &redis_url) {
            ("worker", Some(url)) => {
                attached_consumer(p.pid).map(|consumer| HitSource::WorkerAfter {
                    redis_url: url.clone(),
                    consumer,
                    layout: ctx.profile.redis.clone(),
                })
            }
            _ => None,
        };
        let mut hit = (role == "server").then(|| super::requests_hit(ctx));
        if action == ProcessAction::Stop {
            if let Some(h) = worker_hit.clone() {
                hit = h.read().await;
            }
        }
        let entry = |note: &str, hit: Option<FaultHit>| Entry {
            kind: format!("{role} {}", action.as_str()),
            target: name.clone(),
            pending,
            crash: action.is_crash(),
            hit,
            note: note.into(),
            instant: true,
        };
        match action {
            ProcessAction::Kill => {
                attach::kill(p, m, Duration::from_secs(10)).await?;
                super::count_kill(ctx);
                if let Some(h) = worker_hit {
                    hit = h.read().await;
                }
                log::applied(ctx, entry("SIGKILL (attached)", hit));
            }
            ProcessAction::Freeze => {
                attach::signal(p, m, nix::sys::signal::Signal::SIGSTOP)?;
                lock(&ctx.attach_frozen).push((p.clone(), m.clone()));
                if let Some(h) = worker_hit {
                    hit = h.read().await;
                }
                let mut e = entry("SIGSTOP (attached)", hit);
                e.instant = false;
                log::applied(ctx, e);
            }
            ProcessAction::Thaw => {
                attach::signal(p, m, nix::sys::signal::Signal::SIGCONT)?;
                lock(&ctx.attach_frozen).retain(|(q, _)| q.pid != p.pid);
                log::healed(ctx, &name);
            }
            _ => {
                attach::stop(p, m, STOP_GRACE, Duration::from_secs(10)).await?;
                log::applied(ctx, entry("SIGTERM (attached)", hit));
            }
        }
        pids.push(p.pid);
    }
    Ok(pids)
}

/// The variable naming a GitSpy worker's consumer. GitSpy's default name carries a random
/// token, so an attached worker started without it cannot be told apart in `XPENDING`.
pub const CONSUMER_ENV: &str = "GITSPY_CONSUMER";

/// The consumer name of attached worker `pid`: its `GITSPY_CONSUMER`, from
/// `/proc/<pid>/environ`; `None` when it was started without one (or cannot be read).
pub fn attached_consumer(pid: u32) -> Option<String> {
    attach::env_value(pid, CONSUMER_ENV)
}

/// Continues every attached process a freeze left stopped.
pub fn thaw_attached(ctx: &Ctx) {
    let frozen = std::mem::take(&mut *lock(&ctx.attach_frozen));
    for (p, m) in frozen {
        if let Err(e) = attach::signal(&p, &m, nix::sys::signal::Signal::SIGCONT) {
            tracing::warn!(error = %e, pid = p.pid, "thawing an attached process");
        }
        log::healed(ctx, &format!("worker pid {}", p.pid));
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// Finds the attached processes `m` matches now.
pub async fn find_attached(m: &ProcessMatcher) -> anyhow::Result<Vec<MatchedProc>> {
    let matcher = m.clone();
    let found = tokio::task::spawn_blocking(move || attach::find(&matcher)).await??;
    anyhow::ensure!(
        !found.is_empty(),
        "attach mode: no running process matches executable `{}` with `{}`",
        m.executable,
        m.env_marker
    );
    Ok(found)
}
