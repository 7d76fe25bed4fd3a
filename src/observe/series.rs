//! The polled time series: every scrape of every target, in time order, and the window
//! queries the checks and the charts need (counter increases, per-interval rates, histogram
//! quantiles, gauge points).
//!
//! Targets are named by role and index (`"server"`, `"worker-0"`, ...). A restarted process may
//! keep its name (the reset is then found by its start time) or get a new one (it is then a new
//! target whose process started inside the window, so its first value counts in full).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::counters::{
    self, add_buckets, histogram_steps, into_buckets, started_inside, steps, window_of,
    CounterIncrease, HistogramWindow, Interval,
};
use super::prom::Scrape;

/// Every scrape kept for the report, per target, each list in time order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Series {
    targets: BTreeMap<String, Vec<Scrape>>,
}

/// Which targets a query reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetSel<'a> {
    /// Every target.
    All,
    /// Exactly this target name, e.g. `"server"`.
    Named(&'a str),
    /// A role: `"worker"` matches `"worker"` and every `"worker-<anything>"`.
    Role(&'a str),
}

impl TargetSel<'_> {
    /// Whether `target` is selected.
    pub fn matches(&self, target: &str) -> bool {
        match self {
            TargetSel::All => true,
            TargetSel::Named(n) => target == *n,
            TargetSel::Role(r) => {
                target == *r
                    || target
                        .strip_prefix(r)
                        .is_some_and(|rest| rest.starts_with('-'))
            }
        }
    }
}

/// A closed time window `[from_ms, to_ms]`, unix milliseconds. The first scrape of a target
/// inside the window is its baseline, unless the target's process started inside the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    /// Start, unix ms, inclusive.
    pub from_ms: u64,
    /// End, unix ms, inclusive.
    pub to_ms: u64,
}

impl Window {
    /// The window covering everything. Its start is 1970, so every process "started inside"
    /// it and counts from 0: increases over `ALL` include what processes counted before the
    /// first scrape. For a run, pass the run's own window instead.
    pub const ALL: Window = Window {
        from_ms: 0,
        to_ms: u64::MAX,
    };

    fn contains(&self, at_ms: u64) -> bool {
        (self.from_ms..=self.to_ms).contains(&at_ms)
    }

    /// Index of the interval `(start, end]` of width `step_ms` holding `at_ms` (the first one
    /// also holds `from_ms` itself): a step ending exactly on a boundary belongs to the interval
    /// it measured.
    fn bin(&self, at_ms: u64, step_ms: u64, bins: usize) -> usize {
        let i = at_ms.saturating_sub(self.from_ms).div_ceil(step_ms) as usize;
        i.saturating_sub(1).min(bins.saturating_sub(1))
    }

    fn bins(&self, step_ms: u64) -> usize {
        let span = self.to_ms.saturating_sub(self.from_ms);
        (span.div_ceil(step_ms)).max(1) as usize
    }
}

impl Series {
    /// An empty series.
    pub fn new() -> Series {
        Series::default()
    }

    /// Adds one scrape, keeping its target's list in time order.
    pub fn push(&mut self, scrape: Scrape) {
        let list = self.targets.entry(scrape.target.clone()).or_default();
        let pos = list.partition_point(|s| s.at_ms <= scrape.at_ms);
        list.insert(pos, scrape);
    }

    /// Target names, sorted.
    pub fn targets(&self) -> impl Iterator<Item = &str> {
        self.targets.keys().map(String::as_str)
    }

    /// The scrapes of one target, in time order (empty when unknown).
    pub fn scrapes(&self, target: &str) -> &[Scrape] {
        self.targets.get(target).map_or(&[], Vec::as_slice)
    }

    /// Scrapes of every selected target inside `window`, per target.
    fn selected(&self, sel: TargetSel<'_>, window: Window) -> Vec<(&str, Vec<&Scrape>)> {
        self.targets
            .iter()
            .filter(|(t, _)| sel.matches(t))
            .map(|(t, list)| {
                let in_window = list.iter().filter(|s| window.contains(s.at_ms)).collect();
                (t.as_str(), in_window)
            })
            .collect()
    }

    /// The reset-aware increase of counter `name` (summed over label sets matching `filter`)
    /// across the selected targets within `window`.
    pub fn counter_increase(
        &self,
        sel: TargetSel<'_>,
        name: &str,
        filter: &[(&str, &str)],
        window: Window,
    ) -> CounterIncrease {
        let mut out = CounterIncrease {
            total: 0.0,
            per_target: BTreeMap::new(),
            resets: 0,
        };
        for (target, scrapes) in self.selected(sel, window) {
            let first = started_inside(&scrapes, window.from_ms);
            let st = steps(&scrapes, |s| s.counter_where(name, filter), first);
            let inc: f64 = st.iter().map(|s| s.increase).sum();
            out.resets += st.iter().filter(|s| s.reset).count() as u32;
            out.total += inc;
            out.per_target.insert(target.to_owned(), inc);
        }
        out
    }

    /// The increase of counter `name` per interval of `step_ms` (must be > 0) over `window`,
    /// summed over the selected targets; each step between two scrapes is attributed to the
    /// interval `(start, end]` holding the later scrape. For rate charts.
    pub fn intervals(
        &self,
        sel: TargetSel<'_>,
        name: &str,
        window: Window,
        step_ms: u64,
    ) -> Vec<Interval> {
        let step_ms = step_ms.max(1);
        let bw = self.bin_window(sel, window);
        let bins = bw.bins(step_ms);
        let mut inc = vec![0.0; bins];
        for (_, scrapes) in self.selected(sel, window) {
            let first = started_inside(&scrapes, window.from_ms);
            for s in steps(&scrapes, |s| s.counter(name), first) {
                inc[bw.bin(s.at_ms, step_ms, bins)] += s.increase;
            }
        }
        inc.into_iter()
            .enumerate()
            .map(|(i, increase)| {
                let start_ms = bw.from_ms + i as u64 * step_ms;
                Interval {
                    start_ms,
                    end_ms: start_ms + step_ms,
                    increase,
                    rate_per_s: increase * 1000.0 / step_ms as f64,
                }
            })
            .collect()
    }

    /// p50/p95 of histogram `base` over `window`, from the bucket increases of the selected
    /// targets (reset-aware, summed over targets and label sets).
    pub fn histogram_window(
        &self,
        sel: TargetSel<'_>,
        base: &str,
        window: Window,
    ) -> HistogramWindow {
        let mut acc = BTreeMap::new();
        for (_, scrapes) in self.selected(sel, window) {
            let first = started_inside(&scrapes, window.from_ms);
            for (_, b) in histogram_steps(&scrapes, base, first) {
                add_buckets(&mut acc, &b);
            }
        }
        window_of(&into_buckets(acc))
    }

    /// p50/p95 of histogram `base` per interval of `step_ms` over `window`.
    pub fn histogram_intervals(
        &self,
        sel: TargetSel<'_>,
        base: &str,
        window: Window,
        step_ms: u64,
    ) -> Vec<(u64, HistogramWindow)> {
        let step_ms = step_ms.max(1);
        let bw = self.bin_window(sel, window);
        let bins = bw.bins(step_ms);
        let mut acc = vec![BTreeMap::new(); bins];
        for (_, scrapes) in self.selected(sel, window) {
            let first = started_inside(&scrapes, window.from_ms);
            for (at, b) in histogram_steps(&scrapes, base, first) {
                add_buckets(&mut acc[bw.bin(at, step_ms, bins)], &b);
            }
        }
        acc.into_iter()
            .enumerate()
            .map(|(i, a)| (bw.from_ms + i as u64 * step_ms, window_of(&into_buckets(a))))
            .collect()
    }

    /// The sum of gauges `names` on one target per scrape: `None` at a scrape where any of them
    /// is absent (Redis down: unknown, not 0). For the backlog, pass the server and
    /// `[QUEUE_WAITING, QUEUE_ACTIVE]`: one source, never a sum over processes.
    pub fn gauge_points(&self, target: &str, names: &[&str]) -> Vec<(u64, Option<f64>)> {
        self.scrapes(target)
            .iter()
            .map(|s| {
                let v = names
                    .iter()
                    .map(|n| s.gauge(n))
                    .try_fold(0.0, |acc, v| v.map(|v| acc + v));
                (s.at_ms, v)
            })
            .collect()
    }

    /// The backlog ([`Scrape::backlog`]) of one target at each of its scrapes.
    pub fn backlog_points(&self, target: &str) -> Vec<(u64, Option<f64>)> {
        self.scrapes(target)
            .iter()
            .map(|s| (s.at_ms, s.backlog()))
            .collect()
    }

    /// The window the interval bins span: an open end (`from_ms == 0`, `to_ms == u64::MAX`) is
    /// narrowed to the scrapes actually held, so charts do not span from 1970 to the end of
    /// time. Only binning uses it; baselines are judged on the caller's window.
    fn bin_window(&self, sel: TargetSel<'_>, window: Window) -> Window {
        let (mut lo, mut hi) = (u64::MAX, 0);
        for (_, list) in self.targets.iter().filter(|(t, _)| sel.matches(t)) {
            for s in list.iter().filter(|s| window.contains(s.at_ms)) {
                lo = lo.min(s.at_ms);
                hi = hi.max(s.at_ms);
            }
        }
        let from_ms = if window.from_ms == 0 && lo != u64::MAX {
            lo
        } else {
            window.from_ms
        };
        let to_ms = if window.to_ms == u64::MAX {
            hi
        } else {
            window.to_ms
        };
        Window {
            from_ms,
            to_ms: to_ms.max(from_ms),
        }
    }
}

/// Re-exported for callers that build quantiles from their own buckets.
pub use counters::quantile;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::counters::tests::scrape;
    use crate::observe::prom::{names, Sample};

    fn named(mut s: Scrape, target: &str) -> Scrape {
        s.target = target.to_owned();
        s
    }

    #[test]
    fn target_selection_by_role_and_name() {
        assert!(TargetSel::Role("worker").matches("worker-0"));
        assert!(TargetSel::Role("worker").matches("worker"));
        assert!(!TargetSel::Role("worker").matches("workers"));
        assert!(!TargetSel::Role("worker").matches("server"));
        assert!(TargetSel::Named("server").matches("server"));
        assert!(!TargetSel::Named("server").matches("server-1"));
        assert!(TargetSel::All.matches("anything"));
    }

    #[test]
    fn push_keeps_time_order() {
        let mut s = Series::new();
        s.push(named(scrape(20, None, &[]), "server"));
        s.push(named(scrape(10, None, &[]), "server"));
        s.push(named(scrape(30, None, &[]), "server"));
        let at: Vec<u64> = s.scrapes("server").iter().map(|x| x.at_ms).collect();
        assert_eq!(at, [10, 20, 30]);
        assert!(s.scrapes("nobody").is_empty());
    }

    fn workers() -> Series {
        let mut s = Series::new();
        let c = names::JOBS_PROCESSED;
        // worker-0: 10 → 15, restarts (start 2.5 s) and overtakes: 18, then 20.
        s.push(named(scrape(1_000, Some(0.1), &[(c, 10.0)]), "worker-0"));
        s.push(named(scrape(2_000, Some(0.1), &[(c, 15.0)]), "worker-0"));
        s.push(named(scrape(3_000, Some(2.5), &[(c, 18.0)]), "worker-0"));
        s.push(named(scrape(4_000, Some(2.5), &[(c, 20.0)]), "worker-0"));
        // worker-1: drops from 7 to 1 (no start time exposed), then 4.
        s.push(named(scrape(1_000, None, &[(c, 5.0)]), "worker-1"));
        s.push(named(scrape(2_000, None, &[(c, 7.0)]), "worker-1"));
        s.push(named(scrape(3_000, None, &[(c, 1.0)]), "worker-1"));
        s.push(named(scrape(4_000, None, &[(c, 4.0)]), "worker-1"));
        // worker-2: a process started at 2.5 s (a new name), inside the window: its first value counts.
        s.push(named(scrape(3_000, Some(2.5), &[(c, 6.0)]), "worker-2"));
        s.push(named(scrape(4_000, Some(2.5), &[(c, 6.0)]), "worker-2"));
        // the server has the same metric name, but is not selected by role "worker".
        s.push(named(scrape(4_000, None, &[(c, 999.0)]), "server"));
        s
    }

    #[test]
    fn counter_increase_across_restarts_per_target_and_total() {
        let s = workers();
        let w = Window {
            from_ms: 1_000,
            to_ms: 4_000,
        };
        let inc = s.counter_increase(TargetSel::Role("worker"), names::JOBS_PROCESSED, &[], w);
        assert_eq!(inc.per_target["worker-0"], 5.0 + 18.0 + 2.0);
        assert_eq!(inc.per_target["worker-1"], 2.0 + 1.0 + 3.0);
        assert_eq!(inc.per_target["worker-2"], 6.0);
        assert_eq!(inc.total, 25.0 + 6.0 + 6.0);
        assert_eq!(inc.resets, 2);
        assert!(!inc.per_target.contains_key("server"));
    }

    #[test]
    fn counter_increase_respects_the_window_and_label_filter() {
        let mut s = Series::new();
        let sample = |reason: &str, v: f64| Sample {
            name: names::EVENTS_REJECTED.to_owned(),
            labels: [("reason".to_owned(), reason.to_owned())].into(),
            value: v,
        };
        for (at, a, b) in [(0u64, 1.0, 10.0), (10, 4.0, 10.0), (20, 9.0, 30.0)] {
            s.push(Scrape {
                at_ms: at,
                asked_ms: None,
                target: "server".into(),
                samples: vec![sample("queue_unavailable", a), sample("signature", b)],
            });
        }
        let all = Window::ALL;
        let sel = TargetSel::Named("server");
        let q = [("reason", "queue_unavailable")];
        assert_eq!(
            s.counter_increase(sel, names::EVENTS_REJECTED, &q, all)
                .total,
            8.0
        );
        assert_eq!(
            s.counter_increase(sel, names::EVENTS_REJECTED, &[], all)
                .total,
            28.0
        );
        let late = Window {
            from_ms: 10,
            to_ms: 20,
        };
        assert_eq!(
            s.counter_increase(sel, names::EVENTS_REJECTED, &q, late)
                .total,
            5.0
        );
    }

    #[test]
    fn intervals_attribute_each_step_to_the_later_scrape() {
        let s = workers();
        let iv = s.intervals(
            TargetSel::Role("worker"),
            names::JOBS_PROCESSED,
            Window {
                from_ms: 1_000,
                to_ms: 4_000,
            },
            1_000,
        );
        let inc: Vec<f64> = iv.iter().map(|i| i.increase).collect();
        // (1000,2000]: 5 + 2; (2000,3000]: 18 + 1 + 6 (worker-2's first value); (3000,4000]: 2 + 3
        assert_eq!(inc, [7.0, 25.0, 5.0]);
        assert_eq!(iv[0].rate_per_s, 7.0);
        assert_eq!(iv[0].start_ms, 1_000);
        assert_eq!(iv[2].end_ms, 4_000);
        let total: f64 = inc.iter().sum();
        let inc_total = s
            .counter_increase(
                TargetSel::Role("worker"),
                names::JOBS_PROCESSED,
                &[],
                Window {
                    from_ms: 1_000,
                    to_ms: 4_000,
                },
            )
            .total;
        assert_eq!(total, inc_total);
    }

    fn hist(at: u64, start: f64, target: &str, b: [f64; 3]) -> Scrape {
        let bucket = |le: &str, v: f64| Sample {
            name: format!("{}_bucket", names::JOB_DURATION_MS),
            labels: [("le".to_owned(), le.to_owned())].into(),
            value: v,
        };
        Scrape {
            at_ms: at,
            asked_ms: None,
            target: target.to_owned(),
            samples: vec![
                bucket("10", b[0]),
                bucket("100", b[1]),
                bucket("+Inf", b[2]),
                Sample {
                    name: names::PROCESS_START.to_owned(),
                    labels: Default::default(),
                    value: start,
                },
            ],
        }
    }

    #[test]
    fn histogram_quantiles_from_bucket_increases_across_a_restart() {
        let mut s = Series::new();
        // Before the window starts the worker already saw 100 fast jobs: they must not count.
        s.push(hist(1_000, 0.5, "worker-0", [100.0, 100.0, 100.0]));
        // +10 slow jobs (in (10,100]).
        s.push(hist(2_000, 0.5, "worker-0", [100.0, 110.0, 110.0]));
        // Restart (new start time): new process saw 10 jobs, all in (10,100].
        s.push(hist(3_000, 2.9, "worker-0", [0.0, 10.0, 10.0]));
        let w = s.histogram_window(
            TargetSel::Role("worker"),
            names::JOB_DURATION_MS,
            Window {
                from_ms: 1_000,
                to_ms: 3_000,
            },
        );
        assert_eq!(w.count, 20.0);
        // all 20 observations in (10,100]: p50 rank 10 → 10 + 90 * 10/20 = 55
        assert_eq!(w.p50, Some(55.0));
        assert_eq!(w.p95, Some(10.0 + 90.0 * 19.0 / 20.0));
        let per = s.histogram_intervals(
            TargetSel::Role("worker"),
            names::JOB_DURATION_MS,
            Window {
                from_ms: 1_000,
                to_ms: 3_000,
            },
            1_000,
        );
        assert_eq!(per.len(), 2);
        assert_eq!(per[0].1.count, 10.0);
        assert_eq!(per[1].1.count, 10.0);
        let empty = s.histogram_window(
            TargetSel::Named("server"),
            names::JOB_DURATION_MS,
            Window::ALL,
        );
        assert_eq!(empty.count, 0.0);
        assert_eq!(empty.p95, None);
    }

    #[test]
    fn gauge_points_are_unknown_when_any_part_is_absent() {
        let mut s = Series::new();
        let (w, a) = (names::QUEUE_WAITING, names::QUEUE_ACTIVE);
        s.push(named(scrape(0, None, &[(w, 3.0), (a, 2.0)]), "server"));
        s.push(named(scrape(10, None, &[(names::REDIS_UP, 0.0)]), "server"));
        s.push(named(scrape(20, None, &[(w, 0.0), (a, 0.0)]), "server"));
        assert_eq!(
            s.gauge_points("server", &[w, a]),
            [(0, Some(5.0)), (10, None), (20, Some(0.0))]
        );
    }

    #[test]
    fn series_round_trips_through_json() {
        let s = workers();
        let back: Series = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back, s);
    }
}
