//! Exact accounting of `processed` (`processed_matches_store`): per worker process, the
//! `gitspy_jobs_processed_total` it exposed at each scrape against what the store says that
//! process applied (`applied_by`, `applied_at` in the delivery lookup) up to the same instant.
//! No tolerance is configured anywhere:
//!
//! - at every scrape of an instance, its counter may not exceed what the store says it had
//!   applied by then (a count without a store row is a delivery marked processed that was
//!   never applied; the scrape's time is taken after the answer, and a worker counts only after
//!   its commit, so this holds exactly);
//! - a worker that ended (killed or stopped) cannot report what it applied after its last
//!   scrape, nor finish what it had committed but not yet counted at that scrape; those rows
//!   ("orphans", computed from the store) were counted either by it, unseen,
//!   or by another worker that finished the entry it left: they are the only slack, per scrape
//!   (an instance may be ahead of its own rows by the orphans of others applied by then) and in
//!   total (after the final drain the workers' counters add up to what the store applied, minus
//!   at most the orphans and the entries counted as worker duplicates — a finish whose answer
//!   was lost, found done on retry); never a configured tolerance.
//!
//! Where the store does not say which consumer applied a delivery, the same rules are applied
//! to the workers' sum.

use std::collections::BTreeMap;

use super::evidence::Evidence;
use crate::observe::prom::names;
use crate::report::{self, CheckOp, CheckRecord};
use crate::system::procs::Instance;

fn applied_at_ms(v: &serde_json::Value) -> Option<u64> {
    v.as_u64().or_else(|| v.as_f64().map(|f| f as u64))
}

/// Per consumer, the sorted `applied_at` of every delivery the store reports it applied (key
/// `None`: the store did not say who).
fn applied_by_consumer(ev: &Evidence) -> BTreeMap<Option<String>, Vec<u64>> {
    let mut out: BTreeMap<Option<String>, Vec<u64>> = BTreeMap::new();
    for l in ev.lookups.values() {
        if !(l.logged > 0 || l.effects > 0) {
            continue;
        }
        let at = l.applied_at.as_ref().and_then(applied_at_ms).unwrap_or(0);
        out.entry(l.applied_by.clone()).or_default().push(at);
    }
    for v in out.values_mut() {
        v.sort_unstable();
    }
    out
}

/// Entries the workers skipped as already processed (`gitspy_jobs_duplicate_total`): where a
/// worker's finish reached Redis but its answer did not, the retry finds the delivery done and
/// counts it here instead of as processed.
fn worker_duplicates(ev: &Evidence) -> f64 {
    ev.series
        .counter_increase(
            crate::observe::TargetSel::Role("worker"),
            names::JOBS_DUPLICATE,
            &[],
            crate::observe::Window {
                from_ms: ev.t0_unix_ms,
                to_ms: u64::MAX,
            },
        )
        .total
}

/// `processed_matches_store`. Measured: deliveries by which counters and store disagree.
pub fn processed_matches_store(ev: &Evidence) -> CheckRecord {
    let name = "processed_matches_store";
    let record = |measured: Option<f64>, note: String| CheckRecord {
        name: name.into(),
        measured,
        op: CheckOp::Le,
        threshold: 0.0,
        unit: "deliveries".into(),
        passed: CheckOp::Le.holds(measured, 0.0),
        note,
    };
    if ev.workers.is_empty() {
        return record(
            None,
            "no managed worker: per-process accounting needs the workers the harness started"
                .into(),
        );
    }
    let mut applied = applied_by_consumer(ev);
    let attributed = !applied.contains_key(&None);
    let mut accounts = Vec::new();
    let mut notes = Vec::new();
    if attributed {
        // Instances of one worker may share a consumer name (restarts keep it); they never
        // overlap in time, so a row belongs to the instance alive when it was applied.
        for (target, instances) in &ev.workers {
            for inst in instances {
                let end = inst.ended_ms.unwrap_or(u64::MAX);
                let mine: Vec<u64> = match inst
                    .consumer
                    .as_ref()
                    .and_then(|c| applied.get_mut(&Some(c.clone())))
                {
                    Some(rows) => {
                        let (inside, rest): (Vec<u64>, Vec<u64>) = rows
                            .iter()
                            .partition(|at| **at >= inst.started_ms && **at <= end);
                        *rows = rest;
                        inside
                    }
                    None => Vec::new(),
                };
                accounts.push((
                    inst.ended_by.clone(),
                    instance_account(ev, target, inst, mine),
                ));
            }
        }
        applied.retain(|_, rows| !rows.is_empty());
        for (consumer, at) in &applied {
            notes.push(format!(
                "{} applied by consumer {} outside every worker instance the harness started",
                at.len(),
                consumer.as_deref().unwrap_or("?")
            ));
        }
    } else {
        notes.push(
            "the store does not say which consumer applied a delivery (no `applied_by`): \
             compared over all workers"
                .into(),
        );
        let all: Vec<u64> = {
            let mut v: Vec<u64> = applied.values().flatten().copied().collect();
            v.sort_unstable();
            v
        };
        let counted: f64 = ev
            .workers
            .iter()
            .flat_map(|(t, is)| is.iter().map(move |i| (t, i)))
            .filter_map(|(t, i)| {
                ev.series
                    .scrapes(t)
                    .iter()
                    .rfind(|s| s.at_ms >= i.started_ms && s.at_ms <= i.ended_ms.unwrap_or(u64::MAX))
                    .map(|s| s.counter_where(names::JOBS_PROCESSED, &[]).unwrap_or(0.0))
            })
            .sum();
        let any_ended = ev
            .workers
            .iter()
            .any(|(_, is)| is.iter().any(|i| i.ended_ms.is_some()));
        let total = all.len() as f64;
        let dups = worker_duplicates(ev);
        let off = if any_ended {
            (counted - total).max(0.0)
        } else if counted > total {
            counted - total
        } else {
            (total - counted - dups).max(0.0)
        };
        notes.push(format!(
            "counted {} processed, the store applied {}{}",
            report::fmt_num(counted),
            report::fmt_num(total),
            if any_ended && counted < total {
                format!(
                    " ({} by processes that ended after their last scrape)",
                    report::fmt_num(total - counted)
                )
            } else {
                String::new()
            }
        ));
        return record(Some(off), notes.join("; "));
    }
    let dups = worker_duplicates(ev);
    // Rows applied by an instance that ended after its last scrape: whether it counted them
    // (unseen) or another worker adopted and counted them when it finished the entry is
    // unknowable; these "orphans", computed from the store, are the only slack.
    let mut orphans: Vec<(usize, u64)> = Vec::new();
    for (i, (_, a)) in accounts.iter().enumerate() {
        if a.ended {
            // After its last scrape, plus what it had committed but not yet counted at that
            // scrape (a kill between commit and finish leaves those to be finished elsewhere):
            // its latest rows.
            let (last_at, last_count) = a.scrapes.last().copied().unwrap_or((0, 0.0));
            let by_then = a.rows.partition_point(|r| *r <= last_at);
            let uncounted = (by_then as f64 - last_count).max(0.0) as usize;
            let from = by_then.saturating_sub(uncounted);
            orphans.extend(a.rows[from..].iter().map(|at| (i, *at)));
        }
    }
    let mut off = 0.0;
    let mut problems = Vec::new();
    for (i, (_, a)) in accounts.iter().enumerate() {
        for (at, counted) in &a.scrapes {
            let by_then = a.rows.partition_point(|r| r <= at) as f64;
            let adoptable = orphans.iter().filter(|(j, o)| *j != i && o <= at).count() as f64;
            if *counted > by_then + adoptable {
                off += counted - by_then - adoptable;
                problems.push(format!(
                    "{} counted {} processed at {} ms but the store says it had applied {}{}",
                    a.label,
                    report::fmt_num(*counted),
                    at.saturating_sub(ev.t0_unix_ms),
                    report::fmt_num(by_then),
                    if adoptable > 0.0 {
                        format!(" (+{} others left unfinished)", report::fmt_num(adoptable))
                    } else {
                        String::new()
                    }
                ));
                break;
            }
        }
        if !a.ended && a.scrapes.is_empty() && !a.rows.is_empty() {
            off += a.rows.len() as f64;
            problems.push(format!(
                "{} applied {} but was never scraped",
                a.label,
                a.rows.len()
            ));
        }
    }
    let seen: f64 = accounts
        .iter()
        .filter_map(|(_, a)| a.scrapes.last().map(|(_, c)| *c))
        .sum();
    let applied_total = accounts.iter().map(|(_, a)| a.rows.len()).sum::<usize>() as f64;
    let unseen = orphans.len() as f64;
    if seen > applied_total {
        off += seen - applied_total;
        problems.push(format!(
            "the workers counted {} processed, the store says they applied {}",
            report::fmt_num(seen),
            report::fmt_num(applied_total)
        ));
    }
    let lower = applied_total - unseen - dups;
    if seen < lower {
        off += lower - seen;
        problems.push(format!(
            "the workers counted {} processed, the store says they applied {} ({} of them after the last scrape of an ended worker, {} counted as worker duplicates)",
            report::fmt_num(seen),
            report::fmt_num(applied_total),
            report::fmt_num(unseen),
            report::fmt_num(dups)
        ));
    }
    let mut head = format!(
        "{} process instance(s): counted {}, the store says they applied {}",
        accounts.len(),
        report::fmt_num(seen),
        report::fmt_num(applied_total)
    );
    for (how, a) in &accounts {
        let last = a.scrapes.last().map_or(0, |(at, _)| *at);
        let tail = a.rows.iter().filter(|at| **at > last).count();
        if a.ended && tail > 0 {
            head.push_str(&format!(
                "; {} ({}) applied {} after its last scrape, unseen by metrics",
                a.label,
                how.as_deref().unwrap_or("ended"),
                tail
            ));
        }
    }
    if dups > 0.0 && seen < applied_total {
        head.push_str(&format!(
            "; {} counted as worker duplicates (a finish whose answer was lost, then found done)",
            report::fmt_num(dups)
        ));
    }
    let mut all_notes = vec![head];
    all_notes.extend(problems);
    all_notes.extend(notes);
    record(Some(off), all_notes.join("; "))
}

/// One instance's rows and scrapes.
struct Account {
    label: String,
    ended: bool,
    /// `applied_at` of the store rows it applied, sorted.
    rows: Vec<u64>,
    /// `(at_ms, counter)` of its scrapes.
    scrapes: Vec<(u64, f64)>,
}

fn instance_account(ev: &Evidence, target: &str, inst: &Instance, rows: Vec<u64>) -> Account {
    let end = inst.ended_ms.unwrap_or(u64::MAX);
    Account {
        label: match &inst.consumer {
            Some(c) => format!("{target} ({c})"),
            None => target.to_owned(),
        },
        ended: inst.ended_ms.is_some(),
        rows,
        scrapes: ev
            .series
            .scrapes(target)
            .iter()
            .filter(|s| s.at_ms >= inst.started_ms && s.at_ms <= end)
            .map(|s| {
                (
                    s.at_ms,
                    s.counter_where(names::JOBS_PROCESSED, &[]).unwrap_or(0.0),
                )
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::Scrape;
    use crate::verdict::{DeliveryState, Lookup};

    fn scrape(target: &str, at: u64, processed: f64) -> Scrape {
        let text = format!("# TYPE gitspy_jobs_processed_total counter\ngitspy_jobs_processed_total{{event_type=\"issues\"}} {processed}\n");
        Scrape::parse(target, at, &text).unwrap()
    }

    fn applied(ev: &mut Evidence, id: &str, by: Option<&str>, at: u64) {
        ev.lookups.insert(
            id.into(),
            Lookup {
                delivery: id.into(),
                state: DeliveryState::Processed,
                attempts: 1,
                logged: 1,
                effects: 1,
                applied_at: Some(serde_json::json!(at)),
                applied_by: by.map(str::to_owned),
            },
        );
    }

    fn inst(consumer: &str, started: u64, ended: Option<(u64, &str)>) -> Instance {
        Instance {
            consumer: Some(consumer.into()),
            started_ms: started,
            ended_ms: ended.map(|e| e.0),
            ended_by: ended.map(|e| e.1.to_owned()),
        }
    }

    /// worker-0 ran as w.1 (killed at 250 after a scrape at 200) and then as w.2 to the end.
    fn run() -> Evidence {
        let mut ev = Evidence {
            workers: vec![(
                "worker-0".into(),
                vec![inst("w.1", 0, Some((250, "kill"))), inst("w.2", 300, None)],
            )],
            ..Evidence::default()
        };
        for (i, at) in [50, 150, 220, 240].iter().enumerate() {
            applied(&mut ev, &format!("a{i}"), Some("w.1"), *at);
        }
        for (i, at) in [350, 400].iter().enumerate() {
            applied(&mut ev, &format!("b{i}"), Some("w.2"), *at);
        }
        ev.series.push(scrape("worker-0", 100, 1.0));
        ev.series.push(scrape("worker-0", 200, 2.0));
        ev.series.push(scrape("worker-0", 500, 2.0));
        ev
    }

    #[test]
    fn a_healthy_run_with_a_kill_passes_and_names_the_unseen_tail() {
        let r = processed_matches_store(&run());
        assert!(r.passed, "{r:?}");
        assert_eq!(r.measured, Some(0.0));
        assert!(
            r.note
                .contains("worker-0 (w.1) (kill) applied 2 after its last scrape"),
            "{}",
            r.note
        );
    }

    #[test]
    fn counting_without_applying_and_undercounting_both_fail() {
        // Marked processed, never applied: the counter runs ahead of the store (no worker
        // ended, so nothing could have been adopted from another).
        let mut ev = Evidence {
            workers: vec![("worker-0".into(), vec![inst("w.1", 0, None)])],
            ..Evidence::default()
        };
        applied(&mut ev, "a", Some("w.1"), 10);
        applied(&mut ev, "b", Some("w.1"), 20);
        ev.series.push(scrape("worker-0", 100, 2.0));
        ev.series.push(scrape("worker-0", 200, 3.0));
        let r = processed_matches_store(&ev);
        assert!(!r.passed);
        assert!(
            r.note.contains("counted 3 processed at 200 ms"),
            "{}",
            r.note
        );

        // Applied without counting (one event kind not counted): more is missing than the
        // killed worker's unseen tail can explain.
        let mut ev = run();
        applied(&mut ev, "b9", Some("w.2"), 450);
        let r = processed_matches_store(&ev);
        assert!(!r.passed);
        assert_eq!(r.measured, Some(1.0));
        assert!(
            r.note.contains("the workers counted 4 processed, the store says they applied 7 (2 of them after the last scrape of an ended worker"),
            "{}",
            r.note
        );
    }

    #[test]
    fn a_finish_whose_answer_was_lost_is_covered_by_the_worker_duplicate_count() {
        let mut ev = run();
        applied(&mut ev, "b9", Some("w.2"), 450);
        let text = "gitspy_jobs_processed_total 2\ngitspy_jobs_duplicate_total 0\n";
        ev.series
            .push(Scrape::parse("worker-0", 460, text).unwrap());
        let text = "gitspy_jobs_processed_total 2\ngitspy_jobs_duplicate_total 1\n";
        ev.series
            .push(Scrape::parse("worker-0", 600, text).unwrap());
        let r = processed_matches_store(&ev);
        assert!(r.passed, "{r:?}");
        assert!(
            r.note.contains("1 counted as worker duplicates"),
            "{}",
            r.note
        );
    }

    #[test]
    fn instances_sharing_a_consumer_name_are_told_apart_by_time() {
        let mut ev = run();
        for (_, instances) in ev.workers.iter_mut() {
            for i in instances.iter_mut() {
                i.consumer = Some("w".into());
            }
        }
        for l in ev.lookups.values_mut() {
            l.applied_by = Some("w".into());
        }
        let r = processed_matches_store(&ev);
        assert!(r.passed, "{r:?}");
        assert!(
            r.note.contains("applied 2 after its last scrape"),
            "{}",
            r.note
        );
    }

    #[test]
    fn without_applied_by_the_sum_is_compared() {
        let mut ev = Evidence {
            workers: vec![("worker-0".into(), vec![inst("w.1", 0, None)])],
            ..Evidence::default()
        };
        applied(&mut ev, "a", None, 10);
        applied(&mut ev, "b", None, 20);
        ev.series.push(scrape("worker-0", 100, 2.0));
        assert!(processed_matches_store(&ev).passed);
        ev.series.push(scrape("worker-0", 200, 1.0));
        let r = processed_matches_store(&ev);
        assert!(!r.passed);
        assert!(r.note.contains("no `applied_by`"), "{}", r.note);
    }
}
