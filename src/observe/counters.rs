//! Reset-aware arithmetic on the scrapes of ONE target: counter increases, per-interval
//! increases for rate charts, and histogram bucket increases for quantiles (SPEC §2.4).
//!
//! A process that restarts starts its counters again from 0. Between two consecutive scrapes of
//! the same target, the pair is a **reset** when `process_start_time_seconds` changed, or when
//! any value went down. Across a reset, the increase of that step is the new value itself (the
//! new process counted from 0 up to it); otherwise it is the difference. The sum of those steps
//! is never negative and counts nothing twice. The start-time rule catches the restart the value
//! rule cannot: a new process that overtook the old value between two scrapes.
//!
//! What a process counted after its last scrape and before it was SIGKILLed is lost to us; the
//! checks carry a tolerance for that (see `verdict::checks`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::prom::{Bucket, Scrape};

/// Two start times closer than this are the same process start. They are the same printed
/// number in practice; the slack only absorbs float formatting.
const START_EPSILON_S: f64 = 1e-3;

/// The increase of one counter over a window, summed over targets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CounterIncrease {
    /// Sum over `per_target`.
    pub total: f64,
    /// Increase per target name.
    pub per_target: BTreeMap<String, f64>,
    /// Resets seen (restarts or value drops), summed over targets.
    pub resets: u32,
}

/// One interval of a per-interval series (for rate charts).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    /// Interval start, unix ms (inclusive).
    pub start_ms: u64,
    /// Interval end, unix ms (exclusive).
    pub end_ms: u64,
    /// Counter increase attributed to this interval.
    pub increase: f64,
    /// `increase` per second of the interval.
    pub rate_per_s: f64,
}

/// Quantiles of a histogram over a window, from bucket increases.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistogramWindow {
    /// Observations in the window (increase of the `+Inf` bucket).
    pub count: f64,
    /// Median, `None` when there was no observation.
    pub p50: Option<f64>,
    /// 95th percentile, `None` when there was no observation.
    pub p95: Option<f64>,
}

/// One step between two consecutive present values of one target.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Step {
    /// Time of the later scrape.
    pub at_ms: u64,
    /// Increase of this step (never negative).
    pub increase: f64,
    /// Whether this step crossed a reset.
    pub reset: bool,
}

/// Whether the process behind `prev` and `cur` changed, judged by start time alone.
fn restarted(prev: &Scrape, cur: &Scrape) -> bool {
    match (prev.process_start(), cur.process_start()) {
        (Some(a), Some(b)) => (a - b).abs() > START_EPSILON_S,
        _ => false,
    }
}

/// The steps of a scalar read from each scrape of one target (scrapes in time order). A counter
/// absent from a scrape of a live process (it has `process_start_time_seconds`) is 0: labelled
/// counters appear only with their first increment. Scrapes of an unknown process are skipped;
/// the next present value is compared with the last present one.
///
/// `count_first` decides what the first present value means: `false` makes it the baseline (the
/// window starts there); `true` counts it fully (the process started inside the window, from 0).
pub(crate) fn steps(
    scrapes: &[&Scrape],
    read: impl Fn(&Scrape) -> Option<f64>,
    count_first: bool,
) -> Vec<Step> {
    let mut out = Vec::new();
    let mut prev: Option<(&Scrape, f64)> = None;
    for s in scrapes {
        let v = match read(s) {
            Some(v) => v,
            None if s.process_start().is_some() => 0.0,
            None => continue,
        };
        match prev {
            None if count_first => out.push(Step {
                at_ms: s.at_ms,
                increase: v.max(0.0),
                reset: false,
            }),
            None => {}
            Some((p, pv)) => {
                let reset = restarted(p, s) || v < pv;
                let increase = if reset { v } else { v - pv };
                out.push(Step {
                    at_ms: s.at_ms,
                    increase: increase.max(0.0),
                    reset,
                });
            }
        }
        prev = Some((s, v));
    }
    out
}

/// Whether the first scrape of a target in a window belongs to a process started at or after
/// `from_ms`, in which case its first value counts in full.
pub(crate) fn started_inside(scrapes: &[&Scrape], from_ms: u64) -> bool {
    scrapes
        .iter()
        .find_map(|s| s.process_start())
        .is_some_and(|start_s| start_s * 1000.0 >= from_ms as f64)
}

/// Increase of a histogram's cumulative buckets over the scrapes of one target, keyed by `le`
/// bits (so `+Inf` is a key too). Resets are judged on the whole histogram: a new start time or
/// any bucket (or `_count`) going down resets every bucket of that step.
pub(crate) fn histogram_steps(
    scrapes: &[&Scrape],
    base: &str,
    count_first: bool,
) -> Vec<(u64, Vec<Bucket>)> {
    let mut out = Vec::new();
    let mut prev: Option<(&Scrape, Vec<Bucket>)> = None;
    for s in scrapes {
        let cur = match s.histogram(base) {
            Some(h) => h.buckets,
            // Not observed yet by a live process: an empty histogram.
            None if s.process_start().is_some() => Vec::new(),
            None => continue,
        };
        match &prev {
            None if count_first => out.push((s.at_ms, cur.clone())),
            None => {}
            Some((p, pb)) => {
                let value_at = |bs: &[Bucket], le: f64| {
                    bs.iter()
                        .find(|b| b.le.total_cmp(&le).is_eq())
                        .map(|b| b.count)
                };
                let dropped = pb
                    .iter()
                    .any(|b| value_at(&cur, b.le).is_some_and(|c| c < b.count));
                let reset = restarted(p, s) || dropped;
                let inc = cur
                    .iter()
                    .map(|b| {
                        let before = if reset {
                            0.0
                        } else {
                            value_at(pb, b.le).unwrap_or(0.0)
                        };
                        Bucket {
                            le: b.le,
                            count: (b.count - before).max(0.0),
                        }
                    })
                    .collect();
                out.push((s.at_ms, inc));
            }
        }
        prev = Some((s, cur));
    }
    out
}

/// Adds `b` into the bucket accumulator `acc` (keyed by the bits of `le`).
pub(crate) fn add_buckets(acc: &mut BTreeMap<u64, (f64, f64)>, b: &[Bucket]) {
    for x in b {
        let e = acc.entry(le_key(x.le)).or_insert((x.le, 0.0));
        e.1 += x.count;
    }
}

/// A sort key for `le` that orders like the number (bounds are never NaN, and are >= 0 for
/// the durations we read; negative bounds would still sort correctly among themselves).
fn le_key(le: f64) -> u64 {
    // Map f64 to u64 preserving order for non-negative and negative values alike.
    let bits = le.to_bits();
    if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1 << 63)
    }
}

/// Turns an accumulator into sorted cumulative buckets.
pub(crate) fn into_buckets(acc: BTreeMap<u64, (f64, f64)>) -> Vec<Bucket> {
    acc.into_values()
        .map(|(le, count)| Bucket { le, count })
        .collect()
}

/// Prometheus' `histogram_quantile` on cumulative buckets sorted by `le`: linear interpolation
/// inside the bucket holding the rank; the lowest bucket interpolates from 0; a rank that falls
/// in the `+Inf` bucket answers the highest finite bound. `None` when there is no observation.
pub fn quantile(q: f64, buckets: &[Bucket]) -> Option<f64> {
    let total = buckets.last()?.count;
    // `total` may be NaN only from corrupt input; treat it like no observation.
    if total.is_nan() || total <= 0.0 || !(0.0..=1.0).contains(&q) {
        return None;
    }
    let rank = q * total;
    let mut prev_le = 0.0;
    let mut prev_count = 0.0;
    for (i, b) in buckets.iter().enumerate() {
        if b.count >= rank {
            if b.le.is_infinite() {
                return Some(if i == 0 { 0.0 } else { prev_le });
            }
            let lower = if i == 0 && b.le <= 0.0 { b.le } else { prev_le };
            let in_bucket = b.count - prev_count;
            if in_bucket <= 0.0 {
                return Some(b.le);
            }
            return Some(lower + (b.le - lower) * (rank - prev_count) / in_bucket);
        }
        prev_le = b.le;
        prev_count = b.count;
    }
    // Cumulative counts that never reach the total (no +Inf bucket, inconsistent data).
    Some(prev_le)
}

/// p50/p95 of cumulative buckets.
pub(crate) fn window_of(buckets: &[Bucket]) -> HistogramWindow {
    HistogramWindow {
        count: buckets.last().map_or(0.0, |b| b.count),
        p50: quantile(0.5, buckets),
        p95: quantile(0.95, buckets),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::observe::prom::{names, Sample};

    /// A synthetic scrape: `value` for `name`, and the start time when given.
    pub(crate) fn scrape(at_ms: u64, start_s: Option<f64>, pairs: &[(&str, f64)]) -> Scrape {
        let mut samples: Vec<Sample> = pairs
            .iter()
            .map(|(n, v)| Sample {
                name: (*n).to_owned(),
                labels: Default::default(),
                value: *v,
            })
            .collect();
        if let Some(s) = start_s {
            samples.push(Sample {
                name: names::PROCESS_START.to_owned(),
                labels: Default::default(),
                value: s,
            });
        }
        Scrape {
            at_ms,
            asked_ms: None,
            target: "worker-0".to_owned(),
            samples,
        }
    }

    fn total(scrapes: &[Scrape], count_first: bool) -> (f64, usize) {
        let refs: Vec<&Scrape> = scrapes.iter().collect();
        let st = steps(&refs, |s| s.counter("c"), count_first);
        (
            st.iter().map(|s| s.increase).sum(),
            st.iter().filter(|s| s.reset).count(),
        )
    }

    #[test]
    fn plain_increase_is_last_minus_first() {
        let s = vec![
            scrape(0, Some(100.0), &[("c", 5.0)]),
            scrape(10, Some(100.0), &[("c", 8.0)]),
            scrape(20, Some(100.0), &[("c", 12.0)]),
        ];
        assert_eq!(total(&s, false), (7.0, 0));
        assert_eq!(total(&s, true), (12.0, 0));
    }

    #[test]
    fn drop_in_value_is_a_reset_counted_from_zero() {
        let s = vec![
            scrape(0, None, &[("c", 5.0)]),
            scrape(10, None, &[("c", 9.0)]),
            scrape(20, None, &[("c", 2.0)]),
            scrape(30, None, &[("c", 6.0)]),
        ];
        // 5→9: +4; reset, 0→2: +2; 2→6: +4
        assert_eq!(total(&s, false), (10.0, 1));
    }

    #[test]
    fn restart_that_overtakes_the_old_value_is_caught_by_start_time() {
        let s = vec![
            scrape(0, Some(100.0), &[("c", 3.0)]),
            scrape(10, Some(200.0), &[("c", 7.0)]),
        ];
        // Without the start time this would read +4; the new process counted 7 from 0.
        assert_eq!(total(&s, false), (7.0, 1));
    }

    #[test]
    fn missing_scrapes_are_skipped_not_zeroed() {
        let s = vec![
            scrape(0, Some(100.0), &[("c", 3.0)]),
            scrape(10, None, &[]),
            scrape(20, Some(100.0), &[("c", 5.0)]),
        ];
        assert_eq!(total(&s, false), (2.0, 0));
    }

    #[test]
    fn restart_across_a_gap_counts_the_new_value_once() {
        let s = vec![
            scrape(0, Some(100.0), &[("c", 10.0)]),
            scrape(10, None, &[]),
            scrape(20, Some(300.0), &[("c", 4.0)]),
            scrape(30, Some(300.0), &[("c", 4.0)]),
        ];
        assert_eq!(total(&s, false), (4.0, 1));
    }

    #[test]
    fn started_inside_compares_start_time_with_window_start() {
        let a = scrape(0, Some(100.0), &[]);
        assert!(started_inside(&[&a], 100_000));
        assert!(!started_inside(&[&a], 100_001));
        let none = scrape(0, None, &[]);
        assert!(!started_inside(&[&none], 0));
    }

    fn b(le: f64, count: f64) -> Bucket {
        Bucket { le, count }
    }

    #[test]
    fn quantile_interpolates_like_prometheus() {
        let bs = vec![b(1.0, 2.0), b(10.0, 6.0), b(f64::INFINITY, 8.0)];
        // rank 4 of 8: in (1,10], 2 below, 4 inside: 1 + 9 * (4-2)/4 = 5.5
        assert_eq!(quantile(0.5, &bs), Some(5.5));
        // rank 7.6: in +Inf bucket → highest finite bound
        assert_eq!(quantile(0.95, &bs), Some(10.0));
        // rank 1: first bucket interpolates from 0: 1 * 1/2
        assert_eq!(quantile(0.125, &bs), Some(0.5));
        assert_eq!(quantile(0.5, &[b(1.0, 0.0), b(f64::INFINITY, 0.0)]), None);
        assert_eq!(quantile(0.5, &[]), None);
    }

    proptest::proptest! {
        /// However many restarts, with every process scraped at least once and its start time
        /// exposed, the summed increase is exactly what the processes counted: nothing lost,
        /// nothing counted twice, never negative.
        #[test]
        fn increase_across_restarts_is_exact(
            processes in proptest::collection::vec(
                proptest::collection::vec(0u32..50, 1..6), 1..5),
        ) {
            let mut scrapes = Vec::new();
            let mut at = 0u64;
            let mut truth = 0.0;
            let mut first_value = None;
            for (i, incs) in processes.iter().enumerate() {
                let mut value = 0.0;
                for inc in incs {
                    value += f64::from(*inc);
                    truth += f64::from(*inc);
                    first_value.get_or_insert(value);
                    at += 1_000;
                    scrapes.push(scrape(at, Some(i as f64 + 1.0), &[("c", value)]));
                }
            }
            let (counted, resets) = total(&scrapes, true);
            proptest::prop_assert_eq!(counted, truth);
            proptest::prop_assert_eq!(resets, processes.len() - 1);
            let (from_baseline, _) = total(&scrapes, false);
            proptest::prop_assert_eq!(from_baseline, truth - first_value.unwrap_or(0.0));
        }

        /// Quantiles grow with q and stay within the finite bucket bounds.
        #[test]
        fn quantile_is_monotone_and_bounded(
            counts in proptest::collection::vec(0u32..100, 1..8),
            q1 in 0.0f64..=1.0,
            q2 in 0.0f64..=1.0,
        ) {
            let mut cum = 0.0;
            let mut buckets: Vec<Bucket> = counts
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    cum += f64::from(*c);
                    b(f64::from(1u32 << i), cum)
                })
                .collect();
            buckets.push(b(f64::INFINITY, cum + 1.0));
            let (lo, hi) = if q1 <= q2 { (q1, q2) } else { (q2, q1) };
            let (a, z) = (quantile(lo, &buckets).unwrap(), quantile(hi, &buckets).unwrap());
            proptest::prop_assert!(a <= z, "q{lo} = {a} > q{hi} = {z}");
            proptest::prop_assert!(a >= 0.0);
            proptest::prop_assert!(z <= f64::from(1u32 << (counts.len() - 1)));
        }
    }

    #[test]
    fn le_key_orders_like_the_number() {
        let mut v = [f64::INFINITY, 10.0, 0.5, 0.0, -1.0, 2.5];
        v.sort_by_key(|x| le_key(*x));
        assert_eq!(v, [-1.0, 0.0, 0.5, 2.5, 10.0, f64::INFINITY]);
    }
}
