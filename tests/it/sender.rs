//! The sender against a real HTTP server on 127.0.0.1:0 that checks signatures the way GitSpy
//! does and answers like it (202 queued, 200 duplicate, 401, 503), optionally slowly.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;

use gitspy_chaos::load::{
    send_cmd, Duplicates, Ledger, Outcome, PayloadGen, RunNonce, SendArgs, Sender, SenderConfig,
};

const SECRET: &str = "chaos secret";

/// What the server does with one request, decided from its delivery id and the number of
/// requests it has seen with that id (1 for the first).
#[derive(Clone, Copy, Debug)]
enum Reply {
    /// 202 queued, or 200 duplicate for an id already queued.
    Accept,
    /// This status with an error body.
    Fail(u16),
    /// Sleep, then accept.
    Slow(Duration),
}

type Script = Arc<dyn Fn(&str, u32) -> Reply + Send + Sync>;

#[derive(Clone, Debug)]
struct Seen {
    delivery: String,
    event: String,
    body: Vec<u8>,
    signature_ok: bool,
    user_agent: String,
    content_type: String,
}

struct ServerState {
    script: Script,
    seen: Mutex<Vec<Seen>>,
    requests_per_id: Mutex<HashMap<String, u32>>,
    queued: Mutex<HashSet<String>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

struct TestServer {
    url: String,
    state: Arc<ServerState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestServer {
    async fn start(script: impl Fn(&str, u32) -> Reply + Send + Sync + 'static) -> Self {
        let state = Arc::new(ServerState {
            script: Arc::new(script),
            seen: Mutex::new(Vec::new()),
            requests_per_id: Mutex::new(HashMap::new()),
            queued: Mutex::new(HashSet::new()),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
        });
        let app = Router::new()
            .route("/webhooks", post(webhook))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            url: format!("http://{addr}/webhooks"),
            state,
            task,
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }
}

/// Decrements the in-flight count however the handler ends (also when the client hangs up and
/// the handler future is dropped).
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn webhook(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    state.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let _guard = InFlight(&state.in_flight);

    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let delivery = header("x-github-delivery");
    // Verified independently of the code under test.
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(&body);
    let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    let signature_ok = header("x-hub-signature-256") == expected;
    state.seen.lock().unwrap().push(Seen {
        delivery: delivery.clone(),
        event: header("x-github-event"),
        body: body.to_vec(),
        signature_ok,
        user_agent: header("user-agent"),
        content_type: header("content-type"),
    });
    if !signature_ok {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "invalid signature"})),
        )
            .into_response();
    }
    let attempt = {
        let mut per_id = state.requests_per_id.lock().unwrap();
        let n = per_id.entry(delivery.clone()).or_insert(0);
        *n += 1;
        *n
    };
    match (state.script)(&delivery, attempt) {
        Reply::Fail(code) => {
            return (
                StatusCode::from_u16(code).unwrap(),
                Json(json!({"error": "queue unavailable"})),
            )
                .into_response()
        }
        Reply::Slow(d) => tokio::time::sleep(d).await,
        Reply::Accept => {}
    }
    if state.queued.lock().unwrap().insert(delivery.clone()) {
        (
            StatusCode::ACCEPTED,
            Json(json!({"status": "queued", "delivery": delivery})),
        )
            .into_response()
    } else {
        (
            StatusCode::OK,
            Json(json!({"status": "duplicate", "delivery": delivery})),
        )
            .into_response()
    }
}

fn config(url: &str) -> SenderConfig {
    SenderConfig {
        url: url.to_string(),
        secret: Some(SECRET.to_string()),
        rate: Some(50.0),
        concurrency: 8,
        timeout: Duration::from_secs(10),
    }
}

fn generator(seed: u64) -> PayloadGen {
    PayloadGen::new(seed, RunNonce::random(), "chaos/board", 77).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_deliveries_are_verified_by_the_server() {
    let server = TestServer::start(|_, _| Reply::Accept).await;
    let sender = Sender::new(config(&server.url)).unwrap();
    let plan = generator(1).plan(12, &Duplicates::default());
    let report = sender.send(plan.clone()).await.unwrap();

    let seen = server.seen();
    assert_eq!(seen.len(), 12);
    for s in &seen {
        assert!(s.signature_ok, "bad signature for {}", s.delivery);
        assert_eq!(s.user_agent, "GitHub-Hookshot/gitspy-chaos");
        assert_eq!(s.content_type, "application/json");
        let planned = plan.iter().find(|p| p.delivery.id == s.delivery).unwrap();
        assert_eq!(s.event, planned.delivery.event);
        assert_eq!(s.body, planned.delivery.body);
    }
    let ids: HashSet<_> = seen.iter().map(|s| s.delivery.clone()).collect();
    assert_eq!(ids.len(), 12);

    let s = report.summary();
    assert_eq!((s.sent, s.accepted, s.rejected), (12, 12, 0));
    assert!(report
        .entries
        .iter()
        .all(|e| e.outcome == Outcome::Status(202)
            && e.answer.as_deref() == Some("queued")
            && e.attempt == 1
            && e.duplicate_of.is_none()));
    // The ledger is in schedule order.
    let ledger_ids: Vec<_> = sender
        .ledger()
        .entries
        .iter()
        .map(|e| e.delivery.clone())
        .collect();
    let plan_ids: Vec<_> = plan.iter().map(|p| p.delivery.id.clone()).collect();
    assert_eq!(ledger_ids, plan_ids);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_or_missing_secret_is_rejected() {
    let server = TestServer::start(|_, _| Reply::Accept).await;
    let wrong = Sender::new(SenderConfig {
        secret: Some("not the secret".into()),
        ..config(&server.url)
    })
    .unwrap();
    let report = wrong
        .send(generator(2).plan(3, &Duplicates::default()))
        .await
        .unwrap();
    assert!(report
        .entries
        .iter()
        .all(|e| e.outcome == Outcome::Status(401)
            && e.answer.as_deref() == Some("invalid signature")));
    let unsigned = Sender::new(SenderConfig {
        secret: None,
        ..config(&server.url)
    })
    .unwrap();
    let report = unsigned
        .send(generator(2).plan(2, &Duplicates::default()))
        .await
        .unwrap();
    assert_eq!(report.summary().rejected, 2);
    assert_eq!(server.seen().iter().filter(|s| s.signature_ok).count(), 0);
    assert_eq!(wrong.ledger().to_redeliver().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_sends_one_delivery_id_with_one_body() {
    let server = TestServer::start(|_, _| Reply::Accept).await;
    let sender = Sender::new(config(&server.url)).unwrap();
    let plan = generator(3).plan(
        5,
        &Duplicates {
            same: true,
            ..Default::default()
        },
    );
    let report = sender.send(plan).await.unwrap();

    let seen = server.seen();
    assert_eq!(seen.len(), 5);
    assert!(seen
        .iter()
        .all(|s| s.delivery == seen[0].delivery && s.body == seen[0].body));
    let id = report.entries[0].delivery.clone();
    let attempts: Vec<u32> = report.entries.iter().map(|e| e.attempt).collect();
    assert_eq!(attempts, [1, 2, 3, 4, 5]);
    assert_eq!(report.entries[0].duplicate_of, None);
    assert!(report.entries[1..]
        .iter()
        .all(|e| e.duplicate_of.as_ref() == Some(&id)));
    let s = report.summary();
    assert_eq!((s.sent, s.distinct, s.accepted, s.duplicates), (5, 1, 1, 4));
    assert!(sender.ledger().to_redeliver().is_empty());
}

/// Open model: a server that takes 2 s per request must not slow the schedule. 20 requests at
/// 20/s with 32 slots are due over 0.95 s; each must start within a second of its due time
/// (a closed-model loop would start the 2nd only after the 1st answered, 2 s late).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_server_does_not_slow_the_schedule() {
    let server = TestServer::start(|_, _| Reply::Slow(Duration::from_secs(2))).await;
    let sender = Sender::new(SenderConfig {
        rate: Some(20.0),
        concurrency: 32,
        ..config(&server.url)
    })
    .unwrap();
    let report = sender
        .send(generator(4).plan(20, &Duplicates::default()))
        .await
        .unwrap();

    assert_eq!(report.entries.len(), 20);
    assert_eq!(
        report.slipped, 0,
        "32 slots are never all busy with 20 requests"
    );
    let first = report.entries[0].scheduled_at_ms;
    for (i, e) in report.entries.iter().enumerate() {
        assert_eq!(e.outcome, Outcome::Status(202), "{e:?}");
        // Due times are fixed by the rate: i × 50 ms after the first (±1 ms of rounding).
        let due = e.scheduled_at_ms - first;
        assert!(
            due.abs_diff(i as u64 * 50) <= 1,
            "request {i} due at +{due} ms"
        );
        let late = e.sent_at_ms.saturating_sub(e.scheduled_at_ms);
        assert!(
            late <= 1_000,
            "request {i} started {late} ms after its due time"
        );
    }
    // Every request went out before the first answer came back.
    let last_start = report.entries.iter().map(|e| e.sent_at_ms).max().unwrap();
    let first_answer = report
        .entries
        .iter()
        .map(|e| e.sent_at_ms + e.latency_ms as u64)
        .min()
        .unwrap();
    assert!(
        last_start < first_answer,
        "last start {last_start}, first answer {first_answer}"
    );
    assert_eq!(server.state.max_in_flight.load(Ordering::SeqCst), 20);
}

/// When every slot is busy the schedule slips, and that is recorded rather than hidden:
/// 2 slots, a server holding each request 500 ms, 6 requests due 50 ms apart — requests 3 to 6
/// all find both slots busy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saturated_concurrency_is_recorded_as_slip() {
    let server = TestServer::start(|_, _| Reply::Slow(Duration::from_millis(500))).await;
    let sender = Sender::new(SenderConfig {
        rate: Some(20.0),
        concurrency: 2,
        ..config(&server.url)
    })
    .unwrap();
    let report = sender
        .send(generator(5).plan(6, &Duplicates::default()))
        .await
        .unwrap();
    assert_eq!(report.slipped, 4);
    assert_eq!(server.state.max_in_flight.load(Ordering::SeqCst), 2);
    // Request 3 was due at +100 ms and could only start when request 1 finished (≥ 500 ms).
    let e = &report.entries[2];
    assert!(e.sent_at_ms - report.entries[0].sent_at_ms >= 500, "{e:?}");
    assert!(report.max_lateness_ms() >= 400);
    assert!(report.entries.iter().all(|e| e.outcome.is_success()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_is_recorded_as_indeterminate() {
    let server = TestServer::start(|_, _| Reply::Slow(Duration::from_secs(5))).await;
    let sender = Sender::new(SenderConfig {
        timeout: Duration::from_millis(300),
        ..config(&server.url)
    })
    .unwrap();
    let report = sender
        .send(generator(6).plan(3, &Duplicates::default()))
        .await
        .unwrap();
    for e in &report.entries {
        assert_eq!(e.outcome, Outcome::Timeout, "{e:?}");
        assert_eq!(e.answer, None);
        assert!(
            e.latency_ms < 5_000.0,
            "the timeout cut the request short: {e:?}"
        );
    }
    let s = report.summary();
    assert_eq!(
        (s.sent, s.indeterminate, s.accepted, s.rejected),
        (3, 3, 0, 0)
    );
    assert_eq!(sender.ledger().to_redeliver().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_port_is_refused() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let sender = Sender::new(config(&format!("http://{addr}/webhooks"))).unwrap();
    let report = sender
        .send(generator(7).plan(2, &Duplicates::default()))
        .await
        .unwrap();
    for e in &report.entries {
        assert!(matches!(e.outcome, Outcome::Refused(_)), "{e:?}");
    }
    assert_eq!(report.summary().rejected, 2);
}

/// A mixed ledger — 202s, a 503, a timeout — redelivers exactly the 503 and the timeout, with the
/// same ids and bodies, as attempt 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redeliver_failed_resends_rejected_and_indeterminate_ids() {
    let mut gen = generator(8);
    let plan = gen.plan(6, &Duplicates::default());
    let rejected = plan[1].delivery.id.clone();
    let timed_out = plan[4].delivery.id.clone();
    let (r, t) = (rejected.clone(), timed_out.clone());
    let server = TestServer::start(move |id, attempt| match (attempt, id) {
        (1, id) if id == r => Reply::Fail(503),
        (1, id) if id == t => Reply::Slow(Duration::from_secs(3)),
        _ => Reply::Accept,
    })
    .await;
    let sender = Sender::new(SenderConfig {
        timeout: Duration::from_millis(500),
        ..config(&server.url)
    })
    .unwrap();
    let first = sender.send(plan.clone()).await.unwrap();
    let s = first.summary();
    assert_eq!((s.accepted, s.rejected, s.indeterminate), (4, 1, 1));
    assert_eq!(first.entries[1].outcome, Outcome::Status(503));
    assert_eq!(
        first.entries[1].answer.as_deref(),
        Some("queue unavailable")
    );
    assert_eq!(first.entries[4].outcome, Outcome::Timeout);
    assert_eq!(
        sender.ledger().to_redeliver(),
        [rejected.clone(), timed_out.clone()]
    );

    let before = server.seen().len();
    let again = sender.redeliver_failed().await.unwrap();
    let ids: Vec<_> = again.entries.iter().map(|e| e.delivery.clone()).collect();
    assert_eq!(ids, [rejected.clone(), timed_out.clone()]);
    for e in &again.entries {
        assert_eq!(e.attempt, 2);
        assert_eq!(e.duplicate_of, None);
        assert!(e.outcome.is_success(), "{e:?}");
    }
    let resent = &server.seen()[before..];
    for s in resent {
        let original = plan.iter().find(|p| p.delivery.id == s.delivery).unwrap();
        assert_eq!(
            s.body, original.delivery.body,
            "same body for {}",
            s.delivery
        );
        assert!(s.signature_ok);
    }

    let ledger: Ledger = sender.ledger();
    assert_eq!(ledger.entries.len(), 8);
    assert!(ledger.to_redeliver().is_empty());
    // Nothing left to redeliver: a second round sends nothing.
    assert!(sender.redeliver_failed().await.unwrap().entries.is_empty());
    // The ledger survives a JSON round trip.
    assert_eq!(
        Ledger::from_json(&ledger.to_json().unwrap()).unwrap(),
        ledger
    );
}

fn send_args(url: &str) -> SendArgs {
    SendArgs {
        url: url.to_string(),
        secret: Some(SECRET.to_string()),
        count: 5,
        same: false,
        copies: 0,
        duplicate_fraction: 0.0,
        rate: 0.0,
        concurrency: 4,
        payload: None,
        event: Vec::new(),
        seed: Some(1),
        timeout: Duration::from_secs(10),
        repo: "chaos/board".to_string(),
        repo_id: 77,
        redeliver_failed: false,
        ledger: None,
    }
}

/// `gitspy-chaos send --redeliver-failed --ledger FILE`: the rejected delivery is resent and
/// accepted, and the ledger file holds every attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_cmd_redelivers_and_writes_the_ledger() {
    let server = TestServer::start(|id, attempt| {
        if attempt == 1 && id.ends_with("-000003") {
            Reply::Fail(503)
        } else {
            Reply::Accept
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.json");
    let done = send_cmd(SendArgs {
        redeliver_failed: true,
        ledger: Some(path.clone()),
        ..send_args(&server.url)
    })
    .await
    .unwrap();
    assert_eq!(done.summary.sent, 6);
    assert!(done.not_accepted.is_empty(), "{done:?}");
    let ledger = Ledger::read(&path).unwrap();
    assert_eq!(ledger.entries.len(), 6);
    assert_eq!(ledger.summary().accepted, done.summary.accepted);
    assert!(
        !dir.path().join("ledger.json.records").exists(),
        "the records file is removed once the ledger is written"
    );
    let last = &ledger.entries[5];
    assert!(
        last.delivery.ends_with("-000003") && last.attempt == 2,
        "{last:?}"
    );
    assert_eq!(last.outcome, Outcome::Status(202));
    assert!(ledger.to_redeliver().is_empty());
    assert_eq!(server.seen().len(), 6);
}

/// `--payload DIR` sends the user's files verbatim, signed, with the event from the directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_cmd_sends_user_payloads_verbatim() {
    let server = TestServer::start(|_, _| Reply::Accept).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("ping")).unwrap();
    let body = b"{\"zen\": \"Keep it logically awesome.\", \"hook_id\": 1}\n";
    std::fs::write(dir.path().join("ping/p.json"), body).unwrap();
    let done = send_cmd(SendArgs {
        payload: Some(dir.path().to_path_buf()),
        count: 3,
        ..send_args(&server.url)
    })
    .await
    .unwrap();
    assert_eq!(done.summary.accepted, 3);
    let seen = server.seen();
    assert_eq!(seen.len(), 3);
    assert!(seen
        .iter()
        .all(|s| s.body == body && s.event == "ping" && s.signature_ok));
}

/// `gitspy-chaos send` to a port nobody listens on: exit 2 ("could not run") with an error that
/// names the URL and the cause, not exit 0 with only "rejected 3".
#[test]
fn send_cli_to_a_closed_port_exits_2_and_says_why() {
    let port = crate::util::free_port();
    let url = format!("http://127.0.0.1:{port}/webhooks");
    let out = crate::util::chaos(&[
        "send", "--url", &url, "--secret", "s", "--count", "3", "--rate", "max",
    ]);
    assert_eq!(
        out.code, 2,
        "stdout: {}\nstderr: {}",
        out.stdout, out.stderr
    );
    assert!(
        out.stderr
            .contains(&format!("error: could not connect to {url}")),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("(3 of 3 requests)"), "{}", out.stderr);
    assert!(
        out.stderr.contains("hint: is `gitspy serve` running"),
        "{}",
        out.stderr
    );
    // A bare rate is refused with the unit to add, like in scenario files.
    let bare = crate::util::chaos(&["send", "--url", &url, "--rate", "20"]);
    assert_eq!(bare.code, 2);
    assert!(bare.stderr.contains("invalid rate `20`"), "{}", bare.stderr);
}
