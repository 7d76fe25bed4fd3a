//! `report.html`: one self-contained page that opens offline — inline CSS, inline SVG charts,
//! no script, no external style, font or image. Summary, check table, ledger classes with
//! example ids, charts with fault windows shaded, fault timeline, steps, the final Redis
//! probe, replays, process log tails and the scenario YAML. Every text is escaped: much of
//! it comes from the system under test.

use std::fmt::Write as _;

use super::chart::{self, Chart, Line};
use super::escape::html as esc;
use super::{fmt_ms, fmt_num, ordered_classes, Exporter, RunReport, Series, TargetKind, Verdict};

/// Writes `report.html`.
pub struct HtmlExporter;

impl Exporter for HtmlExporter {
    fn file_name(&self) -> &'static str {
        "report.html"
    }

    fn render(&self, run: &RunReport) -> anyhow::Result<Vec<u8>> {
        Ok(render(run).into_bytes())
    }
}

const STYLE: &str = r#"
:root { color-scheme: light; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: #1d1d1f; margin: 0 auto; padding: 16px 24px 48px; max-width: 1040px; background: #fafafa; }
h1 { font-size: 24px; margin: 8px 0 4px; }
h2 { font-size: 18px; margin: 28px 0 8px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
h3 { font-size: 15px; margin: 16px 0 4px; }
.verdict { display: inline-block; font-weight: 700; padding: 3px 10px; border-radius: 4px; color: #fff; }
.verdict.passed { background: #1a7f37; } .verdict.failed { background: #cf222e; } .verdict.error { background: #9a6700; } .verdict.inconclusive { background: #6e7781; }
.error-box { border: 1px solid #cf222e; background: #fff0f0; padding: 8px 12px; border-radius: 4px; white-space: pre-wrap; }
dl.summary { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; margin: 8px 0; }
dl.summary dt { color: #555; } dl.summary dd { margin: 0; }
table { border-collapse: collapse; margin: 6px 0; background: #fff; }
th, td { border: 1px solid #d0d7de; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f0f2f4; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.fail td { background: #fff0f0; } tr.fail td.result { color: #cf222e; font-weight: 700; }
tr.inconclusive td { background: #f3f4f6; } tr.inconclusive td.result { color: #57606a; font-weight: 700; } p.inconclusive { background: #f3f4f6; padding: .5em; }
tr.pass td.result { color: #1a7f37; font-weight: 700; }
tr.bad td { background: #fff0f0; }
code { font: 12px ui-monospace, "DejaVu Sans Mono", monospace; background: #eef0f2; padding: 0 3px; border-radius: 3px; }
pre { font: 12px/1.4 ui-monospace, "DejaVu Sans Mono", monospace; background: #fff; border: 1px solid #d0d7de; padding: 8px; overflow-x: auto; white-space: pre-wrap; word-break: break-all; }
figure { margin: 12px 0 20px; }
figcaption { font-weight: 600; margin-bottom: 4px; }
svg.chart { max-width: 100%; height: auto; background: #fff; border: 1px solid #d0d7de; }
svg.chart text { font: 11px system-ui, "DejaVu Sans", sans-serif; fill: #333; }
svg.chart .plot { fill: #fff; }
svg.chart .grid { stroke: #e6e6e6; }
svg.chart .axis { stroke: #555; }
svg.chart .axis-title { fill: #555; }
svg.chart polyline.series { fill: none; stroke-width: 2; stroke-linejoin: round; }
svg.chart .fault { fill: #d62728; fill-opacity: 0.10; stroke: #d62728; stroke-opacity: 0.45; }
svg.chart .fault.instant { fill-opacity: 0.6; }
svg.chart text.fault-label, svg.chart text.mark-label { paint-order: stroke; stroke: #fff; stroke-width: 3px; stroke-linejoin: round; }
svg.chart text.fault-label { fill: #a31515; font-weight: 600; }
svg.chart .mark { stroke: #666; stroke-dasharray: 4 3; }
svg.chart text.mark-label { fill: #555; font-style: italic; }
svg.chart text.empty { fill: #999; font-size: 14px; }
svg.chart circle.scrape { stroke: #fff; stroke-width: 0.5; }
footer { margin-top: 32px; color: #777; font-size: 12px; }
"#;

/// A chart of well-known series.
struct Group {
    id: &'static str,
    title: &'static str,
    /// Title of the y axis.
    axis: &'static str,
    members: &'static [(&'static str, &'static str, &'static str)],
    /// Exact per-second series (from the ledger and the store's apply times): drawn only when
    /// the run has them. The other groups come from the metrics poller, with a dot at every
    /// scrape.
    exact: bool,
    /// Bucketed values (rates, percentiles per second): drawn as steps over their bucket.
    steps: bool,
}

const GROUPS: [Group; 6] = [
    Group {
        id: "chart-exact-rates",
        title: "Deliveries per second (exact, 1 s): sent, acknowledged, rejected, applied",
        axis: "deliveries per second",
        members: &[
            ("sent_rate", "sent", "#1f77b4"),
            ("acked_rate", "acknowledged", "#17becf"),
            ("rejected_rate", "rejected", "#d62728"),
            ("applied_rate", "applied", "#2ca02c"),
        ],
        exact: true,
        steps: true,
    },
    Group {
        id: "chart-exact-latency",
        title: "Send-to-applied latency (exact, 1 s): p50 / p95 / p99 of the deliveries applied in each second",
        axis: "milliseconds",
        members: &[
            ("latency_p50_ms", "p50", "#17becf"),
            ("latency_p95_ms", "p95", "#8c564b"),
            ("latency_p99_ms", "p99", "#e377c2"),
        ],
        exact: true,
        steps: true,
    },
    Group {
        id: "chart-exact-unprocessed",
        title: "Not yet processed (exact, 1 s): deliveries sent (or acknowledged) and not yet applied",
        axis: "deliveries",
        members: &[
            ("unapplied", "sent, not yet applied", "#7f7f7f"),
            ("unprocessed", "acknowledged, not yet applied", "#ff7f0e"),
        ],
        exact: true,
        steps: false,
    },
    Group {
        id: "chart-rates",
        title: "Deliveries per second: received, processed, failed (metrics; dots are scrapes)",
        axis: "deliveries per second",
        members: &[
            ("received_rate", "received", "#1f77b4"),
            ("processed_rate", "processed", "#2ca02c"),
            ("failed_rate", "failed", "#d62728"),
        ],
        exact: false,
        steps: false,
    },
    Group {
        id: "chart-backlog",
        title: "Backlog (not yet processed: waiting + active + delayed retries + spooled), waiting, active (metrics; dots are scrapes)",
        axis: "deliveries",
        members: &[
            ("backlog", "backlog", "#1f77b4"),
            ("waiting", "waiting", "#ff7f0e"),
            ("active", "active", "#9467bd"),
        ],
        exact: false,
        steps: false,
    },
    Group {
        id: "chart-duration",
        title: "Job duration p50 / p95 (metrics; dots are scrapes)",
        axis: "milliseconds",
        members: &[("p50_ms", "p50", "#17becf"), ("p95_ms", "p95", "#8c564b")],
        exact: false,
        steps: false,
    },
];

/// The bucket width of the exact series.
const EXACT_BIN_MS: u64 = 1000;
/// Consecutive points of an exact (1 s) series further apart than this are not joined.
const EXACT_GAP_MS: u64 = 1500;

fn find<'a>(run: &'a RunReport, name: &str) -> Option<&'a Series> {
    run.series.iter().find(|s| s.name == name)
}

fn charts(run: &RunReport, o: &mut String) {
    let poll_gap_ms = (run.scenario.poll_interval_ms.saturating_mul(5) / 2).max(1);
    for g in &GROUPS {
        if g.exact && !g.members.iter().any(|m| find(run, m.0).is_some()) {
            continue;
        }
        let lines: Vec<Line<'_>> = g
            .members
            .iter()
            .map(|&(name, label, color)| Line {
                name,
                label,
                color,
                points: find(run, name).map_or(&[][..], |s| &s.points[..]),
                dots: !g.exact,
                step_ms: g.steps.then_some(EXACT_BIN_MS),
            })
            .collect();
        let svg = chart::render(&Chart {
            id: g.id,
            title: g.title,
            axis_title: g.axis,
            lines,
            x_max_ms: run.duration_ms,
            faults: &run.faults,
            marks: &run.marks,
            gap_ms: if g.exact { EXACT_GAP_MS } else { poll_gap_ms },
        });
        let _ = writeln!(
            o,
            "<figure><figcaption>{}</figcaption>\n{svg}</figure>",
            esc(g.title)
        );
    }
    // Any series outside the known groups gets a chart of its own.
    let known = |n: &str| GROUPS.iter().any(|g| g.members.iter().any(|m| m.0 == n));
    for (i, s) in run.series.iter().filter(|s| !known(&s.name)).enumerate() {
        let id = format!("chart-extra-{i}");
        let svg = chart::render(&Chart {
            id: &id,
            title: &s.name,
            axis_title: &s.unit,
            lines: vec![Line {
                name: &s.name,
                label: &s.name,
                color: "#444",
                points: &s.points,
                dots: true,
                step_ms: None,
            }],
            x_max_ms: run.duration_ms,
            faults: &run.faults,
            marks: &run.marks,
            gap_ms: poll_gap_ms,
        });
        let _ = writeln!(
            o,
            "<figure><figcaption>{}</figcaption>\n{svg}</figure>",
            esc(&s.name)
        );
    }
}

fn opt(v: Option<&str>) -> String {
    esc(v.unwrap_or("unknown"))
}

/// The whole page: the head, then one section after another.
fn render(run: &RunReport) -> String {
    let mut o = String::new();
    // `write!` into a String cannot fail.
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{} {} · gitspy-chaos</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
        run.verdict.label(),
        esc(&run.scenario.name)
    );
    summary(run, &mut o);
    checks(run, &mut o);
    ledger(run, &mut o);
    charts_section(run, &mut o);
    faults(run, &mut o);
    steps(run, &mut o);
    probe(run, &mut o);
    replays(run, &mut o);
    processes(run, &mut o);
    scenario_and_footer(run, &mut o);
    o
}

/// The title, the verdict and the run's facts (what ran, against what, the ledger totals).
fn summary(run: &RunReport, o: &mut String) {
    let verdict_class = match run.verdict {
        Verdict::Passed => "passed",
        Verdict::Failed => "failed",
        Verdict::Error => "error",
        Verdict::Inconclusive => "inconclusive",
    };
    let _ = writeln!(
        o,
        "<header>\n<h1>{}</h1>\n<p><span class=\"verdict {verdict_class}\" id=\"verdict\">{}</span> {}/{} checks passed</p>\n<p class=\"description\">{}</p>\n</header>",
        esc(&run.scenario.name),
        run.verdict.label(),
        run.checks_passed(),
        run.checks.len(),
        esc(&run.scenario.description)
    );
    let t = &run.target;
    let env: Vec<String> = t
        .env
        .iter()
        .map(|(k, v)| format!("<code>{}={}</code>", esc(k), esc(v)))
        .collect();
    let rows: [(&str, String); 11] = [
        (
            "scenario file",
            format!("<code>{}</code>", esc(&run.scenario.file)),
        ),
        ("seed", run.scenario.seed.to_string()),
        (
            "time scale",
            format!(
                "{} (poll interval {})",
                fmt_num(run.scenario.time_scale),
                fmt_ms(run.scenario.poll_interval_ms)
            ),
        ),
        ("started", esc(&run.started_at)),
        ("finished", esc(&run.finished_at)),
        ("duration", fmt_ms(run.duration_ms)),
        (
            "harness",
            format!("{} {}", esc(&run.tool.name), esc(&run.tool.version)),
        ),
        (
            "target",
            format!(
                "gitspy {} ({}{}, {} worker{})",
                opt(t.gitspy_version.as_deref()),
                match t.kind {
                    TargetKind::Managed => "managed",
                    TargetKind::Attached => "attached",
                },
                t.store
                    .as_deref()
                    .map(|st| format!(", store {}", esc(st)))
                    .unwrap_or_default(),
                t.workers,
                if t.workers == 1 { "" } else { "s" }
            ),
        ),
        (
            "gitspy env",
            if env.is_empty() {
                "—".to_string()
            } else {
                env.join(" ")
            },
        ),
        (
            "redis",
            format!(
                "{} backend, version {}",
                esc(&t.redis_backend),
                opt(t.redis_version.as_deref())
            ),
        ),
        ("ledger", run.ledger.counts_line(" · ")),
    ];
    o.push_str("<section id=\"summary\">\n<dl class=\"summary\">\n");
    for (k, v) in rows {
        let _ = writeln!(o, "<dt>{k}</dt><dd>{v}</dd>");
    }
    o.push_str("</dl>\n");
    if let Some(err) = &run.error {
        let _ = writeln!(
            o,
            "<p class=\"error-box\" id=\"error\"><strong>Could not run:</strong> {}</p>",
            esc(err)
        );
    }
    o.push_str("</section>\n");
}

/// One row per check: result, measured value, threshold, note.
fn checks(run: &RunReport, o: &mut String) {
    o.push_str("<section>\n<h2>Checks</h2>\n");
    for c in run.checks.iter().filter(|c| !c.passed && c.is_efficacy()) {
        let _ = writeln!(
            o,
            "<p class=\"inconclusive\"><strong>Inconclusive</strong> (not data loss): {}</p>",
            esc(&c.note)
        );
    }
    if run.checks.is_empty() {
        o.push_str("<p>No check was evaluated.</p>\n");
    }
    o.push_str("<table id=\"checks\">\n<thead><tr><th>result</th><th>check</th><th>measured</th><th>threshold</th><th>note</th></tr></thead>\n<tbody>\n");
    for c in &run.checks {
        let _ = writeln!(
            o,
            "<tr class=\"{}\"><td class=\"result\">{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
            match c.status_label() {
                "pass" => "pass",
                "INCONCLUSIVE" => "inconclusive",
                _ => "fail",
            },
            c.status_label(),
            esc(&c.name),
            esc(&c.measured_text()),
            esc(&c.threshold_text()),
            esc(&c.note)
        );
    }
    o.push_str("</tbody>\n</table>\n</section>\n");
}

/// One row per delivery class with example ids; lost, duplicated and unexpected stand out.
fn ledger(run: &RunReport, o: &mut String) {
    o.push_str("<section>\n<h2>Ledger</h2>\n<table id=\"ledger\">\n<thead><tr><th>class</th><th>deliveries</th><th>example ids</th></tr></thead>\n<tbody>\n");
    for (name, class) in ordered_classes(run) {
        let bad = matches!(name, "lost" | "duplicated" | "unexpected") && class.count > 0;
        let examples: Vec<String> = class
            .examples
            .iter()
            .map(|e| format!("<code>{}</code>", esc(e)))
            .collect();
        let _ = writeln!(
            o,
            "<tr{}><td>{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
            if bad { " class=\"bad\"" } else { "" },
            esc(name),
            class.count,
            examples.join(" ")
        );
    }
    o.push_str("</tbody>\n</table>\n</section>\n");
}

/// The charts over time, fault windows shaded.
fn charts_section(run: &RunReport, o: &mut String) {
    o.push_str("<section id=\"charts\">\n<h2>Over time</h2>\n<p>Shaded bands are fault windows; dashed lines are marks. The exact charts (1 s buckets) come from the ledger's send times and the store's apply times; the metrics charts come from the poller, with a dot at every scrape. Gaps are missing samples (queue gauges are absent while Redis is down; no delivery applied in that second).</p>\n");
    charts(run, o);
    o.push_str("</section>\n");
}

/// The fault timeline: what was broken, when, for how long.
fn faults(run: &RunReport, o: &mut String) {
    o.push_str("<section>\n<h2>Fault timeline</h2>\n");
    if run.faults.is_empty() {
        o.push_str("<p>No fault was injected.</p>\n");
    } else {
        o.push_str("<table id=\"faults\">\n<thead><tr><th>fault</th><th>target</th><th>requested</th><th>applied</th><th>healed</th><th>lasted</th><th>outcome</th><th>hit</th><th>note</th></tr></thead>\n<tbody>\n");
        for (i, (fw, line)) in run.faults.iter().zip(run.fault_lines()).enumerate() {
            let (to, lasted) = match fw.end_ms {
                Some(e) if e == fw.start_ms => ("instant".to_string(), "—".to_string()),
                Some(e) => (fmt_ms(e), fmt_ms(e.saturating_sub(fw.start_ms))),
                None => ("not undone".to_string(), "—".to_string()),
            };
            let ineffective = fw.crash && !fw.effective();
            let _ = writeln!(
                o,
                "<tr id=\"fault-{i}\"{}><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                if ineffective { " class=\"bad\"" } else { "" },
                esc(&fw.kind),
                esc(&fw.target),
                fw.requested_ms.map(fmt_ms).unwrap_or_default(),
                fmt_ms(fw.start_ms),
                to,
                lasted,
                fw.outcome.as_str(),
                esc(&line),
                esc(&fw.note)
            );
        }
        o.push_str("</tbody>\n</table>\n");
    }
    o.push_str("</section>\n");
}

/// The steps as they ran, and the marks.
fn steps(run: &RunReport, o: &mut String) {
    o.push_str("<section>\n<h2>Steps</h2>\n<table id=\"steps\">\n<thead><tr><th>#</th><th>step</th><th>description</th><th>from</th><th>to</th><th>ok</th><th>note</th></tr></thead>\n<tbody>\n");
    for s in &run.steps {
        let _ = writeln!(
            o,
            "<tr{}><td class=\"num\">{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td><td>{}</td></tr>",
            if s.ok { "" } else { " class=\"bad\"" },
            s.index,
            esc(&s.kind),
            esc(&s.description),
            fmt_ms(s.start_ms),
            s.end_ms.map_or_else(|| "—".to_string(), fmt_ms),
            if s.ok { "yes" } else { "no" },
            esc(&match &s.send {
                Some(f) => format!("{} — {}", s.note, f.summary()),
                None => s.note.clone(),
            })
        );
    }
    o.push_str("</tbody>\n</table>\n");
    if !run.marks.is_empty() {
        let marks: Vec<String> = run
            .marks
            .iter()
            .map(|m| format!("<code>{}</code> at {}", esc(&m.name), fmt_ms(m.at_ms)))
            .collect();
        let _ = writeln!(o, "<p>Marks: {}</p>", marks.join(", "));
    }
    o.push_str("</section>\n");
}

/// The Redis probe taken at the end.
fn probe(run: &RunReport, o: &mut String) {
    o.push_str("<section>\n<h2>Redis at the end</h2>\n");
    match &run.probe {
        None => o.push_str("<p>Redis could not be probed at the end of the run.</p>\n"),
        Some(p) => {
            o.push_str("<table id=\"probe\">\n<tbody>\n");
            let rows = [
                ("stream length", p.stream_len),
                ("pending", p.pending),
                ("dead-lettered", p.dead),
                ("locks", p.locks),
                ("stuck locks", p.stuck_locks),
            ];
            for (k, v) in rows {
                let _ = writeln!(o, "<tr><th>{k}</th><td class=\"num\">{v}</td></tr>");
            }
            for (k, v) in &p.states {
                let _ = writeln!(
                    o,
                    "<tr><th>state <code>{}</code></th><td class=\"num\">{v}</td></tr>",
                    esc(k)
                );
            }
            o.push_str("</tbody>\n</table>\n");
        }
    }
    o.push_str("</section>\n");
}

/// The replays and the board digests they produced.
fn replays(run: &RunReport, o: &mut String) {
    if !run.replays.is_empty() {
        o.push_str("<section>\n<h2>Replays</h2>\n<table id=\"replays\">\n<thead><tr><th>replay</th><th>from</th><th>to</th><th>dry run</th><th>board digests</th></tr></thead>\n<tbody>\n");
        for r in &run.replays {
            let digests: Vec<String> = r
                .digests
                .iter()
                .map(|(repo, d)| format!("{}: <code>{}</code>", esc(repo), esc(d)))
                .collect();
            let _ = writeln!(
                o,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&r.name),
                esc(&r.from),
                esc(&r.to),
                if r.dry_run { "yes" } else { "no" },
                digests.join("<br>")
            );
        }
        o.push_str("</tbody>\n</table>\n</section>\n");
    }
}

/// Each managed process with its log tail.
fn processes(run: &RunReport, o: &mut String) {
    if !run.processes.is_empty() {
        o.push_str("<section>\n<h2>Processes</h2>\n");
        logs_table(run, o);
        for p in &run.processes {
            let _ = writeln!(
                o,
                "<details class=\"process\"><summary><strong>{}</strong> pid {} · {} restart{}</summary>\n<pre>{}</pre>\n</details>",
                esc(&p.role),
                p.pid.map_or_else(|| "unknown".to_string(), |v| v.to_string()),
                p.restarts,
                if p.restarts == 1 { "" } else { "s" },
                esc(&p.log_tail)
            );
        }
        o.push_str("</section>\n");
    }
}

/// Errors and warnings per process, overall and per fault window, with links to the full logs
/// (kept in the run directory) and to the faults.
fn logs_table(run: &RunReport, o: &mut String) {
    if run.processes.iter().all(|p| p.log_file.is_none()) {
        return;
    }
    o.push_str("<p>Full logs are kept next to this report. Errors and warnings are the processes' own levels; a fault's window runs from its start to 5 s after it healed.</p>\n");
    o.push_str("<table id=\"logs\">\n<thead><tr><th>process</th><th>full log</th><th>lines</th><th>errors</th><th>warnings</th><th>outside faults (errors / warnings)</th><th>in fault windows (errors / warnings)</th></tr></thead>\n<tbody>\n");
    for p in &run.processes {
        let link = p.log_file.as_deref().map_or_else(String::new, |f| {
            format!("<a class=\"log\" href=\"{}\">{}</a>", esc(f), esc(f))
        });
        let Some(s) = &p.log_summary else {
            let _ = writeln!(
                o,
                "<tr><td>{}</td><td>{link}</td><td colspan=\"5\">not read</td></tr>",
                esc(&p.role)
            );
            continue;
        };
        let per_fault: Vec<String> = s
            .per_fault
            .iter()
            .map(|c| {
                let name = run
                    .faults
                    .get(c.fault as usize)
                    .map_or_else(String::new, |f| format!("{} {}", f.kind, f.target));
                format!(
                    "<a href=\"#fault-{}\">{}</a>: {} / {}",
                    c.fault,
                    esc(&name),
                    c.errors,
                    c.warnings
                )
            })
            .collect();
        let bad = s.outside_errors > 0;
        let _ = writeln!(
            o,
            "<tr{}><td>{}</td><td>{link}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{} / {}</td><td>{}</td></tr>",
            if bad { " class=\"bad\"" } else { "" },
            esc(&p.role),
            s.lines,
            s.errors,
            s.warnings,
            s.outside_errors,
            s.outside_warnings,
            if per_fault.is_empty() { "—".to_string() } else { per_fault.join("<br>") }
        );
        if !s.examples.is_empty() {
            let _ = writeln!(
                o,
                "<tr class=\"log-examples\"><td></td><td colspan=\"6\"><pre>{}</pre></td></tr>",
                esc(&s.examples.join("\n"))
            );
        }
    }
    o.push_str("</tbody>\n</table>\n");
}

/// The scenario as run and the footer.
fn scenario_and_footer(run: &RunReport, o: &mut String) {
    let _ = writeln!(
        o,
        "<section>\n<h2>Scenario</h2>\n<pre id=\"scenario-yaml\">{}</pre>\n</section>",
        esc(&run.scenario.yaml)
    );
    let _ = writeln!(
        o,
        "<footer>Rendered by {} {} from run.json (schema version {}).</footer>\n</body>\n</html>",
        esc(&run.tool.name),
        esc(&run.tool.version),
        run.schema_version
    );
}
