//! `junit.xml`: one `<testsuite>` for the scenario, one `<testcase>` per check; a failed check
//! carries `measured … , threshold …` in its `<failure message>`. A run that could not
//! complete adds a `run` testcase with an `<error>`, so CI shows why nothing was checked.

use std::fmt::Write as _;

use super::escape::{xml_attr as a, xml_text};
use super::{fmt_num, Exporter, RunReport};

/// Writes `junit.xml`.
pub struct JunitExporter;

impl Exporter for JunitExporter {
    fn file_name(&self) -> &'static str {
        "junit.xml"
    }

    fn render(&self, run: &RunReport) -> anyhow::Result<Vec<u8>> {
        Ok(render(run).into_bytes())
    }
}

/// The `<failure message>` of a failed check.
pub fn failure_message(c: &super::CheckRecord) -> String {
    format!(
        "measured {}, threshold {}",
        c.measured_text(),
        c.threshold_text()
    )
}

fn render(run: &RunReport) -> String {
    let failures = run.checks.iter().filter(|c| !c.passed).count();
    let errors = usize::from(run.error.is_some());
    let tests = run.checks.len() + errors;
    let time = fmt_num(run.duration_ms as f64 / 1000.0);
    let suite = a(&run.scenario.name);
    let classname = a(&format!("gitspy-chaos.{}", run.scenario.name));

    let mut o = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    // `write!` into a String cannot fail.
    let _ = writeln!(
        o,
        "<testsuites name=\"gitspy-chaos\" tests=\"{tests}\" failures=\"{failures}\" errors=\"{errors}\" time=\"{time}\">"
    );
    let _ = writeln!(
        o,
        "  <testsuite name=\"{suite}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"{errors}\" skipped=\"0\" time=\"{time}\" timestamp=\"{}\">",
        a(&run.started_at)
    );
    o.push_str("    <properties>\n");
    let t = &run.target;
    let props: [(&str, String); 9] = [
        ("verdict", run.verdict.label().to_string()),
        ("scenario_file", run.scenario.file.clone()),
        ("seed", run.scenario.seed.to_string()),
        ("time_scale", fmt_num(run.scenario.time_scale)),
        ("gitspy_chaos_version", run.tool.version.clone()),
        (
            "gitspy_version",
            t.gitspy_version.clone().unwrap_or_else(|| "unknown".into()),
        ),
        ("redis_backend", t.redis_backend.clone()),
        (
            "redis_version",
            t.redis_version.clone().unwrap_or_else(|| "unknown".into()),
        ),
        ("workers", t.workers.to_string()),
    ];
    for (k, v) in props {
        let _ = writeln!(o, "      <property name=\"{k}\" value=\"{}\"/>", a(&v));
    }
    o.push_str("    </properties>\n");

    for c in &run.checks {
        let name = a(&c.name);
        if c.passed {
            let _ = writeln!(
                o,
                "    <testcase name=\"{name}\" classname=\"{classname}\" time=\"0\"/>"
            );
        } else {
            let mut body = format!(
                "measured: {}\nthreshold: {}",
                c.measured_text(),
                c.threshold_text()
            );
            if !c.note.is_empty() {
                body.push('\n');
                body.push_str(&c.note);
            }
            // An ineffective fault is not data loss: its own failure type and message.
            let (kind, message) = if c.is_efficacy() {
                let note = if c.note.starts_with("inconclusive") {
                    c.note.clone()
                } else {
                    format!("inconclusive: {}", c.note)
                };
                ("inconclusive", note)
            } else {
                ("threshold", failure_message(c))
            };
            let _ = writeln!(
                o,
                "    <testcase name=\"{name}\" classname=\"{classname}\" time=\"0\">\n      <failure message=\"{}\" type=\"{kind}\">{}</failure>\n    </testcase>",
                a(&message),
                xml_text(&body)
            );
        }
    }
    if let Some(err) = &run.error {
        let _ = writeln!(
            o,
            "    <testcase name=\"run\" classname=\"{classname}\" time=\"{time}\">\n      <error message=\"{}\" type=\"could-not-run\">{}</error>\n    </testcase>",
            a(err),
            xml_text(err)
        );
    }

    let l = &run.ledger;
    let mut out = format!("{}\n", l.counts_line(", "));
    for (name, class) in super::ordered_classes(run) {
        let _ = writeln!(out, "{name}: {} {}", class.count, class.examples.join(" "));
    }
    for line in run.fault_lines() {
        let _ = writeln!(out, "fault: {line}");
    }
    let _ = writeln!(o, "    <system-out>{}</system-out>", xml_text(&out));
    o.push_str("  </testsuite>\n</testsuites>\n");
    o
}
