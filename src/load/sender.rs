//! The signed webhook sender: an open-model load generator with a bounded number of requests in
//! flight and a timeout on each.
//!
//! Open model: request `i` of a batch is due at `start + i / rate`, fixed before the first byte is
//! sent. The scheduling loop never waits for a response, so a slow server does not slow the
//! arrival rate (a closed-model loop would, and would hide exactly the overload a chaos test is
//! after). Only when every concurrency slot is taken does a request start late; that is counted
//! (`BatchReport::slipped`) and visible per request as `sent_at_ms - scheduled_at_ms`.
//!
//! Every request's result goes to the ledger (see [`super::ledger`]): kept in memory for a
//! scenario's verdict, or streamed ([`Sender::streaming`]: counted, and written to a record file)
//! for a long flood. The sender keeps the bodies of the ids that have not been accepted yet, so
//! [`Sender::redeliver_failed`] can resend them with the same id and the same bytes, as
//! GitHub's "redeliver" does; an accepted id's body is dropped at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};
use tokio::sync::{Semaphore, TryAcquireError};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::ledger::{self, Ledger, LedgerEntry, LedgerSummary, Outcome, Stream};
use super::payload::{Delivery, PlannedSend};
use super::sign;

/// The `User-Agent` of every request: GitHub's prefix, so servers that look at it treat the
/// harness like GitHub.
pub const USER_AGENT: &str = "GitHub-Hookshot/gitspy-chaos";

/// How a [`Sender`] talks to the endpoint.
#[derive(Clone, Debug)]
pub struct SenderConfig {
    /// The webhook endpoint, e.g. `http://127.0.0.1:3000/webhooks`.
    pub url: String,
    /// The webhook secret; `None` sends unsigned requests (for servers run with
    /// `--allow-unsigned`).
    pub secret: Option<String>,
    /// Requests per second; `None` starts every request as soon as a concurrency slot is free.
    pub rate: Option<f64>,
    /// Requests in flight at most.
    pub concurrency: usize,
    /// Per request, from the start of the connection to the end of the response body.
    pub timeout: Duration,
}

/// What one batch did.
#[derive(Clone, Debug)]
pub struct BatchReport {
    /// The batch's attempts, in schedule order (already appended to the sender's ledger).
    pub entries: Vec<LedgerEntry>,
    /// Requests that found every concurrency slot taken when they were due, so started late.
    pub slipped: u64,
    /// The most requests of this batch in flight at once.
    pub max_in_flight: usize,
    /// The largest `sent_at_ms - scheduled_at_ms` of the batch.
    pub max_late_ms: u64,
}

/// What one batch asks of the sender beyond its plan (a scenario's send step has its own).
#[derive(Clone, Debug, Default)]
pub struct BatchOptions {
    /// Schedule slots per second; `None` starts every request as soon as it may.
    pub rate: Option<f64>,
    /// Requests of this batch in flight at most (besides the sender's own bound).
    pub concurrency: Option<usize>,
    /// Per-request timeout of this batch (default: the sender's).
    pub timeout: Option<Duration>,
}

/// A planned request with its slot on the rate schedule: requests sharing a slot start at the
/// same instant (concurrent copies).
#[derive(Clone, Debug)]
pub struct Scheduled {
    pub send: PlannedSend,
    pub slot: u64,
}

impl BatchReport {
    pub fn summary(&self) -> LedgerSummary {
        ledger::summarize(&self.entries)
    }

    /// The largest `sent_at_ms - scheduled_at_ms` of the batch.
    pub fn max_lateness_ms(&self) -> u64 {
        self.max_late_ms
    }
}

#[derive(Default)]
struct State {
    ledger: Ledger,
    /// Bodies of the ids not yet answered with a 2xx: the only ones that may be redelivered,
    /// with the order of their first request. An id leaves as soon as one of its requests is
    /// accepted, so a long flood holds only what is in flight or was refused.
    unaccepted: HashMap<String, (u64, Arc<Delivery>)>,
    /// Requests made so far per id (the next attempt number is this plus one).
    attempts: HashMap<Box<str>, u32>,
}

/// What every request task of a sender shares.
struct Shared {
    client: reqwest::Client,
    url: reqwest::Url,
    secret: Option<Vec<u8>>,
}

/// Sends batches of deliveries and keeps the run's ledger. One per run: attempt numbers and
/// redelivery span all its batches, and concurrent batches share its concurrency bound.
pub struct Sender {
    shared: Arc<Shared>,
    /// Set by [`Sender::streaming`]: entries are counted and written there, not kept.
    stream: Option<Arc<Stream>>,
    rate: Option<f64>,
    timeout: Duration,
    slots: Arc<Semaphore>,
    /// The size of `slots`: requests in flight = this − available permits.
    concurrency: usize,
    state: Arc<Mutex<State>>,
}

impl Sender {
    pub fn new(config: SenderConfig) -> anyhow::Result<Self> {
        let url = reqwest::Url::parse(&config.url)
            .with_context(|| format!("invalid webhook url {:?}", config.url))?;
        if url.scheme() != "http" {
            bail!(
                "webhook url {url} is not http://\n\
                 hint: the sender speaks plain HTTP to a local or in-cluster endpoint"
            );
        }
        if config.concurrency == 0 {
            bail!("concurrency must be at least 1");
        }
        if let Some(rate) = config.rate {
            if !(rate.is_finite() && rate > 0.0) {
                bail!("rate must be a positive number of requests per second, got {rate}");
            }
        }
        if config.timeout.is_zero() {
            bail!("the per-request timeout must be positive");
        }
        let client = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            // The system under test is local; a proxy from the environment would only get in
            // the way (and would turn "server down" into a proxy's 502).
            .no_proxy()
            // Connecting is part of the request: a server that cannot accept counts as a timeout
            // too, never as an unbounded wait. The whole request is bounded by the sender's own
            // deadline (`Request::send`), one timer per request instead of two.
            .connect_timeout(config.timeout)
            .build()
            .context("building the HTTP client")?;
        Ok(Self {
            shared: Arc::new(Shared {
                client,
                url,
                secret: config.secret.map(String::into_bytes),
            }),
            stream: None,
            rate: config.rate,
            timeout: config.timeout,
            slots: Arc::new(Semaphore::new(config.concurrency)),
            concurrency: config.concurrency,
            state: Arc::new(Mutex::new(State::default())),
        })
    }

    /// Keeps no ledger entry in memory from now on: each attempt is counted (see
    /// [`Sender::streamed`]) and, with `records`, written to that file. For one long flood
    /// whose batches run one after another (`gitspy-chaos send`); [`Sender::ledger`] stays
    /// empty.
    pub fn streaming(mut self, records: Option<ledger::RecordFile>) -> Self {
        self.stream = Some(Arc::new(Stream::new(records)));
        self
    }

    /// What a streaming sender counted, and its record file.
    pub fn streamed(&self) -> Option<&Stream> {
        self.stream.as_deref()
    }

    /// Distinct delivery ids sent so far.
    pub fn distinct_ids(&self) -> u64 {
        self.state().attempts.len() as u64
    }

    /// The ids none of whose requests got a 2xx so far, in the order of their first request.
    pub fn unaccepted_ids(&self) -> Vec<String> {
        let state = self.state();
        let mut ids: Vec<(u64, &String)> = state
            .unaccepted
            .iter()
            .map(|(id, (order, _))| (*order, id))
            .collect();
        ids.sort_unstable();
        ids.into_iter().map(|(_, id)| id.clone()).collect()
    }

    /// Webhook requests in flight right now (what a server or Redis fault would cut short).
    pub fn in_flight(&self) -> u64 {
        self.concurrency
            .saturating_sub(self.slots.available_permits()) as u64
    }

    /// A copy of every attempt so far.
    pub fn ledger(&self) -> Ledger {
        self.state().ledger.clone()
    }

    /// Every attempt, without a copy: the sender is done.
    pub fn into_ledger(self) -> Ledger {
        std::mem::take(&mut self.state().ledger)
    }

    /// Sends the plan on the open-model schedule and waits for every answer (each bounded by
    /// the timeout). The plan may be lazy ([`super::PayloadGen::plan_iter`]): it is pulled one
    /// request at a time, when that request is due.
    pub async fn send<I>(&self, plan: I) -> anyhow::Result<BatchReport>
    where
        I: IntoIterator<Item = PlannedSend>,
    {
        self.send_at(plan, self.rate).await
    }

    /// [`Sender::send`] at another rate.
    pub async fn send_at<I>(&self, plan: I, rate: Option<f64>) -> anyhow::Result<BatchReport>
    where
        I: IntoIterator<Item = PlannedSend>,
    {
        let scheduled = plan.into_iter().enumerate().map(|(i, send)| Scheduled {
            send,
            slot: i as u64,
        });
        self.send_scheduled(
            scheduled,
            &BatchOptions {
                rate,
                ..BatchOptions::default()
            },
        )
        .await
    }

    /// Sends the plan on its schedule (`slot / rate` after the start) with the batch's own
    /// concurrency bound and timeout, and waits for every answer.
    pub async fn send_scheduled<I>(
        &self,
        plan: I,
        opts: &BatchOptions,
    ) -> anyhow::Result<BatchReport>
    where
        I: IntoIterator<Item = Scheduled>,
    {
        let (writer, collector) = match &self.stream {
            Some(stream) => ledger::streaming_collector(stream.clone()),
            None => ledger::collector(),
        };
        let mut tasks = JoinSet::new();
        let start = Instant::now();
        let start_ms = unix_ms();
        let mut slipped = 0;
        let batch_slots = opts.concurrency.map(|n| Arc::new(Semaphore::new(n.max(1))));
        let in_flight = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let max_in_flight = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut max_late_ms = 0u64;
        let timeout = opts.timeout.unwrap_or(self.timeout);
        for (
            index,
            Scheduled {
                send: planned,
                slot,
            },
        ) in plan.into_iter().enumerate()
        {
            let offset = match opts.rate {
                Some(rate) => Duration::from_secs_f64(slot as f64 / rate),
                None => Duration::ZERO,
            };
            if !offset.is_zero() {
                tokio::time::sleep_until(start + offset).await;
            }
            let mut late = false;
            let batch_permit = match &batch_slots {
                None => None,
                Some(sem) => match sem.clone().try_acquire_owned() {
                    Ok(p) => Some(p),
                    Err(TryAcquireError::NoPermits) => {
                        late = true;
                        match sem.clone().acquire_owned().await {
                            Ok(p) => Some(p),
                            Err(_closed) => break,
                        }
                    }
                    Err(TryAcquireError::Closed) => break,
                },
            };
            let permit = match self.slots.clone().try_acquire_owned() {
                Ok(permit) => permit,
                Err(TryAcquireError::NoPermits) => {
                    late = true;
                    match self.slots.clone().acquire_owned().await {
                        Ok(permit) => permit,
                        Err(_closed) => break,
                    }
                }
                Err(TryAcquireError::Closed) => break,
            };
            slipped += u64::from(late);
            let now = in_flight.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            max_in_flight.fetch_max(now, std::sync::atomic::Ordering::SeqCst);
            let attempt = self.register(&planned.delivery);
            let request = Request {
                shared: self.shared.clone(),
                timeout,
            };
            let writer = writer.clone();
            let state = self.state.clone();
            let in_flight = in_flight.clone();
            let scheduled_at_ms = start_ms + offset.as_millis() as u64;
            if late {
                max_late_ms = max_late_ms.max(unix_ms().saturating_sub(scheduled_at_ms));
            }
            tasks.spawn(async move {
                let result = request.send(&planned.delivery).await;
                in_flight.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                drop(permit);
                drop(batch_permit);
                if result.outcome.is_success() {
                    lock(&state).unaccepted.remove(&planned.delivery.id);
                }
                writer.record(
                    index,
                    LedgerEntry {
                        delivery: planned.delivery.id.clone(),
                        attempt,
                        duplicate_of: planned.duplicate_of,
                        event: planned.delivery.event.clone(),
                        scheduled_at_ms,
                        sent_at_ms: result.sent_at_ms,
                        outcome: result.outcome,
                        latency_ms: result.latency_ms,
                        answer: result.answer,
                    },
                );
            });
            // Reap finished requests as we go: a finished task keeps its whole allocation until
            // joined, which for a long flood was most of the sender's memory.
            while let Some(joined) = tasks.try_join_next() {
                joined.context("a request task failed")?;
            }
        }
        drop(writer);
        while let Some(joined) = tasks.join_next().await {
            joined.context("a request task failed")?;
        }
        let entries = collector.finish().await?;
        self.state().ledger.extend(entries.iter().cloned());
        // Lateness as the ledger records it (a request's `sent_at_ms` is taken in its task).
        let recorded_late = entries
            .iter()
            .map(|e| e.sent_at_ms.saturating_sub(e.scheduled_at_ms))
            .max()
            .unwrap_or(0);
        Ok(BatchReport {
            entries,
            slipped,
            max_in_flight: max_in_flight.load(std::sync::atomic::Ordering::SeqCst),
            max_late_ms: max_late_ms.max(recorded_late),
        })
    }

    /// Resends, once each and on the same schedule, every id none of whose attempts got a 2xx —
    /// same id, same body, as GitHub's "redeliver" does.
    pub async fn redeliver_failed(&self) -> anyhow::Result<BatchReport> {
        let ids = self.unaccepted_ids();
        let plan: Vec<PlannedSend> = {
            let state = self.state();
            ids.iter()
                .filter_map(|id| state.unaccepted.get(id).map(|(_, d)| d.clone()))
                .map(|delivery| PlannedSend {
                    delivery,
                    duplicate_of: None,
                })
                .collect()
        };
        self.send(plan).await
    }

    /// Notes one more request for this delivery; returns its attempt number.
    fn register(&self, delivery: &Arc<Delivery>) -> u32 {
        let mut state = self.state();
        let attempt = match state.attempts.get_mut(delivery.id.as_str()) {
            Some(n) => {
                *n += 1;
                *n
            }
            None => {
                state.attempts.insert(delivery.id.as_str().into(), 1);
                1
            }
        };
        // Only a first request enters: an id that left on a 2xx never needs redelivering, even
        // if a later copy of it is refused.
        if attempt == 1 {
            let order = state.attempts.len() as u64;
            state
                .unaccepted
                .insert(delivery.id.clone(), (order, delivery.clone()));
        }
        attempt
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // The lock is never held across an await or a panic-prone call; if a holder did panic, the
    // data is still consistent entry by entry.
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// Everything one request task needs.
struct Request {
    shared: Arc<Shared>,
    timeout: Duration,
}

struct Answer {
    sent_at_ms: u64,
    outcome: Outcome,
    latency_ms: f64,
    answer: Option<String>,
}

impl Request {
    async fn send(&self, delivery: &Delivery) -> Answer {
        let shared = &*self.shared;
        let mut builder = shared
            .client
            .post(shared.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("X-GitHub-Event", &delivery.event)
            .header("X-GitHub-Delivery", &delivery.id);
        if let Some(secret) = &shared.secret {
            builder = builder.header(
                sign::SIGNATURE_HEADER,
                sign::signature(secret, &delivery.body),
            );
        }
        let builder = builder.body(delivery.body.clone());

        let sent_at_ms = unix_ms();
        let started = Instant::now();
        let deadline = started + self.timeout;
        // The one bound of the request, from the first byte to the end of the answer's body.
        let response = tokio::time::timeout_at(deadline, builder.send()).await;
        let (outcome, answer) = match response {
            Err(_elapsed) => (Outcome::Timeout, None),
            Ok(Err(e)) => (classify(&e), None),
            Ok(Ok(response)) => {
                let status = response.status().as_u16();
                // Once the status is in, the server has decided; a body that fails to arrive
                // only costs the answer text.
                let body = tokio::time::timeout_at(deadline, response.bytes()).await;
                let answer = match body {
                    Ok(Ok(bytes)) => answer_of(&bytes),
                    _ => None,
                };
                (Outcome::Status(status), answer)
            }
        };
        Answer {
            sent_at_ms,
            outcome,
            // Whole microseconds, so the value survives a JSON round trip exactly.
            latency_ms: started.elapsed().as_micros() as f64 / 1000.0,
            answer,
        }
    }
}

/// A connection that never opened sent nothing (refused); any other failure may have happened
/// after the server read the request (indeterminate).
fn classify(e: &reqwest::Error) -> Outcome {
    if e.is_connect() {
        Outcome::Refused(error_chain(e))
    } else if e.is_timeout() {
        Outcome::Timeout
    } else {
        Outcome::Transport(error_chain(e))
    }
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

/// The two fields [`answer_of`] reads, without building a JSON tree.
#[derive(serde::Deserialize)]
struct AnswerFields<'a> {
    #[serde(borrow, default)]
    status: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    error: Option<std::borrow::Cow<'a, str>>,
}

/// The response's `status` (`queued`, `duplicate`, `spooled`), else its `error`.
fn answer_of(body: &[u8]) -> Option<String> {
    if body.first() == Some(&b'{') {
        if let Ok(a) = serde_json::from_slice::<AnswerFields<'_>>(body) {
            return a.status.or(a.error).map(std::borrow::Cow::into_owned);
        }
    }
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    ["status", "error"]
        .iter()
        .find_map(|k| value.get(*k).and_then(|v| v.as_str()).map(str::to_string))
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str) -> SenderConfig {
        SenderConfig {
            url: url.to_string(),
            secret: None,
            rate: Some(10.0),
            concurrency: 4,
            timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn answers_are_read_from_status_then_error() {
        assert_eq!(
            answer_of(br#"{"status":"queued","delivery":"x"}"#).as_deref(),
            Some("queued")
        );
        assert_eq!(
            answer_of(br#"{"error":"invalid signature"}"#).as_deref(),
            Some("invalid signature")
        );
        assert_eq!(answer_of(b"not json"), None);
        assert_eq!(answer_of(br#"{"status":3}"#), None);
    }

    /// The scenario runner spawns batches (`parallel:` steps), so a batch fed by a lazy plan
    /// must be a `Send` future.
    #[test]
    fn a_lazy_batch_is_a_send_future() {
        fn assert_send<T: Send>(_: &T) {}
        let sender = Sender::new(config("http://127.0.0.1:1/webhooks")).unwrap();
        let mut gen =
            super::super::PayloadGen::new(1, super::super::RunNonce::new("n"), "a/b", 1).unwrap();
        let batch = sender.send(gen.plan_iter(3, &Default::default()));
        assert_send(&batch);
    }

    #[test]
    fn config_is_checked() {
        assert!(Sender::new(config("http://127.0.0.1:1/webhooks")).is_ok());
        assert!(Sender::new(config("not a url")).is_err());
        assert!(Sender::new(config("https://example.com/")).is_err());
        assert!(Sender::new(SenderConfig {
            concurrency: 0,
            ..config("http://h/")
        })
        .is_err());
        assert!(Sender::new(SenderConfig {
            rate: Some(0.0),
            ..config("http://h/")
        })
        .is_err());
        assert!(Sender::new(SenderConfig {
            rate: Some(f64::NAN),
            ..config("http://h/")
        })
        .is_err());
        assert!(Sender::new(SenderConfig {
            timeout: Duration::ZERO,
            ..config("http://h/")
        })
        .is_err());
    }
}
