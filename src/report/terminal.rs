//! The terminal summary printed at the end of a run and by `gitspy-chaos report`: a verdict
//! line and comfy-table tables of checks and ledger classes. No colour, so `NO_COLOR` and
//! pipes need no special case.

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{CellAlignment, ContentArrangement, Table};

use super::escape::terminal as esc;
use super::{ordered_classes, RunReport};

/// Renders the summary (ends with a newline).
pub fn render_terminal(run: &RunReport) -> String {
    let l = &run.ledger;
    let mut out = format!(
        "{} {}: {}/{} checks passed; {}\n",
        run.verdict.label(),
        esc(&run.scenario.name),
        run.checks_passed(),
        run.checks.len(),
        l.counts_line(", "),
    );
    if let Some(err) = &run.error {
        out.push_str(&format!("error: {}\n", esc(err)));
    }
    if !run.checks.is_empty() {
        let mut t = Table::new();
        // Dynamic: on a terminal, long notes wrap to its width; elsewhere nothing is cut.
        t.load_preset(UTF8_FULL_CONDENSED)
            .set_content_arrangement(ContentArrangement::Dynamic)
            .set_header(vec!["result", "check", "measured", "threshold", "note"]);
        for c in &run.checks {
            t.add_row(vec![
                c.status_label().to_string(),
                esc(&c.name),
                c.measured_text(),
                c.threshold_text(),
                esc(&c.note),
            ]);
        }
        for col in [2, 3] {
            if let Some(column) = t.column_mut(col) {
                column.set_cell_alignment(CellAlignment::Right);
            }
        }
        out.push_str(&t.to_string());
        out.push('\n');
    }
    for line in run.fault_lines() {
        out.push_str(&format!("fault: {}\n", esc(&line)));
    }
    for c in run.checks.iter().filter(|c| !c.passed && c.is_efficacy()) {
        out.push_str(&format!("INCONCLUSIVE (not data loss): {}\n", esc(&c.note)));
    }
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED)
        .set_header(vec!["class", "deliveries", "examples"]);
    for (name, class) in ordered_classes(run) {
        let mut examples: Vec<String> = class.examples.iter().take(3).map(|e| esc(e)).collect();
        if class.examples.len() > 3 {
            examples.push("…".to_string());
        }
        t.add_row(vec![esc(name), class.count.to_string(), examples.join(" ")]);
    }
    if let Some(column) = t.column_mut(1) {
        column.set_cell_alignment(CellAlignment::Right);
    }
    out.push_str(&t.to_string());
    out.push('\n');
    out
}
