//! The end of a run: ask GitSpy about every delivery id the ledger holds, list what it processed,
//! probe Redis, classify each delivery (SPEC §2.5) and evaluate the scenario's checks.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use anyhow::Context as _;

use super::steps::Ctx;
use super::system::WORKER_LOCK_TTL;
use crate::load::Outcome;
use crate::observe::prom::names;
use crate::observe::{probe, Series, TargetSel, Window};
use crate::report::{self, CheckOp, CheckRecord, LedgerClass, ProbeSummary};
use crate::scenario::{Check, Scenario};
use crate::verdict::checks::{self as vchecks, Measured};
use crate::verdict::classes::{judge as classify_all, Class, Lookup, SendOutcome, VerdictInput};

/// What the judgement produced for the report.
#[derive(Default)]
pub struct Judged {
    pub checks: Vec<CheckRecord>,
    pub ledger: report::LedgerSummary,
    pub probe: Option<ProbeSummary>,
    pub series: Vec<report::Series>,
}

const LOOKUP_CHUNK: usize = 10_000;

fn record(
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

pub async fn judge(
    ctx: &Ctx,
    s: &Scenario,
    series: &Mutex<Series>,
    drain_error: Option<String>,
    drained_at_ms: u64,
    panicked: bool,
) -> anyhow::Result<Judged> {
    let ledger = ctx.sender.ledger();
    let mut sends: BTreeMap<String, Vec<SendOutcome>> = BTreeMap::new();
    for e in &ledger.entries {
        sends
            .entry(e.delivery.clone())
            .or_default()
            .push(match &e.outcome {
                Outcome::Status(s) => SendOutcome::Status(*s),
                Outcome::Timeout => SendOutcome::Timeout,
                Outcome::Refused(m) => SendOutcome::Transport(format!("refused: {m}")),
                Outcome::Transport(m) => SendOutcome::Transport(m.clone()),
            });
    }
    // Lookups in chunks, and the full listing of processed ids.
    let ids: Vec<String> = sends.keys().cloned().collect();
    let mut lookups: BTreeMap<String, Lookup> = BTreeMap::new();
    for chunk in ids.chunks(LOOKUP_CHUNK) {
        let r = ctx
            .http
            .post(format!("{}/deliveries/lookup", ctx.server_url))
            .json(&serde_json::json!({ "ids": chunk }))
            .send()
            .await
            .context("POST /deliveries/lookup")?;
        anyhow::ensure!(
            r.status().is_success(),
            "POST /deliveries/lookup answered {}",
            r.status()
        );
        let v: serde_json::Value = r.json().await.context("lookup answer")?;
        for d in v["deliveries"].as_array().cloned().unwrap_or_default() {
            let l: Lookup = serde_json::from_value(d).context("lookup entry")?;
            lookups.insert(l.delivery.clone(), l);
        }
    }
    let mut listed = BTreeSet::new();
    let mut after: Option<String> = None;
    for _ in 0..10_000 {
        let mut url = format!("{}/deliveries?limit=10000", ctx.server_url);
        if let Some(a) = &after {
            url.push_str(&format!("&after={a}"));
        }
        let v: serde_json::Value = ctx
            .http
            .get(&url)
            .send()
            .await
            .context("GET /deliveries")?
            .json()
            .await?;
        for id in v["deliveries"].as_array().cloned().unwrap_or_default() {
            if let Some(id) = id.as_str() {
                listed.insert(id.to_string());
            }
        }
        match v["next"].as_str() {
            Some(n) => after = Some(n.to_string()),
            None => break,
        }
    }
    // Redis probe (the system is drained; locks still present after a drain longer than the lock
    // TTL are stuck — the probe is taken right away, so only TTL anomalies count here).
    let lock_ttl_ms = WORKER_LOCK_TTL.as_millis() as u64;
    let redis_url = ctx.sys.lock().await.redis.url()?;
    let probe_result = async {
        let mut conn = probe::connect(&redis_url).await?;
        probe::probe_as(
            &mut conn,
            &probe::ProbeConfig {
                lock_ttl_ms,
                drained_since_ms: if drain_error.is_none() {
                    Some(drained_at_ms)
                } else {
                    None
                },
                id_prefix: Some(ctx.nonce.as_str().to_string()),
            },
            &ctx.profile,
        )
        .await
    }
    .await;
    let rprobe = probe_result.ok();
    let verdict = classify_all(
        &VerdictInput {
            sends: &sends,
            lookups: &lookups,
            listed: &listed,
            probe: rprobe.as_ref(),
        },
        5,
    );

    let series = match series.lock() {
        Ok(g) => g.clone(),
        Err(p) => p.into_inner().clone(),
    };
    let window = Window {
        from_ms: ctx.t0_unix_ms,
        to_ms: u64::MAX,
    };
    let accepted = series.counter_increase(
        TargetSel::Named("server"),
        names::EVENTS_RECEIVED,
        &[],
        window,
    );
    let processed = series.counter_increase(
        TargetSel::Role("worker"),
        names::JOBS_PROCESSED,
        &[],
        window,
    );
    let failed =
        series.counter_increase(TargetSel::Role("worker"), names::JOBS_FAILED, &[], window);
    let retried =
        series.counter_increase(TargetSel::Role("worker"), names::JOBS_RETRIED, &[], window);
    let kills = ctx.kills.load(std::sync::atomic::Ordering::SeqCst);

    let mut checks = Vec::new();
    let timeline_problems = ctx.timeline().problems.clone();
    if !timeline_problems.is_empty() || panicked {
        let mut notes = timeline_problems.clone();
        if panicked {
            notes.push("the step executor panicked".into());
        }
        checks.push(record(
            "steps",
            Some(notes.len() as f64),
            CheckOp::Le,
            0.0,
            "",
            notes.join("; "),
        ));
    }
    if let Some(e) = &drain_error {
        checks.push(record(
            "final_drain",
            Some(1.0),
            CheckOp::Le,
            0.0,
            "",
            format!("{e} (after faults were undone)"),
        ));
    }
    let last_fault_end = ctx
        .timeline()
        .faults
        .iter()
        .map(|f| f.end_ms.unwrap_or(f.start_ms))
        .max()
        .map(|rel| ctx.t0_unix_ms + rel)
        .unwrap_or(ctx.t0_unix_ms);
    for c in &s.checks.value {
        match &c.value {
            Check::Deliveries(l) => {
                let maxima: BTreeMap<Class, u64> = [
                    (Class::Lost, l.lost),
                    (Class::Duplicated, l.duplicated),
                    (Class::Unexpected, l.unexpected),
                    (Class::Failed, l.failed),
                    (Class::Unacknowledged, l.unacknowledged),
                ]
                .into_iter()
                .collect();
                for (class, max) in &maxima {
                    let r = vchecks::deliveries(&verdict, &BTreeMap::from([(*class, *max)]));
                    for r in r {
                        checks.push(from_vcheck(r, CheckOp::Le, *max as f64, "deliveries"));
                    }
                }
            }
            Check::NoStuckLocks => match &rprobe {
                Some(p) => checks.push(from_vcheck(
                    vchecks::no_stuck_locks(p),
                    CheckOp::Le,
                    0.0,
                    "locks",
                )),
                None => checks.push(record(
                    "no_stuck_locks",
                    None,
                    CheckOp::Le,
                    0.0,
                    "locks",
                    "Redis could not be probed".into(),
                )),
            },
            Check::Backlog(b) => {
                let points =
                    series.gauge_points("server", &[names::QUEUE_WAITING, names::QUEUE_ACTIVE]);
                let within = b.within.value.get().as_millis() as u64;
                let r = vchecks::backlog(&points, last_fault_end, b.max as f64, within);
                checks.push(from_vcheck(r, CheckOp::Le, within as f64 / 1000.0, "s"));
            }
            Check::Failed(m) => {
                let c = vchecks::counter_max(
                    "failed",
                    &failed,
                    m.max as f64,
                    &vchecks::Tolerance::exact(),
                );
                checks.push(from_vcheck(c, CheckOp::Le, m.max as f64, "jobs"));
            }
            Check::Retries(m) => {
                let c = vchecks::counter_max(
                    "retries",
                    &retried,
                    m.max as f64,
                    &vchecks::Tolerance::exact(),
                );
                checks.push(from_vcheck(c, CheckOp::Le, m.max as f64, "jobs"));
            }
            Check::JobDurationP95(m) => {
                let w = series.histogram_window(
                    TargetSel::Role("worker"),
                    names::JOB_DURATION_MS,
                    window,
                );
                let max_ms = m.max.value.get().as_secs_f64() * 1000.0;
                checks.push(from_vcheck(
                    vchecks::job_duration_p95(&w, max_ms),
                    CheckOp::Le,
                    max_ms,
                    "ms",
                ));
            }
            Check::ProcessedMatchesAccepted(t) => {
                let expected = accepted.total - failed.total;
                let diff = (processed.total - expected).abs();
                let mut note = format!(
                    "processed {} vs accepted {} − failed {}",
                    report::fmt_num(processed.total),
                    report::fmt_num(accepted.total),
                    report::fmt_num(failed.total)
                );
                if kills > 0 {
                    note.push_str(&format!(
                        "; {kills} SIGKILL(s): {}",
                        vchecks::KILL_TOLERANCE_NOTE
                    ));
                }
                checks.push(record(
                    "processed_matches_accepted",
                    Some(diff),
                    CheckOp::Le,
                    t.tolerance as f64,
                    "deliveries",
                    note,
                ));
            }
            Check::ReplayIdentical(names) => {
                let t = ctx.timeline();
                let dirs: Vec<_> = names
                    .iter()
                    .filter_map(|n| {
                        t.replay_out
                            .get(&n.value)
                            .map(|d| (n.value.clone(), d.0.clone()))
                    })
                    .collect();
                let (diffs, note) = compare_replays(&dirs);
                checks.push(record(
                    &format!(
                        "replay_identical[{}]",
                        names
                            .iter()
                            .map(|n| n.value.as_str())
                            .collect::<Vec<_>>()
                            .join(",")
                    ),
                    Some(diffs as f64),
                    CheckOp::Le,
                    0.0,
                    "files",
                    note,
                ));
            }
            // Judged with the fault log in `fault::efficacy::check`.
            Check::FaultsEffective(_) => {}
            Check::ReplayVerify => {
                let t = ctx.timeline();
                let verifies: Vec<_> = t
                    .replay_out
                    .iter()
                    .filter_map(|(n, (_, _, v))| v.map(|ok| (n.clone(), ok)))
                    .collect();
                let bad: Vec<_> = verifies
                    .iter()
                    .filter(|(_, ok)| !ok)
                    .map(|(n, _)| n.clone())
                    .collect();
                let measured = if verifies.is_empty() {
                    None
                } else {
                    Some(bad.len() as f64)
                };
                checks.push(record(
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
                ));
            }
        }
    }

    let mut classes = BTreeMap::new();
    for class in Class::ALL {
        let count = verdict.count(class);
        let examples = verdict.examples.get(&class).cloned().unwrap_or_default();
        classes.insert(class.as_str().to_string(), LedgerClass { count, examples });
    }
    let t = &verdict.tally;
    let ledger_summary = report::LedgerSummary {
        sent: t.sent,
        accepted: t.accepted,
        duplicates: t.duplicates,
        rejected: t.rejected,
        indeterminate: t.indeterminate,
        processed: t.processed,
        classes,
    };
    let probe = rprobe.as_ref().map(|p| ProbeSummary {
        states: p.states.clone(),
        locks: p.locks.len() as u64,
        stuck_locks: p.stuck_locks().count() as u64,
        stream_len: p.stream_len,
        pending: p.pending.unwrap_or(0),
        dead: p.dead_len,
    });
    let step = ctx_poll_ms(s);
    let rel = |at: u64| at.saturating_sub(ctx.t0_unix_ms);
    let mut out_series = Vec::new();
    let window_end = Window {
        from_ms: ctx.t0_unix_ms,
        to_ms: crate::observe::prom::now_ms(),
    };
    for (name, sel, metric) in [
        (
            "received_rate",
            TargetSel::Named("server"),
            names::EVENTS_RECEIVED,
        ),
        (
            "processed_rate",
            TargetSel::Role("worker"),
            names::JOBS_PROCESSED,
        ),
        ("failed_rate", TargetSel::Role("worker"), names::JOBS_FAILED),
    ] {
        // The last bin ends with the run, not a whole poll interval later: its rate is over the
        // time it really covers.
        let pts = series
            .intervals(sel, metric, window_end, step)
            .into_iter()
            .filter_map(|i| {
                let end = i.end_ms.min(window_end.to_ms);
                let span = end.saturating_sub(i.start_ms).max(1);
                let rate = i.increase * 1000.0 / span as f64;
                rate.is_finite().then(|| (rel(end), rate))
            })
            .collect();
        out_series.push(report::Series {
            name: name.into(),
            unit: "/s".into(),
            points: pts,
        });
    }
    for (name, metric) in [
        ("waiting", names::QUEUE_WAITING),
        ("active", names::QUEUE_ACTIVE),
    ] {
        let pts = series
            .gauge_points("server", &[metric])
            .into_iter()
            .filter_map(|(at, v)| v.filter(|v| v.is_finite()).map(|v| (rel(at), v)))
            .collect();
        out_series.push(report::Series {
            name: name.into(),
            unit: "deliveries".into(),
            points: pts,
        });
    }
    let hist = series.histogram_intervals(
        TargetSel::Role("worker"),
        names::JOB_DURATION_MS,
        window_end,
        step,
    );
    for (name, pick) in [("p50_ms", 0usize), ("p95_ms", 1usize)] {
        let pts = hist
            .iter()
            .filter_map(|(at, w)| {
                let v = if pick == 0 { w.p50 } else { w.p95 };
                v.filter(|v| v.is_finite())
                    .map(|v| (rel((*at + step).min(window_end.to_ms)), v))
            })
            .collect();
        out_series.push(report::Series {
            name: name.into(),
            unit: "ms".into(),
            points: pts,
        });
    }
    Ok(Judged {
        checks,
        ledger: ledger_summary,
        probe,
        series: out_series,
    })
}

fn ctx_poll_ms(s: &Scenario) -> u64 {
    (s.observe.poll_interval.value.get().as_millis() as u64).max(1000)
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
    let n_files = base.len();
    if notes.is_empty() {
        (
            0,
            format!(
                "{n_files} board file(s) byte-identical across {} replays",
                dirs.len()
            ),
        )
    } else {
        (diffs, notes.join("; "))
    }
}
