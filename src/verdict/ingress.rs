//! Exact accounting of the ingress (`ingress_matches_ledger`): the server's own counters against
//! the answers the sender's ledger holds. GitSpy counts a webhook before it answers it —
//! `gitspy_events_received_total` for a `202` (queued or spooled),
//! `gitspy_events_duplicate_total` for a `200 duplicate`, `gitspy_events_rejected_total` for a
//! `400`, `401` or `503` — so over the run each counter's increase must equal the answers of its kind. No
//! tolerance is configured; the slack is computed from the ledger and the scrapes:
//!
//! - a request without an answer (a timeout, a connection cut mid-request) may have been counted
//!   as anything or as nothing: those requests, together, may explain counts above the answers;
//! - a server that ended (killed, crashed, restarted) cannot report what it counted after its
//!   last scrape: the answers given while its counters were unseen — from when that scrape was
//!   asked for until the fault log says its successor was up (or, without such a window, until
//!   the successor's first scrape; after the last scrape of all, to the end) — may be missing
//!   from them.
//!
//! A refused connection never reached the server and is no answer of any kind; only `400`,
//! `401` and `503` are refusals GitSpy counts (a `413` over the body limit or a gateway's
//! `502`/`504` is unknown, like a timeout). In the baseline only for managed runs with GitSpy's
//! metric names: an attached deployment may take webhooks from others during the run, and a
//! load balancer may answer `503` itself.

use std::collections::BTreeSet;

use super::evidence::Evidence;
use crate::load::{LedgerEntry, Outcome};
use crate::observe::counters;
use crate::observe::prom::{names, Scrape};
use crate::observe::TargetSel;
use crate::report::{CheckOp, CheckRecord, FaultOutcome};

/// The three kinds of answer the server counts, in report order.
const KINDS: [(&str, &str); 3] = [
    ("received", names::EVENTS_RECEIVED),
    ("duplicate", names::EVENTS_DUPLICATE),
    ("rejected", names::EVENTS_REJECTED),
];

/// What one ledger entry is, for the server's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// Index into [`KINDS`].
    Counted(usize),
    /// No definite answer (or a status the server does not count): anything or nothing.
    Unknown,
    /// Never reached the server.
    Unsent,
}

fn answer_of(e: &LedgerEntry) -> Answer {
    match &e.outcome {
        Outcome::Status(202) => Answer::Counted(0),
        Outcome::Status(200) if e.is_duplicate_answer() => Answer::Counted(1),
        // The refusals GitSpy counts: a bad request, a bad signature, no queue. Anything else
        // (a body over the size limit, a gateway's 502/504) is answered without its counter.
        Outcome::Status(400 | 401 | 503) => Answer::Counted(2),
        Outcome::Status(_) | Outcome::Timeout | Outcome::Transport(_) => Answer::Unknown,
        Outcome::Refused(_) => Answer::Unsent,
    }
}

/// The server targets of the run's scrapes (`server`, or `server-<i>` in attach mode).
fn server_targets(ev: &Evidence) -> Vec<&str> {
    ev.series
        .targets()
        .filter(|t| TargetSel::Role("server").matches(t))
        .collect()
}

/// Whether the run's scrapes can be judged by this check: some server scrape carries one of
/// the three counters (GitSpy shows a labelled counter from its first increment on).
pub fn observable(ev: &Evidence) -> bool {
    server_targets(ev).iter().any(|t| {
        ev.series
            .scrapes(t)
            .iter()
            .any(|s| KINDS.iter().any(|(_, metric)| s.counter(metric).is_some()))
    })
}

/// What the scrapes saw: per kind the counted increase over the run (reset-aware, as every
/// counter of the series: [`counters::steps`]), and the windows `(from, to)` (unix ms,
/// exclusive) in which a server's counting was unseen.
fn seen(ev: &Evidence) -> ([f64; 3], Vec<(u64, u64)>) {
    let managed = !ev.workers.is_empty();
    let mut total = [0.0; 3];
    let mut unseen = Vec::new();
    for target in server_targets(ev) {
        let scrapes: Vec<&Scrape> = ev.series.scrapes(target).iter().collect();
        let Some(last) = scrapes.last() else {
            continue;
        };
        // A process the harness started, or one that started inside the run, counted from 0
        // (nothing is sent before the run starts); one that was running before (attach mode)
        // has its first scrape as the baseline.
        let count_first = managed || counters::started_inside(&scrapes, ev.t0_unix_ms);
        // The scrapes (by time) that found a new process.
        let mut after_reset = BTreeSet::new();
        for (t, (_, metric)) in total.iter_mut().zip(KINDS) {
            for step in counters::steps(&scrapes, |s| s.counter(metric), count_first) {
                *t += step.increase;
                if step.reset {
                    after_reset.insert(step.at_ms);
                }
            }
        }
        for pair in scrapes.windows(2) {
            let (prev, next) = (pair[0], pair[1]);
            if after_reset.contains(&next.at_ms) {
                unseen.push((asked(prev), down_until(ev, target, prev.at_ms, next.at_ms)));
            }
        }
        unseen.push((asked(last), u64::MAX));
    }
    (total, unseen)
}

/// From when a scrape may have missed what a process counted: when it was asked for (the
/// process wrote its metrics somewhere between that and the answer).
fn asked(s: &Scrape) -> u64 {
    s.asked_ms.unwrap_or(s.at_ms).min(s.at_ms)
}

/// Until when the counting of `target` was unseen after its scrape at `last_ms`, when the next
/// scrape, at `next_ms`, found a new process: the end of the last fault window that took it down
/// in between (its restart: every instance before it died unscraped, the one after it counts
/// from 0 and its first scrape sees that), or `next_ms` where the fault log has no such window
/// or one without an end.
fn down_until(ev: &Evidence, target: &str, last_ms: u64, next_ms: u64) -> u64 {
    let ends: Vec<Option<u64>> = ev
        .faults
        .iter()
        .filter(|f| f.target == target && f.outcome == FaultOutcome::Applied)
        .filter(|f| {
            // The harness scrapes right before it kills or stops a process: the fault starts a
            // moment after the last scrape.
            let start = ev.t0_unix_ms + f.start_ms;
            start + SCRAPE_SLACK_MS >= last_ms && start <= next_ms
        })
        .map(|f| f.end_ms.map(|e| ev.t0_unix_ms + e))
        .collect();
    if ends.is_empty() || ends.contains(&None) {
        return next_ms;
    }
    match ends.into_iter().flatten().max() {
        Some(end) if end > last_ms => end.min(next_ms),
        _ => next_ms,
    }
}

/// How long before a fault's logged start the scrape preceding it may lie (the harness scrapes
/// a process right before it signals it).
const SCRAPE_SLACK_MS: u64 = 1_000;

/// `ingress_matches_ledger`. Measured: answers the server's counters got wrong — answers of a
/// kind its counter is short of (beyond the answers given while it was unseen), plus counts
/// above the answers that the unanswered requests cannot explain.
pub fn ingress_matches_ledger(ev: &Evidence) -> CheckRecord {
    let name = "ingress_matches_ledger";
    let record = |measured: Option<f64>, note: String| {
        super::evaluate::record(name, measured, CheckOp::Le, 0.0, "answers", note)
    };
    if ev.panicked {
        return record(
            None,
            "not judged: the step executor panicked, and the sends it aborted left no answer \
             in the ledger"
                .into(),
        );
    }
    if !observable(ev) {
        return record(
            None,
            "no scrape of the server carries gitspy_events_received_total, _duplicate_total \
             or _rejected_total: nothing to compare"
                .into(),
        );
    }
    let (counted, unseen) = seen(ev);
    let mut answered = [0u64; 3];
    let mut while_unseen = [0u64; 3];
    let mut unknown = 0u64;
    for e in &ev.ledger.entries {
        match answer_of(e) {
            Answer::Counted(k) => {
                answered[k] += 1;
                let end = e.sent_at_ms + e.latency_ms.max(0.0).ceil() as u64;
                if unseen
                    .iter()
                    .any(|(from, to)| e.sent_at_ms < *to && end > *from)
                {
                    while_unseen[k] += 1;
                }
            }
            Answer::Unknown => unknown += 1,
            Answer::Unsent => {}
        }
    }
    let mut wrong = 0.0;
    let mut over = 0.0;
    let mut parts = Vec::new();
    let mut problems = Vec::new();
    for (k, (kind, metric)) in KINDS.iter().enumerate() {
        let (c, a, u) = (counted[k], answered[k] as f64, while_unseen[k] as f64);
        parts.push(format!("{kind} {c:.0}/{a:.0}"));
        let short = (a - u - c).max(0.0);
        if short > 0.0 {
            wrong += short;
            problems.push(format!(
                "{metric} rose by {c:.0} while the server answered {a:.0} request(s) as {kind} \
                 ({u:.0} of them while its counters were unseen): {short:.0} never counted"
            ));
        }
        over += (c - a).max(0.0);
    }
    let extra = (over - unknown as f64).max(0.0);
    if extra > 0.0 {
        wrong += extra;
        problems.push(format!(
            "the counters rose by {over:.0} more than the answers of their kind, and only \
             {unknown} request(s) went without an answer: {extra:.0} counted that no answer shows"
        ));
    }
    let mut note = format!(
        "counted/answered: {}; {unknown} request(s) without an answer",
        parts.join(", ")
    );
    if !problems.is_empty() {
        note.push_str("; ");
        note.push_str(&problems.join("; "));
    }
    record(Some(wrong), note)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrape(at: u64, start_s: u64, received: u64, duplicate: u64, rejected: u64) -> Scrape {
        let text = format!(
            "process_start_time_seconds {start_s}\n\
             gitspy_events_received_total{{event_type=\"issues\"}} {received}\n\
             gitspy_events_duplicate_total{{event_type=\"issues\"}} {duplicate}\n\
             gitspy_events_rejected_total{{reason=\"queue_unavailable\"}} {rejected}\n"
        );
        Scrape::parse("server", at, &text).unwrap()
    }

    fn entry(id: &str, at: u64, outcome: Outcome, answer: &str) -> LedgerEntry {
        LedgerEntry::answered(id, at, outcome, Some(answer), 3.0)
    }

    /// t0 = 100 s; the server started at 99 s... or at 101 s (inside the run).
    fn evidence(scrapes: Vec<Scrape>, entries: Vec<LedgerEntry>) -> Evidence {
        let mut ev = Evidence {
            t0_unix_ms: 100_000,
            ..Evidence::default()
        };
        for s in scrapes {
            ev.series.push(s);
        }
        ev.ledger.entries = entries;
        ev
    }

    fn ledger() -> Vec<LedgerEntry> {
        vec![
            entry("a", 102_000, Outcome::Status(202), "queued"),
            entry("b", 102_100, Outcome::Status(202), "spooled"),
            entry("a", 102_200, Outcome::Status(200), "duplicate"),
            entry("c", 102_300, Outcome::Status(503), "queue unavailable"),
            entry(
                "d",
                102_400,
                Outcome::Refused("connection refused".into()),
                "",
            ),
        ]
    }

    #[test]
    fn counters_equal_to_the_answers_pass() {
        let ev = evidence(
            vec![scrape(101_500, 101, 0, 0, 0), scrape(110_000, 101, 2, 1, 1)],
            ledger(),
        );
        let r = ingress_matches_ledger(&ev);
        assert!(r.passed, "{r:?}");
        assert_eq!(r.measured, Some(0.0));
        assert!(
            r.note
                .starts_with("counted/answered: received 2/2, duplicate 1/1, rejected 1/1"),
            "{}",
            r.note
        );
    }

    #[test]
    fn a_received_count_short_of_the_202s_fails_and_a_duplicate_counted_twice_fails() {
        let short = evidence(
            vec![scrape(101_500, 101, 0, 0, 0), scrape(110_000, 101, 1, 1, 1)],
            ledger(),
        );
        let r = ingress_matches_ledger(&short);
        assert!(!r.passed);
        assert_eq!(r.measured, Some(1.0));
        assert!(r.note.contains("1 never counted"), "{}", r.note);

        let over = evidence(
            vec![scrape(101_500, 101, 0, 0, 0), scrape(110_000, 101, 2, 2, 1)],
            ledger(),
        );
        let r = ingress_matches_ledger(&over);
        assert_eq!(r.measured, Some(1.0), "{}", r.note);
        assert!(
            r.note.contains("1 counted that no answer shows"),
            "{}",
            r.note
        );
    }

    #[test]
    fn unanswered_requests_explain_counts_above_the_answers() {
        let mut entries = ledger();
        entries.push(entry("e", 102_500, Outcome::Timeout, ""));
        // The timed-out request was counted as received: explained.
        let ev = evidence(
            vec![scrape(101_500, 101, 0, 0, 0), scrape(110_000, 101, 3, 1, 1)],
            entries.clone(),
        );
        assert!(ingress_matches_ledger(&ev).passed);
        // Two counted beyond the answers with one unanswered request: one is unexplained.
        let ev = evidence(
            vec![scrape(101_500, 101, 0, 0, 0), scrape(110_000, 101, 4, 1, 1)],
            entries,
        );
        assert_eq!(ingress_matches_ledger(&ev).measured, Some(1.0));
    }

    #[test]
    fn a_killed_servers_unseen_tail_is_slack_and_its_successor_counts_from_zero() {
        // The first instance was scraped at 102.05 s (having counted "a"), answered "b" and
        // the duplicate after that, then died; the second started at 103 s and answered the
        // 503 — counted from 0 at its first scrape.
        let ev = evidence(
            vec![
                scrape(101_500, 101, 0, 0, 0),
                scrape(102_050, 101, 1, 0, 0),
                scrape(104_000, 103, 0, 0, 1),
                scrape(110_000, 103, 0, 0, 1),
            ],
            ledger(),
        );
        let r = ingress_matches_ledger(&ev);
        assert!(r.passed, "{r:?}");
        // Without the restart the same shortfall is a failure.
        let ev = evidence(
            vec![
                scrape(101_500, 101, 0, 0, 0),
                scrape(102_050, 101, 1, 0, 0),
                scrape(104_000, 101, 1, 0, 1),
                scrape(110_000, 101, 1, 0, 1),
            ],
            ledger(),
        );
        let r = ingress_matches_ledger(&ev);
        assert_eq!(r.measured, Some(2.0), "{}", r.note);
    }

    #[test]
    fn the_fault_log_ends_the_unseen_window_when_the_successor_is_up() {
        // Killed at 102.5 s, started again by 102.9 s; "f" answered by the successor at 103.5 s
        // but missing from its first scrape.
        let mut entries = ledger();
        entries.push(entry("f", 103_500, Outcome::Status(202), "queued"));
        let scrapes = || {
            vec![
                scrape(101_500, 101, 0, 0, 0),
                scrape(102_050, 101, 1, 0, 0),
                scrape(104_000, 103, 0, 0, 1),
                scrape(110_000, 103, 0, 0, 1),
            ]
        };
        // Without a fault log the successor's first scrape ends the window: "f" is slack.
        let ev = evidence(scrapes(), entries.clone());
        assert!(ingress_matches_ledger(&ev).passed);
        let mut ev = evidence(scrapes(), entries);
        ev.faults
            .push(window("server kill", 2_500, 2_900, FaultOutcome::Applied));
        let r = ingress_matches_ledger(&ev);
        assert_eq!(r.measured, Some(1.0), "{}", r.note);
    }

    #[test]
    fn instances_that_died_unscraped_between_two_scrapes_are_all_unseen() {
        // Crashed at 102.5 s, started at 102.9 s, crashed again at 103.2 s before any scrape,
        // started at 103.6 s: "f", answered at 103.0 s by the unscraped middle instance, is slack.
        let mut entries = ledger();
        entries.push(entry("f", 103_000, Outcome::Status(202), "queued"));
        let mut ev = evidence(
            vec![
                scrape(101_500, 101, 0, 0, 0),
                scrape(102_050, 101, 1, 0, 0),
                scrape(104_000, 103, 0, 0, 1),
                scrape(110_000, 103, 0, 0, 1),
            ],
            entries,
        );
        for (start, end) in [(2_500, 2_900), (3_200, 3_600)] {
            ev.faults.push(window(
                "server crash_at after-enqueue",
                start,
                end,
                FaultOutcome::Applied,
            ));
        }
        let r = ingress_matches_ledger(&ev);
        assert!(r.passed, "{}", r.note);
    }

    #[test]
    fn the_last_scrape_of_a_dead_server_is_unseen_from_when_it_was_asked_for() {
        // The scrape before the kill was asked for at 102.06 s and answered at 102.25 s; the
        // server wrote its metrics before "b" (sent 102.1 s, answered 102.103 s) was counted.
        let mut last = scrape(102_250, 101, 1, 0, 0);
        last.asked_ms = Some(102_060);
        let scrapes = |last: Scrape| {
            vec![
                scrape(101_500, 101, 0, 0, 0),
                last,
                scrape(104_000, 103, 0, 1, 1),
                scrape(110_000, 103, 0, 1, 1),
            ]
        };
        let mut ev = evidence(scrapes(last.clone()), ledger());
        ev.faults
            .push(window("server kill", 2_300, 2_400, FaultOutcome::Applied));
        let r = ingress_matches_ledger(&ev);
        assert!(r.passed, "{}", r.note);
        // Timed only by its answer, the same scrape would have seen "b": one never counted.
        last.asked_ms = None;
        let mut ev = evidence(scrapes(last), ledger());
        ev.faults
            .push(window("server kill", 2_300, 2_400, FaultOutcome::Applied));
        assert_eq!(ingress_matches_ledger(&ev).measured, Some(1.0));
    }

    #[test]
    fn a_managed_server_counts_from_zero_even_when_its_first_scrape_failed() {
        // Started before the run (99 s), first scraped only after it answered everything.
        let managed = |workers: bool| {
            let mut ev = evidence(vec![scrape(110_000, 99, 2, 1, 1)], ledger());
            if workers {
                ev.workers = vec![("worker-0".into(), Vec::new())];
            }
            ingress_matches_ledger(&ev)
        };
        assert!(managed(true).passed, "{}", managed(true).note);
        // Attached, the first scrape is the baseline: nothing counted during the run.
        assert_eq!(managed(false).measured, Some(4.0));
    }

    #[test]
    fn a_missed_fault_does_not_end_the_unseen_window() {
        // The server died unscraped after 102.05 s (a crash point that fired after its
        // deadline, logged as missed and ending before that scrape): everything after the
        // scrape up to the successor's first is slack.
        let mut ev = evidence(
            vec![
                scrape(101_500, 101, 0, 0, 0),
                scrape(102_050, 101, 1, 0, 0),
                scrape(104_000, 103, 0, 0, 0),
            ],
            ledger(),
        );
        ev.faults.push(window(
            "server crash_at after-enqueue",
            1_900,
            2_000,
            FaultOutcome::Missed,
        ));
        assert!(ingress_matches_ledger(&ev).passed);
    }

    fn window(
        kind: &str,
        start: u64,
        end: u64,
        outcome: FaultOutcome,
    ) -> crate::report::FaultWindow {
        crate::report::FaultWindow {
            kind: kind.into(),
            target: "server".into(),
            requested_ms: None,
            start_ms: start,
            end_ms: Some(end),
            outcome,
            crash: true,
            trigger: None,
            hit: None,
            note: String::new(),
        }
    }

    #[test]
    fn an_attached_server_running_before_the_run_counts_from_its_first_scrape() {
        let ev = evidence(
            vec![scrape(101_500, 50, 40, 7, 3), scrape(110_000, 50, 42, 8, 4)],
            ledger(),
        );
        assert!(ingress_matches_ledger(&ev).passed);
    }

    #[test]
    fn without_the_servers_counters_there_is_nothing_to_compare() {
        let ev = evidence(Vec::new(), ledger());
        assert!(!observable(&ev));
        let r = ingress_matches_ledger(&ev);
        assert_eq!(r.measured, None);
        assert!(!r.passed);
    }
}
