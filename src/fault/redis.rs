//! Redis faults: stop, kill and pause open a window that start, unpause or restart closes.
//! What they hit: the webhook requests in flight when they struck, and (filled in after the run
//! from the ledger, see [`super::efficacy::fill_after_run`]) the requests rejected or spooled
//! while Redis was down.

use crate::run::steps::Ctx;
use crate::scenario::model::RedisAction;
use crate::system::{RedisFault, Signal};

use super::log::{self, Entry};
use super::{requests_hit, Nemesis, Pending};

/// The fault-log target of every Redis fault.
pub const TARGET: &str = "redis";

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

pub async fn inject(ctx: &Ctx, action: RedisAction, pending: &Pending) -> anyhow::Result<String> {
    let sys = ctx.sys.lock().await;
    let fault = match action {
        RedisAction::Stop => RedisFault::Stop,
        RedisAction::Start => RedisFault::Start,
        RedisAction::Restart => RedisFault::Restart,
        RedisAction::Kill => RedisFault::Kill(Signal::Sigkill),
        RedisAction::Pause => RedisFault::Pause,
        RedisAction::Unpause => RedisFault::Unpause,
    };
    let describe = sys.redis.describe();
    let entry = |hit| Entry {
        kind: super::kind_name(Nemesis::Redis(action)),
        target: TARGET.into(),
        pending,
        crash: Nemesis::Redis(action).is_crash(),
        hit: Some(hit),
        note: describe.clone(),
        instant: false,
    };
    match action {
        RedisAction::Stop | RedisAction::Kill | RedisAction::Pause => {
            let hit = requests_hit(ctx);
            sys.redis.apply(fault).await?;
            *lock(&ctx.redis_down) = Some(action);
            log::applied(ctx, entry(hit));
        }
        RedisAction::Start | RedisAction::Unpause => {
            sys.redis.apply(fault).await?;
            *lock(&ctx.redis_down) = None;
            log::healed(ctx, TARGET);
        }
        RedisAction::Restart => {
            log::applied(ctx, entry(requests_hit(ctx)));
            sys.redis.apply(fault).await?;
            *lock(&ctx.redis_down) = None;
            log::healed(ctx, TARGET);
        }
    }
    Ok(String::new())
}

/// Starts (or unpauses) Redis when a fault left it down.
pub async fn heal(ctx: &Ctx) {
    let down = *lock(&ctx.redis_down);
    let Some(action) = down else { return };
    let sys = ctx.sys.lock().await;
    let r = match action {
        RedisAction::Pause => sys.redis.apply(RedisFault::Unpause).await,
        _ => sys.redis.apply(RedisFault::Start).await,
    };
    if let Err(e) = r {
        tracing::warn!(error = %e, "undoing the Redis fault");
    }
    *lock(&ctx.redis_down) = None;
    log::healed(ctx, TARGET);
}
