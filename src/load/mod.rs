//! Load: the signed webhook sender and its ledger, the half of the harness that floods the
//! system under test with GitHub deliveries and remembers every attempt (SPEC §2.1 `send`,
//! §2.3 seed, §2.4 ledger).
//!
//! - [`payload`] — deliveries from GitHub fixture shapes (or the user's files), fixed by the seed;
//!   ids carry a per-run nonce; duplicate patterns.
//! - [`sign`] — `X-Hub-Signature-256`.
//! - [`sender`] — open-model constant arrival rate, bounded concurrency, per-request timeout,
//!   redelivery of what was not accepted.
//! - [`ledger`] — one entry per attempt; summary counts; the ids to redeliver.
//!
//! [`send_cmd`] is `gitspy-chaos send`; the scenario runner drives [`Sender`] and [`PayloadGen`]
//! directly, with one of each per run.

pub mod ledger;
pub mod payload;
pub mod sender;
pub mod sign;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;

pub use ledger::{Ledger, LedgerEntry, LedgerSummary, Outcome, RecordFile};
pub use payload::{Delivery, Duplicates, ItemSnapshot, PayloadGen, Plan, PlannedSend, RunNonce};
pub use sender::{BatchOptions, BatchReport, Scheduled, Sender, SenderConfig};

/// Flags of `gitspy-chaos send`.
#[derive(Clone, Debug, clap::Args)]
pub struct SendArgs {
    /// Webhook endpoint of the system under test.
    #[arg(
        long,
        env = "GITSPY_WEBHOOK_URL",
        default_value = "http://127.0.0.1:3000/webhooks"
    )]
    pub url: String,
    /// Webhook secret used to sign every body (X-Hub-Signature-256); without it requests go
    /// unsigned.
    #[arg(long, env = "GITHUB_WEBHOOK_SECRET", hide_env_values = true)]
    pub secret: Option<String>,
    /// Number of requests to send (duplicates included).
    #[arg(long, default_value_t = 20)]
    pub count: usize,
    /// Send the same delivery (one delivery id, same body) every time.
    #[arg(long)]
    pub same: bool,
    /// Exact copies sent right after each new delivery (concurrent duplicates).
    #[arg(long, default_value_t = 0)]
    pub copies: u32,
    /// Share of requests, 0 to 1, that repeat an earlier delivery of the batch (seeded).
    #[arg(long, default_value_t = 0.0, value_parser = parse_fraction)]
    pub duplicate_fraction: f64,
    /// Arrival rate: `20/s`, `600/m`, `10/500ms` (a bare number is refused: write its unit);
    /// `max` sends as fast as the concurrency allows. The schedule never waits for responses (open model).
    #[arg(long, default_value = "50/s", value_parser = parse_rate)]
    pub rate: f64,
    /// Requests in flight at most; a request due while all are busy starts late and is counted.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Send these payload files (a file, or every *.json under a directory) verbatim instead of
    /// generated ones; the event is the file's directory name or is guessed from the payload.
    #[arg(long, value_name = "FILE|DIR")]
    pub payload: Option<PathBuf>,
    /// Only these events (comma-separated): issues, pull_request, issue_comment, ping.
    #[arg(long, value_delimiter = ',')]
    pub event: Vec<String>,
    /// Seed of the payload sequence and duplicate pattern (random if absent; printed either way).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Per-request timeout (`10s`, `500ms`); a request that times out is indeterminate. GitHub
    /// itself gives up after 10 s.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Repository (`owner/name`) the generated payloads belong to.
    #[arg(long, default_value = "gitspy-chaos/demo")]
    pub repo: String,
    /// Repository id of the generated payloads (the board's card key).
    #[arg(long, default_value_t = 424_242)]
    pub repo_id: u64,
    /// After the batch, resend once every delivery that got no 2xx (same id, same body).
    #[arg(long)]
    pub redeliver_failed: bool,
    /// Write every attempt as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub ledger: Option<PathBuf>,
}

/// Why `send` did not deliver everything: the exit code and the message for stderr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendFailure {
    /// 1: the server answered, but some deliveries were not accepted; 2: no request reached it.
    pub code: u8,
    /// One line naming what happened, then a hint.
    pub message: String,
}

/// What a `send` did, counted as it went (its entries are in the `--ledger` file, never all in
/// memory).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SendDone {
    pub summary: LedgerSummary,
    /// The ids none of whose requests got a 2xx, in the order of their first request.
    pub not_accepted: Vec<String>,
    /// Requests whose connection never opened, and the first one's error.
    pub refused: u64,
    pub first_refused: Option<String>,
}

impl SendDone {
    /// The same figures from a ledger held in memory.
    pub fn of(ledger: &Ledger) -> Self {
        let mut tally = ledger::Tally::default();
        for e in &ledger.entries {
            tally.add(e);
        }
        let summary = ledger.summary();
        Self {
            not_accepted: ledger.to_redeliver(),
            refused: tally.refused,
            first_refused: tally.first_refused,
            summary,
        }
    }
}

/// The exit status of `send` from what it did: `Ok` when every delivery id got a 2xx in the
/// end; exit 2 when every request failed to connect (nothing reached the server: it could not
/// run); exit 1 when the server answered but some deliveries were not accepted.
pub fn send_outcome(done: &SendDone, url: &str) -> Result<(), SendFailure> {
    let sent = done.summary.sent;
    if sent == 0 {
        return Ok(());
    }
    if done.refused == sent {
        return Err(SendFailure {
            code: 2,
            message: format!(
                "could not connect to {url}: {} ({} of {} requests)\nhint: is `gitspy serve` running and listening there? check --url",
                done.first_refused.as_deref().unwrap_or("refused"),
                done.refused,
                sent
            ),
        });
    }
    let missing = &done.not_accepted;
    if missing.is_empty() {
        return Ok(());
    }
    Err(SendFailure {
        code: 1,
        message: format!(
            "{} deliver{} not accepted by {url} (listed above under `not accepted`)\nhint: send them again with --redeliver-failed, or look at the server's log",
            missing.len(),
            if missing.len() == 1 { "y was" } else { "ies were" }
        ),
    })
}

/// `gitspy-chaos send`: sends the batch, prints the summary to stdout, returns what it did.
/// Progress and the seed/nonce go to stderr. The ledger is streamed: every attempt is counted
/// and, with `--ledger`, written as a fixed-size record to `<ledger>.records` as its answer
/// comes in; at the end the records become the JSON ledger and the records file is removed, so
/// a flood of a million requests never holds its ledger in memory.
pub async fn send_cmd(args: SendArgs) -> anyhow::Result<SendDone> {
    let seed = args.seed.unwrap_or_else(rand::random);
    let nonce = RunNonce::random();
    let mut gen = match &args.payload {
        Some(path) => PayloadGen::from_path(seed, nonce.clone(), path, &args.event)?,
        None => PayloadGen::new(seed, nonce.clone(), &args.repo, args.repo_id)?
            .with_events(&args.event)?,
    };
    let rate = (args.rate > 0.0).then_some(args.rate);
    let records = match &args.ledger {
        Some(path) => Some(RecordFile::create(&records_path(path))?),
        None => None,
    };
    let sender = Sender::new(SenderConfig {
        url: args.url.clone(),
        secret: args.secret.clone(),
        rate,
        concurrency: args.concurrency,
        timeout: args.timeout,
    })?
    .streaming(records);
    let plan = gen.plan_iter(
        args.count,
        &Duplicates {
            same: args.same,
            copies: args.copies,
            fraction: args.duplicate_fraction,
        },
    );
    eprintln!(
        "sending {} requests to {} (seed {seed}, run nonce {nonce})",
        args.count, args.url
    );
    // Only the schedule figures of each batch are kept: the streaming sender keeps no entry.
    let mut schedule = Schedule::default();
    schedule.add(&sender.send(plan).await?);
    if args.redeliver_failed {
        let before = sender.streamed().map_or(0, |s| s.tally().sent);
        let redelivery = sender.redeliver_failed().await?;
        let after = sender.streamed().map_or(0, |s| s.tally().sent);
        eprintln!("redelivered {} deliveries", after - before);
        schedule.add(&redelivery);
    }
    let tally = sender.streamed().map(|s| s.tally()).unwrap_or_default();
    let done = SendDone {
        summary: tally.summary(sender.distinct_ids()),
        not_accepted: sender.unaccepted_ids(),
        refused: tally.refused,
        first_refused: tally.first_refused.clone(),
    };
    if let (Some(path), Some(records)) = (
        &args.ledger,
        sender.streamed().and_then(|s| s.records.as_ref()),
    ) {
        records.write_json(path)?;
        std::fs::remove_file(records.path())
            .with_context(|| format!("removing {}", records.path().display()))?;
    }
    let mut out = std::io::stdout().lock();
    write_summary(&mut out, &done, schedule, rate, seed, &nonce).context("writing the summary")?;
    Ok(done)
}

/// Where `send --ledger FILE` streams its records while it runs.
fn records_path(ledger: &std::path::Path) -> PathBuf {
    let mut name = ledger.as_os_str().to_owned();
    name.push(".records");
    PathBuf::from(name)
}

/// What the summary says about the schedule, over every batch of a `send`.
#[derive(Clone, Copy, Debug, Default)]
struct Schedule {
    /// Requests that started late because every concurrency slot was taken.
    slipped: u64,
    /// The largest lateness of a start, in ms.
    late_ms: u64,
}

impl Schedule {
    fn add(&mut self, batch: &BatchReport) {
        self.slipped += batch.slipped;
        self.late_ms = self.late_ms.max(batch.max_lateness_ms());
    }
}

fn write_summary(
    out: &mut impl std::io::Write,
    done: &SendDone,
    schedule: Schedule,
    rate: Option<f64>,
    seed: u64,
    nonce: &RunNonce,
) -> std::io::Result<()> {
    let s = &done.summary;
    writeln!(
        out,
        "sent {} ({} ids)  accepted {}  duplicates {}  rejected {}  indeterminate {}",
        s.sent, s.distinct, s.accepted, s.duplicates, s.rejected, s.indeterminate
    )?;
    let ms = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.1}"));
    writeln!(
        out,
        "latency ms  p50 {}  p95 {}  max {}",
        ms(s.latency_p50_ms),
        ms(s.latency_p95_ms),
        ms(s.latency_max_ms)
    )?;
    let Schedule {
        slipped,
        late_ms: late,
    } = schedule;
    match rate {
        Some(rate) => writeln!(
            out,
            "schedule  {rate}/s  late starts {slipped} (concurrency saturated)  max {late} ms behind"
        )?,
        None => writeln!(out, "schedule  unpaced (as fast as the concurrency allows)")?,
    }
    let redeliver = &done.not_accepted;
    if !redeliver.is_empty() {
        writeln!(out, "not accepted: {}", redeliver.join(" "))?;
    }
    writeln!(out, "seed {seed}  run nonce {nonce}")?;
    out.flush()
}

/// Parses `--rate`: a rate in the shared grammar (`20/s`, `1200/m`, `10/500ms`;
/// [`gitspy_contract::units`]) as events per second, or `max` (0: unpaced). A bare number is
/// refused here as in scenario files.
pub fn parse_rate(text: &str) -> Result<f64, String> {
    if text.trim() == "max" {
        return Ok(0.0);
    }
    gitspy_contract::units::rate_arg(text).map(|r| r.per_second())
}

/// Parses `--timeout` and other durations in the shared grammar (`500ms`, `10s`, `1m30s`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    gitspy_contract::units::duration_arg(text)
}

fn parse_fraction(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(f) if (0.0..=1.0).contains(&f) => Ok(f),
        _ => Err(format!(
            "invalid fraction {text:?}; expected a number from 0 to 1"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        send: SendArgs,
    }

    fn sample_entry(id: &str) -> LedgerEntry {
        LedgerEntry {
            delivery: id.into(),
            attempt: 1,
            duplicate_of: None,
            event: "issues".into(),
            scheduled_at_ms: 0,
            sent_at_ms: 0,
            outcome: Outcome::Status(202),
            latency_ms: 1.0,
            answer: None,
        }
    }

    #[test]
    fn send_exits_by_what_reached_the_server() {
        let entry = |id: &str, outcome: Outcome| LedgerEntry {
            outcome,
            ..sample_entry(id)
        };
        let url = "http://127.0.0.1:9/webhooks";
        let all_refused = Ledger {
            entries: vec![
                entry("a", Outcome::Refused("connection refused".into())),
                entry("b", Outcome::Refused("connection refused".into())),
            ],
        };
        let e = send_outcome(&SendDone::of(&all_refused), url).unwrap_err();
        assert_eq!(e.code, 2);
        assert!(e.message.starts_with("could not connect to http://127.0.0.1:9/webhooks: connection refused (2 of 2 requests)"), "{}", e.message);
        let some_rejected = Ledger {
            entries: vec![
                entry("a", Outcome::Status(202)),
                entry("b", Outcome::Status(503)),
                entry("c", Outcome::Refused("connection refused".into())),
            ],
        };
        let e = send_outcome(&SendDone::of(&some_rejected), url).unwrap_err();
        assert_eq!(e.code, 1);
        assert!(
            e.message.starts_with("2 deliveries were not accepted"),
            "{}",
            e.message
        );
        let redelivered = Ledger {
            entries: vec![
                entry("a", Outcome::Status(503)),
                entry("a", Outcome::Status(202)),
            ],
        };
        assert_eq!(send_outcome(&SendDone::of(&redelivered), url), Ok(()));
        assert_eq!(
            send_outcome(&SendDone::of(&Ledger { entries: vec![] }), url),
            Ok(())
        );
    }

    #[test]
    fn rates_and_durations_use_the_shared_grammar() {
        assert_eq!(parse_rate("20/s"), Ok(20.0));
        assert_eq!(parse_rate("120/m"), Ok(2.0));
        assert_eq!(parse_rate("max"), Ok(0.0));
        assert!(parse_rate("20").unwrap_err().contains("<count>/<unit>"));
        assert!(parse_rate("fast").is_err());
        assert!(parse_rate("-1/s").is_err());
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("3").unwrap_err().contains("no unit"));
        assert!(parse_duration("10 parsecs").is_err());
        assert!(parse_duration("s").is_err());
    }

    #[test]
    fn send_args_parse() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from([
            "send",
            "--url",
            "http://127.0.0.1:9/webhooks",
            "--secret",
            "s",
            "--count",
            "5",
            "--same",
            "--rate",
            "20/s",
            "--concurrency",
            "8",
            "--event",
            "issues,ping",
            "--seed",
            "7",
            "--timeout",
            "500ms",
        ])
        .unwrap();
        let a = cli.send;
        assert_eq!(a.count, 5);
        assert!(a.same);
        assert_eq!(a.rate, 20.0);
        assert_eq!(a.event, ["issues", "ping"]);
        assert_eq!(a.seed, Some(7));
        assert_eq!(a.timeout, Duration::from_millis(500));
        assert!(Cli::try_parse_from(["send", "--duplicate-fraction", "1.5"]).is_err());
    }

    #[test]
    fn summary_lines() {
        let ledger = Ledger {
            entries: vec![LedgerEntry {
                delivery: "n-000001".into(),
                attempt: 1,
                duplicate_of: None,
                event: "issues".into(),
                scheduled_at_ms: 10,
                sent_at_ms: 12,
                outcome: Outcome::Status(503),
                latency_ms: 1.25,
                answer: Some("queue unavailable".into()),
            }],
        };
        let batch = BatchReport {
            entries: ledger.entries.clone(),
            slipped: 0,
            max_in_flight: 1,
            max_late_ms: 2,
        };
        let mut out = Vec::new();
        let mut schedule = Schedule::default();
        schedule.add(&batch);
        write_summary(
            &mut out,
            &SendDone::of(&ledger),
            schedule,
            Some(20.0),
            7,
            &RunNonce::new("n"),
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "sent 1 (1 ids)  accepted 0  duplicates 0  rejected 1  indeterminate 0\n\
             latency ms  p50 1.2  p95 1.2  max 1.2\n\
             schedule  20/s  late starts 0 (concurrency saturated)  max 2 ms behind\n\
             not accepted: n-000001\n\
             seed 7  run nonce n\n"
        );
    }
}
