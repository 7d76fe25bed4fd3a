//! The `promql` check: Prometheus' answer (gathered by the run engine into
//! [`Evidence::prom`](super::Evidence)) against the check's bounds, one record per bound. Pure.

use super::evidence::PromAnswer;
use crate::observe::prometheus::PromSeries;
use crate::report::{CheckOp, CheckRecord};
use crate::scenario::model::PromqlCheck;

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
}
