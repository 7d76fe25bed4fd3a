//! Every metric GitSpy exports, defined here and nowhere else, rendered in the Prometheus text format
//! for `/metrics/prom`.
//!
//! Hand-rolled (atomics + a small histogram) so that the queue gauges can be *absent* while Redis is
//! down — a scrape must never show a misleading 0 — and so the exposition is exactly what SPEC §1.4 names.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;

/// The names themselves are the shared contract's, so the harness reads exactly these.
pub use gitspy_contract::metrics::*;

/// Queue depth as SPEC §1.4 defines it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueGauges {
    /// Entries not yet delivered to any consumer (`XLEN − pending`; acknowledged entries are deleted).
    pub waiting: u64,
    /// Entries delivered to a consumer and not yet acknowledged.
    pub active: u64,
    /// Length of the dead-letter stream.
    pub dead: u64,
}

/// Job duration buckets, milliseconds: sub-millisecond to 10 s.
pub const DURATION_BUCKETS_MS: [f64; 15] = [
    0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0,
    10000.0,
];

/// A monotonically increasing counter.
#[derive(Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.add(1);
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A counter per value of one label.
#[derive(Default)]
pub struct LabeledCounter(Mutex<BTreeMap<String, u64>>);

impl LabeledCounter {
    pub fn inc(&self, label: &str) {
        if let Ok(mut m) = self.0.lock() {
            *m.entry(label.to_owned()).or_default() += 1;
        }
    }
    pub fn get(&self, label: &str) -> u64 {
        self.0
            .lock()
            .map(|m| m.get(label).copied().unwrap_or(0))
            .unwrap_or(0)
    }
    pub fn total(&self) -> u64 {
        self.0.lock().map(|m| m.values().sum()).unwrap_or(0)
    }
    fn snapshot(&self) -> BTreeMap<String, u64> {
        self.0.lock().map(|m| m.clone()).unwrap_or_default()
    }
}

#[derive(Clone, Default)]
struct HistogramData {
    buckets: [u64; DURATION_BUCKETS_MS.len()],
    count: u64,
    sum: f64,
}

/// A histogram of job durations per `event_type`.
#[derive(Default)]
pub struct DurationHistogram(Mutex<BTreeMap<String, HistogramData>>);

impl DurationHistogram {
    pub fn observe(&self, event_type: &str, ms: f64) {
        if let Ok(mut m) = self.0.lock() {
            let h = m.entry(event_type.to_owned()).or_default();
            for (i, le) in DURATION_BUCKETS_MS.iter().enumerate() {
                if ms <= *le {
                    h.buckets[i] += 1;
                }
            }
            h.count += 1;
            h.sum += ms;
        }
    }
}

/// All metrics of one process. Server-only and worker-only metrics are still defined for both, so a
/// scrape always lists every name of SPEC §1.4.
pub struct Metrics {
    pub events_received: LabeledCounter,
    pub events_duplicate: LabeledCounter,
    pub events_rejected: LabeledCounter,
    pub jobs_processed: LabeledCounter,
    pub jobs_failed: LabeledCounter,
    pub jobs_retried: LabeledCounter,
    pub jobs_duplicate: LabeledCounter,
    pub job_duration: DurationHistogram,
    pub spool_depth: AtomicI64,
    pub spool_torn: Counter,
    pub redis_data_loss: Counter,
    /// Retries waiting out their backoff in this worker ([`QUEUE_DELAYED`]).
    pub queue_delayed: AtomicI64,
    redis_up: AtomicBool,
    start_time: f64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let start_time = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        Self {
            events_received: LabeledCounter::default(),
            events_duplicate: LabeledCounter::default(),
            events_rejected: LabeledCounter::default(),
            jobs_processed: LabeledCounter::default(),
            jobs_failed: LabeledCounter::default(),
            jobs_retried: LabeledCounter::default(),
            jobs_duplicate: LabeledCounter::default(),
            job_duration: DurationHistogram::default(),
            spool_depth: AtomicI64::new(0),
            spool_torn: Counter::default(),
            redis_data_loss: Counter::default(),
            queue_delayed: AtomicI64::new(0),
            redis_up: AtomicBool::new(false),
            start_time,
        }
    }

    pub fn set_redis_up(&self, up: bool) {
        self.redis_up.store(up, Ordering::Relaxed);
    }

    pub fn redis_up(&self) -> bool {
        self.redis_up.load(Ordering::Relaxed)
    }

    /// The text exposition. `queue` is `None` when Redis could not be asked: then `gitspy_redis_up`
    /// is 0 and the queue gauges are left out entirely.
    pub fn render(&self, queue: Option<QueueGauges>) -> String {
        let mut out = String::with_capacity(4096);
        self.render_ingress_and_jobs(&mut out);
        self.render_job_duration(&mut out);
        render_queue(&mut out, queue);
        self.render_process(&mut out);
        out
    }

    /// The labelled counters of the ingress and the workers.
    fn render_ingress_and_jobs(&self, out: &mut String) {
        let counters: [(&str, &str, &str, &LabeledCounter); 7] = [
            (
                EVENTS_RECEIVED,
                "Deliveries accepted by the ingress (queued or spooled).",
                "event_type",
                &self.events_received,
            ),
            (
                EVENTS_DUPLICATE,
                "Deliveries answered as duplicates by the ingress.",
                "event_type",
                &self.events_duplicate,
            ),
            (
                EVENTS_REJECTED,
                "Deliveries the ingress refused, by reason.",
                "reason",
                &self.events_rejected,
            ),
            (
                JOBS_PROCESSED,
                "Deliveries applied (or logged) successfully by a worker.",
                "event_type",
                &self.jobs_processed,
            ),
            (
                JOBS_FAILED,
                "Deliveries dead-lettered after the maximum attempts.",
                "event_type",
                &self.jobs_failed,
            ),
            (
                JOBS_RETRIED,
                "Retries scheduled after a failed attempt.",
                "event_type",
                &self.jobs_retried,
            ),
            (
                JOBS_DUPLICATE,
                "Stream entries skipped because the delivery was already processed.",
                "event_type",
                &self.jobs_duplicate,
            ),
        ];
        for (name, help, label, values) in counters {
            labeled(out, name, help, label, values);
        }
    }

    /// The job-duration histogram, one set of buckets per event type.
    fn render_job_duration(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP {JOB_DURATION} Time to apply one delivery, milliseconds."
        );
        let _ = writeln!(out, "# TYPE {JOB_DURATION} histogram");
        let Ok(m) = self.job_duration.0.lock() else {
            return;
        };
        for (event, h) in m.iter() {
            let ev = escape(event);
            for (i, le) in DURATION_BUCKETS_MS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "{JOB_DURATION}_bucket{{event_type=\"{ev}\",le=\"{le}\"}} {}",
                    h.buckets[i]
                );
            }
            let _ = writeln!(
                out,
                "{JOB_DURATION}_bucket{{event_type=\"{ev}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(out, "{JOB_DURATION}_sum{{event_type=\"{ev}\"}} {}", h.sum);
            let _ = writeln!(
                out,
                "{JOB_DURATION}_count{{event_type=\"{ev}\"}} {}",
                h.count
            );
        }
    }

    /// Spool, delayed-retry, data-loss, process and build-info series.
    fn render_process(&self, out: &mut String) {
        gauge(
            out,
            SPOOL_DEPTH,
            "Deliveries in the local spool waiting for Redis.",
            self.spool_depth.load(Ordering::Relaxed) as f64,
        );
        gauge(
            out,
            QUEUE_DELAYED,
            "Entries this worker holds that wait out a retry backoff (a subset of gitspy_queue_active).",
            self.queue_delayed.load(Ordering::Relaxed) as f64,
        );
        counter(
            out,
            SPOOL_TORN,
            "Torn spool records dropped at start-up (never acknowledged).",
            self.spool_torn.get(),
        );
        counter(
            out,
            REDIS_DATA_LOSS,
            "Times Redis was found without the consumer group it had (data lost).",
            self.redis_data_loss.get(),
        );
        gauge(
            out,
            PROCESS_START,
            "Start time of the process since unix epoch in seconds.",
            self.start_time,
        );
        let _ = writeln!(
            out,
            "# HELP {BUILD_INFO} The gitspy version and the optional features it was built with."
        );
        let _ = writeln!(out, "# TYPE {BUILD_INFO} gauge");
        let _ = writeln!(
            out,
            "{BUILD_INFO}{{version=\"{}\",features=\"{}\"}} 1",
            escape(crate::build_info::VERSION),
            escape(crate::build_info::FEATURES)
        );
    }
}

/// `gitspy_redis_up`, and the queue gauges only when Redis answered (absent, never a misleading
/// 0, while it is down).
fn render_queue(out: &mut String, queue: Option<QueueGauges>) {
    gauge(
        out,
        REDIS_UP,
        "1 when Redis answered the last queue query, else 0.",
        if queue.is_some() { 1.0 } else { 0.0 },
    );
    let Some(q) = queue else {
        return;
    };
    gauge(
        out,
        QUEUE_WAITING,
        "Entries not yet delivered to a consumer (XLEN - pending).",
        q.waiting as f64,
    );
    gauge(
        out,
        QUEUE_ACTIVE,
        "Entries delivered to a consumer and not yet acknowledged.",
        q.active as f64,
    );
    gauge(
        out,
        QUEUE_DEAD,
        "Entries in the dead-letter stream.",
        q.dead as f64,
    );
}

fn labeled(out: &mut String, name: &str, help: &str, label: &str, c: &LabeledCounter) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} counter");
    for (value, n) in c.snapshot() {
        let _ = writeln!(out, "{name}{{{label}=\"{}\"}} {n}", escape(&value));
    }
}

fn counter(out: &mut String, name: &str, help: &str, v: u64) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} counter");
    let _ = writeln!(out, "{name} {v}");
}

fn gauge(out: &mut String, name: &str, help: &str, v: f64) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} gauge");
    let _ = writeln!(out, "{name} {v}");
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_gauges_absent_while_redis_down() {
        let m = Metrics::new();
        let down = m.render(None);
        assert!(down.contains("gitspy_redis_up 0"));
        assert!(!down.contains("gitspy_queue_waiting"));
        let up = m.render(Some(QueueGauges {
            waiting: 3,
            active: 1,
            dead: 0,
        }));
        assert!(up.contains("gitspy_redis_up 1"));
        assert!(up.contains("gitspy_queue_waiting 3"));
        assert!(up.contains("gitspy_queue_active 1"));
        assert!(up.contains(&format!(
            "gitspy_build_info{{version=\"{}\",features=\"{}\"}} 1",
            crate::build_info::VERSION,
            crate::build_info::FEATURES
        )));
    }

    #[test]
    fn histogram_is_cumulative() {
        let m = Metrics::new();
        m.job_duration.observe("issues", 3.0);
        m.job_duration.observe("issues", 700.0);
        let t = m.render(None);
        assert!(t.contains("gitspy_job_duration_ms_bucket{event_type=\"issues\",le=\"2.5\"} 0"));
        assert!(t.contains("gitspy_job_duration_ms_bucket{event_type=\"issues\",le=\"5\"} 1"));
        assert!(t.contains("gitspy_job_duration_ms_bucket{event_type=\"issues\",le=\"1000\"} 2"));
        assert!(t.contains("gitspy_job_duration_ms_bucket{event_type=\"issues\",le=\"+Inf\"} 2"));
        assert!(t.contains("gitspy_job_duration_ms_count{event_type=\"issues\"} 2"));
    }
}
