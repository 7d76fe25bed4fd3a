//! The typed fault log: every fault step adds one [`FaultWindow`] (requested, applied, healed,
//! outcome, what it hit); repairs close the windows still open on their target.

use crate::report::{FaultHit, FaultOutcome, FaultWindow};
use crate::run::steps::Ctx;

use super::Pending;

/// What one applied fault records.
pub struct Entry<'a> {
    pub kind: String,
    pub target: String,
    pub pending: &'a Pending,
    pub crash: bool,
    pub hit: Option<FaultHit>,
    pub note: String,
    /// An instantaneous fault (a kill): healed the moment it was applied, as far as the
    /// window is concerned (the process is started again by a later step or the final heal).
    pub instant: bool,
}

/// Records an applied fault at the current instant.
pub fn applied(ctx: &Ctx, e: Entry<'_>) {
    let at = ctx.now_ms();
    ctx.timeline().faults.push(FaultWindow {
        kind: e.kind,
        target: e.target,
        requested_ms: Some(e.pending.requested_ms),
        start_ms: at,
        end_ms: e.instant.then_some(at),
        outcome: FaultOutcome::Applied,
        crash: e.crash,
        trigger: e.pending.trigger.clone(),
        hit: e.hit,
        note: e.note,
    });
}

/// Records a fault whose trigger never held: nothing was injected.
pub fn missed(ctx: &Ctx, kind: &str, target: &str, pending: &Pending, crash: bool) {
    let at = ctx.now_ms();
    ctx.timeline().faults.push(FaultWindow {
        kind: kind.to_string(),
        target: target.to_string(),
        requested_ms: Some(pending.requested_ms),
        start_ms: at,
        end_ms: Some(at),
        outcome: FaultOutcome::Missed,
        crash,
        trigger: pending.trigger.clone(),
        hit: None,
        note: String::new(),
    });
}

/// Records a fault the harness would not inject (the reason in `note`).
pub fn refused(ctx: &Ctx, kind: &str, target: &str, pending: &Pending, crash: bool, note: String) {
    let at = ctx.now_ms();
    ctx.timeline().faults.push(FaultWindow {
        kind: kind.to_string(),
        target: target.to_string(),
        requested_ms: Some(pending.requested_ms),
        start_ms: at,
        end_ms: Some(at),
        outcome: FaultOutcome::Refused,
        crash,
        trigger: pending.trigger.clone(),
        hit: None,
        note,
    });
}

/// Heals the open windows of `target` now.
pub fn healed(ctx: &Ctx, target: &str) {
    let at = ctx.now_ms();
    for f in ctx.timeline().faults.iter_mut() {
        if f.target == target && f.end_ms.is_none() {
            f.end_ms = Some(at);
        }
    }
}

/// Heals the open windows of `target` at `at_ms` (run-relative), e.g. when a lock expired on
/// its own earlier than the heal that noticed it.
pub fn healed_at(ctx: &Ctx, target: &str, at_ms: u64) {
    for f in ctx.timeline().faults.iter_mut() {
        if f.target == target && f.end_ms.is_none() {
            f.end_ms = Some(at_ms.max(f.start_ms));
        }
    }
}
