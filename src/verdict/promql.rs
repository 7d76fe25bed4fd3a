//! The `promql` and `alert` checks: Prometheus' answers (gathered by the run engine into
//! [`Evidence::prom`](super::Evidence)) against the check's bounds, one record per bound, and
//! the `ALERTS` series against the fault log. Pure.

use super::evidence::PromAnswer;
use crate::observe::prometheus::PromSeries;
use crate::report::{CheckOp, CheckRecord, FaultWindow};
use crate::scenario::model::{AlertCheck, PromqlCheck};

/// `promql`: every sample of Prometheus' answer within each bound, one record per bound
/// (`promql.<name>`, or `promql.<name>.min`/`.max` with both). The measured value is the worst
/// sample (the largest for `max`, the smallest for `min`, the farthest for `equals`); NaN, an
/// empty answer ("no data") and an unreachable Prometheus fail with nothing measured.
pub fn promql(
    answer: Option<&PromAnswer>,
    q: &PromqlCheck,
    n: usize,
    t0_unix_ms: u64,
) -> Vec<CheckRecord> {
    let base = format!(
        "promql.{}",
        q.name
            .as_ref()
            .map_or_else(|| n.to_string(), |s| s.value.clone())
    );
    let mut bounds = Vec::new();
    if let Some(v) = q.equals {
        bounds.push((CheckOp::Eq, v, "equals"));
    }
    if let Some(v) = q.min {
        bounds.push((CheckOp::Ge, v, "min"));
    }
    if let Some(v) = q.max {
        bounds.push((CheckOp::Le, v, "max"));
    }
    let several = bounds.len() > 1;
    let expr = q.expr.value.as_str();
    bounds
        .into_iter()
        .map(|(op, threshold, suffix)| {
            let name = if several {
                format!("{base}.{suffix}")
            } else {
                base.clone()
            };
            let (measured, note) = promql_bound(answer, expr, op, threshold, t0_unix_ms);
            CheckRecord {
                name,
                measured,
                op,
                threshold,
                unit: String::new(),
                passed: op.holds(measured, threshold),
                note,
            }
        })
        .collect()
}

/// A whole number as such, anything else with three decimals.
fn num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
    }
}

/// ` for {labels}`, or nothing for a series without labels.
fn labels_suffix(s: &PromSeries) -> String {
    if s.labels.is_empty() {
        String::new()
    } else {
        format!(" for {}", s.label_text())
    }
}

/// The worst sample against one bound, and the note saying where it was.
fn promql_bound(
    answer: Option<&PromAnswer>,
    expr: &str,
    op: CheckOp,
    threshold: f64,
    t0_unix_ms: u64,
) -> (Option<f64>, String) {
    let Some(a) = answer else {
        return (
            None,
            format!("`{expr}`: not evaluated (no Prometheus was asked)"),
        );
    };
    let when = if a.range {
        format!(
            "over the run (+{:.0}s to +{:.0}s)",
            a.from_ms.saturating_sub(t0_unix_ms) as f64 / 1000.0,
            a.to_ms.saturating_sub(t0_unix_ms) as f64 / 1000.0
        )
    } else {
        format!(
            "at the end (+{:.1}s)",
            a.to_ms.saturating_sub(t0_unix_ms) as f64 / 1000.0
        )
    };
    let extra = a
        .note
        .as_ref()
        .map(|n| format!("; {n}"))
        .unwrap_or_default();
    let series = match &a.result {
        Err(e) => return (None, format!("`{expr}` {when}: {e}{extra}")),
        Ok(s) => s,
    };
    let samples: Vec<(&PromSeries, u64, f64)> = series
        .iter()
        .flat_map(|s| s.samples.iter().map(move |(at, v)| (s, *at, *v)))
        .collect();
    if samples.is_empty() {
        return (
            None,
            format!(
                "no data: `{expr}` returned no series {when} (does Prometheus scrape the system, and does the metric exist?){extra}"
            ),
        );
    }
    let at_text = |at: u64| format!("+{:.1}s", at.saturating_sub(t0_unix_ms) as f64 / 1000.0);
    if let Some((s, at, _)) = samples.iter().find(|(_, _, v)| v.is_nan()) {
        return (
            None,
            format!(
                "`{expr}` {when} is NaN{} at {} (e.g. a quantile of a rate that saw no increase in its window){extra}",
                labels_suffix(s),
                at_text(*at)
            ),
        );
    }
    let badness = |v: f64| match op {
        CheckOp::Le | CheckOp::Lt => v,
        CheckOp::Ge | CheckOp::Gt => -v,
        CheckOp::Eq => (v - threshold).abs(),
    };
    let worst = samples
        .iter()
        .copied()
        .max_by(|a, b| badness(a.2).total_cmp(&badness(b.2)));
    let outside = samples
        .iter()
        .filter(|(_, _, v)| !op.holds(Some(*v), threshold))
        .count();
    let Some((s, at, v)) = worst else {
        return (None, format!("no data: `{expr}` {when}{extra}"));
    };
    let where_ = if a.range || series.len() > 1 {
        format!(" at {}{}", at_text(at), labels_suffix(s))
    } else {
        String::new()
    };
    (
        Some(v),
        format!(
            "`{expr}` {when}: worst {}{where_}; {} series, {} sample(s), {outside} outside {} {threshold}{extra}",
            num(v),
            series.len(),
            samples.len(),
            op.symbol()
        ),
    )
}

/// The default slack of an `alert` check after the heal.
const ALERT_WITHIN_MS: u64 = 10_000;

/// `alert`: when the alert fired (its `ALERTS{alertstate="firing"}` samples), against the
/// fault it must fire in (`alert.<name>.fires`: seconds from the fault's start to the first
/// firing, at most until the heal plus `within`, never before the fault; `alert.<name>.resolves`:
/// seconds it kept firing after the heal, at most `within`) or against the whole run (`never`:
/// `alert.<name>` counts firing samples, at most 0).
pub fn alert(
    answer: Option<&PromAnswer>,
    a: &AlertCheck,
    faults: &[FaultWindow],
    t0_unix_ms: u64,
) -> Vec<CheckRecord> {
    let name = a.name.value.as_str();
    let base = format!("alert.{name}");
    let within_ms = a
        .within
        .as_ref()
        .map_or(ALERT_WITHIN_MS, |d| d.value.get().as_millis() as u64);
    let rec = |suffix: &str, measured: Option<f64>, threshold: f64, unit: &str, note: String| {
        CheckRecord {
            name: if suffix.is_empty() {
                base.clone()
            } else {
                format!("{base}.{suffix}")
            },
            measured,
            op: CheckOp::Le,
            threshold,
            unit: unit.into(),
            passed: CheckOp::Le.holds(measured, threshold),
            note,
        }
    };
    let rel = |at: u64| at.saturating_sub(t0_unix_ms) as f64 / 1000.0;
    let extra = answer
        .and_then(|x| x.note.as_ref())
        .map(|n| format!("; {n}"))
        .unwrap_or_default();
    let suffix0 = if a.never || a.fires_during.is_none() {
        ""
    } else {
        "fires"
    };
    // Every firing instant (any label set), in time order.
    let firing: Vec<(u64, String)> = match answer.map(|x| &x.result) {
        None => {
            let note = format!("{name}: not evaluated (no Prometheus was asked)");
            return vec![rec(suffix0, None, 0.0, "", note)];
        }
        Some(Err(e)) => {
            let note = format!("`ALERTS{{alertname=\"{name}\"}}` over the run: {e}{extra}");
            return vec![rec(suffix0, None, 0.0, "", note)];
        }
        Some(Ok(series)) => {
            let mut v: Vec<(u64, String)> = series
                .iter()
                .flat_map(|s| {
                    // The labels that tell firing series apart (not the name and state).
                    let mut s = s.clone();
                    for l in ["__name__", "alertname", "alertstate"] {
                        s.labels.remove(l);
                    }
                    let labels = labels_suffix(&s);
                    s.samples
                        .into_iter()
                        .filter(|(_, v)| *v > 0.0)
                        .map(move |(at, _)| (at, labels.clone()))
                })
                .collect();
            v.sort();
            v
        }
    };
    let span = |v: &[(u64, String)]| match (v.first(), v.last()) {
        (Some(f), Some(l)) => format!("fired from +{:.1}s to +{:.1}s{}", rel(f.0), rel(l.0), f.1),
        _ => "never fired".to_string(),
    };
    let Some(during) = a.fires_during.as_ref().filter(|_| !a.never) else {
        let note = format!("{name} {} over the run{extra}", span(&firing));
        return vec![rec("", Some(firing.len() as f64), 0.0, "samples", note)];
    };
    let during = during.value.as_str();
    let Some(w) = faults
        .iter()
        .find(|f| f.kind == during || f.kind.starts_with(&format!("{during} ")))
    else {
        let kinds: Vec<&str> = faults.iter().map(|f| f.kind.as_str()).collect();
        let note = format!(
            "no fault `{during}` in this run (faults: {})",
            if kinds.is_empty() {
                "none".to_string()
            } else {
                kinds.join(", ")
            }
        );
        return vec![rec("fires", None, 0.0, "s", note)];
    };
    let start = t0_unix_ms + w.start_ms;
    let healed = w.end_ms.map(|e| t0_unix_ms + e);
    let window = format!(
        "`{}` from +{:.1}s to {}",
        w.kind,
        rel(start),
        healed.map_or("the end (never healed)".to_string(), |h| format!(
            "+{:.1}s",
            rel(h)
        ))
    );
    let end = healed.unwrap_or_else(|| answer.map_or(start, |x| x.to_ms));
    let limit_s = (end + within_ms).saturating_sub(start) as f64 / 1000.0;
    let before: Vec<(u64, String)> = firing.iter().filter(|(t, _)| *t < start).cloned().collect();
    let first = firing.iter().find(|(t, _)| *t >= start);
    let mut out = vec![match (before.is_empty(), first) {
        (false, _) => rec(
            "fires",
            None,
            limit_s,
            "s",
            format!(
                "{name} fired before the fault (a false alarm): {}; fault {window}{extra}",
                span(&before)
            ),
        ),
        (true, None) => rec(
            "fires",
            None,
            limit_s,
            "s",
            format!("{name} never fired; fault {window}{extra}"),
        ),
        (true, Some((t, labels))) => rec(
            "fires",
            Some(t.saturating_sub(start) as f64 / 1000.0),
            limit_s,
            "s",
            format!(
                "{name} first fired at +{:.1}s{labels}, {:.1}s into fault {window} (limit: the heal + {:.0}s); {} series fired{extra}",
                rel(*t),
                t.saturating_sub(start) as f64 / 1000.0,
                within_ms as f64 / 1000.0,
                firing
                    .iter()
                    .map(|(_, l)| l.as_str())
                    .collect::<std::collections::BTreeSet<_>>()
                    .len()
            ),
        ),
    }];
    if a.resolves {
        let threshold = within_ms as f64 / 1000.0;
        out.push(
            match (healed, firing.iter().rev().find(|(t, _)| *t >= start)) {
                (None, _) => rec(
                    "resolves",
                    None,
                    threshold,
                    "s",
                    format!("fault {window}: it was never healed, so {name} cannot resolve"),
                ),
                (Some(_), None) => rec(
                    "resolves",
                    None,
                    threshold,
                    "s",
                    format!("{name} never fired, so it cannot resolve; fault {window}{extra}"),
                ),
                (Some(h), Some((last, labels))) => rec(
                    "resolves",
                    Some(last.saturating_sub(h) as f64 / 1000.0),
                    threshold,
                    "s",
                    format!(
                        "{name} last fired at +{:.1}s{labels}, {:.1}s after the heal at +{:.1}s; samples until +{:.1}s{extra}",
                        rel(*last),
                        last.saturating_sub(h) as f64 / 1000.0,
                        rel(h),
                        answer.map_or(0.0, |x| rel(x.to_ms))
                    ),
                ),
            },
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::At;
    use std::collections::BTreeMap;

    fn check(min: Option<f64>, max: Option<f64>, equals: Option<f64>) -> PromqlCheck {
        PromqlCheck {
            name: None,
            expr: At::new("sum(up)".into()),
            min,
            max,
            equals,
            at: None,
            over: None,
            step: None,
        }
    }

    fn series(inst: &str, samples: &[(u64, f64)]) -> PromSeries {
        PromSeries {
            labels: BTreeMap::from([("instance".to_string(), inst.to_string())]),
            samples: samples.to_vec(),
        }
    }

    fn answer(range: bool, result: Result<Vec<PromSeries>, String>) -> PromAnswer {
        PromAnswer {
            from_ms: 1_000,
            to_ms: 61_000,
            range,
            result,
            note: None,
        }
    }

    #[test]
    fn every_series_must_be_within_the_bound_and_the_worst_is_reported() {
        let a = answer(
            false,
            Ok(vec![
                series("a", &[(61_000, 3.0)]),
                series("b", &[(61_000, 7.0)]),
            ]),
        );
        let r = promql(Some(&a), &check(None, Some(5.0), None), 1, 1_000);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].name, "promql.1");
        assert!(!r[0].passed);
        assert_eq!(r[0].measured, Some(7.0));
        assert!(r[0].note.contains(r#"instance="b""#), "{}", r[0].note);
        assert!(r[0].note.contains("1 outside"), "{}", r[0].note);
        let r = promql(Some(&a), &check(None, Some(7.0), None), 1, 1_000);
        assert!(r[0].passed, "{}", r[0].note);
    }

    #[test]
    fn min_and_max_give_two_records_and_over_run_checks_every_sample() {
        let a = answer(
            true,
            Ok(vec![series(
                "a",
                &[(2_000, 1.0), (3_000, 0.0), (4_000, 9.0)],
            )]),
        );
        let mut q = check(Some(1.0), Some(10.0), None);
        q.name = Some(At::new("backlog".into()));
        let r = promql(Some(&a), &q, 1, 1_000);
        assert_eq!(r[0].name, "promql.backlog.min");
        assert_eq!(r[0].measured, Some(0.0));
        assert!(!r[0].passed);
        assert!(r[0].note.contains("+2.0s"), "{}", r[0].note);
        assert_eq!(r[1].name, "promql.backlog.max");
        assert!(r[1].passed);
        assert_eq!(r[1].measured, Some(9.0));
    }

    #[test]
    fn equals_reports_the_farthest_sample() {
        let a = answer(true, Ok(vec![series("a", &[(2_000, 3.0), (3_000, 1.0)])]));
        let r = promql(Some(&a), &check(None, None, Some(3.0)), 2, 1_000);
        assert_eq!(r[0].measured, Some(1.0));
        assert!(!r[0].passed);
        let a = answer(true, Ok(vec![series("a", &[(2_000, 3.0), (3_000, 3.0)])]));
        assert!(promql(Some(&a), &check(None, None, Some(3.0)), 2, 1_000)[0].passed);
    }

    #[test]
    fn no_data_nan_and_an_unreachable_prometheus_fail() {
        let q = check(None, Some(5.0), None);
        let r = promql(Some(&answer(false, Ok(vec![]))), &q, 1, 0);
        assert!(!r[0].passed && r[0].measured.is_none());
        assert!(r[0].note.starts_with("no data"), "{}", r[0].note);
        let r = promql(
            Some(&answer(false, Ok(vec![series("a", &[(1_000, f64::NAN)])]))),
            &q,
            1,
            0,
        );
        assert!(!r[0].passed && r[0].note.contains("NaN"), "{}", r[0].note);
        let r = promql(
            Some(&answer(
                false,
                Err("Prometheus at http://x is unreachable: refused".into()),
            )),
            &q,
            1,
            0,
        );
        assert!(
            !r[0].passed && r[0].note.contains("unreachable"),
            "{}",
            r[0].note
        );
        let r = promql(None, &q, 1, 0);
        assert!(!r[0].passed);
    }

    fn alert_check(fires_during: Option<&str>, never: bool) -> AlertCheck {
        AlertCheck {
            name: At::new("RedisDown".into()),
            fires_during: fires_during.map(|d| At::new(d.to_string())),
            resolves: true,
            never,
            within: None,
        }
    }

    fn window(kind: &str, start_ms: u64, end_ms: Option<u64>) -> FaultWindow {
        FaultWindow {
            kind: kind.into(),
            target: "redis".into(),
            requested_ms: None,
            start_ms,
            end_ms,
            outcome: Default::default(),
            crash: false,
            trigger: None,
            hit: None,
            note: String::new(),
        }
    }

    /// Firing at every second from `from` to `to` (run-relative seconds), t0 = 0.
    fn firing(from: u64, to: u64) -> PromAnswer {
        let samples = (from..=to).map(|s| (s * 1000, 1.0)).collect::<Vec<_>>();
        PromAnswer {
            from_ms: 0,
            to_ms: 120_000,
            range: true,
            result: Ok(vec![PromSeries {
                labels: BTreeMap::from([
                    ("alertname".to_string(), "RedisDown".to_string()),
                    ("instance".to_string(), "server".to_string()),
                ]),
                samples,
            }]),
            note: None,
        }
    }

    #[test]
    fn an_alert_firing_in_its_window_and_resolving_after_the_heal_passes() {
        let faults = [window("redis stop", 10_000, Some(50_000))];
        let r = alert(
            Some(&firing(41, 52)),
            &alert_check(Some("redis"), false),
            &faults,
            0,
        );
        assert_eq!(r[0].name, "alert.RedisDown.fires");
        assert_eq!(r[0].measured, Some(31.0));
        assert_eq!(r[0].threshold, 50.0);
        assert!(r[0].passed, "{}", r[0].note);
        assert!(
            r[0].note.contains(r#"{instance="server"}"#),
            "{}",
            r[0].note
        );
        assert!(!r[0].note.contains("alertname"), "{}", r[0].note);
        assert!(r[0].note.contains("1 series fired"), "{}", r[0].note);
        assert_eq!(r[1].name, "alert.RedisDown.resolves");
        assert_eq!(r[1].measured, Some(2.0));
        assert!(r[1].passed, "{}", r[1].note);
    }

    #[test]
    fn an_alert_that_fires_early_late_never_or_does_not_resolve_fails() {
        let faults = [window("redis stop", 10_000, Some(50_000))];
        let c = alert_check(Some("redis stop"), false);
        // Before the fault: a false alarm.
        let r = alert(Some(&firing(5, 52)), &c, &faults, 0);
        assert!(
            !r[0].passed && r[0].note.contains("false alarm"),
            "{}",
            r[0].note
        );
        // Never.
        let mut none = firing(0, 0);
        none.result = Ok(vec![]);
        let r = alert(Some(&none), &c, &faults, 0);
        assert!(
            !r[0].passed && r[0].note.contains("never fired"),
            "{}",
            r[0].note
        );
        assert!(!r[1].passed);
        // Too late: 15 s after the heal, beyond the default 10 s.
        let r = alert(Some(&firing(65, 70)), &c, &faults, 0);
        assert!(!r[0].passed, "{}", r[0].note);
        // Still firing until the end of the run: does not resolve.
        let r = alert(Some(&firing(41, 120)), &c, &faults, 0);
        assert!(r[0].passed);
        assert!(!r[1].passed, "{}", r[1].note);
        assert_eq!(r[1].measured, Some(70.0));
        // No such fault in the run.
        let r = alert(
            Some(&firing(41, 52)),
            &alert_check(Some("worker kill"), false),
            &faults,
            0,
        );
        assert!(
            !r[0].passed && r[0].note.contains("no fault `worker kill`"),
            "{}",
            r[0].note
        );
    }

    #[test]
    fn never_counts_firing_samples() {
        let c = alert_check(None, true);
        let r = alert(Some(&firing(3, 4)), &c, &[], 0);
        assert_eq!(r[0].name, "alert.RedisDown");
        assert_eq!(r[0].measured, Some(2.0));
        assert!(!r[0].passed);
        assert!(
            r[0].note.contains("fired from +3.0s to +4.0s"),
            "{}",
            r[0].note
        );
        let mut none = firing(0, 0);
        none.result = Ok(vec![]);
        assert!(alert(Some(&none), &c, &[], 0)[0].passed);
        let mut err = firing(0, 0);
        err.result = Err("Prometheus at http://x is unreachable: refused".into());
        let r = alert(Some(&err), &c, &[], 0);
        assert!(
            !r[0].passed && r[0].note.contains("unreachable"),
            "{}",
            r[0].note
        );
    }
}
