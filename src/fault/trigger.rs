//! Triggered faults: wait, with a deadline, for a condition observed in the system, then fire
//! at once. `holding` polls `XPENDING` (summary form, every consumer in one round trip) every
//! [`POLL`]; `backlog` and `spooled` read the server's gauges; `in_flight_requests` asks the
//! sender.

use std::time::Duration;

use tokio::time::Instant;

use crate::observe::probe;
use crate::observe::prom::{self, names};
use crate::run::steps::Ctx;
use crate::scenario::model::When;

/// How often a condition is polled.
pub const POLL: Duration = Duration::from_millis(25);

/// Waits until `when` holds (true) or `within` passed (false). `worker` is the worker a
/// `holding` condition watches.
pub async fn wait(
    ctx: &Ctx,
    when: &When,
    worker: Option<usize>,
    within: Duration,
) -> anyhow::Result<bool> {
    let deadline = Instant::now() + within;
    let (redis_url, consumer, matcher) = {
        let sys = ctx.sys.lock().await;
        match &sys.attach {
            None => (sys.redis.url().ok(), worker.map(|i| sys.consumer(i)), None),
            Some(a) => (sys.redis.url().ok(), None, a.worker_matcher.clone()),
        }
    };
    // Attach mode: the watched worker's consumer is the `GITSPY_CONSUMER` it was started with.
    let consumer = match (consumer, matcher, worker, when.holding) {
        (Some(c), ..) => Some(c),
        (None, Some(m), Some(i), Some(_)) => {
            let found = super::process::find_attached(&m).await?;
            let p = found.get(i).ok_or_else(|| {
                anyhow::anyhow!(
                    "attach mode: worker {i} is gone ({} match now)",
                    found.len()
                )
            })?;
            Some(super::process::attached_consumer(p.pid).ok_or_else(|| {
                anyhow::anyhow!(
                    "`when: {{holding: N}}` in attach mode: worker pid {} was started without {}, so the harness cannot tell which consumer in XPENDING is it (GitSpy's default name carries a random token); start the workers with {}=<unique name>, or use `when: {{backlog: N}}`",
                    p.pid,
                    super::process::CONSUMER_ENV,
                    super::process::CONSUMER_ENV
                )
            })?)
        }
        _ => None,
    };
    let mut conn = None;
    loop {
        if holds(
            ctx,
            when,
            redis_url.as_deref(),
            consumer.as_deref(),
            &mut conn,
        )
        .await
        {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn holds(
    ctx: &Ctx,
    when: &When,
    redis_url: Option<&str>,
    consumer: Option<&str>,
    conn: &mut Option<redis::aio::MultiplexedConnection>,
) -> bool {
    if let Some(n) = when.in_flight_requests {
        return ctx.sender.in_flight() >= n;
    }
    if let Some(n) = when.holding {
        let (Some(url), Some(consumer)) = (redis_url, consumer) else {
            return false;
        };
        if conn.is_none() {
            *conn = probe::connect(url).await.ok();
        }
        let Some(c) = conn.as_mut() else { return false };
        return match super::efficacy::pending_per_consumer(c, &ctx.profile.redis).await {
            Ok(per) => per
                .iter()
                .any(|(name, count)| name == consumer && *count >= n),
            Err(_) => {
                *conn = None;
                false
            }
        };
    }
    // backlog / spooled: the server's gauges (absent while Redis is down: not held).
    let url = format!("{}{}", ctx.server_url, ctx.profile.endpoints.metrics);
    let Ok(s) = prom::scrape_as(&ctx.http, &url, "server", &ctx.profile.metrics).await else {
        return false;
    };
    if let Some(n) = when.backlog {
        let waiting = s.gauge(names::QUEUE_WAITING);
        let active = s.gauge(names::QUEUE_ACTIVE);
        let spool = s.gauge(names::SPOOL_DEPTH).unwrap_or(0.0);
        return match (waiting, active) {
            (Some(w), Some(a)) => w + a + spool >= n as f64,
            _ => spool >= n as f64,
        };
    }
    if let Some(n) = when.spooled {
        return s.gauge(names::SPOOL_DEPTH).unwrap_or(0.0) >= n as f64;
    }
    false
}
