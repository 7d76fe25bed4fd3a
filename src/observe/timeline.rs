//! Exact per-second series from the run's own records, not from the metrics poller: every send
//! time is in the ledger and every apply time is the store's `applied_at` (from
//! `POST /deliveries/lookup`), so rates, send-to-applied latency and the not-yet-processed count
//! are known to the millisecond for any run length. This module bins them into 1 s buckets.
//!
//! Pure: the run engine passes in the ledger entries and the apply times it gathered; the output
//! is the report model's [`Series`](crate::report::Series), with times relative to the run's
//! start. Series names (and the charts that draw them): `sent_rate`, `acked_rate`,
//! `rejected_rate`, `applied_rate` (per second); `latency_p50_ms`, `latency_p95_ms`,
//! `latency_p99_ms` (first send to applied, of the deliveries applied in that second);
//! `unapplied` (sent at least once, not yet applied — a rejected delivery waiting for its
//! redelivery included) and `unprocessed` (acknowledged but not yet applied), both at the end of
//! each second.

use std::collections::{BTreeMap, HashMap};

use crate::load::LedgerEntry;
use crate::report::Series;

/// Bucket width of every exact series.
pub const BIN_MS: u64 = 1000;

/// Names of the exact series, in the order [`exact_series`] returns them.
pub const NAMES: [&str; 9] = [
    "sent_rate",
    "acked_rate",
    "rejected_rate",
    "applied_rate",
    "latency_p50_ms",
    "latency_p95_ms",
    "latency_p99_ms",
    "unapplied",
    "unprocessed",
];

/// Bins the ledger and the apply times into per-second series.
///
/// `t0_unix_ms` is the run's start and `end_unix_ms` its end (both unix ms); `applied` maps a
/// delivery id to its `applied_at` (unix ms) for the ids the store applied. Events before the
/// start count in the first second; the range is widened to the last event if that is later
/// than `end_unix_ms`. Each point sits at the end of its second (the run's end for the last,
/// partial one) and a rate is over the time its bucket really covers.
pub fn exact_series(
    t0_unix_ms: u64,
    end_unix_ms: u64,
    entries: &[LedgerEntry],
    applied: &BTreeMap<String, u64>,
) -> Vec<Series> {
    let rel = |at: u64| at.saturating_sub(t0_unix_ms);
    let answered = |e: &LedgerEntry| e.sent_at_ms + e.latency_ms.max(0.0).round() as u64;

    // Per delivery: first send, first acknowledgement.
    let mut first_sent: HashMap<&str, u64> = HashMap::new();
    let mut first_ack: HashMap<&str, u64> = HashMap::new();
    let mut last = rel(end_unix_ms);
    let mut sent = Vec::new();
    let mut acked = Vec::new();
    let mut rejected = Vec::new();
    for e in entries {
        let s = rel(e.sent_at_ms);
        let a = rel(answered(e));
        last = last.max(a);
        sent.push(s);
        let fs = first_sent.entry(e.delivery.as_str()).or_insert(s);
        *fs = (*fs).min(s);
        if e.outcome.is_success() {
            acked.push(a);
            let fa = first_ack.entry(e.delivery.as_str()).or_insert(a);
            *fa = (*fa).min(a);
        } else if e.outcome.is_rejected() {
            rejected.push(a);
        }
    }
    let mut applies: Vec<(u64, f64)> = Vec::new(); // (applied, latency)
                                                   // Backlog changes: +1 when a delivery becomes owed, -1 when it is applied.
    let mut backlog_events: Vec<(u64, i64)> = Vec::new();
    // The same from the first send on, acknowledged or not.
    let mut unapplied_events: Vec<(u64, i64)> = Vec::new();
    for (id, &at) in applied {
        let Some(&s) = first_sent.get(id.as_str()) else {
            continue; // not sent by this run
        };
        let a = rel(at);
        last = last.max(a);
        applies.push((a, a.saturating_sub(s) as f64));
        let owed_from = first_ack.get(id.as_str()).copied().unwrap_or(s).min(a);
        backlog_events.push((owed_from, 1));
        backlog_events.push((a, -1));
        unapplied_events.push((s.min(a), 1));
        unapplied_events.push((a, -1));
    }
    for (id, &s) in &first_sent {
        if !applied.contains_key(*id) {
            unapplied_events.push((s, 1));
        }
    }
    unapplied_events.sort_unstable();
    for (id, &a) in &first_ack {
        if !applied.contains_key(*id) {
            backlog_events.push((a, 1));
        }
    }
    backlog_events.sort_unstable();

    let bins = last.div_ceil(BIN_MS).max(1) as usize;
    let bin_of = |t: u64| ((t / BIN_MS) as usize).min(bins - 1);
    let point_at = |k: usize| ((k as u64 + 1) * BIN_MS).min(last.max(1));
    let span = |k: usize| point_at(k).saturating_sub(k as u64 * BIN_MS).max(1) as f64;

    let rate = |name: &str, times: &[u64]| {
        let mut counts = vec![0u64; bins];
        for &t in times {
            counts[bin_of(t)] += 1;
        }
        Series {
            name: name.into(),
            unit: "/s".into(),
            points: counts
                .iter()
                .enumerate()
                .map(|(k, &n)| (point_at(k), n as f64 * 1000.0 / span(k)))
                .collect(),
        }
    };
    let applied_times: Vec<u64> = applies.iter().map(|a| a.0).collect();
    let mut out = vec![
        rate("sent_rate", &sent),
        rate("acked_rate", &acked),
        rate("rejected_rate", &rejected),
        rate("applied_rate", &applied_times),
    ];

    let mut per_bin: Vec<Vec<f64>> = vec![Vec::new(); bins];
    for &(a, l) in &applies {
        per_bin[bin_of(a)].push(l);
    }
    for v in &mut per_bin {
        v.sort_by(f64::total_cmp);
    }
    for (name, q) in [
        ("latency_p50_ms", 0.50),
        ("latency_p95_ms", 0.95),
        ("latency_p99_ms", 0.99),
    ] {
        out.push(Series {
            name: name.into(),
            unit: "ms".into(),
            points: per_bin
                .iter()
                .enumerate()
                .filter_map(|(k, v)| nearest_rank(v, q).map(|p| (point_at(k), p)))
                .collect(),
        });
    }

    for (name, events) in [
        ("unapplied", &unapplied_events),
        ("unprocessed", &backlog_events),
    ] {
        let mut level = 0i64;
        let mut i = 0;
        let mut points = Vec::with_capacity(bins);
        for k in 0..bins {
            let t = point_at(k);
            // The state at the end of the bucket: events before `t` have happened; at the very
            // end of the run, those exactly at `t` too.
            while i < events.len() && (events[i].0 < t || k == bins - 1 && events[i].0 <= t) {
                level += events[i].1;
                i += 1;
            }
            points.push((t, level.max(0) as f64));
        }
        out.push(Series {
            name: name.into(),
            unit: "deliveries".into(),
            points,
        });
    }
    out
}

/// The nearest-rank `q` quantile of sorted `v`; `None` when empty.
fn nearest_rank(v: &[f64], q: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let rank = (q * v.len() as f64).ceil().max(1.0) as usize;
    v.get(rank.min(v.len()) - 1).copied()
}

/// The apply time of a lookup's `applied_at` (unix ms as GitSpy writes it), if it is one.
pub fn applied_ms(v: &serde_json::Value) -> Option<u64> {
    v.as_u64()
        .or_else(|| v.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::Outcome;

    fn entry(id: &str, sent: u64, latency: f64, outcome: Outcome) -> LedgerEntry {
        LedgerEntry {
            delivery: id.into(),
            attempt: 1,
            duplicate_of: None,
            event: "issues".into(),
            scheduled_at_ms: sent,
            sent_at_ms: sent,
            outcome,
            latency_ms: latency,
            answer: None,
        }
    }

    fn get<'a>(s: &'a [Series], name: &str) -> &'a [(u64, f64)] {
        &s.iter().find(|x| x.name == name).expect(name).points
    }

    #[test]
    fn known_send_and_apply_times_give_the_expected_seconds() {
        let t0 = 1_000_000;
        let ok = Outcome::Status(202);
        let entries = vec![
            entry("a", t0 + 100, 10.0, ok.clone()),
            entry("b", t0 + 200, 10.0, ok.clone()),
            entry("c", t0 + 1_100, 5.0, Outcome::Status(503)),
            entry("c", t0 + 2_100, 5.0, ok.clone()),
            entry("d", t0 + 2_200, 5.0, Outcome::Timeout),
        ];
        let applied: BTreeMap<String, u64> = [
            ("a".to_string(), t0 + 300),   // 200 ms after send
            ("b".to_string(), t0 + 1_400), // 1200 ms
            ("c".to_string(), t0 + 2_500), // 1400 ms after its first send
        ]
        .into();
        let s = exact_series(t0, t0 + 3_000, &entries, &applied);
        let names: Vec<&str> = s.iter().map(|x| x.name.as_str()).collect();
        assert_eq!(names, NAMES);
        assert_eq!(
            get(&s, "sent_rate"),
            [(1000, 2.0), (2000, 1.0), (3000, 2.0)]
        );
        assert_eq!(
            get(&s, "acked_rate"),
            [(1000, 2.0), (2000, 0.0), (3000, 1.0)]
        );
        assert_eq!(
            get(&s, "rejected_rate"),
            [(1000, 0.0), (2000, 1.0), (3000, 0.0)]
        );
        assert_eq!(
            get(&s, "applied_rate"),
            [(1000, 1.0), (2000, 1.0), (3000, 1.0)]
        );
        assert_eq!(
            get(&s, "latency_p99_ms"),
            [(1000, 200.0), (2000, 1200.0), (3000, 1400.0)]
        );
        // Sent, not applied: a 100..300, b 200..1400, c 1100..2500, d from 2200 on.
        assert_eq!(
            get(&s, "unapplied"),
            [(1000, 1.0), (2000, 1.0), (3000, 1.0)]
        );
        // Owed: a 110..300, b 210..1400, c 2105..2500; d never acknowledged nor applied.
        assert_eq!(
            get(&s, "unprocessed"),
            [(1000, 1.0), (2000, 0.0), (3000, 0.0)]
        );
    }

    #[test]
    fn a_lost_delivery_stays_owed_and_a_partial_last_second_is_a_true_rate() {
        let t0 = 0;
        let entries = vec![
            entry("x", 100, 1.0, Outcome::Status(202)),
            entry("y", 1_100, 1.0, Outcome::Status(202)),
        ];
        let s = exact_series(t0, 1_500, &entries, &BTreeMap::new());
        assert_eq!(get(&s, "sent_rate"), [(1000, 1.0), (1500, 2.0)]);
        assert_eq!(get(&s, "unprocessed"), [(1000, 1.0), (1500, 2.0)]);
        assert_eq!(get(&s, "unapplied"), [(1000, 1.0), (1500, 2.0)]);
        assert!(get(&s, "latency_p50_ms").is_empty());
    }

    #[test]
    fn percentiles_are_nearest_rank_within_a_second() {
        let t0 = 0;
        let mut entries = Vec::new();
        let mut applied = BTreeMap::new();
        for i in 0..100u64 {
            let id = format!("d{i}");
            entries.push(entry(&id, 0, 1.0, Outcome::Status(202)));
            applied.insert(id, 10 + i); // latencies 10..=109 ms, all in the first second
        }
        let s = exact_series(t0, 1_000, &entries, &applied);
        assert_eq!(get(&s, "latency_p50_ms"), [(1000, 59.0)]);
        assert_eq!(get(&s, "latency_p95_ms"), [(1000, 104.0)]);
        assert_eq!(get(&s, "latency_p99_ms"), [(1000, 108.0)]);
        assert_eq!(get(&s, "applied_rate"), [(1000, 100.0)]);
        assert_eq!(get(&s, "unprocessed"), [(1000, 0.0)]);
    }

    #[test]
    fn applied_at_reads_integers() {
        assert_eq!(
            applied_ms(&serde_json::json!(1764180000123u64)),
            Some(1764180000123)
        );
        assert_eq!(applied_ms(&serde_json::json!("x")), None);
        assert_eq!(applied_ms(&serde_json::json!(-1)), None);
    }
}
