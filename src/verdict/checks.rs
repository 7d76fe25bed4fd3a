//! Check evaluation (SPEC §2.5): each function turns a measurement into a [`CheckResult`] that
//! carries the measured value next to its threshold, so a report reader never has to trust a
//! bare pass/fail.
//!
//! Metric checks read counter increases from the polled series. A process SIGKILLed between two
//! scrapes takes its last increments with it, so in scenarios that kill processes these checks
//! take a [`Tolerance`] and say so in their note. The per-delivery checks take none: they read
//! the store, which a kill cannot rewind.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::classes::{Class, Verdict};
use crate::observe::{CounterIncrease, HistogramWindow, RedisProbe};

/// The note every check with a kill tolerance carries.
pub const KILL_TOLERANCE_NOTE: &str = "this scenario kills processes: increments made after the \
                                       last scrape of a SIGKILLed process are unknowable";

/// A measured value: a number when there is one, otherwise a short text (e.g. "never").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Measured {
    /// A number (count, milliseconds, seconds: the threshold text says which).
    Number(f64),
    /// A value that is not a number.
    Text(String),
}

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    /// Check name, e.g. `deliveries.lost`, `backlog`, `job_duration_p95`.
    pub name: String,
    /// What was measured.
    pub measured: Measured,
    /// The threshold, as text, with its unit (e.g. `<= 0`, `<= 500 ms`).
    pub threshold: String,
    /// Whether the measurement is within the threshold.
    pub passed: bool,
    /// Why it failed, what tolerance was applied, or what the measurement could not see.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Slack for a metric check, with the reason that justifies it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tolerance {
    /// Absolute slack, in the check's unit (events).
    pub abs: f64,
    /// Why the slack exists; goes into the note.
    pub reason: Option<String>,
}

impl Tolerance {
    /// No slack: the metric must match exactly.
    pub fn exact() -> Tolerance {
        Tolerance {
            abs: 0.0,
            reason: None,
        }
    }

    /// Slack of `abs` events because the scenario SIGKILLs processes.
    pub fn for_kills(abs: f64) -> Tolerance {
        Tolerance {
            abs,
            reason: Some(KILL_TOLERANCE_NOTE.to_owned()),
        }
    }

    fn note(&self) -> Option<String> {
        if self.abs == 0.0 && self.reason.is_none() {
            return None;
        }
        Some(match &self.reason {
            Some(r) => format!("tolerance ±{}: {r}", fmt_num(self.abs)),
            None => format!("tolerance ±{}", fmt_num(self.abs)),
        })
    }

    fn suffix(&self) -> String {
        if self.abs == 0.0 {
            String::new()
        } else {
            format!(" ± {}", fmt_num(self.abs))
        }
    }
}

/// One check per class bound in `maxima` (e.g. `{lost: 0, duplicated: 0}`), named
/// `deliveries.<class>`, in class order. A failing one lists example ids.
pub fn deliveries(verdict: &Verdict, maxima: &BTreeMap<Class, u64>) -> Vec<CheckResult> {
    maxima
        .iter()
        .map(|(class, max)| {
            let n = verdict.count(*class);
            let passed = n <= *max;
            let note = (!passed).then(|| {
                let ex = verdict
                    .examples
                    .get(class)
                    .map(|v| v.join(", "))
                    .unwrap_or_default();
                format!("{n} {} deliveries, e.g. {ex}", class.as_str())
            });
            CheckResult {
                name: format!("deliveries.{}", class.as_str()),
                measured: Measured::Number(n as f64),
                threshold: format!("<= {max}"),
                passed,
                note,
            }
        })
        .collect()
}

/// A counter increase bounded above: `failed` (`gitspy_jobs_failed_total`) or `retries`
/// (`gitspy_jobs_retried_total`), named by `name`.
pub fn counter_max(
    name: &str,
    increase: &CounterIncrease,
    max: f64,
    tolerance: &Tolerance,
) -> CheckResult {
    let passed = increase.total <= max + tolerance.abs;
    let mut notes = Vec::new();
    if increase.resets > 0 {
        notes.push(format!(
            "{} counter resets (restarts) accounted for",
            increase.resets
        ));
    }
    notes.extend(tolerance.note());
    CheckResult {
        name: name.to_owned(),
        measured: Measured::Number(increase.total),
        threshold: format!("<= {}{}", fmt_num(max), tolerance.suffix()),
        passed,
        note: (!notes.is_empty()).then(|| notes.join("; ")),
    }
}

/// The backlog (`gitspy_queue_waiting + gitspy_queue_active` of ONE source, the server) must be
/// back to `<= max` within `within_ms` after `last_fault_end_ms`. `points` are the server's
/// `(at_ms, backlog)`; `None` points (Redis down, gauges absent) are unknown, never 0.
/// Measured: seconds from the end of the last fault to the first point at or under `max`.
pub fn backlog(
    points: &[(u64, Option<f64>)],
    last_fault_end_ms: u64,
    max: f64,
    within_ms: u64,
) -> CheckResult {
    let threshold = format!("<= {} within {} s", fmt_num(max), fmt_secs(within_ms));
    let after: Vec<(u64, f64)> = points
        .iter()
        .filter(|(at, _)| *at >= last_fault_end_ms)
        .filter_map(|(at, v)| v.map(|v| (*at, v)))
        .collect();
    match after.iter().find(|(_, v)| *v <= max) {
        Some((at, v)) => {
            let took = at - last_fault_end_ms;
            let passed = took <= within_ms;
            CheckResult {
                name: "backlog".to_owned(),
                measured: Measured::Number(took as f64 / 1000.0),
                threshold,
                passed,
                note: Some(format!(
                    "backlog {} at {} s after the last fault",
                    fmt_num(*v),
                    fmt_secs(took)
                )),
            }
        }
        None => {
            let note = match after.last() {
                Some((at, v)) => format!(
                    "never back under the threshold; last known backlog {} at {} s after the last fault",
                    fmt_num(*v),
                    fmt_secs(at - last_fault_end_ms)
                ),
                None => "no known backlog value after the last fault (gauges absent or no scrape)"
                    .to_owned(),
            };
            CheckResult {
                name: "backlog".to_owned(),
                measured: Measured::Text("never".to_owned()),
                threshold,
                passed: false,
                note: Some(note),
            }
        }
    }
}

/// p95 of the workers' job duration over the run must be under `max_ms`. A window with no
/// observation fails: the check cannot claim what it did not see.
pub fn job_duration_p95(window: &HistogramWindow, max_ms: f64) -> CheckResult {
    let threshold = format!("<= {} ms", fmt_num(max_ms));
    match window.p95 {
        Some(p95) => CheckResult {
            name: "job_duration_p95".to_owned(),
            measured: Measured::Number(p95),
            threshold,
            passed: p95 <= max_ms,
            note: Some(format!(
                "{} jobs observed; p50 {} ms; estimated from histogram buckets",
                fmt_num(window.count),
                window.p50.map_or_else(|| "-".to_owned(), fmt_num)
            )),
        },
        None => CheckResult {
            name: "job_duration_p95".to_owned(),
            measured: Measured::Text("no data".to_owned()),
            threshold,
            passed: false,
            note: Some("no job duration was observed in the window".to_owned()),
        },
    }
}

/// No delivery lock may be stuck at the end of the run.
pub fn no_stuck_locks(probe: &RedisProbe) -> CheckResult {
    let stuck: Vec<String> = probe
        .stuck_locks()
        .map(|l| {
            let why = l.stuck.map_or("", |s| s.describe());
            format!("{} ({why}, pttl {} ms)", l.delivery, l.pttl_ms)
        })
        .collect();
    let n = stuck.len();
    CheckResult {
        name: "no_stuck_locks".to_owned(),
        measured: Measured::Number(n as f64),
        threshold: "= 0".to_owned(),
        passed: n == 0,
        note: (n > 0).then(|| {
            let shown: Vec<&str> = stuck.iter().take(5).map(String::as_str).collect();
            format!("stuck: {}", shown.join(", "))
        }),
    }
}

/// A number without a trailing `.0` when it is whole.
fn fmt_num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v:.2}")
    }
}

fn fmt_secs(ms: u64) -> String {
    fmt_num(ms as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::probe::{LockInfo, StuckReason};
    use crate::verdict::classes::Tally;

    fn inc(total: f64, resets: u32) -> CounterIncrease {
        CounterIncrease {
            total,
            per_target: BTreeMap::new(),
            resets,
        }
    }

    fn verdict(counts: &[(Class, u64)], examples: &[(Class, &[&str])]) -> Verdict {
        let mut c: BTreeMap<Class, u64> = Class::ALL.iter().map(|c| (*c, 0)).collect();
        c.extend(counts.iter().copied());
        Verdict {
            tally: Tally::default(),
            counts: c,
            examples: examples
                .iter()
                .map(|(k, v)| (*k, v.iter().map(|s| (*s).to_owned()).collect()))
                .collect(),
            deliveries: vec![],
        }
    }

    #[test]
    fn deliveries_one_check_per_bound_with_examples_when_failing() {
        let v = verdict(
            &[(Class::Lost, 2), (Class::Ok, 18)],
            &[(Class::Lost, &["d-3", "d-9"])],
        );
        let maxima: BTreeMap<Class, u64> = [(Class::Lost, 0), (Class::Duplicated, 0)].into();
        let r = deliveries(&v, &maxima);
        assert_eq!(
            r,
            [
                CheckResult {
                    name: "deliveries.lost".into(),
                    measured: Measured::Number(2.0),
                    threshold: "<= 0".into(),
                    passed: false,
                    note: Some("2 lost deliveries, e.g. d-3, d-9".into()),
                },
                CheckResult {
                    name: "deliveries.duplicated".into(),
                    measured: Measured::Number(0.0),
                    threshold: "<= 0".into(),
                    passed: true,
                    note: None,
                },
            ]
        );
    }

    #[test]
    fn failed_and_retries_within_max() {
        let f = counter_max("failed", &inc(0.0, 0), 0.0, &Tolerance::exact());
        assert!(f.passed);
        assert_eq!(f.threshold, "<= 0");
        assert_eq!(f.note, None);
        let f = counter_max("failed", &inc(1.0, 0), 0.0, &Tolerance::exact());
        assert!(!f.passed);
        let r = counter_max("retries", &inc(6.0, 2), 5.0, &Tolerance::for_kills(1.0));
        assert!(r.passed);
        assert_eq!(r.threshold, "<= 5 ± 1");
        assert!(r.note.unwrap().starts_with("2 counter resets"));
    }

    #[test]
    fn backlog_back_under_max_within_deadline() {
        // fault ends at 10 000; Redis down until 20 000 (gauges absent), then drains.
        let pts = [
            (0, Some(0.0)),
            (10_000, None),
            (20_000, Some(40.0)),
            (30_000, Some(12.0)),
            (40_000, Some(0.0)),
        ];
        let ok = backlog(&pts, 10_000, 0.0, 60_000);
        assert!(ok.passed);
        assert_eq!(ok.measured, Measured::Number(30.0));
        assert_eq!(ok.threshold, "<= 0 within 60 s");
        let late = backlog(&pts, 10_000, 0.0, 20_000);
        assert!(!late.passed);
        assert_eq!(late.measured, Measured::Number(30.0));
        // the value before the fault ended does not count
        let never = backlog(&pts[..4], 10_000, 0.0, 60_000);
        assert!(!never.passed);
        assert_eq!(never.measured, Measured::Text("never".into()));
        assert!(never
            .note
            .unwrap()
            .contains("last known backlog 12 at 20 s"));
        // an absent gauge is unknown, not 0
        let unknown = backlog(&[(10_000, None), (20_000, None)], 10_000, 0.0, 60_000);
        assert!(!unknown.passed);
    }

    #[test]
    fn p95_under_threshold_and_no_data_fails() {
        let w = HistogramWindow {
            count: 20.0,
            p50: Some(4.0),
            p95: Some(120.0),
        };
        let r = job_duration_p95(&w, 500.0);
        assert!(r.passed);
        assert_eq!(r.measured, Measured::Number(120.0));
        assert_eq!(r.threshold, "<= 500 ms");
        assert!(!job_duration_p95(&w, 100.0).passed);
        let none = job_duration_p95(
            &HistogramWindow {
                count: 0.0,
                p50: None,
                p95: None,
            },
            500.0,
        );
        assert!(!none.passed);
        assert_eq!(none.measured, Measured::Text("no data".into()));
    }

    #[test]
    fn stuck_locks_are_counted_and_named() {
        let lock = |d: &str, pttl: i64, stuck| LockInfo {
            key: format!("events:{d}:lock"),
            delivery: d.to_owned(),
            pttl_ms: pttl,
            value: None,
            stuck,
        };
        let mut p = RedisProbe {
            at_ms: 0,
            states: BTreeMap::new(),
            locks: vec![lock("a", 5_000, None)],
            stream_exists: true,
            stream_len: 0,
            pending: Some(0),
            dead_len: 0,
        };
        let r = no_stuck_locks(&p);
        assert!(r.passed);
        assert_eq!(r.measured, Measured::Number(0.0));
        p.locks.push(lock("b", -1, Some(StuckReason::NoTtl)));
        let r = no_stuck_locks(&p);
        assert!(!r.passed);
        assert_eq!(r.measured, Measured::Number(1.0));
        assert_eq!(r.note.as_deref(), Some("stuck: b (no TTL, pttl -1 ms)"));
    }

    #[test]
    fn check_result_round_trips_through_json() {
        let r = backlog(&[(5, Some(0.0))], 0, 0.0, 10);
        let json = serde_json::to_string(&r).unwrap();
        assert!(json.contains(r#""measured":0.005"#), "{json}");
        let back: CheckResult = serde_json::from_str(&json).unwrap();
        assert_eq!(back, r);
    }
}
