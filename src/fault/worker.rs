//! Worker faults: kill (SIGKILL), stop (SIGTERM), restart, start, freeze (SIGSTOP: the zombie
//! worker) and thaw (SIGCONT). Before a kill, stop or freeze the harness reads what the victim
//! holds — the delivery ids pending at its consumer and which of them are locked — so the fault
//! log says what the fault hit.

use crate::run::steps::Ctx;
use crate::scenario::model::{ProcessAction, Which};

use super::process::HitSource;
use super::{efficacy, process, Pending};

pub async fn inject(
    ctx: &Ctx,
    action: ProcessAction,
    which: Which,
    pending: &Pending,
) -> anyhow::Result<String> {
    let mut sys = ctx.sys.lock().await;
    if let Some(a) = sys.attach.clone() {
        drop(sys);
        let m = a
            .worker_matcher
            .ok_or_else(|| anyhow::anyhow!("attach mode: no `worker_process` matcher"))?;
        if action == ProcessAction::Thaw {
            process::thaw_attached(ctx);
            return Ok("thawed the frozen workers".into());
        }
        let found = process::find_attached(&m).await?;
        let picked = match pending.worker {
            Some(i) => vec![i],
            None => super::pick_workers(ctx, which, found.len())?,
        };
        let pids = process::attached(ctx, &m, &found, &picked, action, "worker", pending).await?;
        return Ok(format!(
            "pids {pids:?} (the deployment's supervisor restarts them)"
        ));
    }
    let n = sys.workers.len();
    let picked = match pending.worker {
        Some(i) => vec![i],
        None => super::pick_workers(ctx, which, n)?,
    };
    let redis_url = sys.redis.url().ok();
    let mut notes = Vec::new();
    for i in &picked {
        let consumer = sys.consumer(*i);
        let hit = match (&redis_url, action) {
            (Some(url), ProcessAction::Kill | ProcessAction::Freeze | ProcessAction::Stop) => {
                HitSource::WorkerAfter {
                    redis_url: url.clone(),
                    consumer,
                    layout: ctx.profile.redis.clone(),
                }
            }
            _ => HitSource::None,
        };
        // A graceful stop lets the worker finish: what it held is read before the signal.
        let hit = match hit {
            HitSource::WorkerAfter {
                redis_url,
                consumer,
                layout,
            } if action == ProcessAction::Stop => {
                match efficacy::worker_hit(&redis_url, &consumer, &layout).await {
                    Ok(h) => HitSource::Given(h),
                    Err(_) => HitSource::None,
                }
            }
            other => other,
        };
        let w = &mut sys.workers[*i];
        process::managed(ctx, w, action, pending, hit).await?;
        if let Some(h) = ctx.timeline().faults.last().and_then(|f| f.hit.clone()) {
            if action.is_crash() || action == ProcessAction::Stop {
                notes.push(format!("worker-{i} held {}", h.pending.len()));
            }
        }
    }
    sys.record();
    Ok(if notes.is_empty() {
        format!("workers {picked:?}")
    } else {
        format!("workers {picked:?}: {}", notes.join(", "))
    })
}

/// Thaws frozen workers and starts stopped or killed ones.
pub async fn heal(ctx: &Ctx) {
    process::thaw_attached(ctx);
    let mut sys = ctx.sys.lock().await;
    let mut names = Vec::new();
    for w in sys.workers.iter_mut() {
        if w.frozen {
            if let Err(e) = w.pause(false) {
                tracing::warn!(error = %e, "thawing a worker");
            }
            names.push(w.role.name());
        }
        if !w.is_running() {
            if let Err(e) = w.start_again().await {
                tracing::warn!(error = %e, "restarting a worker");
            }
            names.push(w.role.name());
        }
    }
    sys.record();
    drop(sys);
    for n in names {
        super::log::healed(ctx, &n);
    }
}
