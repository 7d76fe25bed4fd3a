//! The scenario file as typed data: what `gitspy-chaos run` executes and `validate` checks.
//!
//! Every struct rejects unknown keys, so a typo is an error rather than a silently ignored
//! setting, and every field says what it means (these comments are the format's reference).
//! Values the validator points at are wrapped in [`At`], which remembers where they were
//! written. The YAML crate is not named here: `load.rs` is the only file that knows it.

use std::collections::BTreeMap;
use std::ops::Deref;

use serde::{Deserialize, Serialize};

use super::units::{Dur, Rate};

/// A position in a scenario file, 1-based. `0:0` means "unknown" (a value built in code).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize)]
pub struct Pos {
    /// Line, from 1.
    pub line: u32,
    /// Column in characters, from 1.
    pub column: u32,
}

/// A value together with the place in the file it came from, so that errors found after
/// parsing can still say `file:line:column`. Derefs to the value; serializes as the bare value.
#[derive(Debug, Clone, PartialEq)]
pub struct At<T> {
    /// The value as written.
    pub value: T,
    /// Where it was written.
    pub pos: Pos,
}

impl<T> At<T> {
    /// A value with no file position (defaults, values built in code or in tests).
    pub fn new(value: T) -> Self {
        At {
            value,
            pos: Pos::default(),
        }
    }

    /// The same position around a different value.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> At<U> {
        At {
            value: f(self.value),
            pos: self.pos,
        }
    }
}

impl<T: Default> Default for At<T> {
    fn default() -> Self {
        At::new(T::default())
    }
}

impl<T> Deref for At<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T: Serialize> Serialize for At<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.value.serialize(s)
    }
}

/// One chaos scenario: what to start (or attach to), what to do to it, what must hold after.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Short identifier, used in report directory names: lowercase letters, digits and `-`.
    pub name: At<String>,
    /// One sentence for `list` and the report: what breaks and what must survive.
    #[serde(default)]
    pub description: String,
    /// Seed of every random choice (which worker to kill, jitter, payload order, duplicate
    /// pattern). The same seed gives the same fault plan and payload sequence. `run --seed`
    /// overrides it; when neither is given the run picks one and records it.
    #[serde(default)]
    pub seed: Option<u64>,
    /// The system under test and how the harness reaches it.
    pub target: At<Target>,
    /// How the run watches the system.
    #[serde(default)]
    pub observe: Observe,
    /// What the run does, in order. At least one step.
    pub steps: At<Vec<At<Step>>>,
    /// What must hold at the end for the scenario to pass. At least one check.
    pub checks: At<Vec<At<Check>>>,
}

/// The system under test.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// The Redis the pipeline uses and how the harness controls it.
    #[serde(default)]
    pub redis: RedisTarget,
    /// Number of `gitspy worker` processes the harness starts (managed mode). In attach mode,
    /// the number of workers expected to be running. Zero is allowed (nothing is processed).
    #[serde(default = "default_workers")]
    pub workers: At<u32>,
    /// What the server does with a webhook while Redis is unreachable: `reject` answers 503,
    /// `spool` writes it to a local file and answers 202. Passed to a managed server as
    /// `GITSPY_ON_REDIS_DOWN`; in attach mode, what the running server is configured to do.
    #[serde(default)]
    pub on_redis_down: OnRedisDown,
    /// Attach to a system that is already running instead of starting one. Absent: the harness
    /// starts and stops the server and the workers itself (managed mode).
    #[serde(default)]
    pub attach: Option<Attach>,
    /// Managed mode: environment of every GitSpy process the harness starts (server and
    /// workers), over the harness's defaults (`gitspy-chaos list` shows them: 10 s claim idle
    /// and lock TTL, 1 s block and Redis timeout), e.g. `{GITSPY_CLAIM_IDLE: 20s,
    /// GITSPY_LOCK_TTL: 20s, GITSPY_WORKER_CONCURRENCY: "8", GITSPY_LOG_RETENTION: 1h}`. Recorded in
    /// run.json. `run --target-env KEY=VAL` adds to it and wins. Variables the harness sets
    /// itself (Redis URL, database, secret, listen ports, consumer names) are refused.
    #[serde(default)]
    pub env: At<BTreeMap<String, String>>,
    /// The names of the system under test — Redis key patterns, metric names, state values,
    /// env names, endpoints — as a YAML profile file, relative to this scenario file (see
    /// `docs/contract.md`). Absent: GitSpy's names. `run --profile` overrides it. Example:
    /// `profile: profiles/acme.yaml`.
    #[serde(default)]
    pub profile: Option<String>,
    /// Managed mode: start the server with an admin address (`GITSPY_ADMIN_ADDR=127.0.0.1:0`),
    /// so it serves only `POST /webhooks` on its public address; the harness then reads
    /// lookups, boards, `/readyz` and `/metrics/prom` on the admin address it prints. Default
    /// `false` (one address serves everything). Example: `admin_address: true`.
    #[serde(default)]
    pub admin_address: bool,
    /// The board store of a managed run: `sqlite` (default: one file in the run's directory,
    /// shared by the server and the workers) or `postgres` (the harness `initdb`s and starts a
    /// PostgreSQL server of its own on a free port and gives GitSpy its URL as `GITSPY_DB`;
    /// needs the `postgresql` package). `run --store` overrides it; ignored in attach mode. Example:
    /// `store: postgres`.
    #[serde(default)]
    pub store: StoreKind,
}

/// The board store of a managed run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreKind {
    /// A SQLite file in the run's directory.
    #[default]
    Sqlite,
    /// A PostgreSQL server the harness starts (process backend).
    Postgres,
}

impl StoreKind {
    /// `sqlite` or `postgres`.
    pub fn as_str(self) -> &'static str {
        match self {
            StoreKind::Sqlite => "sqlite",
            StoreKind::Postgres => "postgres",
        }
    }
}

fn default_workers() -> At<u32> {
    At::new(1)
}

/// The Redis of the system under test.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RedisTarget {
    /// How Redis is run and broken. `run --backend` overrides it (except `external`).
    #[serde(default)]
    pub backend: At<RedisBackend>,
    /// Docker backend: the container name (default `gitspy-redis-<run nonce>`: one per run, so
    /// two runs at once share nothing). A container another run created is refused (exit 2,
    /// naming that run). In attach mode, the name of the running container the faults act on.
    #[serde(default)]
    pub container: Option<String>,
    /// Docker backend: the image (default `gitspy-redis:7`, built offline by
    /// `docker/build-redis-image.sh`).
    #[serde(default)]
    pub image: Option<String>,
    /// The Redis URL. Required for the `external` backend and in attach mode; the harness
    /// probes it (states, locks, stream) and, for `external`, never stops it.
    #[serde(default)]
    pub url: Option<String>,
}

/// How the harness runs and breaks Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RedisBackend {
    /// A container driven through the Docker API: stop, start, restart, kill, pause, unpause.
    Docker,
    /// A `redis-server` child process: stop (SIGTERM), kill (SIGKILL), start, restart, pause
    /// (SIGSTOP) and unpause (SIGCONT).
    Process,
    /// A Redis the harness must not touch: observation only, no Redis faults.
    External,
    /// `docker` when an engine answers and the image is available, else `process`. Both can do
    /// every Redis fault.
    #[default]
    Auto,
}

impl RedisBackend {
    /// The Redis faults this backend can inject.
    pub fn supports(self, _action: RedisAction) -> bool {
        // Docker and process (and so auto) do every fault; a process is paused with SIGSTOP.
        !matches!(self, RedisBackend::External)
    }

    /// The spelling used in scenario files.
    pub fn as_str(self) -> &'static str {
        match self {
            RedisBackend::Docker => "docker",
            RedisBackend::Process => "process",
            RedisBackend::External => "external",
            RedisBackend::Auto => "auto",
        }
    }
}

/// What the server does while Redis is unreachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnRedisDown {
    /// Answer 503 with `Retry-After`; the sender must redeliver.
    #[default]
    Reject,
    /// Append to the local spool and answer 202; the spool drains into Redis when it is back.
    Spool,
}

/// Attach mode: a running system given by URLs and process matchers.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Attach {
    /// Base URL of the running `gitspy serve` (webhooks, lookups, `/metrics/prom`). Behind a
    /// load balancer: the balancer's public address.
    pub server_url: String,
    /// Base URL of the server's admin address (`GITSPY_ADMIN_ADDR`), when the deployment serves
    /// its read APIs, `/readyz` and `/metrics/prom` there and only `POST /webhooks` on
    /// `server_url`. The harness then sends webhooks to `server_url` and reads everything else
    /// here. Example: `admin_url: http://127.0.0.1:8081`.
    #[serde(default)]
    pub admin_url: Option<String>,
    /// `/metrics/prom` URL of every server when there are several (e.g. each server's admin
    /// address behind a load balancer), scraped as targets `server`, `server-1`, … Empty: one
    /// server, scraped at `admin_url` (or `server_url`) + `/metrics/prom`.
    #[serde(default)]
    pub server_metrics_urls: Vec<String>,
    /// `/metrics/prom` URL of every worker to poll.
    #[serde(default)]
    pub worker_metrics_urls: Vec<String>,
    /// How to find the worker processes for worker faults. Without it, worker faults are refused.
    #[serde(default)]
    pub worker_process: Option<ProcessMatcher>,
    /// How to find the server process for server faults. Without it, server faults are refused.
    #[serde(default)]
    pub server_process: Option<ProcessMatcher>,
}

/// Identifies processes the harness may signal in attach mode: both must match exactly, and
/// `(pid, start time)` is re-checked right before every signal.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessMatcher {
    /// File name of the executable, e.g. `gitspy`.
    pub executable: String,
    /// An environment variable the process was started with, `NAME=value`, e.g.
    /// `GITSPY_CHAOS_TARGET=staging-1`.
    pub env_marker: String,
}

/// How the run observes the system.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Observe {
    /// Time between two scrapes of every `/metrics/prom` and Redis probe (default `10s`, the test
    /// plan's). One scrape is also taken before the first step and one after the final drain.
    #[serde(default = "default_poll_interval")]
    pub poll_interval: At<Dur>,
    /// A Prometheus server scraping the system under test, for the `promql` and `alert` checks,
    /// which it evaluates through Prometheus' HTTP API at the end of the run. Example:
    /// `prometheus: { url: "http://127.0.0.1:9090" }`.
    #[serde(default)]
    pub prometheus: Option<At<PrometheusObserve>>,
}

impl Default for Observe {
    fn default() -> Self {
        Observe {
            poll_interval: default_poll_interval(),
            prometheus: None,
        }
    }
}

/// The Prometheus the `promql` and `alert` checks ask.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusObserve {
    /// Base URL of a running Prometheus that scrapes the server and the workers, e.g.
    /// `http://127.0.0.1:9090`. The run refuses to start (exit 2) when it does not answer.
    /// Not together with `managed`.
    #[serde(default)]
    pub url: Option<At<String>>,
    /// Managed mode: the harness starts a `prometheus` process of its own (from `PATH`) on a
    /// free loopback port with a temporary TSDB, scraping the server and every worker directly
    /// (never through the network proxies) every `interval`, and stops it at the end; its
    /// configuration and log are kept in the run's `system/` directory.
    #[serde(default)]
    pub managed: bool,
    /// Managed: rule files the Prometheus loads, relative to the scenario file, e.g.
    /// `[../docker/prometheus/alerts.yml]` (checked with `promtool check rules` semantics by
    /// Prometheus itself at start: a broken file is exit 2).
    #[serde(default)]
    pub rules: Vec<At<String>>,
    /// Managed: the scrape and rule-evaluation interval (default `1s`).
    #[serde(default)]
    pub interval: Option<At<Dur>>,
}

fn default_poll_interval() -> At<Dur> {
    At::new(Dur::secs(10))
}

/// One thing the run does. Written as a one-key map: `- send: {count: 20}`, `- mark: outage`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// Send signed webhooks to the server and record each in the ledger.
    Send(Send),
    /// Wait until the system drained, or for a fixed time.
    Wait(Wait),
    /// Do nothing for this long (the same as `wait: {for: …}`).
    Sleep(At<Dur>),
    /// Name the current instant; usable as a replay window bound. Names are unique.
    Mark(At<String>),
    /// Break (or repair) Redis, a worker or the server.
    Fault(Fault),
    /// Resend, with the same delivery ids, what GitHub's "redeliver" would resend.
    Redeliver(Redeliver),
    /// Run `gitspy replay` over a window between marks and keep its output.
    Replay(Replay),
    /// Run `gitspy dead requeue --all` against the run's Redis: every dead-lettered delivery
    /// goes back through the normal enqueue with its attempts reset. Written
    /// `- dead_requeue: all`, or `- dead_requeue: {min: 1}` to fail the step unless something
    /// was dead-lettered.
    DeadRequeue(DeadRequeue),
    /// Run these steps at the same time; the block ends when all of them ended.
    Parallel(At<Vec<At<Step>>>),
    /// Run these steps again and again on a fixed period.
    Repeat(Repeat),
}

/// Send webhooks. `count` distinct deliveries (each a fresh id, carrying the run's nonce),
/// plus the copies `duplicates` asks for.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Send {
    /// Number of new deliveries to send; at least 1 (`duplicates` adds copies on top). With
    /// `same: true`, the number of requests, all with one delivery id.
    pub count: At<i64>,
    /// Pace of the requests, e.g. `20/s`. Absent: as fast as `concurrency` allows.
    #[serde(default)]
    pub rate: Option<Rate>,
    /// Requests in flight at once; at least 1 (default 4).
    #[serde(default = "default_concurrency")]
    pub concurrency: At<u32>,
    /// What the server should answer. It does not fail the run by itself: the answers are
    /// recorded, and the verdict judges every delivery by what finally happened to it.
    #[serde(default)]
    pub expect: Expect,
    /// Send some deliveries more than once, as GitHub does on retries.
    #[serde(default)]
    pub duplicates: Option<Duplicates>,
    /// Every request carries the same delivery id (the first is the original, the rest are
    /// duplicates). `duplicates` cannot be combined with it.
    #[serde(default)]
    pub same: bool,
    /// Weights of the event types to send, e.g. `{issues: 3, pull_request: 2}`: each delivery's
    /// event is drawn by these weights. Absent: the generator's own mix. Names as in
    /// `X-GitHub-Event`, one of `issues`, `pull_request`, `issue_comment`, `ping`.
    #[serde(default)]
    pub events: Option<At<BTreeMap<String, u32>>>,
    /// How long one request may take before it counts as indeterminate (default `5s`).
    #[serde(default = "default_request_timeout")]
    pub timeout: At<Dur>,
    /// Poison deliveries mixed in on top of `count`, at seeded places in the schedule: a valid
    /// signature and a body GitSpy cannot fold (an `issues` event whose `issue` is a string,
    /// not an object). GitSpy must fail each one, retry it and dead-letter it; the verdict
    /// expects them in the class `poisoned` (dead-lettered on purpose, not `failed`), and a
    /// poison that was applied reads `unexpected`, one never finished `lost`. E.g.
    /// `send: { count: 20, poison: 3 }` sends 23 deliveries. Default 0.
    #[serde(default)]
    pub poison: At<u32>,
}

impl Send {
    /// The number of deliveries (or requests, with `same`). Zero only for a scenario that did
    /// not pass validation.
    pub fn count(&self) -> u64 {
        u64::try_from(self.count.value).unwrap_or(0)
    }

    /// How many HTTP requests this step makes: `count` new deliveries, plus `copies − 1` more
    /// for the `fraction` of them (rounded to the nearest delivery) that get copies.
    pub fn requests(&self) -> u64 {
        let n = self.count();
        let poison = u64::from(self.poison.value);
        match &self.duplicates {
            Some(d) if !self.same => {
                let with_copies = (n as f64 * d.fraction.value).round() as u64;
                n + with_copies * u64::from(d.copies.value.saturating_sub(1)) + poison
            }
            _ => n + poison,
        }
    }
}

fn default_concurrency() -> At<u32> {
    At::new(4)
}

fn default_request_timeout() -> At<Dur> {
    At::new(Dur::secs(5))
}

/// The answer a send step expects from the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Expect {
    /// 2xx: queued, spooled or recognised as a duplicate.
    #[default]
    Accepted,
    /// Non-2xx or no answer (Redis down in `reject` mode): these ids are for `redeliver`.
    Rejected,
    /// Either; nothing is implied.
    Any,
}

/// Copies of deliveries within one send step.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Duplicates {
    /// Times each chosen delivery is sent in total, original included; at least 2.
    pub copies: At<u32>,
    /// Share of the deliveries that get copies, from 0 to 1 (default 1: all of them). Which
    /// ones is chosen by the seed.
    #[serde(default = "default_fraction")]
    pub fraction: At<f64>,
    /// Send the copies of a delivery at the same instant (a race at the server) instead of
    /// one after another.
    #[serde(default)]
    pub concurrent: bool,
}

fn default_fraction() -> At<f64> {
    At::new(1.0)
}

/// Wait for the system to drain, or for a fixed time. Exactly one of `drained` and `for`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Wait {
    /// Wait until nothing is waiting or in flight (queue, pending entries, spool all empty) and
    /// every accepted delivery reached a final state.
    #[serde(default)]
    pub drained: bool,
    /// With `drained`: give up after this long (default `2m`); the run goes on to the checks,
    /// which then report what was not drained.
    #[serde(default)]
    pub timeout: Option<At<Dur>>,
    /// Wait exactly this long.
    #[serde(default, rename = "for")]
    pub duration: Option<At<Dur>>,
}

impl Wait {
    /// Default limit of a `drained` wait.
    pub const DEFAULT_TIMEOUT: Dur = Dur::secs(120);

    /// The limit of a `drained` wait, default applied.
    pub fn timeout(&self) -> Dur {
        self.timeout
            .as_ref()
            .map_or(Self::DEFAULT_TIMEOUT, |t| t.value)
    }
}

/// A fault: exactly one of `redis`, `worker`, `server`, `store`, `network`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    /// Act on Redis.
    #[serde(default)]
    pub redis: Option<RedisAction>,
    /// Act on worker processes (see `which`): an action (`kill`, `freeze`, …) or a crash point
    /// `{crash_at: after-commit, nth: 3}`.
    #[serde(default)]
    pub worker: Option<ProcessFault>,
    /// Act on the `gitspy serve` process: an action or `{crash_at: after-enqueue, nth: 1}`.
    #[serde(default)]
    pub server: Option<ProcessFault>,
    /// Act on the store of a managed run, e.g. `store: {lock: 25s}` or (PostgreSQL)
    /// `store: {terminate_connections: true}`.
    #[serde(default)]
    pub store: Option<StoreFault>,
    /// Act on the network between two parts of a managed run (through the harness's TCP
    /// proxy on that link), e.g. `network: {link: server-redis, partition: true, for: 5s}`.
    #[serde(default)]
    pub network: Option<At<NetworkFault>>,
    /// Worker faults only: which worker, a 0-based index, `random` (chosen by the seed) or
    /// `all` (default `random`).
    #[serde(default)]
    pub which: Option<Which>,
    /// Wait for a condition in the system before injecting, e.g. `when: {holding: 3}`: the fault
    /// fires as soon as it holds (polled every 25 ms). Run it in a `parallel` block next to the
    /// `send` that creates the condition. A condition that never holds within `within` is
    /// recorded as a missed fault (it counts as ineffective for `faults_effective`).
    #[serde(default)]
    pub when: Option<When>,
    /// With `when`: how long to wait for the condition (default `30s`).
    #[serde(default)]
    pub within: Option<At<Dur>>,
}

impl Fault {
    /// Default deadline of a triggered fault.
    pub const DEFAULT_WITHIN: Dur = Dur::secs(30);

    /// The deadline of a triggered fault, default applied.
    pub fn within(&self) -> Dur {
        self.within
            .as_ref()
            .map_or(Self::DEFAULT_WITHIN, |w| w.value)
    }
}

fn dur_is_zero(d: &Dur) -> bool {
    d.is_zero()
}

/// A fault on the store of a managed run: exactly one of `lock` and `terminate_connections`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StoreFault {
    /// Hold the store's write lock for this long, so GitSpy's writes wait and, past its busy
    /// timeout (10 s; `GITSPY_STORE_BUSY_TIMEOUT`), fail: retries, backoff and dead letters
    /// happen. SQLite: `BEGIN EXCLUSIVE` on the run's `gitspy.db` from the harness. PostgreSQL:
    /// a harness transaction holding `LOCK TABLE applied_deliveries IN EXCLUSIVE MODE` (every
    /// batch's first write; reads go on). The step returns at once; the lock is released after
    /// `lock` (or at the end of the run).
    #[serde(default, skip_serializing_if = "dur_is_zero")]
    pub lock: Dur,
    /// PostgreSQL only: `pg_terminate_backend` every GitSpy connection to the run's database at
    /// once (an instant fault: GitSpy's transactions in progress fail and are retried, its pools
    /// reconnect). Logged with how many connections it ended and how many were in a
    /// transaction. Example: `store: {terminate_connections: true}`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub terminate_connections: bool,
}

/// A network fault on the harness's proxies (managed mode): exactly one toxic (`partition`,
/// `reset`, `latency` with optional `jitter`, `bandwidth`, `slice` with optional `slice_delay`,
/// `limit_data`, `slow_close`) or `heal: true`. Examples:
/// `network: {link: server-redis, partition: true, for: 5s}`,
/// `network: {link: redis, latency: 200ms, jitter: 50ms}`, `network: {link: redis, heal: true}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkFault {
    /// The link: `sender-server` (the harness's webhooks), `server-redis`, `workers-redis`
    /// (every worker's), `worker-<i>-redis` (one worker's), `redis` (every Redis link) or `all`.
    /// With `target.store: postgres` (or `run --store postgres`) the links to PostgreSQL are
    /// proxied too: `server-store`, `workers-store`, `worker-<i>-store` and `store` (every
    /// PostgreSQL link), e.g. `network: {link: workers-store, reset: true}`.
    pub link: LinkSel,
    /// `both` (default), `up` (requests: toward the server or Redis) or `down` (replies).
    /// Not with `reset` or `heal`, which act on whole connections.
    #[serde(default)]
    pub direction: Direction,
    /// A blackhole: nothing passes, connections stay open (new ones are accepted and held);
    /// what was sent is held and delivered when the partition heals, as TCP would retransmit it.
    #[serde(default)]
    pub partition: bool,
    /// Every open connection and every new one gets a RST (`SO_LINGER` 0, then close).
    #[serde(default)]
    pub reset: bool,
    /// Every chunk arrives this much later (order kept), e.g. `200ms`.
    #[serde(default)]
    pub latency: Option<Dur>,
    /// With `latency`: ± this much, uniform, drawn from the run's seed, e.g. `50ms`.
    #[serde(default)]
    pub jitter: Option<Dur>,
    /// At most this many bytes per second, e.g. `64KiB/s` (sizes as in `B`, `KiB`, `MB`).
    #[serde(default)]
    pub bandwidth: Option<ByteRate>,
    /// Writes are split into pieces of this many bytes, e.g. `8B`.
    #[serde(default)]
    pub slice: Option<Bytes>,
    /// With `slice`: the pause between two pieces (default none).
    #[serde(default)]
    pub slice_delay: Option<Dur>,
    /// Each connection is closed after this many more bytes, e.g. `100B`.
    #[serde(default)]
    pub limit_data: Option<Bytes>,
    /// The end of a connection is passed on this late, e.g. `2s`.
    #[serde(default)]
    pub slow_close: Option<Dur>,
    /// Remove every toxic from the link now (and close their fault-log windows).
    #[serde(default)]
    pub heal: bool,
    /// The step lasts this long, then the toxic is healed. Absent: it stays until a
    /// `heal: true` on the link or the end of the scenario, and the step returns at once.
    #[serde(default, rename = "for")]
    pub duration: Option<Dur>,
    /// Where a partition happens: `proxy` (default, the harness's proxy: a blackhole) or
    /// `docker` (Docker backend, `link: redis`, `partition: true` only: the Redis container is
    /// disconnected from its network through the Docker API and reconnected at the heal;
    /// connections are refused and open ones lose their peer instead of hanging), e.g.
    /// `network: {link: redis, partition: true, via: docker, for: 5s}`.
    #[serde(default)]
    pub via: Via,
}

/// Where a network partition is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    /// The harness's TCP proxy on the link.
    #[default]
    Proxy,
    /// The Docker API: the Redis container leaves its network.
    Docker,
}

impl NetworkFault {
    /// How many toxics (or `heal`) this fault names; validation wants exactly one.
    pub fn toxics(&self) -> usize {
        [
            self.partition,
            self.reset,
            self.latency.is_some(),
            self.bandwidth.is_some(),
            self.slice.is_some(),
            self.limit_data.is_some(),
            self.slow_close.is_some(),
            self.heal,
        ]
        .iter()
        .filter(|b| **b)
        .count()
    }

    /// `partition`, `latency`, …, `heal`: the first toxic named.
    pub fn toxic_name(&self) -> &'static str {
        if self.partition {
            "partition"
        } else if self.reset {
            "reset"
        } else if self.latency.is_some() {
            "latency"
        } else if self.bandwidth.is_some() {
            "bandwidth"
        } else if self.slice.is_some() {
            "slice"
        } else if self.limit_data.is_some() {
            "limit_data"
        } else if self.slow_close.is_some() {
            "slow_close"
        } else {
            "heal"
        }
    }
}

/// Which proxied links a network fault acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkSel {
    /// The harness's sender → `gitspy serve`.
    SenderServer,
    /// `gitspy serve` → Redis.
    ServerRedis,
    /// Every worker → Redis.
    WorkersRedis,
    /// Worker `i` → Redis.
    WorkerRedis(u32),
    /// Every link to Redis (server and workers).
    Redis,
    /// `gitspy serve` → PostgreSQL (`target.store: postgres` only).
    ServerStore,
    /// Every worker → PostgreSQL.
    WorkersStore,
    /// Worker `i` → PostgreSQL.
    WorkerStore(u32),
    /// Every link to PostgreSQL (server and workers).
    Store,
    /// Every link.
    All,
}

impl LinkSel {
    /// Whether the link goes to the store (PostgreSQL): such links exist only in managed runs
    /// with a PostgreSQL store.
    pub fn is_store(self) -> bool {
        matches!(
            self,
            LinkSel::ServerStore | LinkSel::WorkersStore | LinkSel::WorkerStore(_) | LinkSel::Store
        )
    }
}

impl std::fmt::Display for LinkSel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LinkSel::SenderServer => f.write_str("sender-server"),
            LinkSel::ServerRedis => f.write_str("server-redis"),
            LinkSel::WorkersRedis => f.write_str("workers-redis"),
            LinkSel::WorkerRedis(i) => write!(f, "worker-{i}-redis"),
            LinkSel::Redis => f.write_str("redis"),
            LinkSel::ServerStore => f.write_str("server-store"),
            LinkSel::WorkersStore => f.write_str("workers-store"),
            LinkSel::WorkerStore(i) => write!(f, "worker-{i}-store"),
            LinkSel::Store => f.write_str("store"),
            LinkSel::All => f.write_str("all"),
        }
    }
}

impl std::str::FromStr for LinkSel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "sender-server" => LinkSel::SenderServer,
            "server-redis" => LinkSel::ServerRedis,
            "workers-redis" => LinkSel::WorkersRedis,
            "redis" => LinkSel::Redis,
            "server-store" => LinkSel::ServerStore,
            "workers-store" => LinkSel::WorkersStore,
            "store" => LinkSel::Store,
            "all" => LinkSel::All,
            _ => {
                let worker = |suffix: &str| -> Option<u32> {
                    s.strip_prefix("worker-")?
                        .strip_suffix(suffix)?
                        .parse()
                        .ok()
                };
                match (worker("-redis"), worker("-store")) {
                    (Some(i), _) => LinkSel::WorkerRedis(i),
                    (_, Some(i)) => LinkSel::WorkerStore(i),
                    _ => {
                        return Err(super::load::with_hint(
                            &format!("unknown link `{s}`"),
                            "write `sender-server`, `server-redis`, `workers-redis`, `worker-<i>-redis`, `redis`, `server-store`, `workers-store`, `worker-<i>-store`, `store` or `all`",
                        ))
                    }
                }
            }
        })
    }
}

impl Serialize for LinkSel {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for LinkSel {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The direction a network toxic acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Requests and replies.
    #[default]
    Both,
    /// Requests only (client → server or Redis).
    Up,
    /// Replies only.
    Down,
}

/// A size in bytes, written with the shared size grammar (`100`, `8B`, `64KiB`, `1MB`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bytes(pub u64);

impl Serialize for Bytes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{}B", self.0))
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Bytes;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a size such as `100B` or `64KiB`")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Bytes, E> {
                Ok(Bytes(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Bytes, E> {
                u64::try_from(v)
                    .map(Bytes)
                    .map_err(|_| E::custom(format!("invalid size {v}: it cannot be negative")))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Bytes, E> {
                gitspy_contract::units::parse_size(v)
                    .map(|n| Bytes(n as u64))
                    .map_err(|e| E::custom(super::load::with_hint(&e.message, &e.hint)))
            }
        }
        d.deserialize_any(V)
    }
}

/// Bytes per second, written `<size>/s`, e.g. `64KiB/s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRate(pub u64);

impl Serialize for ByteRate {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{}B/s", self.0))
    }
}

impl<'de> Deserialize<'de> for ByteRate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let Some(size) = text.trim().strip_suffix("/s") else {
            return Err(serde::de::Error::custom(super::load::with_hint(
                &format!("invalid bandwidth `{text}`"),
                "write a size per second, e.g. `64KiB/s`",
            )));
        };
        gitspy_contract::units::parse_size(size)
            .map(|n| ByteRate(n as u64))
            .map_err(|e| serde::de::Error::custom(super::load::with_hint(&e.message, &e.hint)))
    }
}

/// The condition a triggered fault waits for: exactly one field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct When {
    /// Worker faults: the chosen worker holds at least this many pending deliveries (`XPENDING`
    /// of its consumer; the harness names each managed worker's consumer `<run>-worker-<i>`).
    /// With `which: random` the worker is chosen first (by the seed), then waited for. In attach
    /// mode the index counts the matched `worker_process`es by pid, and the worker must have been
    /// started with `GITSPY_CONSUMER` (read from its environment; GitSpy's default consumer name
    /// carries a random token) — else the step fails saying so.
    #[serde(default)]
    pub holding: Option<u64>,
    /// At least this many entries waiting or in flight in the stream (`XINFO GROUPS` lag +
    /// pending).
    #[serde(default)]
    pub backlog: Option<u64>,
    /// At least this many deliveries in the server's spool (`gitspy_spool_depth`).
    #[serde(default)]
    pub spooled: Option<u64>,
    /// At least this many webhook requests of the sender in flight at once.
    #[serde(default)]
    pub in_flight_requests: Option<u64>,
}

impl When {
    /// How many conditions are set (validation wants exactly one).
    pub fn count(&self) -> usize {
        [
            self.holding.is_some(),
            self.backlog.is_some(),
            self.spooled.is_some(),
            self.in_flight_requests.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count()
    }
}

impl std::fmt::Display for When {
    /// `holding ≥ 3`, `backlog ≥ 100`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        if let Some(n) = self.holding {
            parts.push(format!("holding >= {n}"));
        }
        if let Some(n) = self.backlog {
            parts.push(format!("backlog >= {n}"));
        }
        if let Some(n) = self.spooled {
            parts.push(format!("spooled >= {n}"));
        }
        if let Some(n) = self.in_flight_requests {
            parts.push(format!("in_flight_requests >= {n}"));
        }
        f.write_str(&parts.join(", "))
    }
}

/// What the fault acts on, once validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// A Redis action.
    Redis(RedisAction),
    /// A worker action on the chosen workers.
    Worker(ProcessAction, Which),
    /// A server action.
    Server(ProcessAction),
    /// A store lock held this long.
    Store(Dur),
    /// PostgreSQL: every GitSpy connection terminated.
    StoreTerminate,
    /// A toxic on proxied links (or their heal).
    Network(NetworkFault),
    /// Arm a crash point in the chosen worker.
    WorkerCrashAt(CrashAt, Which),
    /// Arm a crash point in the server.
    ServerCrashAt(CrashAt),
}

impl Fault {
    /// The single action this fault names, or `None` when it names none or several (which
    /// validation refuses).
    pub fn kind(&self) -> Option<FaultKind> {
        if let Some(n) = &self.network {
            let alone = self.redis.is_none()
                && self.worker.is_none()
                && self.server.is_none()
                && self.store.is_none();
            return alone.then_some(FaultKind::Network(n.value));
        }
        let which = self.which.unwrap_or_default();
        match (self.redis, self.worker, self.server, self.store) {
            (Some(r), None, None, None) => Some(FaultKind::Redis(r)),
            (None, Some(ProcessFault::Action(w)), None, None) => Some(FaultKind::Worker(w, which)),
            (None, Some(ProcessFault::CrashAt(c)), None, None) => {
                Some(FaultKind::WorkerCrashAt(c, which))
            }
            (None, None, Some(ProcessFault::Action(s)), None) => Some(FaultKind::Server(s)),
            (None, None, Some(ProcessFault::CrashAt(c)), None) => Some(FaultKind::ServerCrashAt(c)),
            (None, None, None, Some(st)) if st.terminate_connections => {
                st.lock.is_zero().then_some(FaultKind::StoreTerminate)
            }
            (None, None, None, Some(st)) => Some(FaultKind::Store(st.lock)),
            _ => None,
        }
    }
}

impl std::fmt::Display for FaultKind {
    /// `redis stop`, `worker kill (random)`, `server restart`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FaultKind::Redis(a) => write!(f, "redis {}", a.as_str()),
            FaultKind::Worker(a, w) => write!(f, "worker {} ({w})", a.as_str()),
            FaultKind::Server(a) => write!(f, "server {}", a.as_str()),
            FaultKind::Store(d) => write!(f, "store lock {d}"),
            FaultKind::StoreTerminate => f.write_str("store terminate connections"),
            FaultKind::Network(n) => write!(f, "network {} on {}", n.toxic_name(), n.link),
            FaultKind::WorkerCrashAt(c, w) => write!(f, "worker crash at {c} ({w})"),
            FaultKind::ServerCrashAt(c) => write!(f, "server crash at {c}"),
        }
    }
}

/// Something done to Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RedisAction {
    /// Graceful stop (SIGTERM / `docker stop`): AOF flushed.
    Stop,
    /// Start it again after a stop or kill.
    Start,
    /// Stop, then start.
    Restart,
    /// SIGKILL: a crash.
    Kill,
    /// Freeze it (`docker pause`, or SIGSTOP for a process): connections hang instead of failing.
    Pause,
    /// Thaw it after a pause.
    Unpause,
}

impl RedisAction {
    /// The spelling used in scenario files.
    pub fn as_str(self) -> &'static str {
        match self {
            RedisAction::Stop => "stop",
            RedisAction::Start => "start",
            RedisAction::Restart => "restart",
            RedisAction::Kill => "kill",
            RedisAction::Pause => "pause",
            RedisAction::Unpause => "unpause",
        }
    }
}

/// A worker or server fault: an action, or a crash point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessFault {
    /// `kill`, `stop`, `restart`, `start`, `freeze`, `thaw`.
    Action(ProcessAction),
    /// `{crash_at: <point>, nth: N}`.
    CrashAt(CrashAt),
}

impl Serialize for ProcessFault {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            ProcessFault::Action(a) => a.serialize(s),
            ProcessFault::CrashAt(c) => c.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for ProcessFault {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = ProcessFault;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an action (kill, stop, restart, start, freeze, thaw) or `{crash_at: <point>, nth: N}`")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ProcessFault, E> {
                ProcessAction::deserialize(serde::de::value::StrDeserializer::<E>::new(v))
                    .map(ProcessFault::Action)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                m: A,
            ) -> Result<ProcessFault, A::Error> {
                CrashAt::deserialize(serde::de::value::MapAccessDeserializer::new(m))
                    .map(ProcessFault::CrashAt)
            }
        }
        d.deserialize_any(V)
    }
}

/// A crash point armed in a failpoints build of GitSpy (`cargo build -p gitspy --features
/// failpoints`): the process aborts (SIGABRT) the `nth` time it reaches `crash_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CrashAt {
    /// Where: worker `after-lock`, `after-commit`, `after-ack`; server `after-enqueue`,
    /// `spool-append`, `spool-drain`.
    pub crash_at: CrashPoint,
    /// Crash on this hit, from 1 (default 1: the first time).
    #[serde(default = "default_nth")]
    pub nth: u32,
}

fn default_nth() -> u32 {
    1
}

/// A crash point of GitSpy (its `failpoints` feature).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CrashPoint {
    /// Worker: lock taken, state not yet `processing`.
    AfterLock,
    /// Worker: store transaction committed, entry not yet acknowledged.
    AfterCommit,
    /// Worker: `XACK` done, `XDEL` not yet.
    AfterAck,
    /// Server: enqueue script succeeded, HTTP answer not yet sent.
    AfterEnqueue,
    /// Server: spool record written, not yet fsynced or acknowledged.
    SpoolAppend,
    /// Server: spooled record added to Redis, spool head not yet advanced.
    SpoolDrain,
}

impl CrashPoint {
    /// The failpoint name.
    pub fn as_str(self) -> &'static str {
        match self {
            CrashPoint::AfterLock => "after-lock",
            CrashPoint::AfterCommit => "after-commit",
            CrashPoint::AfterAck => "after-ack",
            CrashPoint::AfterEnqueue => "after-enqueue",
            CrashPoint::SpoolAppend => "spool-append",
            CrashPoint::SpoolDrain => "spool-drain",
        }
    }

    /// Whether the point is in the worker (else in the server).
    pub fn in_worker(self) -> bool {
        matches!(
            self,
            CrashPoint::AfterLock | CrashPoint::AfterCommit | CrashPoint::AfterAck
        )
    }
}

impl std::fmt::Display for CrashPoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Display for CrashAt {
    /// `after-commit (3rd hit)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (hit {})", self.crash_point(), self.nth)
    }
}

impl CrashAt {
    /// The point.
    pub fn crash_point(&self) -> CrashPoint {
        self.crash_at
    }

    /// The fail-rs actions that fire on the `nth` hit: `2*off->return` for the third.
    pub fn actions(&self) -> String {
        match self.nth {
            0 | 1 => "return".into(),
            n => format!("{}*off->return", n - 1),
        }
    }
}

/// Something done to a gitspy process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProcessAction {
    /// SIGKILL: a crash; in-flight work is left pending.
    Kill,
    /// SIGTERM: a graceful shutdown.
    Stop,
    /// Stop if running, then start with the same command line.
    Restart,
    /// Start a stopped or killed process with the same command line.
    Start,
    /// SIGSTOP: the process hangs (a zombie worker: it holds its entries and locks but renews
    /// nothing, so another worker reclaims them). Workers only.
    Freeze,
    /// SIGCONT after a freeze: the zombie wakes up and must not apply or acknowledge what it
    /// no longer owns. Workers only.
    Thaw,
}

impl ProcessAction {
    /// The spelling used in scenario files.
    pub fn as_str(self) -> &'static str {
        match self {
            ProcessAction::Kill => "kill",
            ProcessAction::Stop => "stop",
            ProcessAction::Restart => "restart",
            ProcessAction::Start => "start",
            ProcessAction::Freeze => "freeze",
            ProcessAction::Thaw => "thaw",
        }
    }

    /// Whether this action can cut a delivery's processing short (a crash fault for
    /// `faults_effective`): kill and freeze.
    pub fn is_crash(self) -> bool {
        matches!(self, ProcessAction::Kill | ProcessAction::Freeze)
    }
}

/// Which workers a worker fault hits: `0` (an index), `random` or `all`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Which {
    /// The worker with this 0-based index.
    Index(u32),
    /// One worker chosen by the seed.
    #[default]
    Random,
    /// Every worker.
    All,
}

impl std::fmt::Display for Which {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Which::Index(i) => write!(f, "#{i}"),
            Which::Random => f.write_str("random"),
            Which::All => f.write_str("all"),
        }
    }
}

impl Serialize for Which {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Which::Index(i) => s.serialize_u32(*i),
            Which::Random => s.serialize_str("random"),
            Which::All => s.serialize_str("all"),
        }
    }
}

impl<'de> Deserialize<'de> for Which {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Which;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a worker index, `random` or `all`")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Which, E> {
                u32::try_from(v)
                    .map(Which::Index)
                    .map_err(|_| E::custom(format!("worker index {v} is too large")))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Which, E> {
                u64::try_from(v)
                    .map_err(|_| {
                        E::custom(super::load::with_hint(
                            &format!("invalid worker index {v}"),
                            "worker indexes count from 0",
                        ))
                    })
                    .and_then(|v| self.visit_u64(v))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Which, E> {
                match v {
                    "random" => Ok(Which::Random),
                    "all" => Ok(Which::All),
                    _ => Err(E::custom(super::load::with_hint(
                        &format!("unknown worker choice `{v}`"),
                        "write a 0-based worker index, `random` or `all`",
                    ))),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// The dead letters a `dead_requeue` step puts back: `all`, or `{min: N}` (all of them, and
/// the step fails unless at least N were dead-lettered — a build that never dead-letters is
/// caught).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeadRequeue {
    /// The fewest dead letters expected (0 with `all`).
    pub min: u64,
}

impl Serialize for DeadRequeue {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        if self.min == 0 {
            return s.serialize_str("all");
        }
        let mut m = s.serialize_map(Some(1))?;
        m.serialize_entry("min", &self.min)?;
        m.end()
    }
}

impl<'de> Deserialize<'de> for DeadRequeue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Min {
            /// The fewest dead letters expected.
            min: u64,
        }
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = DeadRequeue;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("`all` or `{min: N}`")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<DeadRequeue, E> {
                match v {
                    "all" => Ok(DeadRequeue { min: 0 }),
                    _ => Err(E::custom(format!(
                        "unknown dead_requeue `{v}`, expected `all` or `{{min: N}}`"
                    ))),
                }
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                m: A,
            ) -> Result<DeadRequeue, A::Error> {
                Min::deserialize(serde::de::value::MapAccessDeserializer::new(m))
                    .map(|x| DeadRequeue { min: x.min })
            }
        }
        d.deserialize_any(V)
    }
}

/// The deliveries a `redeliver` step resends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Redeliver {
    /// Every delivery whose last attempt got no 2xx (rejected, or no answer in time), with its
    /// original delivery id and body.
    Failed,
}

/// One `gitspy replay` of the event log over `[from, to)`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Replay {
    /// Name of this replay, for `state_from` and for checks. Unique. Absent: `replay-<n>` in
    /// step order (1-based).
    #[serde(default)]
    pub name: Option<At<String>>,
    /// Mark that opens the window. Absent: the beginning of the event log.
    #[serde(default)]
    pub from: Option<At<String>>,
    /// Mark that closes the window (exclusive). Absent: the moment the step runs.
    #[serde(default)]
    pub to: Option<At<String>>,
    /// Only print counts per column and digests; writes nothing (so it cannot feed `state_from`).
    #[serde(default)]
    pub dry_run: bool,
    /// Start from the state file of this earlier, non-dry-run replay instead of empty: folding
    /// overlapping windows one after another must converge to one replay over their union.
    #[serde(default)]
    pub state_from: Option<At<String>>,
    /// Compare the replayed boards with the live store (`--verify`); needs a window starting at
    /// the beginning of the log (no `from`). The result feeds the `replay_verify` check.
    #[serde(default)]
    pub verify: bool,
    /// Only this repository (`owner/name`). Absent: all.
    #[serde(default)]
    pub repo: Option<String>,
    /// Also fold the same window in a seeded shuffled order with injected duplicates
    /// (`gitspy replay --shuffle-seed --duplicates`), e.g. `shuffle: { duplicates: 20 }`. The
    /// `replay_order_independent` check compares it with the in-order replay and, for a window
    /// over the whole log, with the live boards.
    #[serde(default)]
    pub shuffle: Option<Shuffle>,
}

/// A shuffled replay's order.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Shuffle {
    /// Seed of the order. Absent: the run's seed.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Extra copies of deliveries of the window folded in as well (default 20).
    #[serde(default = "default_shuffle_duplicates")]
    pub duplicates: u32,
}

fn default_shuffle_duplicates() -> u32 {
    20
}

impl Replay {
    /// This replay's name: `name`, else `replay-<n>` where `n` is its 1-based position among
    /// the scenario's replay steps in document order (see [`Scenario::replays`]).
    pub fn name_or_default(&self, n: usize) -> String {
        self.name
            .as_ref()
            .map_or_else(|| format!("replay-{n}"), |name| name.value.clone())
    }
}

/// Repeat steps on a period: `every` is the time from one start to the next; a round that
/// overruns its period starts the next one at once. Exactly one of `for` and `times`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Repeat {
    /// Period between the starts of two rounds; more than zero.
    pub every: At<Dur>,
    /// Start rounds until this much time has passed since the first.
    #[serde(default, rename = "for")]
    pub duration: Option<At<Dur>>,
    /// Run exactly this many rounds; at least 1.
    #[serde(default)]
    pub times: Option<At<u32>>,
    /// The steps of one round; at least one. Marks are not allowed inside (they would be set
    /// more than once).
    pub steps: At<Vec<At<Step>>>,
}

impl Repeat {
    /// Number of rounds: `times`, or how many periods fit in `for` (the first at 0).
    pub fn rounds(&self) -> u64 {
        match (&self.times, &self.duration) {
            (Some(t), _) => u64::from(t.value),
            (None, Some(d)) if !self.every.is_zero() => {
                let n = d.get().as_nanos() / self.every.get().as_nanos();
                u64::try_from(n).unwrap_or(u64::MAX).max(1)
            }
            _ => 1,
        }
    }
}

/// A pass/fail condition judged at the end of the run. Each reports its measured value next to
/// its threshold.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    /// Per-delivery verdict from the ledger and the system's own records: the most deliveries
    /// allowed in each class.
    Deliveries(DeliveryLimits),
    /// No `events:*:lock` without a TTL, with a TTL above the lock TTL, or still present once
    /// the system has been drained for longer than the lock TTL.
    NoStuckLocks,
    /// The backlog (waiting + in flight + spooled) is at most `max` within `within` of the end of
    /// the last step.
    Backlog(BacklogLimit),
    /// Increase of `gitspy_jobs_failed_total` (dead-lettered jobs) over the run.
    Failed(MaxCount),
    /// p95 of `gitspy_job_duration_ms` over the run, from the histogram's increase.
    JobDurationP95(MaxDuration),
    /// Exact accounting, per worker process: `gitspy_jobs_processed_total` at every scrape is at
    /// most what the store says that process had applied by then, and equals it after the final
    /// drain; a killed or stopped process's last segment is computed from the store. No
    /// tolerance: nothing here is configured.
    ProcessedMatchesStore,
    /// Exact accounting of the ingress: over the run, the server's
    /// `gitspy_events_received_total`, `gitspy_events_duplicate_total` and
    /// `gitspy_events_rejected_total` rose by exactly the `202`, `200 duplicate` and
    /// `400`/`401`/`503` answers of the sender's ledger. The only slack is computed: requests
    /// left without an answer, and answers given while a server's counters were unseen (from
    /// its last scrape before it died until the fault log says its successor was up).
    IngressMatchesLedger,
    /// Increase of `gitspy_jobs_retried_total` over the run.
    Retries(MaxCount),
    /// The named replays (at least two, none a dry run) wrote byte-identical boards, e.g. two
    /// overlapping replays folded with `state_from` against one replay over their union.
    ReplayIdentical(Vec<At<String>>),
    /// Every replay with `verify: true` matched the live store.
    ReplayVerify,
    /// Every replay with `shuffle` gave the same boards in the shuffled order (with injected
    /// duplicates) as in log order, and, for a window over the whole log, the same as the live
    /// boards.
    ReplayOrderIndependent,
    /// The live board (`GET /boards/{owner}/{repo}`) equals the board the payload generator's
    /// own model gives for the deliveries the store reports processed (newest `updated_at` per
    /// card wins, `merged` only goes true, tombstones win); a failure names the differing cards
    /// field by field.
    BoardMatchesModel,
    /// Once a delivery id was accepted, every other request for it got the duplicate answer
    /// (`200 duplicate`), concurrent copies included.
    DuplicateAnswers,
    /// The faults landed: at least `min` crash faults (kill, freeze, crash point, a worker link
    /// cut) hit something in flight (pending deliveries of the victim, requests in flight), and
    /// at least one other fault (Redis stop, network toxic, store lock, graceful stop) met
    /// requests or deliveries waiting to be applied while in force (`min` of them when the run
    /// has no crash fault). On by default (`min: 1`) in every scenario with a fault; a run where
    /// it fails is INCONCLUSIVE (exit 3), never a pass. `faults_effective: {min: 0}` turns it off.
    FaultsEffective(EffectiveMin),
    /// A PromQL expression evaluated through the Prometheus of `observe.prometheus`
    /// (`/api/v1/query` at the end of the run, or `/api/v1/query_range` over it with `over:
    /// run`). Every series of the answer, and with `over: run` every sample, must be within the
    /// bounds; an empty answer fails ("no data"), an unreachable Prometheus fails saying so.
    /// Repeatable. Example: `promql: { name: p95, expr: 'histogram_quantile(0.95,
    /// sum(rate(gitspy_job_duration_ms_bucket[5m])) by (le))', max: 500 }`.
    Promql(PromqlCheck),
    /// A Prometheus alert, read from the `ALERTS` series over the run (a range query at the
    /// Prometheus's scrape resolution): with `fires_during`, it fires inside that fault's window
    /// (or within `within` after it) and not before the fault, and with `resolves` (the
    /// default) stops firing within `within` after the heal; with `never: true`, it never fires.
    /// Repeatable. Example: `alert: { name: GitSpyRedisDown, fires_during: redis }`.
    Alert(AlertCheck),
    /// `on_redis_down: reject` only: while the server is cut from Redis (a `network` partition
    /// on `server-redis` or `redis`, or a Redis stop, kill, pause or restart), every webhook it
    /// cannot enqueue is answered 503 within `GITSPY_REDIS_TIMEOUT` (the one the server runs
    /// with) plus `margin`: the slowest 503, and any request of the window left without an
    /// answer for longer, is measured against it. A run in which no request was rejected in
    /// such a window fails (nothing was measured). E.g.
    /// `rejects_within_redis_timeout: { margin: 500ms }`.
    RejectsWithinRedisTimeout(RejectMargin),
    /// The baseline: every run is judged by the data checks a scenario may forget —
    /// `deliveries` (lost, duplicated and unexpected at 0), `board_matches_model`,
    /// `duplicate_answers`, `processed_matches_store` (managed workers), `ingress_matches_ledger`
    /// (a managed server exposing its counters), `no_stuck_locks` (when
    /// Redis was probed), `replay_order_independent` (a replay with `shuffle`) and
    /// `replay_verify` (a replay with `verify: true`) — each one the scenario does not list
    /// itself. `baseline: false` leaves only the listed checks.
    Baseline(bool),
}

/// The `alert` check.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AlertCheck {
    /// The alert's name (`alertname`), e.g. `GitSpyRedisDown`.
    pub name: At<String>,
    /// The fault whose window the alert must fire in: the first fault whose kind (`redis
    /// stop`, `worker kill`, …, as the report's fault list shows it) starts with this, e.g.
    /// `redis` or `redis stop`.
    #[serde(default)]
    pub fires_during: Option<At<String>>,
    /// With `fires_during`: the alert must also stop firing within `within` after the fault
    /// was healed (default `true`).
    #[serde(default = "default_true")]
    pub resolves: bool,
    /// The alert must not fire at any time of the run (not together with `fires_during`).
    #[serde(default)]
    pub never: bool,
    /// Slack after the fault's heal for the first firing (rule `for`/evaluation delay) and for
    /// the resolution (default `10s`).
    #[serde(default)]
    pub within: Option<At<Dur>>,
}

fn default_true() -> bool {
    true
}

/// The `promql` check: an expression and its bounds.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PromqlCheck {
    /// The check's name in the report, `promql.<name>` (default: `promql.<n>`, the check's
    /// number among the scenario's `promql` checks, from 1). Letters, digits, `_` and `-`.
    #[serde(default)]
    pub name: Option<At<String>>,
    /// The PromQL expression, e.g. `sum(increase(gitspy_jobs_failed_total[10m]))`.
    pub expr: At<String>,
    /// Every value must be at least this.
    #[serde(default)]
    pub min: Option<f64>,
    /// Every value must be at most this.
    #[serde(default)]
    pub max: Option<f64>,
    /// Every value must equal this (not together with `min`/`max`).
    #[serde(default)]
    pub equals: Option<f64>,
    /// When an instant query is evaluated: `end` (the default), once Prometheus has scraped
    /// every target after the final drain.
    #[serde(default)]
    pub at: Option<At<PromqlAt>>,
    /// `run`: a range query from the run's start to its end instead of an instant query, every
    /// sample checked (not together with `at`).
    #[serde(default)]
    pub over: Option<At<PromqlOver>>,
    /// With `over: run`: the range query's resolution (default `1s`).
    #[serde(default)]
    pub step: Option<At<Dur>>,
}

/// The instant a `promql` check is evaluated at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PromqlAt {
    /// The end of the run (after the final drain and a fresh scrape).
    End,
}

/// The window a `promql` check with `over` is evaluated over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PromqlOver {
    /// From the run's start to its end.
    Run,
}

/// The `rejects_within_redis_timeout` check's allowance.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RejectMargin {
    /// Time allowed on top of the Redis timeout for the rest of the request: reading and
    /// verifying it, the group commit, the answer, a loaded machine (default `500ms`).
    #[serde(default = "default_reject_margin")]
    pub margin: At<Dur>,
}

fn default_reject_margin() -> At<Dur> {
    At::new(Dur(std::time::Duration::from_millis(500)))
}

/// The `faults_effective` check's limit.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EffectiveMin {
    /// Crash faults that must have hit something (default 1).
    #[serde(default = "default_effective_min")]
    pub min: u64,
}

impl Default for EffectiveMin {
    fn default() -> Self {
        EffectiveMin { min: 1 }
    }
}

fn default_effective_min() -> u64 {
    1
}

impl Check {
    /// The key that introduces this check in a scenario file.
    pub fn key(&self) -> &'static str {
        match self {
            Check::Deliveries(_) => "deliveries",
            Check::NoStuckLocks => "no_stuck_locks",
            Check::Backlog(_) => "backlog",
            Check::Failed(_) => "failed",
            Check::JobDurationP95(_) => "job_duration_p95",
            Check::ProcessedMatchesStore => "processed_matches_store",
            Check::IngressMatchesLedger => "ingress_matches_ledger",
            Check::Retries(_) => "retries",
            Check::ReplayIdentical(_) => "replay_identical",
            Check::ReplayVerify => "replay_verify",
            Check::ReplayOrderIndependent => "replay_order_independent",
            Check::BoardMatchesModel => "board_matches_model",
            Check::DuplicateAnswers => "duplicate_answers",
            Check::FaultsEffective(_) => "faults_effective",
            Check::Promql(_) => "promql",
            Check::Alert(_) => "alert",
            Check::RejectsWithinRedisTimeout(_) => "rejects_within_redis_timeout",
            Check::Baseline(_) => "baseline",
        }
    }
}

/// Most deliveries allowed per verdict class (SPEC §2.5). Every limit defaults to 0.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryLimits {
    /// Got a 2xx but never processed.
    #[serde(default)]
    pub lost: u64,
    /// Logged or applied more than once.
    #[serde(default)]
    pub duplicated: u64,
    /// Processed but never sent by this run.
    #[serde(default)]
    pub unexpected: u64,
    /// Dead-lettered.
    #[serde(default)]
    pub failed: u64,
    /// Never got a 2xx and never processed (the sender gave up).
    #[serde(default)]
    pub unacknowledged: u64,
}

/// The `backlog` check's limits.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BacklogLimit {
    /// Most entries left waiting, in flight or spooled.
    #[serde(default)]
    pub max: u64,
    /// How long after the last step the backlog may take to get there.
    pub within: At<Dur>,
}

/// An upper bound on a count.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MaxCount {
    /// The most allowed.
    pub max: u64,
}

/// An upper bound on a duration.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MaxDuration {
    /// The longest allowed.
    pub max: At<Dur>,
}
