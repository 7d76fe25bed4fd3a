//! Server faults: kill, stop, restart, start of `gitspy serve`. What a kill hits: the webhook
//! requests in flight at that instant (each must end accepted-and-durable or visibly failed).

use crate::run::steps::Ctx;
use crate::scenario::model::{ProcessAction, Which};

use super::{process, requests_hit, Pending};

pub async fn inject(ctx: &Ctx, action: ProcessAction, pending: &Pending) -> anyhow::Result<String> {
    let mut sys = ctx.sys.lock().await;
    if let Some(a) = sys.attach.clone() {
        drop(sys);
        let m = a
            .server_matcher
            .ok_or_else(|| anyhow::anyhow!("attach mode: no `server_process` matcher"))?;
        let found = process::find_attached(&m).await?;
        let picked = super::pick_workers(ctx, Which::All, found.len())?;
        let pids = process::attached(ctx, &m, &found, &picked, action, "server", pending).await?;
        return Ok(format!(
            "pids {pids:?} (the deployment's supervisor restarts them)"
        ));
    }
    let hit = matches!(
        action,
        ProcessAction::Kill | ProcessAction::Stop | ProcessAction::Restart
    )
    .then(|| requests_hit(ctx));
    let note = hit
        .as_ref()
        .map(|h| format!("{} requests in flight", h.in_flight_requests))
        .unwrap_or_default();
    let source = match hit {
        Some(h) => process::HitSource::Given(h),
        None => process::HitSource::None,
    };
    process::managed(ctx, &mut sys.server, action, pending, source).await?;
    sys.record();
    Ok(note)
}

/// Starts the server again when a fault left it down.
pub async fn heal(ctx: &Ctx) {
    let mut sys = ctx.sys.lock().await;
    if sys.attach.is_some() || sys.server.is_running() {
        return;
    }
    if let Err(e) = sys.server.start_again().await {
        tracing::warn!(error = %e, "restarting the server");
    }
    let name = sys.server.role.name();
    sys.record();
    drop(sys);
    super::log::healed(ctx, &name);
}
