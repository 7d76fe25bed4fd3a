//! Command-line and environment settings of every `gitspy` command. Every setting is a flag with an
//! environment-variable twin; `gitspy <cmd> --help` documents them all.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use gitspy_contract::env as contract_env;

#[derive(Debug, Parser)]
#[command(
    name = "gitspy",
    version = crate::build_info::LONG_VERSION,
    about = "GitHub webhooks → Redis Stream → workers → a Kanban board per repository"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// HTTP ingress (`POST /webhooks`), read APIs and `/metrics/prom`.
    Serve(ServeArgs),
    /// Consumes the stream and folds deliveries into the board store.
    Worker(WorkerArgs),
    /// Exits 0 if the URL answers 200 (for container healthchecks in images without a shell).
    Healthcheck(HealthcheckArgs),
    /// Rebuilds boards from the event log of a received-at window (never writes the live store).
    ///
    /// Exit codes: 0 done (and no difference with --verify), 1 --verify found a difference,
    /// 2 the replay could not run.
    Replay(ReplayArgs),
    /// Shows or requeues dead-lettered deliveries.
    Dead(DeadArgs),
}

/// How to reach Redis.
#[derive(Debug, Clone, Args)]
pub struct RedisArgs {
    /// Redis URL.
    #[arg(long, env = contract_env::REDIS_URL, default_value = "redis://127.0.0.1:6379")]
    pub redis_url: String,
    /// Timeout for connecting and for every Redis command (a down Redis is answered 503 within it).
    #[arg(long, env = contract_env::REDIS_TIMEOUT, default_value = contract_env::REDIS_TIMEOUT_DEFAULT, value_parser = parse_duration)]
    pub redis_timeout: Duration,
    /// TTL of the per-delivery state, attempt and error keys.
    #[arg(long, env = "GITSPY_STATE_TTL", default_value = "7d", value_parser = parse_duration)]
    pub state_ttl: Duration,
    /// TEST ONLY: disable every duplicate check (ingress, worker and store) so a chaos harness can
    /// prove it detects duplicates. Never set this in a real deployment.
    #[arg(long, env = contract_env::TEST_DISABLE_DEDUPE, hide = true)]
    pub test_disable_dedupe: bool,
}

/// What the ingress does while Redis is unreachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnRedisDown {
    /// Answer 503 with `Retry-After`; GitHub (or the sender) redelivers later.
    Reject,
    /// Append to the local fsynced spool, answer 202, drain into Redis when it is back.
    Spool,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on; port 0 picks a free port (printed as the first stdout line).
    #[arg(long, env = contract_env::LISTEN, default_value = "127.0.0.1:3000")]
    pub listen: SocketAddr,
    /// Admin address: when set, the read APIs, `/metrics/prom`, `/healthz`, `/readyz` (and
    /// `/debug/failpoints`) are served only here, and --listen serves only `POST /webhooks` (every
    /// other path is a 404), so a load balancer in front exposes nothing else. Port 0 picks a free
    /// port (printed as the second stdout line, `admin listening on http://ADDR`). Unset: one
    /// address serves everything.
    #[arg(long, env = contract_env::ADMIN_ADDR)]
    pub admin_addr: Option<SocketAddr>,
    #[command(flatten)]
    pub redis: RedisArgs,
    /// Webhook secret(s), comma-separated for rotation. Required unless --allow-unsigned.
    #[arg(long, env = contract_env::WEBHOOK_SECRET, hide_env_values = true)]
    pub secret: Option<String>,
    /// Accept deliveries without a valid signature. Local demos only; logged loudly.
    #[arg(long, env = "GITSPY_ALLOW_UNSIGNED")]
    pub allow_unsigned: bool,
    /// Board store: a SQLite file path, or a `postgres://user:pass@host:port/db` URL (PostgreSQL,
    /// shared by servers and workers on several machines).
    #[arg(long, env = contract_env::DB, default_value = "./data/gitspy.db")]
    pub db: PathBuf,
    /// How long a store write waits for another process's lock before it fails with "database is
    /// locked" (PostgreSQL: `lock_timeout`; the delivery is then retried with backoff, and
    /// dead-lettered after the maximum attempts).
    #[arg(long, env = "GITSPY_STORE_BUSY_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub store_busy_timeout: Duration,
    /// SQLite store: `full` fsyncs the WAL at every commit (a committed batch survives a power
    /// loss); `normal` only at checkpoints (a process crash still loses nothing; a power loss
    /// may roll back the last commits). PostgreSQL ignores it.
    #[arg(long, env = "GITSPY_SQLITE_SYNC", value_enum, default_value = "full")]
    pub sqlite_sync: crate::store::SqliteSync,
    /// Behaviour while Redis is unreachable.
    #[arg(
        long,
        env = contract_env::ON_REDIS_DOWN,
        value_enum,
        default_value = "reject"
    )]
    pub on_redis_down: OnRedisDown,
    /// Directory of the durable spool (mode `spool`).
    #[arg(long, env = contract_env::SPOOL_DIR, default_value = "./data/spool")]
    pub spool_dir: PathBuf,
    /// Largest accepted body (GitHub caps payloads at 25 MiB).
    #[arg(long, env = "GITSPY_MAX_BODY", default_value = "25MiB", value_parser = parse_size)]
    pub max_body: usize,
    /// How long to wait for in-flight requests on SIGTERM/SIGINT.
    #[arg(long, env = "GITSPY_SHUTDOWN_GRACE", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,
    /// TEST ONLY: the spool drain sleeps this long before moving each record into Redis (to hold
    /// the spool non-empty while Redis is back, or to kill the server in the middle of a drain).
    #[arg(long, env = "GITSPY_TEST_SPOOL_DRAIN_DELAY", value_parser = parse_duration, hide = true)]
    pub test_spool_drain_delay: Option<Duration>,
}

#[derive(Debug, Clone, Args)]
pub struct WorkerArgs {
    #[command(flatten)]
    pub redis: RedisArgs,
    /// Board store shared by all workers and the server: a SQLite file path, or a
    /// `postgres://user:pass@host:port/db` URL.
    #[arg(long, env = contract_env::DB, default_value = "./data/gitspy.db")]
    pub db: PathBuf,
    /// How long a store write waits for another process's lock before it fails with "database is
    /// locked" (PostgreSQL: `lock_timeout`; the delivery is then retried with backoff, and
    /// dead-lettered after the maximum attempts).
    #[arg(long, env = "GITSPY_STORE_BUSY_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub store_busy_timeout: Duration,
    /// SQLite store: `full` fsyncs the WAL at every commit (a committed batch survives a power
    /// loss); `normal` only at checkpoints (a process crash still loses nothing; a power loss
    /// may roll back the last commits). PostgreSQL ignores it.
    #[arg(long, env = "GITSPY_SQLITE_SYNC", value_enum, default_value = "full")]
    pub sqlite_sync: crate::store::SqliteSync,
    /// Port of the worker's `/metrics/prom` and `/healthz`; 0 picks a free port (printed first).
    #[arg(long, env = contract_env::WORKER_METRICS_PORT, default_value_t = 9091)]
    pub metrics_port: u16,
    /// Address the metrics port binds to.
    #[arg(long, env = "WORKER_METRICS_HOST", default_value = "127.0.0.1")]
    pub metrics_host: std::net::IpAddr,
    /// Deliveries taken per read and applied in one store transaction.
    #[arg(long, env = "GITSPY_WORKER_CONCURRENCY", default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub concurrency: u16,
    /// TTL of a delivery lock; renewed by the heartbeat while the delivery is in flight.
    #[arg(long, env = contract_env::LOCK_TTL, default_value = contract_env::LOCK_TTL_DEFAULT, value_parser = parse_duration)]
    pub lock_ttl: Duration,
    /// Pending entries idle longer than this are reclaimed from dead workers (never less than the lock TTL).
    #[arg(long, env = contract_env::CLAIM_IDLE, default_value = "30s", value_parser = parse_duration)]
    pub claim_idle: Duration,
    /// Attempts before a delivery is dead-lettered.
    #[arg(long, env = "GITSPY_MAX_ATTEMPTS", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_attempts: u64,
    /// First retry delay; doubles per attempt (capped at 60 s).
    #[arg(long, env = "GITSPY_RETRY_BASE", default_value = "500ms", value_parser = parse_duration)]
    pub retry_base: Duration,
    /// How long one blocking read waits for new entries.
    #[arg(long, env = contract_env::BLOCK, default_value = "2s", value_parser = parse_duration)]
    pub block: Duration,
    /// Consumer name in the group (default: host-pid-random).
    #[arg(long, env = "GITSPY_CONSUMER")]
    pub consumer: Option<String>,
    /// How long to finish in-flight deliveries on SIGTERM/SIGINT before exiting anyway.
    #[arg(long, env = "GITSPY_SHUTDOWN_GRACE", default_value = "30s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,
    /// Event-log retention: log rows older than this are deleted (hourly, or every tenth of the
    /// retention if shorter). `0` keeps the whole log. Replays and `logged` counts only see what is
    /// kept; deduplication does not depend on the log.
    #[arg(long, env = "GITSPY_LOG_RETENTION", default_value = "0", value_parser = parse_duration)]
    pub log_retention: Duration,
    /// TEST ONLY: sleep this long inside every delivery's processing (to hold deliveries in flight).
    #[arg(long, env = "GITSPY_TEST_PROCESSING_DELAY", value_parser = parse_duration, hide = true)]
    pub test_processing_delay: Option<Duration>,
    /// TEST ONLY: processing of deliveries whose id starts with this prefix fails (retry/dead-letter tests).
    #[arg(long, env = "GITSPY_TEST_FAIL_PREFIX", hide = true)]
    pub test_fail_prefix: Option<String>,
    /// TEST ONLY: abort the process right after the store commit, before `processed` is written.
    #[arg(long, env = "GITSPY_TEST_CRASH_AFTER_COMMIT", hide = true)]
    pub test_crash_after_commit: bool,
}

#[derive(Debug, Clone, Args)]
pub struct HealthcheckArgs {
    /// URL that must answer 200.
    #[arg(long)]
    pub url: String,
    /// Give up after this long.
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    pub timeout: Duration,
}

#[derive(Debug, Clone, Args)]
pub struct ReplayArgs {
    /// Board store to read (opened read-only): a SQLite file path or a `postgres://` URL.
    #[arg(long, env = contract_env::DB, default_value = "./data/gitspy.db")]
    pub db: PathBuf,
    /// Start of the received-at window (inclusive): RFC 3339, unix seconds, or unix milliseconds
    /// (an integer of 100000000000 or more is milliseconds; a suffix `s`/`ms` forces the unit).
    /// Default: the beginning of the log.
    #[arg(long, value_parser = parse_instant_ms, allow_hyphen_values = true)]
    pub from: Option<i64>,
    /// End of the window (exclusive), same forms as --from. Default: the end of the log.
    #[arg(long, value_parser = parse_instant_ms, allow_hyphen_values = true)]
    pub to: Option<i64>,
    /// Only this board (`owner/name`, the repository's current name).
    #[arg(long, value_parser = parse_repo)]
    pub repo: Option<String>,
    /// Print card counts per column and the digest per repository; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Output directory: `<owner>_<repo>.kanban.json` per board and `replay-state.json`.
    #[arg(long, env = "GITSPY_REPLAY_OUT", default_value = "./replay-output")]
    pub out: PathBuf,
    /// Start from this earlier replay state (a `replay-state.json`) instead of empty.
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// Compare the replay with the live store (window must start at the beginning of the log);
    /// exit 1 naming the first differing card.
    #[arg(long)]
    pub verify: bool,
    /// Print one JSON object on stdout instead of the per-board lines: `window` (`from_ms`,
    /// `to_ms`, null for an open end), `deliveries` folded, `unparseable`, `order`
    /// (`shuffle_seed`, `duplicates`, `reverse`), `boards` (`repo`, `digest`, `counts` per column), the
    /// overall `digest`, `wrote` (the output directory, or null with --dry-run) and, with
    /// --verify, `verify` (`matches`, `difference`).
    #[arg(long)]
    pub json: bool,
    /// Fold the window in a shuffled order drawn from this seed instead of log order (the fold is
    /// order-independent, so the boards must not change). The same seed gives the same order.
    #[arg(long)]
    pub shuffle_seed: Option<u64>,
    /// With --shuffle-seed: also fold this many extra copies of deliveries of the window, drawn
    /// from the seed and placed at seeded positions (the fold is idempotent).
    #[arg(long, default_value_t = 0, requires = "shuffle_seed")]
    pub duplicates: u64,
    /// Fold the window newest first (reverse log order): the most adversarial order for a fold
    /// that must keep the newest value, and for a tombstone that must never be lifted.
    #[arg(long, conflicts_with = "shuffle_seed")]
    pub reverse: bool,
}

#[derive(Debug, Clone, Args)]
pub struct DeadArgs {
    #[command(flatten)]
    pub redis: RedisArgs,
    #[command(subcommand)]
    pub command: DeadCommand,
}

#[derive(Debug, Clone, Subcommand)]
pub enum DeadCommand {
    /// Dead-lettered deliveries: id, event, attempts, time, last error.
    List {
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Puts dead-lettered deliveries back through the normal enqueue, attempts reset.
    Requeue(RequeueArgs),
}

#[derive(Debug, Clone, Args)]
#[command(group(clap::ArgGroup::new("which").required(true).args(["id", "all"])))]
pub struct RequeueArgs {
    /// The delivery id (`X-GitHub-Delivery`) to requeue.
    pub id: Option<String>,
    /// Requeue every dead-lettered delivery.
    #[arg(long)]
    pub all: bool,
}

/// Checks `owner/name`.
pub fn parse_repo(s: &str) -> Result<String, String> {
    match s.split_once('/') {
        Some((owner, name)) if !owner.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok(s.to_owned())
        }
        _ => Err(format!("invalid repository `{s}`: expected owner/name")),
    }
}

/// Durations (`500ms`, `30s`, `1m30s`, `7d`) and sizes (`25MiB`) in the one grammar both crates
/// share ([`gitspy_contract::units`]): a duration needs its unit (only `0` may be bare).
pub use gitspy_contract::units::{duration_arg as parse_duration, size_arg as parse_size};

/// Integers at or above this are unix milliseconds, below it unix seconds.
pub const MS_THRESHOLD: i64 = 100_000_000_000;

/// Parses a window bound to unix milliseconds: RFC 3339, unix seconds or unix milliseconds (an
/// integer at or above [`MS_THRESHOLD`] is milliseconds, below it seconds).
pub fn parse_instant_ms(s: &str) -> Result<i64, String> {
    let s = s.trim();
    let bad = || {
        format!(
            "invalid instant `{s}`: expected RFC 3339 (2024-05-01T12:00:00Z), unix seconds \
             (1714564800) or unix milliseconds (1714564800000)"
        )
    };
    if let Some(ms) = s.strip_suffix("ms") {
        return ms.trim().parse::<i64>().map_err(|_| bad());
    }
    if let Some(secs) = s.strip_suffix('s') {
        if let Ok(n) = secs.trim().parse::<i64>() {
            return n.checked_mul(1000).ok_or_else(bad);
        }
    }
    if let Ok(n) = s.parse::<i64>() {
        return if n.unsigned_abs() >= MS_THRESHOLD.unsigned_abs() {
            Ok(n)
        } else {
            Ok(n * 1000)
        };
    }
    let at = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|_| bad())?;
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86400)));
        assert!(parse_duration("3 fortnights").is_err());
        assert!(parse_duration("30").unwrap_err().contains("no unit"));
        assert_eq!(parse_size("25MiB"), Ok(25 << 20));
        assert_eq!(parse_size("100"), Ok(100));
        assert!(parse_size("1XB").is_err());
    }

    #[test]
    fn instants_in_every_accepted_form() {
        assert_eq!(parse_instant_ms("1714564800"), Ok(1_714_564_800_000));
        assert_eq!(parse_instant_ms("1714564800000"), Ok(1_714_564_800_000));
        assert_eq!(
            parse_instant_ms("2024-05-01T12:00:00Z"),
            Ok(1_714_564_800_000)
        );
        assert_eq!(
            parse_instant_ms("2024-05-01T14:00:00.250+02:00"),
            Ok(1_714_564_800_250)
        );
        assert_eq!(parse_instant_ms("5s"), Ok(5_000));
        assert_eq!(parse_instant_ms("5ms"), Ok(5));
        assert_eq!(parse_instant_ms("0"), Ok(0));
        // Just below the threshold is seconds, at it milliseconds.
        assert_eq!(parse_instant_ms("99999999999"), Ok(99_999_999_999_000));
        assert_eq!(parse_instant_ms("100000000000"), Ok(100_000_000_000));
        assert!(parse_instant_ms("yesterday")
            .unwrap_err()
            .contains("RFC 3339"));
        assert!(parse_instant_ms("2024-05-01").is_err());
    }
}
