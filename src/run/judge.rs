//! The end of a run: gather the evidence once (ask GitSpy about every delivery id the ledger
//! holds, list what it processed, fetch the boards, probe Redis, take the series and the fault
//! log), hand it to `verdict::evaluate`, and shape what the report shows (ledger classes, probe
//! summary, chart series).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use anyhow::Context as _;

use super::steps::Ctx;
use super::system::SettingOf;
use crate::observe::prom::names;
use crate::observe::prometheus::Prometheus;
use crate::observe::{probe, Series, TargetSel, Window};
use crate::report::{self, CheckRecord, LedgerClass, ProbeSummary};
use crate::scenario::model::{Check, PromqlCheck};
use crate::scenario::Scenario;
use crate::verdict::{self, Class, Evidence, Lookup, PromAnswer, ReplayOutcome};

/// What the judgement produced for the report.
#[derive(Default)]
pub struct Judged {
    pub checks: Vec<CheckRecord>,
    pub ledger: report::LedgerSummary,
    pub probe: Option<ProbeSummary>,
    pub series: Vec<report::Series>,
    /// Per delivery looked up, when the store applied it (unix ms; `u64::MAX`: never). A
    /// delivery processed without an `applied_at` is left out. Read by fault efficacy.
    pub applied: BTreeMap<String, u64>,
}

const LOOKUP_CHUNK: usize = 10_000;

/// How the run ended, beyond what the context holds.
pub struct Ending {
    pub drain_error: Option<String>,
    pub drained_at_ms: u64,
    pub panicked: bool,
    /// The Prometheus of `observe.prometheus`, for the `promql` checks.
    pub prometheus: Option<Prometheus>,
}

pub async fn judge(
    ctx: &Ctx,
    s: &Scenario,
    series: &Mutex<Series>,
    end: Ending,
) -> anyhow::Result<Judged> {
    let prometheus = end.prometheus.clone();
    let drained_at_ms = end.drained_at_ms;
    let mut ev = gather(ctx, series, end).await?;
    if let Some(p) = &prometheus {
        ev.prom = prometheus_answers(p, s, ctx.t0_unix_ms, drained_at_ms).await;
    }
    let checks = verdict::evaluate(&ev, &s.checks.value);
    Ok(Judged {
        checks,
        ledger: ledger_summary(&ev),
        probe: ev.probe.as_ref().map(|p| ProbeSummary {
            states: p.states.clone(),
            locks: p.locks.len() as u64,
            stuck_locks: p.stuck_locks().count() as u64,
            stream_len: p.stream_len,
            pending: p.pending.unwrap_or(0),
            dead: p.dead_len,
        }),
        series: chart_series(&ev, poll_ms(s)),
        applied: applied_times(&ev),
    })
}

/// When each looked-up delivery was applied (see [`Judged::applied`]).
fn applied_times(ev: &Evidence) -> BTreeMap<String, u64> {
    ev.lookups
        .values()
        .filter_map(|l| {
            let at = l
                .applied_at
                .as_ref()
                .and_then(crate::observe::timeline::applied_ms);
            match (at, l.state) {
                (Some(at), _) => Some((l.delivery.clone(), at)),
                (None, verdict::DeliveryState::Processed) => None,
                (None, _) => Some((l.delivery.clone(), u64::MAX)),
            }
        })
        .collect()
}

/// Every piece of evidence the checks read, gathered once.
pub async fn gather(ctx: &Ctx, series: &Mutex<Series>, end: Ending) -> anyhow::Result<Evidence> {
    let ledger = ctx.sender.ledger();
    let sends = Evidence::sends_of(&ledger);
    let ids: Vec<String> = sends.keys().cloned().collect();
    let lookups = lookup(ctx, &ids).await?;
    let listed = listing(ctx).await?;
    let probe = redis_probe(ctx, &end).await;
    let model = match ctx.model.lock() {
        Ok(g) => g.clone(),
        Err(p) => p.into_inner().clone(),
    };
    let workers = {
        let mut sys = ctx.sys.lock().await;
        sys.workers
            .iter_mut()
            .map(|w| {
                if !w.is_running() {
                    w.ended("exited");
                }
                (w.role.name(), w.instances.clone())
            })
            .collect()
    };
    let mut boards = BTreeMap::new();
    for repo in model.repos() {
        boards.insert(repo.clone(), fetch_board(ctx, &repo).await);
    }
    let series = match series.lock() {
        Ok(g) => g.clone(),
        Err(p) => p.into_inner().clone(),
    };
    let (faults, step_problems, replays, shuffles) = {
        let t = ctx.timeline();
        let replays = t
            .replay_out
            .iter()
            .map(|(name, (dir, dry_run, verified))| {
                (
                    name.clone(),
                    ReplayOutcome {
                        dir: dir.clone(),
                        dry_run: *dry_run,
                        verified: *verified,
                    },
                )
            })
            .collect();
        (
            t.faults.clone(),
            t.problems.clone(),
            replays,
            t.shuffles.clone(),
        )
    };
    let mut ev = Evidence {
        ledger,
        sends,
        lookups,
        listed,
        probe,
        series,
        model,
        boards,
        faults,
        step_problems,
        panicked: end.panicked,
        drain_error: end.drain_error,
        replays,
        shuffles,
        t0_unix_ms: ctx.t0_unix_ms,
        kills: ctx.kills.load(std::sync::atomic::Ordering::SeqCst),
        workers,
        prom: BTreeMap::new(),
        redis_timeout: {
            let t = ctx
                .sys
                .lock()
                .await
                .setting(
                    &ctx.profile.env.redis_timeout,
                    SettingOf::Server,
                    gitspy_contract::env::REDIS_TIMEOUT_DEFAULT,
                )
                .await;
            Some((t.value.as_millis() as u64, t.source))
        },
        gitspy_metrics: ctx.profile.metrics == gitspy_contract::MetricNames::default(),
        poison: match ctx.poison.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        },
        verdict: Default::default(),
    };
    ev.classify();
    Ok(ev)
}

/// How long the end of the run waits for Prometheus to scrape every target after the drain.
const FRESH_SCRAPE_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Asks Prometheus for every `promql` check's expression: first waits (bounded) until it has
/// scraped every target after `drained_at_ms`, so "the end" includes the drained state, then one
/// instant query at that moment (`at: end`) or one range query over the run (`over: run`).
async fn prometheus_answers(
    p: &Prometheus,
    s: &Scenario,
    t0_unix_ms: u64,
    drained_at_ms: u64,
) -> BTreeMap<usize, PromAnswer> {
    let mut out = BTreeMap::new();
    if !s
        .checks
        .iter()
        .any(|c| matches!(c.value, Check::Promql(_) | Check::Alert(_)))
    {
        return out;
    }
    let fresh = wait_fresh_scrape(p, drained_at_ms).await;
    let end_ms = crate::observe::prom::now_ms();
    let step_ms = s
        .observe
        .prometheus
        .as_ref()
        .and_then(|p| p.value.interval.as_ref())
        .map_or(1000, |d| d.value.get().as_millis() as u64)
        .max(1);
    for (i, c) in s.checks.iter().enumerate() {
        match &c.value {
            Check::Promql(q) => {
                out.insert(
                    i,
                    promql_answer(p, q, t0_unix_ms, end_ms, fresh.clone()).await,
                );
            }
            Check::Alert(a) => {
                let expr = format!(
                    "ALERTS{{alertname=\"{}\", alertstate=\"firing\"}}",
                    a.name.value.replace('\\', "\\\\").replace('"', "\\\"")
                );
                out.insert(
                    i,
                    PromAnswer {
                        from_ms: t0_unix_ms,
                        to_ms: end_ms,
                        range: true,
                        result: p.query_range(&expr, t0_unix_ms, end_ms, step_ms).await,
                        note: fresh.clone(),
                    },
                );
            }
            _ => {}
        }
    }
    out
}

async fn promql_answer(
    p: &Prometheus,
    q: &PromqlCheck,
    t0_unix_ms: u64,
    end_ms: u64,
    note: Option<String>,
) -> PromAnswer {
    if q.over.is_some() {
        let step_ms = q
            .step
            .as_ref()
            .map_or(1000, |d| d.value.get().as_millis() as u64)
            .max(1);
        PromAnswer {
            from_ms: t0_unix_ms,
            to_ms: end_ms,
            range: true,
            result: p.query_range(&q.expr, t0_unix_ms, end_ms, step_ms).await,
            note,
        }
    } else {
        PromAnswer {
            from_ms: end_ms,
            to_ms: end_ms,
            range: false,
            result: p.query(&q.expr, end_ms).await,
            note,
        }
    }
}

/// Waits until `min(timestamp(up))` (the oldest latest scrape of any target) is after `after_ms`;
/// `Some(note)` when it is not within [`FRESH_SCRAPE_WAIT`] (or cannot be asked).
async fn wait_fresh_scrape(p: &Prometheus, after_ms: u64) -> Option<String> {
    let deadline = tokio::time::Instant::now() + FRESH_SCRAPE_WAIT;
    loop {
        let now = crate::observe::prom::now_ms();
        let last = match p.query("min(timestamp(up))", now).await {
            Ok(series) => series
                .first()
                .and_then(|s| s.samples.first())
                .map(|(_, v)| (*v * 1000.0) as u64),
            Err(e) => return Some(e),
        };
        if last.is_some_and(|l| l >= after_ms) {
            return None;
        }
        if tokio::time::Instant::now() >= deadline {
            return Some(match last {
                Some(l) => format!(
                    "Prometheus' oldest last scrape of a target was {:.1} s before the end of the drain (waited {} s)",
                    after_ms.saturating_sub(l) as f64 / 1000.0,
                    FRESH_SCRAPE_WAIT.as_secs()
                ),
                None => "Prometheus scrapes no target (`up` is empty)".to_string(),
            });
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

async fn lookup(ctx: &Ctx, ids: &[String]) -> anyhow::Result<BTreeMap<String, Lookup>> {
    let mut lookups = BTreeMap::new();
    for chunk in ids.chunks(LOOKUP_CHUNK) {
        let r = ctx
            .http
            .post(format!(
                "{}{}",
                ctx.server_url, ctx.profile.endpoints.lookup
            ))
            .json(&serde_json::json!({ "ids": chunk }))
            .send()
            .await
            .context("POST /deliveries/lookup")?;
        if !r.status().is_success() {
            let status = r.status();
            // The body says why (GitSpy: the store's error): worth more than the status alone.
            let body = r.text().await.unwrap_or_default();
            let body: String = body.trim().chars().take(300).collect();
            anyhow::bail!("POST /deliveries/lookup answered {status}: {body}");
        }
        let v: serde_json::Value = r.json().await.context("lookup answer")?;
        for d in v["deliveries"].as_array().cloned().unwrap_or_default() {
            let l: Lookup = serde_json::from_value(d).context("lookup entry")?;
            lookups.insert(l.delivery.clone(), l);
        }
    }
    Ok(lookups)
}

async fn listing(ctx: &Ctx) -> anyhow::Result<BTreeSet<String>> {
    let mut listed = BTreeSet::new();
    let mut after: Option<String> = None;
    for _ in 0..10_000 {
        let mut url = format!(
            "{}{}?limit=10000",
            ctx.server_url, ctx.profile.endpoints.deliveries
        );
        if let Some(a) = &after {
            url.push_str(&format!("&after={a}"));
        }
        let v: serde_json::Value = ctx
            .http
            .get(&url)
            .send()
            .await
            .context("GET /deliveries")?
            .json()
            .await?;
        for item in v["deliveries"].as_array().cloned().unwrap_or_default() {
            // Items are ids, or objects carrying `delivery` (with who applied it and when).
            let id = item
                .as_str()
                .or_else(|| item["delivery"].as_str())
                .map(str::to_owned);
            if let Some(id) = id {
                listed.insert(id);
            }
        }
        match v["next"].as_str() {
            Some(n) => after = Some(n.to_string()),
            None => break,
        }
    }
    Ok(listed)
}

/// The Redis probe (the system is drained; locks still present after a drain longer than the
/// lock TTL are stuck — the probe is taken right away, so only TTL anomalies count here).
async fn redis_probe(ctx: &Ctx, end: &Ending) -> Option<crate::observe::RedisProbe> {
    // The TTL the workers run with (`target.env` can change it), never the harness's default.
    let (lock_ttl, redis_url) = {
        let sys = ctx.sys.lock().await;
        let ttl = sys
            .setting(
                &ctx.profile.env.lock_ttl,
                SettingOf::Worker,
                gitspy_contract::env::LOCK_TTL_DEFAULT,
            )
            .await;
        (ttl, sys.redis.url().ok()?)
    };
    let lock_ttl_ms = lock_ttl.value.as_millis() as u64;
    let mut conn = probe::connect(&redis_url).await.ok()?;
    probe::probe_as(
        &mut conn,
        &probe::ProbeConfig {
            lock_ttl_ms,
            drained_since_ms: end.drain_error.is_none().then_some(end.drained_at_ms),
            id_prefix: Some(ctx.nonce.as_str().to_string()),
        },
        &ctx.profile,
    )
    .await
    .ok()
}

/// `GET /boards/{owner}/{repo}`; a 404 is an empty board (no card ever landed).
async fn fetch_board(ctx: &Ctx, repo: &str) -> Result<serde_json::Value, String> {
    let url = format!("{}{}/{repo}", ctx.server_url, ctx.profile.endpoints.boards);
    let r = ctx
        .http
        .get(&url)
        .send()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    if r.status() == reqwest::StatusCode::NOT_FOUND {
        return Ok(serde_json::json!({ "repo": repo, "columns": {} }));
    }
    if !r.status().is_success() {
        return Err(format!("GET {url} answered {}", r.status()));
    }
    r.json().await.map_err(|e| format!("GET {url}: {e}"))
}

fn ledger_summary(ev: &Evidence) -> report::LedgerSummary {
    let verdict = &ev.verdict;
    let mut classes = BTreeMap::new();
    for class in Class::ALL {
        let count = verdict.count(class);
        let examples = verdict.examples.get(&class).cloned().unwrap_or_default();
        classes.insert(class.as_str().to_string(), LedgerClass { count, examples });
    }
    let t = &verdict.tally;
    report::LedgerSummary {
        sent: t.sent,
        accepted: t.accepted,
        duplicates: t.duplicates,
        rejected: t.rejected,
        indeterminate: t.indeterminate,
        processed: t.processed,
        classes,
    }
}

fn poll_ms(s: &Scenario) -> u64 {
    (s.observe.poll_interval.value.get().as_millis() as u64).max(1000)
}

/// The charts' series: received/processed/failed rates, the backlog (and its queue part), job
/// duration p50/p95.
fn chart_series(ev: &Evidence, step: u64) -> Vec<report::Series> {
    let series = &ev.series;
    let rel = |at: u64| at.saturating_sub(ev.t0_unix_ms);
    let mut out_series = Vec::new();
    let window_end = Window {
        from_ms: ev.t0_unix_ms,
        to_ms: crate::observe::prom::now_ms(),
    };
    for (name, sel, metric) in [
        (
            "received_rate",
            TargetSel::Named("server"),
            names::EVENTS_RECEIVED,
        ),
        (
            "processed_rate",
            TargetSel::Role("worker"),
            names::JOBS_PROCESSED,
        ),
        ("failed_rate", TargetSel::Role("worker"), names::JOBS_FAILED),
    ] {
        // The last bin ends with the run, not a whole poll interval later: its rate is over the
        // time it really covers.
        let pts = series
            .intervals(sel, metric, window_end, step)
            .into_iter()
            .filter_map(|i| {
                let end = i.end_ms.min(window_end.to_ms);
                let span = end.saturating_sub(i.start_ms).max(1);
                let rate = i.increase * 1000.0 / span as f64;
                rate.is_finite().then(|| (rel(end), rate))
            })
            .collect();
        out_series.push(report::Series {
            name: name.into(),
            unit: "/s".into(),
            points: pts,
        });
    }
    let backlog = series.backlog_points("server");
    for (name, points) in [
        ("backlog", backlog),
        (
            "waiting",
            series.gauge_points("server", &[names::QUEUE_WAITING]),
        ),
        (
            "active",
            series.gauge_points("server", &[names::QUEUE_ACTIVE]),
        ),
    ] {
        let pts = points
            .into_iter()
            .filter_map(|(at, v)| v.filter(|v| v.is_finite()).map(|v| (rel(at), v)))
            .collect();
        out_series.push(report::Series {
            name: name.into(),
            unit: "deliveries".into(),
            points: pts,
        });
    }
    let hist = series.histogram_intervals(
        TargetSel::Role("worker"),
        names::JOB_DURATION_MS,
        window_end,
        step,
    );
    for (name, pick) in [("p50_ms", 0usize), ("p95_ms", 1usize)] {
        let pts = hist
            .iter()
            .filter_map(|(at, w)| {
                let v = if pick == 0 { w.p50 } else { w.p95 };
                v.filter(|v| v.is_finite())
                    .map(|v| (rel((*at + step).min(window_end.to_ms)), v))
            })
            .collect();
        out_series.push(report::Series {
            name: name.into(),
            unit: "ms".into(),
            points: pts,
        });
    }
    // Exact per-second series from the ledger's send times and the store's apply times.
    let applied: BTreeMap<String, u64> = ev
        .lookups
        .values()
        .filter_map(|l| {
            let at = l
                .applied_at
                .as_ref()
                .and_then(crate::observe::timeline::applied_ms)?;
            Some((l.delivery.clone(), at))
        })
        .collect();
    out_series.extend(crate::observe::timeline::exact_series(
        ev.t0_unix_ms,
        window_end.to_ms,
        &ev.ledger.entries,
        &applied,
    ));
    out_series
}
