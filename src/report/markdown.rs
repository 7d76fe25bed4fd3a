//! `report.md`: a one-line verdict with counts, then the check table (measured vs threshold),
//! the ledger table and the fault timeline. Sized and shaped for a GitHub PR comment or
//! `$GITHUB_STEP_SUMMARY`: plain GFM tables, no raw HTML, every text escaped.

use std::fmt::Write as _;

use super::escape::md;
use super::{fmt_ms, ordered_classes, Exporter, RunReport, Verdict};

/// Example ids shown per ledger class (the HTML report shows them all).
const MD_EXAMPLES: usize = 5;

/// Writes `report.md`.
pub struct MarkdownExporter;

impl Exporter for MarkdownExporter {
    fn file_name(&self) -> &'static str {
        "report.md"
    }

    fn render(&self, run: &RunReport) -> anyhow::Result<Vec<u8>> {
        Ok(render(run).into_bytes())
    }
}

/// The first line of the report: verdict, check score and the ledger counts.
pub fn headline(run: &RunReport) -> String {
    let icon = match run.verdict {
        Verdict::Passed => "✅",
        Verdict::Failed => "❌",
        Verdict::Error => "⚠️",
        Verdict::Inconclusive => "❔",
    };
    let l = &run.ledger;
    format!(
        "{icon} **{}** {}: {}/{} checks passed · {} · lost {} · duplicated {} · unexpected {}",
        run.verdict.label(),
        md(&run.scenario.name),
        run.checks_passed(),
        run.checks.len(),
        l.counts_line(" · "),
        run.class_count("lost"),
        run.class_count("duplicated"),
        run.class_count("unexpected"),
    )
}

fn render(run: &RunReport) -> String {
    let mut o = String::new();
    // `write!` into a String cannot fail; the results are ignored on purpose below.
    let _ = writeln!(o, "{}", headline(run));
    o.push('\n');
    let t = &run.target;
    let _ = writeln!(
        o,
        "{} · seed {} · time scale {} · {} · started {} · {} {} against gitspy {} ({}, redis {} {}{}, {} worker{})",
        md(&run.scenario.file),
        run.scenario.seed,
        super::fmt_num(run.scenario.time_scale),
        fmt_ms(run.duration_ms),
        md(&run.started_at),
        md(&run.tool.name),
        md(&run.tool.version),
        md(t.gitspy_version.as_deref().unwrap_or("unknown")),
        match t.kind {
            super::TargetKind::Managed => "managed",
            super::TargetKind::Attached => "attached",
        },
        md(&t.redis_backend),
        md(t.redis_version.as_deref().unwrap_or("unknown")),
        t.store
            .as_deref()
            .map(|st| format!(", store {}", md(st)))
            .unwrap_or_default(),
        t.workers,
        if t.workers == 1 { "" } else { "s" },
    );
    if !t.env.is_empty() {
        let env: Vec<String> = t.env.iter().map(|(k, v)| md(&format!("{k}={v}"))).collect();
        o.push('\n');
        let _ = writeln!(o, "GitSpy settings: {}", env.join(" "));
    }
    if let Some(err) = &run.error {
        o.push('\n');
        let _ = writeln!(o, "> **Could not run:** {}", md(err));
    }

    if run.verdict == Verdict::Inconclusive {
        o.push('\n');
        for c in run.checks.iter().filter(|c| !c.passed && c.is_efficacy()) {
            let _ = writeln!(o, "> **Inconclusive** (not data loss): {}", md(&c.note));
        }
    }

    o.push_str("\n### Checks\n\n");
    if run.checks.is_empty() {
        o.push_str("No check was evaluated.\n");
    } else {
        o.push_str("| | Check | Measured | Threshold | Note |\n|:-:|---|--:|--:|---|\n");
        for c in &run.checks {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} |",
                match c.status_label() {
                    "pass" => "✅",
                    "INCONCLUSIVE" => "❔",
                    _ => "❌",
                },
                md(&c.name),
                md(&c.measured_text()),
                md(&c.threshold_text()),
                md(&c.note),
            );
        }
    }

    o.push_str("\n### Ledger\n\n");
    o.push_str("| Class | Deliveries | Examples |\n|---|--:|---|\n");
    for (name, class) in ordered_classes(run) {
        let mut examples: Vec<String> = class
            .examples
            .iter()
            .take(MD_EXAMPLES)
            .map(|e| md(e))
            .collect();
        if class.examples.len() > MD_EXAMPLES {
            examples.push(format!("… {} more", class.examples.len() - MD_EXAMPLES));
        }
        let _ = writeln!(
            o,
            "| {} | {} | {} |",
            md(name),
            class.count,
            examples.join(", ")
        );
    }

    if !run.faults.is_empty() {
        o.push_str(
            "\n### Faults\n\n| Fault | Target | Requested | Applied | Healed | Outcome | Hit | Note |\n|---|---|--:|--:|--:|---|---|---|\n",
        );
        for (f, line) in run.faults.iter().zip(run.fault_lines()) {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                md(&f.kind),
                md(&f.target),
                f.requested_ms.map(fmt_ms).unwrap_or_default(),
                fmt_ms(f.start_ms),
                match f.end_ms {
                    Some(e) if e == f.start_ms => "instant".to_string(),
                    Some(e) => fmt_ms(e),
                    None => "not undone".to_string(),
                },
                f.outcome.as_str(),
                md(&line),
                md(&f.note),
            );
        }
    }

    if let Some(p) = &run.probe {
        let states: Vec<String> = p
            .states
            .iter()
            .map(|(k, v)| format!("{} {v}", md(k)))
            .collect();
        let _ = writeln!(
            o,
            "\nRedis at the end: stream {} · pending {} · dead {} · locks {} (stuck {}) · states: {}",
            p.stream_len,
            p.pending,
            p.dead,
            p.locks,
            p.stuck_locks,
            if states.is_empty() {
                "none".to_string()
            } else {
                states.join(", ")
            }
        );
    }

    let logged: Vec<_> = run
        .processes
        .iter()
        .filter_map(|p| p.log_summary.as_ref().map(|s| (p, s)))
        .collect();
    if !logged.is_empty() {
        o.push_str(
            "\n### Logs\n\n| Process | Errors | Warnings | Outside faults (errors / warnings) | Full log |\n|---|--:|--:|--:|---|\n",
        );
        for (p, s) in logged {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} / {} | {} |",
                md(&p.role),
                s.errors,
                s.warnings,
                s.outside_errors,
                s.outside_warnings,
                p.log_file.as_deref().map(md).unwrap_or_default()
            );
        }
    }

    o.push_str("\nCharts, steps, process logs and the scenario: `report.html` beside this file.\n");
    o
}
