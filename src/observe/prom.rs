//! One Prometheus scrape of one target (`/metrics/prom` of the server or of a worker), parsed
//! with `prometheus-parse` and flattened into plain `(name, labels, value)` samples.
//!
//! Samples are matched by NAME, never by declared type: depending on how a process writes its
//! `# TYPE` lines, counters (`foo_total` under `# TYPE foo counter`) and the `_sum`/`_count`
//! parts of histograms come back from the parser as untyped, and histogram buckets come back
//! either grouped (typed) or as loose `_bucket{le=..}` samples (untyped). Flattening all of them
//! into one shape makes every reader below indifferent to that.
//!
//! The metric names the harness reads are defined once, in [`names`].

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result};
use gitspy_contract::MetricNames;
use serde::{Deserialize, Serialize};

/// The metric names the harness reads: the shared contract's (GitSpy's). A target with other
/// names is read through [`Scrape::canonical`], which renames its samples to these.
pub mod names {
    pub use gitspy_contract::metrics::*;
    /// Worker: histogram of job durations in milliseconds (base name, without `_bucket`).
    pub const JOB_DURATION_MS: &str = gitspy_contract::metrics::JOB_DURATION;
}

/// How long one scrape may take. A worker answering slower than this is treated as not
/// answering for this poll: the poller must keep its cadence even while a process is paused.
pub const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);

/// One flattened sample. Histogram buckets are samples named `<base>_bucket` with an `le` label.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Metric name as exposed, e.g. `gitspy_jobs_processed_total`.
    pub name: String,
    /// Label set, sorted. Empty when the sample has none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// The value. Always finite: NaN and infinite values are dropped at parse time, because
    /// `run.json` cannot carry them and no check reads them.
    pub value: f64,
}

/// One scrape of one target at one instant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scrape {
    /// When the scrape was answered, unix milliseconds.
    pub at_ms: u64,
    /// When the scrape was asked for, unix milliseconds (the process wrote its metrics in
    /// between): `None` where unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asked_ms: Option<u64>,
    /// Which process: `"server"`, `"worker-0"`, ...
    pub target: String,
    /// Every finite sample of the exposition.
    pub samples: Vec<Sample>,
}

/// One cumulative histogram bucket: `count` observations were `<= le`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Bucket {
    /// Upper bound; `f64::INFINITY` for `+Inf` (serialized as `null` by serde_json, which is
    /// why histograms are not stored in this form, only computed from samples).
    pub le: f64,
    /// Cumulative count.
    pub count: f64,
}

/// The parts of one histogram, summed over every label set except `le`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Histogram {
    /// Cumulative buckets sorted by `le`, the last one `+Inf` when the exposition has it.
    pub buckets: Vec<Bucket>,
    /// `<base>_sum`, when present.
    pub sum: Option<f64>,
    /// `<base>_count`, when present.
    pub count: Option<f64>,
}

impl Scrape {
    /// The backlog this scrape shows: everything accepted and not yet processed — queue
    /// waiting + active (delayed retries included: they are pending) + spool depth. `None` when
    /// the queue gauges are absent (Redis down: unknown, never 0). A system that exports no
    /// spool gauge has no spool.
    pub fn backlog(&self) -> Option<f64> {
        let waiting = self.gauge(names::QUEUE_WAITING)?;
        let active = self.gauge(names::QUEUE_ACTIVE)?;
        // Delayed retries (`gitspy_queue_delayed`) are still pending in Redis, so they are already
        // inside `active`: adding them would count them twice.
        let spooled = self.gauge(names::SPOOL_DEPTH).unwrap_or(0.0);
        Some(waiting + active + spooled)
    }

    /// The samples renamed from a target's metric names (`names`, from its profile) to the
    /// contract's. A sample no role names is kept as it is, unless its name is one of the
    /// contract's (it would be misread as that role) — then it is dropped.
    #[must_use]
    pub fn canonical(mut self, names: &MetricNames) -> Scrape {
        if *names == MetricNames::default() {
            return self;
        }
        let ours: Vec<&str> = MetricNames::default().pairs().iter().map(|p| p.1).collect();
        let taken = |name: &str| {
            ours.iter().any(|o| {
                name == *o
                    || ["_bucket", "_sum", "_count"]
                        .iter()
                        .any(|suffix| name.strip_suffix(suffix) == Some(o))
            })
        };
        self.samples = std::mem::take(&mut self.samples)
            .into_iter()
            .filter_map(|mut s| match names.canonical(&s.name) {
                Some(name) => {
                    s.name = name;
                    Some(s)
                }
                None if taken(&s.name) => None,
                None => Some(s),
            })
            .collect();
        self.samples
            .sort_by(|a, b| (&a.name, &a.labels).cmp(&(&b.name, &b.labels)));
        self
    }

    /// Parses a text exposition taken from `target` at `at_ms`.
    ///
    /// Lines the parser does not understand are skipped (that is `prometheus-parse`'s
    /// behaviour); an exposition with no sample at all is still a valid, empty scrape.
    pub fn parse(target: &str, at_ms: u64, text: &str) -> Result<Scrape> {
        let lines = text.lines().map(|l| Ok(l.to_owned()));
        let parsed = prometheus_parse::Scrape::parse(lines)
            .with_context(|| format!("parsing the metrics of {target}"))?;
        let mut samples = Vec::with_capacity(parsed.samples.len());
        for s in parsed.samples {
            let labels: BTreeMap<String, String> = s
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let mut push = |name: String, labels: BTreeMap<String, String>, value: f64| {
                if value.is_finite() {
                    samples.push(Sample {
                        name,
                        labels,
                        value,
                    });
                }
            };
            match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => push(s.metric, labels, v),
                prometheus_parse::Value::Histogram(buckets) => {
                    // The parser names grouped buckets by the base name; expand them back
                    // into `<base>_bucket{le}` so typed and untyped expositions look alike.
                    let name = format!("{}_bucket", s.metric);
                    for b in buckets {
                        let mut l = labels.clone();
                        l.insert("le".to_owned(), format_le(b.less_than));
                        push(name.clone(), l, b.count);
                    }
                }
                prometheus_parse::Value::Summary(quantiles) => {
                    for q in quantiles {
                        let mut l = labels.clone();
                        l.insert("quantile".to_owned(), q.quantile.to_string());
                        push(s.metric.clone(), l, q.count);
                    }
                }
            }
        }
        // The parser returns grouped histograms from a HashMap; sort for stable output.
        samples.sort_by(|a, b| (&a.name, &a.labels).cmp(&(&b.name, &b.labels)));
        Ok(Scrape {
            at_ms,
            asked_ms: None,
            target: target.to_owned(),
            samples,
        })
    }

    /// Every sample called `name`.
    pub fn samples_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| s.name == name)
    }

    /// A counter summed over all its label sets; `None` when the scrape has no such sample
    /// (a counter that was never exposed is not the same as one that reads 0).
    pub fn counter(&self, name: &str) -> Option<f64> {
        self.counter_where(name, &[])
    }

    /// A counter summed over the label sets that carry every `(label, value)` of `filter`.
    pub fn counter_where(&self, name: &str, filter: &[(&str, &str)]) -> Option<f64> {
        let mut total = None;
        for s in self.samples_named(name) {
            if filter
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            {
                *total.get_or_insert(0.0) += s.value;
            }
        }
        total
    }

    /// A gauge (summed over label sets, which for the queue gauges is a single one). Absent is
    /// `None`, never 0: while Redis is down the queue gauges are deliberately not exposed.
    pub fn gauge(&self, name: &str) -> Option<f64> {
        self.counter_where(name, &[])
    }

    /// `process_start_time_seconds`, the restart detector.
    pub fn process_start(&self) -> Option<f64> {
        self.gauge(names::PROCESS_START)
    }

    /// The histogram `base` (e.g. `gitspy_job_duration_ms`) summed over all label sets. `None`
    /// when the scrape has neither buckets nor `_count`.
    pub fn histogram(&self, base: &str) -> Option<Histogram> {
        let bucket_name = format!("{base}_bucket");
        let mut by_le: BTreeMap<LeKey, f64> = BTreeMap::new();
        for s in self.samples_named(&bucket_name) {
            let Some(le) = s.labels.get("le").and_then(|v| parse_le(v)) else {
                continue;
            };
            *by_le.entry(LeKey(le)).or_insert(0.0) += s.value;
        }
        let sum = self.counter(&format!("{base}_sum"));
        let count = self.counter(&format!("{base}_count"));
        if by_le.is_empty() && count.is_none() {
            return None;
        }
        Some(Histogram {
            buckets: by_le
                .into_iter()
                .map(|(LeKey(le), count)| Bucket { le, count })
                .collect(),
            sum,
            count,
        })
    }
}

/// `le` as an ordered map key. Bucket bounds are never NaN (`parse_le` rejects it), so the
/// total order of `f64::total_cmp` is the numeric order.
#[derive(Debug, Clone, Copy, PartialEq)]
struct LeKey(f64);
impl Eq for LeKey {}
impl PartialOrd for LeKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for LeKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// Parses an `le` label value: a float or `+Inf`.
pub(crate) fn parse_le(v: &str) -> Option<f64> {
    let le = match v {
        "+Inf" | "Inf" | "inf" | "+inf" => f64::INFINITY,
        other => other.parse::<f64>().ok()?,
    };
    (!le.is_nan()).then_some(le)
}

fn format_le(le: f64) -> String {
    if le == f64::INFINITY {
        "+Inf".to_owned()
    } else {
        le.to_string()
    }
}

/// Scrapes `url` (a `/metrics/prom` endpoint) as `target`, with [`SCRAPE_TIMEOUT`] for the
/// whole exchange. A non-2xx answer is an error naming the status.
pub async fn scrape(client: &reqwest::Client, url: &str, target: &str) -> Result<Scrape> {
    scrape_as(client, url, target, &MetricNames::default()).await
}

/// [`scrape`] of a target whose metric names are `names` (its profile's), renamed to the
/// contract's names so every reader downstream is indifferent to the target's naming.
pub async fn scrape_as(
    client: &reqwest::Client,
    url: &str,
    target: &str,
    names: &MetricNames,
) -> Result<Scrape> {
    let asked_ms = now_ms();
    let resp = client
        .get(url)
        .timeout(SCRAPE_TIMEOUT)
        .send()
        .await
        .with_context(|| format!("scraping {target} at {url}"))?;
    let status = resp.status();
    if !status.is_success() {
        anyhow::bail!("scraping {target} at {url}: status {status}");
    }
    let text = resp
        .text()
        .await
        .with_context(|| format!("reading the metrics body of {target} at {url}"))?;
    let mut scrape = Scrape::parse(target, now_ms(), &text)?.canonical(names);
    scrape.asked_ms = Some(asked_ms);
    Ok(scrape)
}

/// Current unix time in milliseconds (0 if the clock is before 1970, which it never is).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TYPED: &str = r#"
# HELP gitspy_events_received deliveries accepted
# TYPE gitspy_events_received counter
gitspy_events_received_total 20
# TYPE gitspy_events_rejected_total counter
gitspy_events_rejected_total{reason="queue_unavailable"} 7
gitspy_events_rejected_total{reason="signature"} 3
# TYPE gitspy_queue_waiting gauge
gitspy_queue_waiting 4
# TYPE gitspy_job_duration_ms histogram
gitspy_job_duration_ms_bucket{event_type="issues",le="1"} 2
gitspy_job_duration_ms_bucket{event_type="issues",le="10"} 5
gitspy_job_duration_ms_bucket{event_type="issues",le="+Inf"} 6
gitspy_job_duration_ms_sum{event_type="issues"} 70.5
gitspy_job_duration_ms_count{event_type="issues"} 6
gitspy_job_duration_ms_bucket{event_type="push",le="1"} 1
gitspy_job_duration_ms_bucket{event_type="push",le="10"} 1
gitspy_job_duration_ms_bucket{event_type="push",le="+Inf"} 2
gitspy_job_duration_ms_sum{event_type="push"} 100
gitspy_job_duration_ms_count{event_type="push"} 2
process_start_time_seconds 1764180000.25
weird_value NaN
"#;

    /// The same numbers without any TYPE line: everything comes back untyped.
    const UNTYPED: &str = r#"
gitspy_events_received_total 20
gitspy_job_duration_ms_bucket{event_type="issues",le="1"} 2
gitspy_job_duration_ms_bucket{event_type="issues",le="10"} 5
gitspy_job_duration_ms_bucket{event_type="issues",le="+Inf"} 6
gitspy_job_duration_ms_sum{event_type="issues"} 70.5
gitspy_job_duration_ms_count{event_type="issues"} 6
gitspy_job_duration_ms_bucket{event_type="push",le="1"} 1
gitspy_job_duration_ms_bucket{event_type="push",le="10"} 1
gitspy_job_duration_ms_bucket{event_type="push",le="+Inf"} 2
gitspy_job_duration_ms_sum{event_type="push"} 100
gitspy_job_duration_ms_count{event_type="push"} 2
"#;

    fn expected_histogram() -> Histogram {
        Histogram {
            buckets: vec![
                Bucket {
                    le: 1.0,
                    count: 3.0,
                },
                Bucket {
                    le: 10.0,
                    count: 6.0,
                },
                Bucket {
                    le: f64::INFINITY,
                    count: 8.0,
                },
            ],
            sum: Some(170.5),
            count: Some(8.0),
        }
    }

    #[test]
    fn counters_are_read_by_name_whatever_the_declared_type() {
        let s = Scrape::parse("server", 1000, TYPED).unwrap();
        assert_eq!(s.target, "server");
        assert_eq!(s.at_ms, 1000);
        assert_eq!(s.counter(names::EVENTS_RECEIVED), Some(20.0));
        assert_eq!(s.counter(names::EVENTS_REJECTED), Some(10.0));
        assert_eq!(
            s.counter_where(names::EVENTS_REJECTED, &[("reason", "signature")]),
            Some(3.0)
        );
        assert_eq!(
            s.counter_where(names::EVENTS_REJECTED, &[("reason", "nope")]),
            None
        );
        let u = Scrape::parse("server", 1000, UNTYPED).unwrap();
        assert_eq!(u.counter(names::EVENTS_RECEIVED), Some(20.0));
    }

    #[test]
    fn backlog_is_everything_not_yet_processed_including_the_spool() {
        let with = |extra: &str| {
            let text = format!("gitspy_queue_waiting 2\ngitspy_queue_active 1\n{extra}");
            Scrape::parse("server", 0, &text).unwrap().backlog()
        };
        assert_eq!(with(""), Some(3.0));
        // A record stuck in the spool keeps the backlog above 0, so `backlog` cannot pass and
        // `wait: drained` does not return.
        assert_eq!(
            with("gitspy_spool_depth 1\ngitspy_queue_delayed 4\n"),
            Some(4.0)
        );
        // Delayed retries are part of `active`, never counted on top of it.
        assert_eq!(with("gitspy_queue_delayed 1\n"), Some(3.0));
        // Redis down: the queue gauges are absent, the backlog is unknown (not the spool alone).
        let down = Scrape::parse("server", 0, "gitspy_spool_depth 5\n").unwrap();
        assert_eq!(down.backlog(), None);
    }

    #[test]
    fn absent_gauge_is_none_not_zero() {
        let s = Scrape::parse("server", 0, TYPED).unwrap();
        assert_eq!(s.gauge(names::QUEUE_WAITING), Some(4.0));
        assert_eq!(s.gauge(names::QUEUE_ACTIVE), None);
        assert_eq!(s.process_start(), Some(1_764_180_000.25));
    }

    #[test]
    fn non_finite_values_are_dropped() {
        let s = Scrape::parse("server", 0, TYPED).unwrap();
        assert_eq!(s.gauge("weird_value"), None);
        assert!(s.samples.iter().all(|x| x.value.is_finite()));
    }

    #[test]
    fn histograms_read_the_same_typed_or_untyped_and_sum_label_sets() {
        let typed = Scrape::parse("worker-0", 0, TYPED).unwrap();
        let untyped = Scrape::parse("worker-0", 0, UNTYPED).unwrap();
        assert_eq!(
            typed.histogram(names::JOB_DURATION_MS),
            Some(expected_histogram())
        );
        assert_eq!(
            untyped.histogram(names::JOB_DURATION_MS),
            Some(expected_histogram())
        );
        assert_eq!(typed.histogram("absent_metric"), None);
    }

    #[test]
    fn scrape_round_trips_through_json() {
        let s = Scrape::parse("worker-1", 42, TYPED).unwrap();
        let json = serde_json::to_string(&s).unwrap();
        let back: Scrape = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);
    }

    /// Serves one HTTP response on a free port and returns the URL.
    async fn serve_once(status: &'static str, body: &'static str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let mut seen = Vec::new();
            // Read the request head before answering.
            while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = sock.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                seen.extend_from_slice(&buf[..n]);
            }
            let resp = format!(
                "HTTP/1.1 {status}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            sock.write_all(resp.as_bytes()).await.unwrap();
        });
        format!("http://{addr}/metrics/prom")
    }

    #[tokio::test]
    async fn scrape_over_http_parses_the_body() {
        let url = serve_once("200 OK", TYPED).await;
        let client = reqwest::Client::new();
        let s = scrape(&client, &url, "server").await.unwrap();
        assert_eq!(s.target, "server");
        assert_eq!(s.counter(names::EVENTS_RECEIVED), Some(20.0));
        assert!(s.at_ms > 0);
    }

    #[tokio::test]
    async fn scrape_non_2xx_is_an_error_naming_the_status() {
        let url = serve_once("500 Internal Server Error", "boom").await;
        let client = reqwest::Client::new();
        let err = scrape(&client, &url, "worker-0").await.unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("500") && msg.contains("worker-0"), "{msg}");
    }

    #[test]
    fn empty_exposition_is_an_empty_scrape() {
        let s = Scrape::parse("server", 5, "").unwrap();
        assert!(s.samples.is_empty());
        assert_eq!(s.counter(names::EVENTS_RECEIVED), None);
    }
}
