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

use std::collections::BTreeMap;

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

/// Whether a fault on `target` holds up deliveries on their way to the store (so the deliveries
/// waiting while it was in force are what it hit): Redis, the store, a worker, and every network
/// link but the two that only carry webhook requests.
fn holds_up_deliveries(target: &str) -> bool {
    match target.strip_prefix("network ") {
        Some(link) => !matches!(link, "sender-server" | "server-redis" | "server-store"),
        None => {
            target == super::redis::TARGET
                || target == super::store::TARGET
                || target.starts_with("worker")
        }
    }
}

/// Whether a fault on `target` meets the webhook requests (so the requests sent while it was in
/// force, and those rejected or spooled, are what it hit).
fn meets_requests(target: &str) -> bool {
    target == super::redis::TARGET
        || target.starts_with("server")
        || super::network::carries_requests(target)
}

/// Fills in what only the end of the run knows: requests that arrived while a fault was in
/// force and those it got rejected or spooled (from the ledger; `t0_unix_ms` converts its unix
/// times), the deliveries that waited to be applied meanwhile (`applied`: when the store applied
/// each looked-up delivery, `u64::MAX` for never; see [`crate::run::judge::Judged::applied`]),
/// and how many of the deliveries a fault hit ended processed exactly once (`lookups` of those
/// ids).
pub fn fill_after_run(
    faults: &mut [FaultWindow],
    ledger: &Ledger,
    t0_unix_ms: u64,
    end_ms: u64,
    lookups: &[Lookup],
    applied: Option<&BTreeMap<String, u64>>,
) {
    // When each delivery was first acknowledged (unix ms).
    let mut acked: BTreeMap<&str, u64> = BTreeMap::new();
    for e in &ledger.entries {
        if e.outcome.is_success() {
            let at = e.sent_at_ms + e.latency_ms.max(0.0) as u64;
            let first = acked.entry(e.delivery.as_str()).or_insert(at);
            *first = (*first).min(at);
        }
    }
    for f in faults.iter_mut() {
        if f.outcome != FaultOutcome::Applied {
            continue;
        }
        let hit = f.hit.get_or_insert_with(FaultHit::default);
        let from = t0_unix_ms + f.start_ms;
        let to = t0_unix_ms + f.end_ms.unwrap_or(end_ms).max(f.start_ms);
        if meets_requests(&f.target) {
            for e in &ledger.entries {
                if e.sent_at_ms < from || e.sent_at_ms > to {
                    continue;
                }
                hit.requests += 1;
                if f.target.starts_with("server") {
                    continue;
                }
                if !e.outcome.is_success() {
                    hit.rejected += 1;
                } else if e.answer.as_deref() == Some("spooled") {
                    hit.spooled += 1;
                }
            }
        }
        if let (Some(applied), true) = (applied, holds_up_deliveries(&f.target)) {
            // Acknowledged before the fault ended, not applied before it began.
            hit.waiting = acked
                .iter()
                .filter(|(d, at)| {
                    **at <= to && applied.get(**d).is_some_and(|applied| *applied > from)
                })
                .count() as u64;
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

/// The `faults_effective` check: listed in the scenario, or on by default when the run had a
/// fault. `None` when it does not apply.
///
/// Crash faults (kill, freeze, crash point, a worker link cut) must catch work in flight: at
/// least `min` of them (default 1). The other faults (Redis stop or pause, network toxics, store
/// locks, graceful stops and restarts) must meet requests or waiting deliveries while in force:
/// at least one of them, or `min` when the run has no crash fault. `min: 0` judges nothing. A
/// run whose faults hit nothing proves nothing and is INCONCLUSIVE (exit 3), never a pass.
pub fn check(s: &Scenario, faults: &[FaultWindow]) -> Option<CheckRecord> {
    let listed = s.checks.iter().find_map(|c| match &c.value {
        Check::FaultsEffective(m) => Some(m.min),
        _ => None,
    });
    let judged: Vec<&FaultWindow> = faults
        .iter()
        .filter(|f| f.outcome != FaultOutcome::Refused)
        .collect();
    if listed.is_none() && judged.is_empty() {
        return None;
    }
    let min = listed.unwrap_or(1);
    let (crash, other): (Vec<&FaultWindow>, Vec<&FaultWindow>) =
        judged.iter().partition(|f| f.crash);
    let crash_hit = crash.iter().filter(|f| f.effective()).count() as u64;
    let other_hit = other.iter().filter(|f| f.effective()).count() as u64;
    let missed = judged
        .iter()
        .filter(|f| f.outcome == FaultOutcome::Missed)
        .count();
    // The category that decides: crash faults against `min`; the others against 1 (or `min`
    // when there is no crash fault).
    let other_min = if min == 0 {
        0
    } else if crash.is_empty() {
        min
    } else {
        1
    };
    // Listed with no fault at all: nothing hit, so `min > 0` cannot hold.
    let crash_ok = if crash.is_empty() {
        !other.is_empty() || min == 0
    } else {
        crash_hit >= min
    };
    let other_ok = other.is_empty() || other_hit >= other_min;
    let passed = crash_ok && other_ok;
    // Measured: the category that failed, else the crash faults when the run had any.
    let (measured, threshold) = if crash_ok && !other.is_empty() && (!other_ok || crash.is_empty())
    {
        (other_hit, other_min)
    } else {
        (crash_hit, min)
    };
    let mut note = if passed {
        let mut p = Vec::new();
        if !crash.is_empty() {
            p.push(format!(
                "{crash_hit} of {} crash faults hit work in flight",
                crash.len()
            ));
        }
        if !other.is_empty() {
            p.push(format!(
                "{other_hit} of {} other faults met requests or waiting deliveries",
                other.len()
            ));
        }
        if p.is_empty() {
            "no fault to judge".to_string()
        } else {
            p.join("; ")
        }
    } else if !crash_ok {
        let what = crash_words(&crash);
        if crash.is_empty() {
            format!("inconclusive: the run had no fault, so it proves nothing (at least {min} must hit)")
        } else if crash_hit == 0 {
            format!(
                "inconclusive: the {what} hit no in-flight delivery, so this run proves nothing about crash safety"
            )
        } else {
            format!(
                "inconclusive: only {crash_hit} of the {what} hit an in-flight delivery (at least {min} must)"
            )
        }
    } else {
        let what = other_words(&other);
        if other_hit == 0 {
            format!(
                "inconclusive: the {what} hit nothing — no request arrived, no delivery waited (or the toxic touched no byte) while in force — so this run proves nothing about {}",
                if other.len() == 1 { "it" } else { "them" }
            )
        } else {
            format!(
                "inconclusive: only {other_hit} of the {what} met requests or waiting deliveries (at least {other_min} must)"
            )
        }
    };
    let idle: Vec<String> = judged
        .iter()
        .filter(|f| f.outcome == FaultOutcome::Applied && !f.effective())
        .map(|f| format!("{} at {:.1} s", f.kind, f.start_ms as f64 / 1000.0))
        .collect();
    if passed && !idle.is_empty() {
        note.push_str(&format!("; hit nothing: {}", idle.join(", ")));
    }
    if missed > 0 {
        note.push_str(&format!(
            "; {missed} triggered fault(s) missed their condition"
        ));
    }
    Some(CheckRecord {
        name: CheckRecord::FAULTS_EFFECTIVE.into(),
        measured: Some(measured as f64),
        op: CheckOp::Ge,
        threshold: threshold as f64,
        unit: "faults".into(),
        passed,
        note,
    })
}

/// `redis stop`, `2 × network latency`: the non-crash faults' kinds in words.
fn other_words(other: &[&FaultWindow]) -> String {
    in_words(other.iter().map(|f| f.kind.clone()), |k, n| {
        format!("{n} × {k}")
    })
}

/// `kill`, `2 kills`, `kill and freeze`: the crash faults' actions in words.
fn crash_words(crash: &[&FaultWindow]) -> String {
    if crash.is_empty() {
        return "crash faults".into();
    }
    let actions = crash.iter().map(|f| {
        if f.kind.contains("crash_at") {
            "crash point".to_string()
        } else {
            f.kind.rsplit(' ').next().unwrap_or("fault").to_string()
        }
    });
    in_words(actions, |a, n| format!("{n} {a}s"))
}

/// Each distinct label once, in first-seen order, joined by "and"; a label seen `n > 1` times
/// is written by `many`.
fn in_words(labels: impl Iterator<Item = String>, many: impl Fn(&str, usize) -> String) -> String {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for label in labels {
        match counts.iter_mut().find(|(l, _)| *l == label) {
            Some((_, n)) => *n += 1,
            None => counts.push((label, 1)),
        }
    }
    counts
        .into_iter()
        .map(|(l, n)| if n == 1 { l } else { many(&l, n) })
        .collect::<Vec<_>>()
        .join(" and ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One ledger entry: delivery `d` sent at unix ms `at`, answered 1 ms later.
    fn entry(
        d: &str,
        at: u64,
        outcome: crate::load::Outcome,
        answer: Option<&str>,
    ) -> crate::load::LedgerEntry {
        crate::load::LedgerEntry::answered(d, at, outcome, answer, 1.0)
    }

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
        use crate::load::Outcome;
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
        fill_after_run(&mut f, &ledger, 1_000, 500, &lookups, None);
        assert_eq!(f[0].hit.as_ref().and_then(|h| h.recovered), Some(1));
        assert_eq!(
            f[0].hit_text(),
            "hit 2 in-flight deliveries; 1 of 2 recovered"
        );
        let h = f[1].hit.as_ref().expect("hit");
        assert_eq!((h.rejected, h.spooled, h.requests), (1, 1, 2));
    }

    fn other(kind: &str, target: &str, start_ms: u64, end_ms: u64, hit: FaultHit) -> FaultWindow {
        FaultWindow {
            kind: kind.into(),
            target: target.into(),
            start_ms,
            end_ms: Some(end_ms),
            crash: false,
            hit: Some(hit),
            ..window(kind, None, FaultOutcome::Applied)
        }
    }

    #[test]
    fn an_outage_that_met_no_request_and_no_waiting_delivery_is_inconclusive() {
        let s = scenario("  - no_stuck_locks\n");
        let f = [other(
            "redis stop",
            "redis",
            100,
            5_100,
            FaultHit::default(),
        )];
        let c = check(&s, &f).expect("on by default with any fault");
        assert!(!c.passed);
        assert!(
            c.note
                .starts_with("inconclusive: the redis stop hit nothing"),
            "{}",
            c.note
        );
        assert_eq!(
            f[0].hit_text(),
            "hit nothing: no request arrived and no delivery waited"
        );
        assert_eq!(
            crate::report::RunReport::verdict_of(&[c]),
            crate::report::Verdict::Inconclusive
        );
        // Deliveries waiting in Redis while it was down: the outage held them up.
        let waited = FaultHit {
            waiting: 4,
            ..FaultHit::default()
        };
        let f = [other("redis stop", "redis", 100, 5_100, waited)];
        let c = check(&s, &f).expect("check");
        assert!(c.passed, "{c:?}");
        assert_eq!(f[0].hit_text(), "4 deliveries waited");
        // `min: 0` judges nothing.
        let f = [other(
            "redis stop",
            "redis",
            100,
            5_100,
            FaultHit::default(),
        )];
        assert!(
            check(&scenario("  - faults_effective: {min: 0}\n"), &f)
                .expect("listed")
                .passed
        );
    }

    #[test]
    fn a_toxic_must_act_on_its_links_and_meet_traffic() {
        use crate::report::NetworkHit;
        let s = scenario("  - no_stuck_locks\n");
        let net = |delayed: u64| NetworkHit {
            links: vec!["worker-0-redis".into()],
            connections: 3,
            bytes_delayed: delayed,
            ..NetworkHit::default()
        };
        // Latency on an idle link: the workers' polls were delayed, but nothing waited.
        let idle = FaultHit {
            network: Some(net(900)),
            ..FaultHit::default()
        };
        let f = [other("network latency", "network redis", 0, 9_000, idle)];
        let c = check(&s, &f).expect("check");
        assert!(!c.passed, "{c:?}");
        assert!(
            f[0].hit_text().starts_with("no effect: "),
            "{}",
            f[0].hit_text()
        );
        // Traffic met, but the toxic touched no byte (e.g. `limit_data` above every reply).
        let untouched = FaultHit {
            requests: 40,
            waiting: 12,
            network: Some(net(0)),
            ..FaultHit::default()
        };
        assert!(!other("network limit_data", "network redis", 0, 9_000, untouched).effective());
        let landed = FaultHit {
            waiting: 12,
            network: Some(net(900)),
            ..FaultHit::default()
        };
        assert!(other("network latency", "network redis", 0, 9_000, landed).effective());
        // The server only reads the store: a toxic there counts once it acted on a connection.
        let reads = FaultHit {
            network: Some(net(400)),
            ..FaultHit::default()
        };
        assert!(other("network reset", "network server-store", 0, 3_000, reads).effective());
        let none = FaultHit {
            requests: 30,
            waiting: 9,
            network: Some(net(0)),
            ..FaultHit::default()
        };
        assert!(!other("network reset", "network server-store", 0, 3_000, none).effective());
    }

    #[test]
    fn each_category_of_fault_must_land_once() {
        let s = scenario("  - no_stuck_locks\n");
        let kill = window(
            "worker kill",
            Some(FaultHit {
                pending: vec!["a".into()],
                ..FaultHit::default()
            }),
            FaultOutcome::Applied,
        );
        let idle_lock = other("store lock", "store", 0, 5_000, FaultHit::default());
        let c = check(&s, &[kill.clone(), idle_lock.clone()]).expect("check");
        assert!(!c.passed, "{c:?}");
        assert!(c.note.contains("the store lock hit nothing"), "{}", c.note);
        let busy_lock = other(
            "store lock",
            "store",
            0,
            5_000,
            FaultHit {
                waiting: 3,
                ..FaultHit::default()
            },
        );
        let c = check(&s, &[kill, busy_lock, idle_lock]).expect("check");
        assert!(c.passed, "{c:?}");
        assert!(
            c.note.contains("hit nothing: store lock at 0.0 s"),
            "{}",
            c.note
        );
    }

    #[test]
    fn waiting_counts_deliveries_acknowledged_before_the_end_and_applied_after_the_start() {
        use crate::load::Outcome;
        let entry = |d: &str, at: u64| entry(d, at, Outcome::Status(202), None);
        let mut ledger = Ledger::new();
        // t0 = 1_000; the lock holds from 2_000 to 3_000 (unix 3_000..4_000).
        ledger.push(entry("before-done", 2_000)); // applied before the lock: not held up
        ledger.push(entry("held", 2_500)); // applied after the lock began
        ledger.push(entry("during", 3_500)); // arrived while locked, applied after
        ledger.push(entry("after", 4_500)); // arrived after the lock ended
        ledger.push(entry("never", 3_900)); // never applied
        let applied: BTreeMap<String, u64> = [
            ("before-done", 2_100),
            ("held", 4_100),
            ("during", 4_200),
            ("after", 4_600),
            ("never", u64::MAX),
        ]
        .into_iter()
        .map(|(d, t)| (d.to_string(), t))
        .collect();
        let mut f = [
            other("store lock", "store", 2_000, 3_000, FaultHit::default()),
            other(
                "network partition",
                "network sender-server",
                2_000,
                3_000,
                FaultHit::default(),
            ),
        ];
        fill_after_run(&mut f, &ledger, 1_000, 9_000, &[], Some(&applied));
        let lock = f[0].hit.as_ref().expect("hit");
        assert_eq!((lock.waiting, lock.requests), (3, 0));
        // The sender→server link holds up no delivery; it met the requests sent meanwhile.
        let link = f[1].hit.as_ref().expect("hit");
        assert_eq!((link.waiting, link.requests), (0, 2));
    }
}
