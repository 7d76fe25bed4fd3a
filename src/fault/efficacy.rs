//! Fault efficacy: what each fault hit, and the `faults_effective` check.
//!
//! Right before a worker kill, stop or freeze the harness reads the victim's pending entries
//! (`XPENDING` of its consumer, which the harness names `<run>-worker-<i>`), the delivery id of
//! each (`XRANGE`) and whether its lock is held. Redis and server faults record the sender's
//! requests in flight; after the run the ledger adds what Redis faults rejected or spooled while
//! in force, and a lookup says how many of the hit deliveries ended processed exactly once.
//!
//! A run whose crash faults hit nothing proves nothing about crash safety: `faults_effective`
//! (on by default with crash faults) then fails, and the run is INCONCLUSIVE (exit 3).

use anyhow::Context as _;

use crate::load::Ledger;
use crate::observe::probe;
use crate::report::{CheckOp, CheckRecord, FaultHit, FaultOutcome, FaultWindow};
use crate::scenario::{Check, Scenario};
use crate::verdict::classes::{DeliveryState, Lookup};
use gitspy_contract::{keys, RedisLayout};

/// One `XRANGE` entry: id and field/value pairs.
type StreamEntry = (String, Vec<(String, String)>);

/// How long before it was noticed a server's death may have happened (the crash watcher polls).
const SERVER_DEATH_MARGIN_MS: f64 = 100.0;

/// Most pending entries read per consumer (a worker holds its batch, far fewer).
const MAX_PENDING: u64 = 10_000;

/// The pending entry ids of `consumer`, oldest first.
pub async fn pending_ids(
    conn: &mut redis::aio::MultiplexedConnection,
    consumer: &str,
    layout: &RedisLayout,
) -> anyhow::Result<Vec<String>> {
    let reply: redis::RedisResult<Vec<(String, String, u64, u64)>> = redis::cmd("XPENDING")
        .arg(&layout.stream)
        .arg(&layout.group)
        .arg("-")
        .arg("+")
        .arg(MAX_PENDING)
        .arg(consumer)
        .query_async(conn)
        .await;
    match reply {
        Ok(v) => Ok(v.into_iter().map(|(id, ..)| id).collect()),
        Err(e) if e.code() == Some("NOGROUP") => Ok(Vec::new()),
        Err(e) => Err(e).context("XPENDING of one consumer"),
    }
}

/// Pending entries per consumer (`XPENDING` summary form): one round trip for every worker.
pub async fn pending_per_consumer(
    conn: &mut redis::aio::MultiplexedConnection,
    layout: &RedisLayout,
) -> anyhow::Result<Vec<(String, u64)>> {
    let reply: redis::RedisResult<redis::Value> = redis::cmd("XPENDING")
        .arg(&layout.stream)
        .arg(&layout.group)
        .query_async(conn)
        .await;
    let parts = match reply {
        Ok(redis::Value::Array(parts)) => parts,
        Ok(_) => return Ok(Vec::new()),
        Err(e) if e.code() == Some("NOGROUP") => return Ok(Vec::new()),
        Err(e) => return Err(e).context("XPENDING summary"),
    };
    let Some(consumers) = parts.get(3) else {
        return Ok(Vec::new());
    };
    // Nil when nothing is pending; else [[name, count-as-string], ...].
    let list: Option<Vec<(String, String)>> =
        redis::from_redis_value_ref(consumers).context("XPENDING consumers")?;
    Ok(list
        .unwrap_or_default()
        .into_iter()
        .map(|(c, n)| (c, n.parse().unwrap_or(0)))
        .collect())
}

/// What a worker holds now: the delivery ids pending at its consumer and how many are locked.
pub async fn worker_hit(
    redis_url: &str,
    consumer: &str,
    layout: &RedisLayout,
) -> anyhow::Result<FaultHit> {
    let mut conn = probe::connect(redis_url).await?;
    let ids = pending_ids(&mut conn, consumer, layout).await?;
    if ids.is_empty() {
        return Ok(FaultHit::default());
    }
    let mut pipe = redis::pipe();
    for id in &ids {
        pipe.cmd("XRANGE").arg(&layout.stream).arg(id).arg(id);
    }
    let entries: Vec<Vec<StreamEntry>> = pipe
        .query_async(&mut conn)
        .await
        .context("reading the pending entries")?;
    let deliveries: Vec<String> = entries
        .into_iter()
        .filter_map(|e| e.into_iter().next())
        .filter_map(|(_, fields)| fields.into_iter().find(|(k, _)| k == "id").map(|(_, v)| v))
        .collect();
    let mut pipe = redis::pipe();
    for d in &deliveries {
        pipe.cmd("EXISTS").arg(keys::fill(&layout.lock_key, d));
    }
    let locked: Vec<u64> = if deliveries.is_empty() {
        Vec::new()
    } else {
        pipe.query_async(&mut conn)
            .await
            .context("reading the locks of the pending entries")?
    };
    Ok(FaultHit {
        locks: locked.iter().filter(|n| **n > 0).count() as u64,
        pending: deliveries,
        ..FaultHit::default()
    })
}

/// Fills in what only the end of the run knows: requests a Redis fault rejected or got spooled
/// while in force (from the ledger; `t0_unix_ms` converts its unix times), and how many of the
/// deliveries a fault hit ended processed exactly once (`lookups` of those ids).
pub fn fill_after_run(
    faults: &mut [FaultWindow],
    ledger: &Ledger,
    t0_unix_ms: u64,
    end_ms: u64,
    lookups: &[Lookup],
) {
    for f in faults.iter_mut() {
        if f.outcome != FaultOutcome::Applied {
            continue;
        }
        let Some(hit) = f.hit.as_mut() else { continue };
        if f.target == super::redis::TARGET || super::network::carries_requests(&f.target) {
            let from = t0_unix_ms + f.start_ms;
            let to = t0_unix_ms + f.end_ms.unwrap_or(end_ms).max(f.start_ms);
            for e in &ledger.entries {
                if e.sent_at_ms < from || e.sent_at_ms > to {
                    continue;
                }
                if !e.outcome.is_success() {
                    hit.rejected += 1;
                } else if e.answer.as_deref() == Some("spooled") {
                    hit.spooled += 1;
                }
            }
        }
        if f.crash && f.target == "server" {
            // The requests the server's death cut short: in flight at that instant (the death
            // is noticed within a poll, hence the margin) and never answered 2xx.
            let t = t0_unix_ms + f.start_ms;
            let cut = ledger
                .entries
                .iter()
                .filter(|e| {
                    e.sent_at_ms <= t
                        && e.sent_at_ms as f64 + e.latency_ms + SERVER_DEATH_MARGIN_MS >= t as f64
                        && !e.outcome.is_success()
                })
                .count() as u64;
            hit.in_flight_requests = hit.in_flight_requests.max(cut);
            if f.kind.ends_with("spool-drain") {
                // A drain crash hits what the spool held: deliveries answered `spooled` before.
                hit.spooled = ledger
                    .entries
                    .iter()
                    .filter(|e| e.sent_at_ms <= t && e.answer.as_deref() == Some("spooled"))
                    .count() as u64;
            }
        }
        if !hit.pending.is_empty() {
            let ok = hit
                .pending
                .iter()
                .filter(|d| {
                    lookups.iter().any(|l| {
                        &l.delivery == *d
                            && l.state == DeliveryState::Processed
                            && l.logged <= 1
                            && l.effects <= 1
                    })
                })
                .count();
            hit.recovered = Some(ok as u64);
        }
    }
}

/// Every delivery id some fault hit (for one lookup after the run).
pub fn hit_ids(faults: &[FaultWindow]) -> Vec<String> {
    let mut ids: Vec<String> = faults
        .iter()
        .filter_map(|f| f.hit.as_ref())
        .flat_map(|h| h.pending.iter().cloned())
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

/// The `faults_effective` check: listed in the scenario, or on by default (`min: 1`) when the
/// run had a crash fault. `None` when it does not apply.
pub fn check(s: &Scenario, faults: &[FaultWindow]) -> Option<CheckRecord> {
    let listed = s.checks.iter().find_map(|c| match &c.value {
        Check::FaultsEffective(m) => Some(m.min),
        _ => None,
    });
    let crash: Vec<&FaultWindow> = faults.iter().filter(|f| f.crash).collect();
    let min = match listed {
        Some(min) => min,
        None if crash.is_empty() => return None,
        None => 1,
    };
    let effective = crash.iter().filter(|f| f.effective()).count() as u64;
    let missed = crash
        .iter()
        .filter(|f| f.outcome == FaultOutcome::Missed)
        .count();
    let passed = effective >= min;
    let what = crash_words(&crash);
    let mut note = if passed {
        format!(
            "{effective} of {} crash faults hit work in flight",
            crash.len()
        )
    } else if effective == 0 {
        format!(
            "inconclusive: the {what} hit no in-flight delivery, so this run proves nothing about crash safety"
        )
    } else {
        format!(
            "inconclusive: only {effective} of the {what} hit an in-flight delivery (at least {min} must)"
        )
    };
    if missed > 0 {
        note.push_str(&format!(
            "; {missed} triggered fault(s) missed their condition"
        ));
    }
    Some(CheckRecord {
        name: CheckRecord::FAULTS_EFFECTIVE.into(),
        measured: Some(effective as f64),
        op: CheckOp::Ge,
        threshold: min as f64,
        unit: "faults".into(),
        passed,
        note,
    })
}

/// `kill`, `2 kills`, `kill and freeze`: the crash faults' actions in words.
fn crash_words(crash: &[&FaultWindow]) -> String {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for f in crash {
        let action = if f.kind.contains("crash_at") {
            "crash point".to_string()
        } else {
            f.kind.rsplit(' ').next().unwrap_or("fault").to_string()
        };
        match counts.iter_mut().find(|(a, _)| *a == action) {
            Some((_, n)) => *n += 1,
            None => counts.push((action, 1)),
        }
    }
    if counts.is_empty() {
        return "crash faults".into();
    }
    let parts: Vec<String> = counts
        .into_iter()
        .map(|(a, n)| if n == 1 { a } else { format!("{n} {a}s") })
        .collect();
    parts.join(" and ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(kind: &str, hit: Option<FaultHit>, outcome: FaultOutcome) -> FaultWindow {
        FaultWindow {
            kind: kind.into(),
            target: "worker-0".into(),
            requested_ms: Some(0),
            start_ms: 10,
            end_ms: None,
            outcome,
            crash: true,
            trigger: None,
            hit,
            note: String::new(),
        }
    }

    fn scenario(checks: &str) -> Scenario {
        let yaml = format!(
            "name: t\ntarget: {{workers: 1}}\nsteps:\n  - send: {{count: 1}}\nchecks:\n{checks}"
        );
        crate::scenario::load::parse(&yaml).expect("parse")
    }

    #[test]
    fn a_kill_that_hit_nothing_is_inconclusive() {
        let s = scenario("  - no_stuck_locks\n");
        let f = [window(
            "worker kill",
            Some(FaultHit::default()),
            FaultOutcome::Applied,
        )];
        let c = check(&s, &f).expect("on by default with a crash fault");
        assert!(!c.passed);
        assert_eq!(
            c.note,
            "inconclusive: the kill hit no in-flight delivery, so this run proves nothing about crash safety"
        );
        assert_eq!(
            crate::report::RunReport::verdict_of(&[c]),
            crate::report::Verdict::Inconclusive
        );
    }

    #[test]
    fn a_kill_that_hit_pending_work_passes_and_missed_triggers_count_as_ineffective() {
        let s = scenario("  - no_stuck_locks\n");
        let hit = FaultHit {
            pending: vec!["a".into(), "b".into()],
            locks: 2,
            ..FaultHit::default()
        };
        let f = [
            window("worker kill", Some(hit), FaultOutcome::Applied),
            window("worker kill", None, FaultOutcome::Missed),
        ];
        let c = check(&s, &f).expect("check");
        assert!(c.passed, "{c:?}");
        assert_eq!(c.measured, Some(1.0));
        assert!(c.note.contains("1 triggered fault(s) missed"), "{}", c.note);
        let s = scenario("  - faults_effective: {min: 2}\n");
        let c = check(&s, &f).expect("check");
        assert!(!c.passed);
        assert!(
            c.note.starts_with("inconclusive: only 1 of the 2 kills"),
            "{}",
            c.note
        );
    }

    #[test]
    fn no_crash_fault_no_check_unless_listed() {
        assert!(check(&scenario("  - no_stuck_locks\n"), &[]).is_none());
        let c = check(&scenario("  - faults_effective: {min: 0}\n"), &[]).expect("listed");
        assert!(c.passed);
    }

    #[test]
    fn recovered_and_redis_window_are_filled_after_the_run() {
        use crate::load::{LedgerEntry, Outcome};
        let mut f = [
            window(
                "worker kill",
                Some(FaultHit {
                    pending: vec!["a".into(), "b".into()],
                    ..FaultHit::default()
                }),
                FaultOutcome::Applied,
            ),
            FaultWindow {
                target: "redis".into(),
                kind: "redis stop".into(),
                start_ms: 100,
                end_ms: Some(200),
                hit: Some(FaultHit::default()),
                ..window("redis stop", None, FaultOutcome::Applied)
            },
        ];
        let entry = |d: &str, at: u64, outcome: Outcome, answer: Option<&str>| LedgerEntry {
            delivery: d.into(),
            attempt: 1,
            duplicate_of: None,
            event: "issues".into(),
            scheduled_at_ms: at,
            sent_at_ms: at,
            outcome,
            latency_ms: 1.0,
            answer: answer.map(Into::into),
        };
        let mut ledger = Ledger::new();
        ledger.push(entry("x", 1_150, Outcome::Status(503), None));
        ledger.push(entry("y", 1_160, Outcome::Status(202), Some("spooled")));
        ledger.push(entry("z", 1_300, Outcome::Status(503), None));
        let lookup = |d: &str, state, logged| Lookup {
            delivery: d.into(),
            state,
            attempts: 1,
            logged,
            effects: logged,
            applied_at: None,
            applied_by: None,
        };
        let lookups = [
            lookup("a", DeliveryState::Processed, 1),
            lookup("b", DeliveryState::Processed, 2),
        ];
        fill_after_run(&mut f, &ledger, 1_000, 500, &lookups);
        assert_eq!(f[0].hit.as_ref().and_then(|h| h.recovered), Some(1));
        assert_eq!(
            f[0].hit_text(),
            "hit 2 in-flight deliveries; 1 of 2 recovered"
        );
        let h = f[1].hit.as_ref().expect("hit");
        assert_eq!((h.rejected, h.spooled), (1, 1));
    }
}
