//! The scenario's checks, one function per check kind, each a pure function of the run's
//! [`Evidence`]. [`evaluate`] adds the checks every run gets (`steps`, `final_drain`) and then
//! the scenario's, in file order. A new check is one variant in `scenario::Check`, one function
//! here and one arm in [`evaluate`].

use std::collections::{BTreeMap, BTreeSet};

use super::checks::{self as vchecks, Measured};
use super::classes::Class;
use super::evidence::Evidence;
use super::promql::promql;
use super::{accounting, board, ingress};
use crate::observe::prom::names;
use crate::observe::{TargetSel, Window};
use crate::report::{CheckOp, CheckRecord};
use crate::scenario::model::{BacklogLimit, DeliveryLimits, MaxCount, MaxDuration};
use crate::scenario::{At, Check};

/// Every check of a run: the automatic ones first, then the scenario's in file order.
pub fn evaluate(ev: &Evidence, checks: &[At<Check>]) -> Vec<CheckRecord> {
    let mut out = Vec::new();
    out.extend(steps(ev));
    out.extend(final_drain(ev));
    out.extend(baseline(ev, checks));
    let mut promql_n = 0;
    for (index, c) in checks.iter().enumerate() {
        match &c.value {
            Check::Deliveries(l) => out.extend(deliveries(ev, l)),
            Check::NoStuckLocks => out.push(no_stuck_locks(ev)),
            Check::Backlog(b) => out.push(backlog(ev, b)),
            Check::Failed(m) => out.push(counter_max(ev, "failed", names::JOBS_FAILED, m)),
            Check::Retries(m) => out.push(counter_max(ev, "retries", names::JOBS_RETRIED, m)),
            Check::JobDurationP95(m) => out.push(job_duration_p95(ev, m)),
            Check::ProcessedMatchesStore => out.push(accounting::processed_matches_store(ev)),
            Check::IngressMatchesLedger => out.push(ingress::ingress_matches_ledger(ev)),
            Check::ReplayIdentical(names) => out.push(replay_identical(ev, names)),
            Check::ReplayVerify => out.push(replay_verify(ev)),
            Check::ReplayOrderIndependent => out.push(replay_order_independent(ev)),
            Check::BoardMatchesModel => out.push(board_matches_model(ev)),
            Check::DuplicateAnswers => out.push(duplicate_answers(ev)),
            Check::RejectsWithinRedisTimeout(m) => {
                out.push(rejects_within_redis_timeout(ev, m.margin.value.get()))
            }
            // Judged with the fault log in `fault::efficacy::check`.
            Check::FaultsEffective(_) => {}
            // Added above, before the scenario's own.
            Check::Baseline(_) => {}
            Check::Promql(q) => {
                promql_n += 1;
                out.extend(promql(ev.prom.get(&index), q, promql_n, ev.t0_unix_ms));
            }
            Check::Alert(a) => out.extend(super::promql::alert(
                ev.prom.get(&index),
                a,
                &ev.faults,
                ev.t0_unix_ms,
            )),
        }
    }
    out
}

/// The baseline: the data checks every run gets unless the scenario lists them itself (then its
/// own bounds stand) or says `baseline: false`. A check is added only where its evidence can
/// exist — a board model, managed workers, a Redis probe, a shuffled or verified replay — so the
/// baseline never fails a run for what the run could not observe. A scenario that forgets
/// `board_matches_model` still catches a fold by arrival order; one that lists only
/// `deliveries: {lost: 0}` still catches copies answered `202` and a processed count that lies.
pub fn baseline(ev: &Evidence, checks: &[At<Check>]) -> Vec<CheckRecord> {
    if checks
        .iter()
        .any(|c| matches!(c.value, Check::Baseline(false)))
    {
        return Vec::new();
    }
    let listed = |key: &str| checks.iter().any(|c| c.value.key() == key);
    let mut out = Vec::new();
    // Managed: the harness started the workers (and the server); attach mode has none.
    let managed = !ev.workers.is_empty();
    if !listed("deliveries") {
        // Lost, duplicated and unexpected are never allowed; failed (dead letters) and
        // unacknowledged (the sender gave up) depend on the scenario, so only a listed
        // `deliveries` bounds them. An attached deployment's listing spans its whole history,
        // so what it processed before the run would read `unexpected`.
        let classes: &[Class] = if managed {
            &[Class::Lost, Class::Duplicated, Class::Unexpected]
        } else {
            &[Class::Lost, Class::Duplicated]
        };
        for &class in classes {
            out.extend(
                vchecks::deliveries(&ev.verdict, &BTreeMap::from([(class, 0)]))
                    .into_iter()
                    .map(|r| from_vcheck(r, CheckOp::Le, 0.0, "deliveries")),
            );
        }
    }
    if !listed("board_matches_model") && !ev.model.is_empty() {
        out.push(board_matches_model(ev));
    }
    if !listed("duplicate_answers") && !ev.ledger.entries.is_empty() {
        out.push(duplicate_answers(ev));
    }
    if !listed("processed_matches_store") && managed {
        out.push(accounting::processed_matches_store(ev));
    }
    // Managed only (an attached server may take webhooks from others during the run), with
    // GitSpy's counters, and not after a panic (the aborted sends left no ledger entry).
    if !listed("ingress_matches_ledger")
        && managed
        && ev.gitspy_metrics
        && !ev.panicked
        && ingress::observable(ev)
    {
        out.push(ingress::ingress_matches_ledger(ev));
    }
    if !listed("no_stuck_locks") && ev.probe.is_some() {
        out.push(no_stuck_locks(ev));
    }
    if !listed("replay_order_independent") && !ev.shuffles.is_empty() {
        out.push(replay_order_independent(ev));
    }
    if !listed("replay_verify") && ev.replays.values().any(|r| r.verified.is_some()) {
        out.push(replay_verify(ev));
    }
    for c in &mut out {
        c.note = if c.note.is_empty() {
            BASELINE_NOTE.into()
        } else {
            format!("{} ({BASELINE_NOTE})", c.note)
        };
    }
    out
}

/// How a baseline check says where it came from.
pub const BASELINE_NOTE: &str = "baseline: on in every run, `baseline: false` turns it off";

/// A check's record, passed when `measured op threshold` holds (never without a measurement).
pub(super) fn record(
    name: &str,
    measured: Option<f64>,
    op: CheckOp,
    threshold: f64,
    unit: &str,
    note: String,
) -> CheckRecord {
    CheckRecord {
        name: name.into(),
        measured,
        op,
        threshold,
        unit: unit.into(),
        passed: op.holds(measured, threshold),
        note,
    }
}

fn from_vcheck(c: vchecks::CheckResult, op: CheckOp, threshold: f64, unit: &str) -> CheckRecord {
    let measured = match c.measured {
        Measured::Number(n) if n.is_finite() => Some(n),
        _ => None,
    };
    CheckRecord {
        name: c.name,
        measured,
        op,
        threshold,
        unit: unit.into(),
        passed: c.passed && measured.is_some(),
        note: c.note.unwrap_or_default(),
    }
}

fn whole_run(ev: &Evidence) -> Window {
    Window {
        from_ms: ev.t0_unix_ms,
        to_ms: u64::MAX,
    }
}

/// `steps`: every step did what it said (present only when one did not, or the executor
/// panicked).
pub fn steps(ev: &Evidence) -> Option<CheckRecord> {
    let mut notes = ev.step_problems.clone();
    if ev.panicked {
        notes.push("the step executor panicked".into());
    }
    (!notes.is_empty()).then(|| {
        record(
            "steps",
            Some(notes.len() as f64),
            CheckOp::Le,
            0.0,
            "",
            notes.join("; "),
        )
    })
}

/// `final_drain`: the system drained after the faults were undone (present only when not).
pub fn final_drain(ev: &Evidence) -> Option<CheckRecord> {
    ev.drain_error.as_ref().map(|e| {
        record(
            "final_drain",
            Some(1.0),
            CheckOp::Le,
            0.0,
            "",
            format!("{e} (after faults were undone)"),
        )
    })
}

/// `deliveries`: one check per verdict class bound, `deliveries.<class>`.
pub fn deliveries(ev: &Evidence, l: &DeliveryLimits) -> Vec<CheckRecord> {
    let maxima: BTreeMap<Class, u64> = [
        (Class::Lost, l.lost),
        (Class::Duplicated, l.duplicated),
        (Class::Unexpected, l.unexpected),
        (Class::Failed, l.failed),
        (Class::Unacknowledged, l.unacknowledged),
    ]
    .into_iter()
    .collect();
    maxima
        .iter()
        .flat_map(|(class, max)| {
            vchecks::deliveries(&ev.verdict, &BTreeMap::from([(*class, *max)]))
                .into_iter()
                .map(|r| from_vcheck(r, CheckOp::Le, *max as f64, "deliveries"))
        })
        .collect()
}

/// `no_stuck_locks`: no delivery lock without a TTL, with a TTL above the lock TTL, or left
/// after the drain.
pub fn no_stuck_locks(ev: &Evidence) -> CheckRecord {
    match &ev.probe {
        Some(p) => from_vcheck(vchecks::no_stuck_locks(p), CheckOp::Le, 0.0, "locks"),
        None => record(
            "no_stuck_locks",
            None,
            CheckOp::Le,
            0.0,
            "locks",
            "Redis could not be probed".into(),
        ),
    }
}

/// `backlog`: everything not yet processed (queue waiting + active, delayed retries included, + spool
/// depth, from the server) is back to `max` within `within` of the end of the last fault.
pub fn backlog(ev: &Evidence, b: &BacklogLimit) -> CheckRecord {
    let points = ev.series.backlog_points("server");
    let within = b.within.value.get().as_millis() as u64;
    let r = vchecks::backlog(&points, ev.last_fault_end_ms(), b.max as f64, within);
    from_vcheck(r, CheckOp::Le, within as f64 / 1000.0, "s")
}

/// `failed` / `retries`: a workers' counter increase bounded above.
pub fn counter_max(ev: &Evidence, name: &str, metric: &str, m: &MaxCount) -> CheckRecord {
    let inc = ev
        .series
        .counter_increase(TargetSel::Role("worker"), metric, &[], whole_run(ev));
    let c = vchecks::counter_max(name, &inc, m.max as f64, &vchecks::Tolerance::exact());
    from_vcheck(c, CheckOp::Le, m.max as f64, "jobs")
}

/// `job_duration_p95`: p95 of the workers' job duration over the run.
pub fn job_duration_p95(ev: &Evidence, m: &MaxDuration) -> CheckRecord {
    let w = ev.series.histogram_window(
        TargetSel::Role("worker"),
        names::JOB_DURATION_MS,
        whole_run(ev),
    );
    let max_ms = m.max.value.get().as_secs_f64() * 1000.0;
    from_vcheck(
        vchecks::job_duration_p95(&w, max_ms),
        CheckOp::Le,
        max_ms,
        "ms",
    )
}

/// `replay_identical[a,b,…]`: the named replays wrote byte-identical boards.
pub fn replay_identical(ev: &Evidence, names: &[At<String>]) -> CheckRecord {
    let dirs: Vec<_> = names
        .iter()
        .filter_map(|n| {
            ev.replays
                .get(&n.value)
                .map(|r| (n.value.clone(), r.dir.clone()))
        })
        .collect();
    let (diffs, note) = compare_replays(&dirs);
    let label: Vec<&str> = names.iter().map(|n| n.value.as_str()).collect();
    record(
        &format!("replay_identical[{}]", label.join(",")),
        Some(diffs as f64),
        CheckOp::Le,
        0.0,
        "files",
        note,
    )
}

/// `replay_verify`: every replay with `verify: true` matched the live store.
pub fn replay_verify(ev: &Evidence) -> CheckRecord {
    let verifies: Vec<(&String, bool)> = ev
        .replays
        .iter()
        .filter_map(|(n, r)| r.verified.map(|ok| (n, ok)))
        .collect();
    let bad: Vec<&str> = verifies
        .iter()
        .filter(|(_, ok)| !ok)
        .map(|(n, _)| n.as_str())
        .collect();
    let measured = (!verifies.is_empty()).then_some(bad.len() as f64);
    record(
        "replay_verify",
        measured,
        CheckOp::Le,
        0.0,
        "replays",
        if bad.is_empty() {
            format!("{} verified", verifies.len())
        } else {
            format!("differences in {}", bad.join(", "))
        },
    )
}

/// `replay_order_independent`: every replay with `shuffle` folded to the same boards in a
/// seeded shuffled order with injected duplicates as in log order, and — for a window over the
/// whole log — as the live boards. Measured: boards that differ (a replay that could not be
/// compared counts as one).
pub fn replay_order_independent(ev: &Evidence) -> CheckRecord {
    let mut differing = 0usize;
    let mut notes = Vec::new();
    let mut boards = 0usize;
    for (name, s) in &ev.shuffles {
        if let Some(e) = &s.error {
            differing += 1;
            notes.push(format!("{name}: {e}"));
            continue;
        }
        if s.in_order.is_empty() {
            differing += 1;
            notes.push(format!("{name}: the replay folded no board"));
            continue;
        }
        let repos: BTreeSet<&String> = s
            .in_order
            .keys()
            .chain(s.shuffled.keys())
            .chain(s.reversed.keys())
            .collect();
        for repo in repos {
            boards += 1;
            let a = s.in_order.get(repo);
            let b = s.shuffled.get(repo);
            if a != b {
                differing += 1;
                notes.push(format!(
                    "{name} {repo}: shuffled (seed {}, {} duplicates) {} ≠ in order {}",
                    s.seed,
                    s.duplicates,
                    b.map_or("no board", String::as_str),
                    a.map_or("no board", String::as_str)
                ));
            }
            if !s.reversed.is_empty() && s.reversed.get(repo) != a {
                differing += 1;
                notes.push(format!(
                    "{name} {repo}: newest first {} ≠ in order {}",
                    s.reversed.get(repo).map_or("no board", String::as_str),
                    a.map_or("no board", String::as_str)
                ));
            }
            for p in &s.prefixes {
                if p.in_order.get(repo) != p.reversed.get(repo) {
                    differing += 1;
                    notes.push(format!(
                        "{name} {repo}: the log up to unix ms {} folded newest first {} ≠ in order {}",
                        p.to_ms,
                        p.reversed.get(repo).map_or("no board", String::as_str),
                        p.in_order.get(repo).map_or("no board", String::as_str)
                    ));
                }
            }
            if let Some(live) = &s.live {
                let l = live.get(repo);
                if l != a {
                    differing += 1;
                    notes.push(format!(
                        "{name} {repo}: live {} ≠ replayed {}",
                        l.map_or("no board", String::as_str),
                        a.map_or("no board", String::as_str)
                    ));
                }
            }
        }
    }
    let measured = (!ev.shuffles.is_empty()).then_some(differing as f64);
    let note = if ev.shuffles.is_empty() && !ev.step_problems.is_empty() {
        "no replay with `shuffle` ran: a step failed before it (see `steps`)".to_owned()
    } else if ev.shuffles.is_empty() {
        "no replay with `shuffle` ran".to_owned()
    } else if notes.is_empty() {
        format!(
            "{boards} board(s) equal in log order, shuffled with duplicates{}{}",
            match ev.shuffles.values().map(|s| s.prefixes.len()).max() {
                _ if ev.shuffles.values().any(|s| s.reversed.is_empty()) => String::new(),
                Some(n) if n > 0 =>
                    format!(", newest first (and {n} prefixes of the log both ways)"),
                _ => ", newest first".to_owned(),
            },
            if ev.shuffles.values().any(|s| s.live.is_some()) {
                " and live"
            } else {
                ""
            }
        )
    } else {
        notes.join("; ")
    };
    record(
        "replay_order_independent",
        measured,
        CheckOp::Le,
        0.0,
        "boards",
        note,
    )
}

/// How many differing cards a `board_matches_model` note names.
const BOARD_DIFFS_SHOWN: usize = 3;

/// `board_matches_model`: the live board of every repository the generator wrote to equals the
/// board the generator's own model gives for the deliveries the store reports processed.
/// Measured: differing cards (a board that could not be read counts as one).
pub fn board_matches_model(ev: &Evidence) -> CheckRecord {
    let name = "board_matches_model";
    if ev.model.is_empty() {
        return record(
            name,
            None,
            CheckOp::Le,
            0.0,
            "cards",
            "no generated delivery with an item was sent: nothing to compare".into(),
        );
    }
    let expected = ev.model.expected(|id| ev.processed(id));
    let mut differing = 0usize;
    let mut notes = Vec::new();
    let mut cards = 0usize;
    let mut tombstoned = 0usize;
    let mut folded = 0usize;
    for repo in ev.model.repos() {
        let exp = expected.get(&repo).cloned().unwrap_or_default();
        cards += exp.cards.len();
        tombstoned += exp.tombstoned.len();
        folded = folded.max(exp.deliveries);
        match ev.boards.get(&repo) {
            Some(Ok(live)) => match board::compare(&exp, live) {
                Ok(diffs) => {
                    differing += diffs.len();
                    notes.extend(diffs.into_iter().map(|d| format!("{repo} {d}")));
                }
                Err(e) => {
                    differing += 1;
                    notes.push(format!("{repo}: unreadable board: {e}"));
                }
            },
            Some(Err(e)) => {
                differing += 1;
                notes.push(format!("{repo}: {e}"));
            }
            None => {
                differing += 1;
                notes.push(format!("{repo}: the board was not fetched"));
            }
        }
    }
    let note = if notes.is_empty() {
        format!(
            "{cards} card(s) equal to the model of {folded} processed deliveries \
             ({tombstoned} deleted or transferred item(s) without a card, as required)"
        )
    } else {
        let more = notes.len().saturating_sub(BOARD_DIFFS_SHOWN);
        let mut shown: Vec<String> = notes.into_iter().take(BOARD_DIFFS_SHOWN).collect();
        if more > 0 {
            shown.push(format!("{more} more"));
        }
        format!("live ≠ model: {}", shown.join("; "))
    };
    record(
        name,
        Some(differing as f64),
        CheckOp::Le,
        0.0,
        "cards",
        note,
    )
}

/// `duplicate_answers`: once an id has been accepted (a 2xx other than the duplicate answer),
/// every later request for it must get the duplicate answer (`200`, status `duplicate`), and
/// so must every concurrent copy but one. Counted: acceptances of an id beyond its first — the
/// system took the id in again. Not counted: non-2xx answers and timeouts (they claim nothing),
/// ids the store dead-lettered (a failed delivery may be redelivered), and a copy answered
/// `spooled` while a Redis fault window was open (the server cannot see Redis then).
pub fn duplicate_answers(ev: &Evidence) -> CheckRecord {
    let mut by_id: BTreeMap<&str, Vec<&crate::load::LedgerEntry>> = BTreeMap::new();
    for e in &ev.ledger.entries {
        by_id.entry(e.delivery.as_str()).or_default().push(e);
    }
    let failed: BTreeSet<&str> = ev
        .lookups
        .values()
        .filter(|l| l.state == super::classes::DeliveryState::Failed)
        .map(|l| l.delivery.as_str())
        .collect();
    let redis_down = |at: u64| {
        ev.faults.iter().any(|f| {
            f.target == "redis"
                && ev.t0_unix_ms + f.start_ms <= at
                && f.end_ms.is_none_or(|end| at <= ev.t0_unix_ms + end)
        })
    };
    let mut checked = 0u64;
    let mut wrong = Vec::new();
    let mut exempt = 0u64;
    for (id, attempts) in &by_id {
        if failed.contains(id) {
            continue;
        }
        let mut accepted = false;
        for a in attempts {
            if !a.outcome.is_success() {
                continue;
            }
            if a.is_duplicate_answer() {
                checked += u64::from(accepted);
                continue;
            }
            if !accepted {
                accepted = true;
                continue;
            }
            checked += 1;
            if a.answer.as_deref() == Some("spooled") && redis_down(a.sent_at_ms) {
                exempt += 1;
                continue;
            }
            wrong.push(format!(
                "{id} attempt {} got {} {}",
                a.attempt,
                a.outcome,
                a.answer.as_deref().unwrap_or("")
            ));
        }
    }
    let mut note = format!("{checked} acknowledged request(s) for an id accepted before");
    if exempt > 0 {
        note.push_str(&format!(
            "; {exempt} spooled during a Redis outage (not checkable by the server)"
        ));
    }
    if !wrong.is_empty() {
        note.push_str(&format!(
            "; not answered duplicate: {}",
            wrong.iter().take(5).cloned().collect::<Vec<_>>().join(", ")
        ));
    }
    record(
        "duplicate_answers",
        Some(wrong.len() as f64),
        CheckOp::Le,
        0.0,
        "requests",
        note,
    )
}

/// Whether a fault-log window cuts the server from Redis: a partition of a link carrying the
/// server's Redis traffic (not `all`, which cuts the sender too), or a Redis stop, kill, pause
/// or restart.
fn cuts_server_from_redis(f: &crate::report::FaultWindow) -> bool {
    match f.kind.as_str() {
        "network partition" => {
            matches!(f.target.as_str(), "network server-redis" | "network redis")
        }
        "redis stop" | "redis kill" | "redis pause" | "redis restart" => true,
        _ => false,
    }
}

/// `rejects_within_redis_timeout`: in every window where the server was cut from Redis, the
/// slowest 503 — and any request of the window left without an answer for longer — against
/// the server's Redis timeout plus `margin`. A request belongs to a window when it was in
/// flight during it.
pub fn rejects_within_redis_timeout(ev: &Evidence, margin: std::time::Duration) -> CheckRecord {
    let name = "rejects_within_redis_timeout";
    let margin_ms = margin.as_millis() as u64;
    let Some((timeout_ms, source)) = ev.redis_timeout.clone() else {
        return record(
            name,
            None,
            CheckOp::Le,
            0.0,
            "ms",
            "the server's Redis timeout is unknown".into(),
        );
    };
    let limit = (timeout_ms + margin_ms) as f64;
    let windows: Vec<(u64, u64)> = ev
        .faults
        .iter()
        .filter(|f| f.outcome == crate::report::FaultOutcome::Applied && cuts_server_from_redis(f))
        .map(|f| {
            (
                ev.t0_unix_ms + f.start_ms,
                ev.t0_unix_ms + f.end_ms.unwrap_or(u64::MAX / 2),
            )
        })
        .collect();
    let basis = format!("Redis timeout {timeout_ms} ms ({source}) + margin {margin_ms} ms");
    if windows.is_empty() {
        return record(
            name,
            None,
            CheckOp::Le,
            limit,
            "ms",
            format!("no fault cut the server from Redis, so nothing was measured ({basis})"),
        );
    }
    let in_window = |e: &&crate::load::LedgerEntry| {
        let from = e.sent_at_ms;
        let to = e.sent_at_ms + e.latency_ms.ceil() as u64;
        windows.iter().any(|(s, end)| from <= *end && to >= *s)
    };
    let mut rejected: Vec<&crate::load::LedgerEntry> = ev
        .ledger
        .entries
        .iter()
        .filter(in_window)
        .filter(|e| e.outcome == crate::load::Outcome::Status(503))
        .collect();
    // A request of the window with no answer at all, for longer than the limit, is a hang the
    // check exists to catch; one whose own timeout was shorter than the limit proves nothing.
    let hung: Vec<&crate::load::LedgerEntry> = ev
        .ledger
        .entries
        .iter()
        .filter(in_window)
        .filter(|e| e.outcome.is_indeterminate() && e.latency_ms > limit)
        .collect();
    if rejected.is_empty() && hung.is_empty() {
        return record(
            name,
            None,
            CheckOp::Le,
            limit,
            "ms",
            format!(
                "no request was answered 503 while the server was cut from Redis ({} window(s)), so nothing was measured ({basis})",
                windows.len()
            ),
        );
    }
    rejected.sort_by(|a, b| a.latency_ms.total_cmp(&b.latency_ms));
    let p99 = rejected
        .get(((rejected.len() as f64 * 0.99).ceil() as usize).saturating_sub(1))
        .map_or(0.0, |e| e.latency_ms);
    let slowest = rejected
        .iter()
        .chain(hung.iter())
        .max_by(|a, b| a.latency_ms.total_cmp(&b.latency_ms));
    let max = slowest.map_or(0.0, |e| e.latency_ms);
    let mut note = format!(
        "{} request(s) answered 503 in {} window(s) cutting the server from Redis: slowest {:.0} ms, p99 {:.0} ms ({basis})",
        rejected.len(),
        windows.len(),
        rejected.last().map_or(0.0, |e| e.latency_ms),
        p99,
    );
    if !hung.is_empty() {
        note.push_str(&format!(
            "; {} request(s) got no answer within {:.0} ms or more (a hung ingress), e.g. {} attempt {}",
            hung.len(),
            hung.iter().map(|e| e.latency_ms).fold(f64::INFINITY, f64::min),
            hung[0].delivery,
            hung[0].attempt
        ));
    } else if max > limit {
        if let Some(e) = slowest {
            note.push_str(&format!(
                "; {} attempt {} waited {:.0} ms for its 503",
                e.delivery, e.attempt, e.latency_ms
            ));
        }
    }
    record(
        name,
        Some((max * 10.0).round() / 10.0),
        CheckOp::Le,
        limit,
        "ms",
        note,
    )
}

/// Number of board files that differ between the named replay outputs (all against the first).
fn compare_replays(dirs: &[(String, std::path::PathBuf)]) -> (usize, String) {
    let files = |d: &std::path::Path| -> BTreeMap<String, Vec<u8>> {
        std::fs::read_dir(d)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".kanban.json"))
            .filter_map(|e| {
                Some((
                    e.file_name().to_string_lossy().into_owned(),
                    std::fs::read(e.path()).ok()?,
                ))
            })
            .collect()
    };
    let Some((first_name, first_dir)) = dirs.first() else {
        return (1, "no replay output to compare".into());
    };
    let base = files(first_dir);
    if base.is_empty() {
        return (1, format!("replay {first_name} wrote no board"));
    }
    let mut diffs = 0;
    let mut notes = Vec::new();
    for (name, dir) in &dirs[1..] {
        let other = files(dir);
        let keys: BTreeSet<_> = base.keys().chain(other.keys()).collect();
        for k in keys {
            if base.get(k) != other.get(k) {
                diffs += 1;
                notes.push(format!("{k} differs between {first_name} and {name}"));
            }
        }
    }
    if notes.is_empty() {
        (
            0,
            format!(
                "{} board file(s) byte-identical across {} replays",
                base.len(),
                dirs.len()
            ),
        )
    } else {
        (diffs, notes.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::{LedgerEntry, Outcome};
    use crate::report::FaultWindow;

    fn attempt(id: &str, n: u32, at: u64, status: u16, answer: &str) -> LedgerEntry {
        LedgerEntry {
            delivery: id.into(),
            attempt: n,
            duplicate_of: (n > 1).then(|| id.to_owned()),
            event: "issues".into(),
            scheduled_at_ms: at,
            sent_at_ms: at,
            outcome: Outcome::Status(status),
            latency_ms: 5.0,
            answer: Some(answer.into()),
        }
    }

    fn evidence(entries: Vec<LedgerEntry>) -> Evidence {
        let mut ev = Evidence::default();
        ev.ledger.entries = entries;
        ev.sends = Evidence::sends_of(&ev.ledger);
        ev.classify();
        ev
    }

    #[test]
    fn duplicate_answers_counts_every_second_acceptance_of_an_id() {
        let ok = evidence(vec![
            attempt("a", 1, 0, 202, "queued"),
            attempt("a", 2, 100, 200, "duplicate"),
            attempt("b", 1, 0, 503, "queue unavailable"),
            attempt("b", 2, 100, 202, "queued"),
            attempt("b", 3, 100, 200, "duplicate"),
        ]);
        let r = duplicate_answers(&ok);
        assert!(r.passed, "{r:?}");
        assert_eq!(r.measured, Some(0.0));
        assert!(
            r.note.starts_with("2 acknowledged request(s)"),
            "{}",
            r.note
        );

        // An id taken in twice: concurrent copies count as well as later ones.
        let bad = evidence(vec![
            attempt("a", 1, 0, 202, "queued"),
            attempt("a", 2, 0, 202, "queued"),
            attempt("a", 3, 100, 202, "queued"),
        ]);
        let r = duplicate_answers(&bad);
        assert!(!r.passed);
        assert_eq!(r.measured, Some(2.0));
        assert!(r.note.contains("a attempt 2 got 202 queued"), "{}", r.note);
    }

    #[test]
    fn duplicate_answers_exempts_spooled_copies_during_a_redis_outage() {
        let mut ev = evidence(vec![
            attempt("a", 1, 1_000, 202, "queued"),
            attempt("a", 2, 5_000, 202, "spooled"),
        ]);
        ev.faults.push(FaultWindow {
            kind: "redis stop".into(),
            target: "redis".into(),
            requested_ms: None,
            start_ms: 2_000,
            end_ms: Some(9_000),
            outcome: Default::default(),
            crash: false,
            trigger: None,
            hit: None,
            note: String::new(),
        });
        let r = duplicate_answers(&ev);
        assert!(r.passed, "{r:?}");
        assert!(
            r.note.contains("1 spooled during a Redis outage"),
            "{}",
            r.note
        );
        ev.faults.clear();
        assert!(!duplicate_answers(&ev).passed);
    }

    #[test]
    fn replay_order_independence_compares_shuffled_in_order_and_live() {
        use crate::verdict::ShuffleOutcome;
        let digests = |d: &str| BTreeMap::from([("o/r".to_owned(), d.to_owned())]);
        let mut ev = Evidence::default();
        assert_eq!(replay_order_independent(&ev).measured, None);
        ev.shuffles.insert(
            "s".into(),
            ShuffleOutcome {
                seed: 7,
                duplicates: 20,
                in_order: digests("sha256:a"),
                shuffled: digests("sha256:a"),
                reversed: digests("sha256:a"),
                live: Some(digests("sha256:a")),
                prefixes: vec![],
                error: None,
            },
        );
        let r = replay_order_independent(&ev);
        assert!(r.passed, "{r:?}");
        assert!(r.note.contains("newest first and live"), "{}", r.note);
        if let Some(s) = ev.shuffles.get_mut("s") {
            s.reversed = digests("sha256:c");
        }
        let r = replay_order_independent(&ev);
        assert!(!r.passed);
        assert_eq!(r.note, "s o/r: newest first sha256:c ≠ in order sha256:a");
        if let Some(s) = ev.shuffles.get_mut("s") {
            s.reversed = digests("sha256:a");
            s.prefixes = vec![crate::verdict::PrefixFold {
                to_ms: 1_000,
                in_order: digests("sha256:p"),
                reversed: digests("sha256:p"),
            }];
        }
        let r = replay_order_independent(&ev);
        assert!(r.passed, "{r:?}");
        assert!(r.note.contains("1 prefixes of the log"), "{}", r.note);
        if let Some(s) = ev.shuffles.get_mut("s") {
            s.prefixes[0].reversed = digests("sha256:q");
        }
        let r = replay_order_independent(&ev);
        assert!(!r.passed);
        assert_eq!(
            r.note,
            "s o/r: the log up to unix ms 1000 folded newest first sha256:q ≠ in order sha256:p"
        );
        if let Some(s) = ev.shuffles.get_mut("s") {
            s.prefixes.clear();
        }
        if let Some(s) = ev.shuffles.get_mut("s") {
            s.shuffled = digests("sha256:b");
        }
        let r = replay_order_independent(&ev);
        assert!(!r.passed);
        assert_eq!(
            r.note,
            "s o/r: shuffled (seed 7, 20 duplicates) sha256:b ≠ in order sha256:a"
        );
    }

    fn cut(kind: &str, target: &str, start: u64, end: u64) -> FaultWindow {
        FaultWindow {
            kind: kind.into(),
            target: target.into(),
            requested_ms: None,
            start_ms: start,
            end_ms: Some(end),
            outcome: crate::report::FaultOutcome::Applied,
            crash: false,
            trigger: None,
            hit: None,
            note: String::new(),
        }
    }

    fn timed(id: &str, at: u64, outcome: Outcome, latency_ms: f64) -> LedgerEntry {
        LedgerEntry {
            outcome,
            latency_ms,
            ..attempt(id, 1, at, 202, "")
        }
    }

    #[test]
    fn rejects_within_redis_timeout_measures_the_slowest_503_of_the_partition() {
        let margin = std::time::Duration::from_millis(500);
        let mut ev = evidence(vec![
            // Before the partition: fast 202s, not measured.
            timed("a", 500, Outcome::Status(202), 3.0),
            // In the window: 503s within the Redis timeout.
            timed("b", 2_100, Outcome::Status(503), 1_004.0),
            timed("c", 3_000, Outcome::Status(503), 1_120.0),
            // Started before the window, answered inside it.
            timed("d", 1_500, Outcome::Status(503), 1_010.0),
            // A 503 long after the window (another cause): not measured.
            timed("e", 20_000, Outcome::Status(503), 9_000.0),
        ]);
        ev.redis_timeout = Some((1_000, "GITSPY_REDIS_TIMEOUT in the target env".into()));
        // Nothing cut the server from Redis: nothing measured, no pass.
        let r = rejects_within_redis_timeout(&ev, margin);
        assert!(!r.passed && r.measured.is_none(), "{r:?}");
        ev.faults.push(cut(
            "network partition",
            "network worker-0-redis",
            2_000,
            7_000,
        ));
        assert!(rejects_within_redis_timeout(&ev, margin).measured.is_none());
        ev.faults.push(cut(
            "network partition",
            "network server-redis",
            2_000,
            7_000,
        ));
        let r = rejects_within_redis_timeout(&ev, margin);
        assert!(r.passed, "{r:?}");
        assert_eq!(r.measured, Some(1_120.0));
        assert_eq!(r.threshold, 1_500.0);
        assert!(
            r.note.starts_with("3 request(s) answered 503"),
            "{}",
            r.note
        );

        // A slow 503 fails, naming it.
        ev.ledger
            .entries
            .push(timed("f", 4_000, Outcome::Status(503), 1_900.0));
        let r = rejects_within_redis_timeout(&ev, margin);
        assert!(!r.passed);
        assert!(r.note.contains("f attempt 1 waited 1900 ms"), "{}", r.note);

        // A hung ingress (no answer within the request's 2 s timeout) fails too, even with no
        // slow 503; a request whose own timeout was below the limit proves nothing.
        ev.ledger.entries.pop();
        ev.ledger
            .entries
            .push(timed("g", 4_000, Outcome::Timeout, 2_000.0));
        ev.ledger
            .entries
            .push(timed("h", 4_000, Outcome::Timeout, 300.0));
        let r = rejects_within_redis_timeout(&ev, margin);
        assert!(!r.passed);
        assert_eq!(r.measured, Some(2_000.0));
        assert!(r.note.contains("1 request(s) got no answer"), "{}", r.note);
    }

    #[test]
    fn board_check_without_a_model_cannot_pass() {
        let r = board_matches_model(&Evidence::default());
        assert!(!r.passed);
        assert_eq!(r.measured, None);
    }

    /// A run whose scenario lists almost nothing is still judged on its data: an acknowledged
    /// delivery never processed and a copy answered `202` again both fail it.
    #[test]
    fn the_baseline_judges_what_the_scenario_does_not_list() {
        let ev = evidence(vec![
            attempt("a", 1, 0, 202, "queued"),
            attempt("a", 2, 100, 202, "queued"),
        ]);
        let names = |checks: &[At<Check>]| -> Vec<(String, bool)> {
            evaluate(&ev, checks)
                .into_iter()
                .map(|c| (c.name, c.passed))
                .collect()
        };
        let failed = |checks: &[At<Check>]| -> Vec<String> {
            names(checks)
                .into_iter()
                .filter(|(_, passed)| !passed)
                .map(|(n, _)| n)
                .collect()
        };
        // Nothing listed: lost and duplicate_answers fail; no board model, no managed worker,
        // no probe, no replay — so no check that could not have been observed, and no
        // `unexpected` (without managed workers this reads as attach mode, whose listing spans
        // the deployment's history).
        assert_eq!(
            names(&[]),
            vec![
                ("deliveries.lost".to_owned(), false),
                ("deliveries.duplicated".to_owned(), true),
                ("duplicate_answers".to_owned(), false),
            ]
        );
        let mut managed = ev.clone();
        managed.workers = vec![("worker-0".into(), Vec::new())];
        let managed_names: Vec<String> = evaluate(&managed, &[])
            .into_iter()
            .map(|c| c.name)
            .collect();
        assert!(
            managed_names.contains(&"deliveries.unexpected".to_owned())
                && managed_names.contains(&"processed_matches_store".to_owned()),
            "{managed_names:?}"
        );
        let r = evaluate(&ev, &[]);
        assert!(r.iter().all(|c| c.note.contains(BASELINE_NOTE)), "{r:?}");
        // A listed check keeps its own bounds and is not doubled.
        let lenient = [At::new(Check::Deliveries(DeliveryLimits {
            lost: 1,
            ..DeliveryLimits::default()
        }))];
        assert_eq!(failed(&lenient), vec!["duplicate_answers".to_owned()]);
        assert_eq!(
            names(&lenient)
                .iter()
                .filter(|(n, _)| n == "deliveries.lost")
                .count(),
            1
        );
        // `baseline: false` leaves only what is listed.
        let off = [At::new(Check::Baseline(false)), lenient[0].clone()];
        assert!(failed(&off).is_empty(), "{:?}", names(&off));
        assert_eq!(names(&off).len(), 5, "the five bounds of `deliveries`");
        // `baseline: true` is the default.
        let on = [At::new(Check::Baseline(true))];
        assert_eq!(names(&on), names(&[]));
    }
}
