//! Crash points: `worker: {crash_at: after-commit, nth: 3}` (and the server's `after-enqueue`,
//! `spool-append`, `spool-drain`) arm the failpoint of a failpoints build of GitSpy over HTTP
//! (`PUT /debug/failpoints/{name}` with fail-rs actions, on the worker's metrics port or the
//! server's port), then wait — up to `within` — for the process to abort there. The fault is
//! logged as applied at the moment the process died (the log line `failpoint <name> fired`
//! confirms where), with what it hit: the victim worker's pending deliveries read after its
//! death (exact: nothing can acknowledge them any more), or the server's requests in flight.
//! A point never reached within the deadline is disarmed and logged as missed.

use std::time::Duration;

use tokio::time::Instant;

use crate::report::FaultHit;
use crate::run::steps::Ctx;
use crate::scenario::model::{CrashAt, Which};

use super::log::{self, Entry};
use super::Pending;

/// How often the victim is checked for its exit.
const POLL: Duration = Duration::from_millis(20);

/// The build command named when the gitspy binary has no failpoints.
pub const BUILD_HINT: &str = "cargo build -p gitspy --features failpoints";

/// Whether `gitspy --version` names the `failpoints` feature.
pub fn has_failpoints(version_line: &str) -> bool {
    version_line
        .split_once("(features:")
        .is_some_and(|(_, f)| f.split([',', ')']).any(|x| x.trim() == "failpoints"))
}

pub async fn inject(
    ctx: &Ctx,
    c: CrashAt,
    worker: Option<Which>,
    within: Duration,
    pending: &Pending,
) -> anyhow::Result<String> {
    let point = c.crash_point().as_str();
    // Arm: find the process and its HTTP port.
    let (index, base, name) = {
        let sys = ctx.sys.lock().await;
        match worker {
            Some(which) => {
                let i = *super::pick_workers(ctx, which, sys.workers.len())?
                    .first()
                    .ok_or_else(|| anyhow::anyhow!("no worker to arm"))?;
                let base = sys.workers[i]
                    .url("")
                    .ok_or_else(|| anyhow::anyhow!("worker-{i} has no metrics port yet"))?;
                (Some(i), base, sys.workers[i].role.name())
            }
            None => (None, sys.server_url(""), "server".to_string()),
        }
    };
    let url = format!("{base}/debug/failpoints/{point}");
    let r = ctx
        .http
        .put(&url)
        .body(c.actions())
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("arming {point} at {url}: {e}"))?;
    anyhow::ensure!(
        r.status().is_success(),
        "arming {point} at {url} answered {}: {}\nhint: the gitspy binary needs its failpoints feature: {BUILD_HINT}",
        r.status(),
        r.text().await.unwrap_or_default().trim()
    );
    let kind = format!(
        "{} crash_at {point}",
        if index.is_some() { "worker" } else { "server" }
    );
    ctx.say(format!("armed {point} in {name} ({})", c.actions()));
    // Wait for the crash.
    let deadline = Instant::now() + within;
    loop {
        let (running, tail, in_flight) = {
            let mut sys = ctx.sys.lock().await;
            let p = match index {
                Some(i) => &mut sys.workers[i],
                None => &mut sys.server,
            };
            (p.is_running(), p.log_tail(), ctx.sender.in_flight())
        };
        if !running {
            let fired = tail.contains(&format!("failpoint {point} fired"));
            let hit = match index {
                Some(i) => worker_hit_after(ctx, i).await,
                None => Some(FaultHit {
                    in_flight_requests: in_flight,
                    ..FaultHit::default()
                }),
            };
            super::count_kill(ctx);
            let note = if fired {
                format!("failpoint {point} fired (SIGABRT) on hit {}", c.nth)
            } else {
                "the process exited, but its log does not say the failpoint fired".into()
            };
            log::applied(
                ctx,
                Entry {
                    kind,
                    target: name.clone(),
                    pending,
                    crash: true,
                    hit,
                    note: note.clone(),
                    instant: false,
                },
            );
            ctx.sys.lock().await.record();
            return Ok(format!("{name}: {note}"));
        }
        if Instant::now() >= deadline {
            let _ = ctx.http.delete(&url).send().await;
            log::missed(ctx, &kind, &name, pending, true);
            return Ok(format!(
                "missed: {name} did not reach {point} {} time(s) within {within:?}; disarmed",
                c.nth
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn worker_hit_after(ctx: &Ctx, i: usize) -> Option<FaultHit> {
    let (url, consumer) = {
        let sys = ctx.sys.lock().await;
        (sys.redis.url().ok()?, sys.consumer(i))
    };
    super::efficacy::worker_hit(&url, &consumer, &ctx.profile.redis)
        .await
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_line_says_whether_failpoints_are_compiled_in() {
        assert!(has_failpoints(
            "gitspy 0.1.0 (features: failpoints, sabotage)"
        ));
        assert!(has_failpoints("gitspy 0.1.0 (features: failpoints)"));
        assert!(!has_failpoints("gitspy 0.1.0 (features: none)"));
        assert!(!has_failpoints("gitspy 0.1.0 (features: sabotage)"));
        assert!(!has_failpoints("gitspy 0.1.0"));
    }

    #[test]
    fn nth_becomes_fail_rs_actions() {
        use crate::scenario::model::CrashPoint;
        let c = |nth| CrashAt {
            crash_at: CrashPoint::AfterCommit,
            nth,
        };
        assert_eq!(c(1).actions(), "return");
        assert_eq!(c(3).actions(), "2*off->return");
    }
}
