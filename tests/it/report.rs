//! Report exporters end to end: the committed JSON schema against the sample run and every
//! exporter's output, byte-identical re-rendering through `report_cmd`, an offline
//! self-contained HTML page that a real headless Chromium renders, escaping of hostile text
//! from the system under test in every format, JUnit parsed back, and the Markdown headline.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gitspy_chaos::report::{
    self, CheckOp, CheckRecord, FaultHit, FaultOutcome, FaultWindow, Format, ReplayRecord,
    RunReport, Verdict,
};

const HOSTILE: &str = "<script>alert(\"pwned\")</script>";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn sample_path() -> PathBuf {
    root().join("tests/fixtures/run-sample.json")
}

fn sample() -> RunReport {
    report::read_run(&sample_path()).expect("the sample fixture reads as a RunReport")
}

fn schema_validator() -> jsonschema::Validator {
    let text = std::fs::read_to_string(root().join("schema/run.schema.json"))
        .expect("schema/run.schema.json is readable");
    let schema: serde_json::Value = serde_json::from_str(&text).expect("schema is JSON");
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .build(&schema)
        .expect("schema/run.schema.json is a valid draft 2020-12 schema")
}

/// Every schema error of `instance`, as `path: message` lines.
fn schema_errors(v: &jsonschema::Validator, instance: &serde_json::Value) -> Vec<String> {
    v.iter_errors(instance)
        .map(|e| format!("{}: {}", e.instance_path(), e))
        .collect()
}

fn assert_valid(v: &jsonschema::Validator, bytes: &[u8], what: &str) {
    let instance: serde_json::Value = serde_json::from_slice(bytes).expect("run.json is JSON");
    let errors = schema_errors(v, &instance);
    assert!(
        errors.is_empty(),
        "{what} does not match the schema:\n{}",
        errors.join("\n")
    );
}

/// Variants of the sample covering every optional shape: an aborted run, a run with
/// replays, instantaneous and never-undone faults, no probe, unmeasured checks, hostile text.
fn variants() -> Vec<(&'static str, RunReport)> {
    let base = sample();

    let mut aborted = base.clone();
    aborted.verdict = Verdict::Error;
    aborted.error =
        Some("redis-server not found on PATH\nhint: apt-get install redis-server".into());
    aborted.checks.clear();
    aborted.series.clear();
    aborted.probe = None;
    aborted.target.gitspy_version = None;
    aborted.target.redis_version = None;
    aborted.processes[0].pid = None;
    aborted.steps[0].end_ms = None;

    let mut rich = base.clone();
    rich.faults.push(FaultWindow {
        kind: "worker kill".into(),
        target: "worker-1".into(),
        requested_ms: Some(18_000),
        start_ms: 20_000,
        end_ms: Some(20_000),
        outcome: FaultOutcome::Applied,
        crash: true,
        trigger: Some("holding >= 3".into()),
        hit: Some(FaultHit {
            pending: (1..=7).map(|i| format!("chaos-3f9c2a-{i:04}")).collect(),
            locks: 7,
            recovered: Some(7),
            ..FaultHit::default()
        }),
        note: "instantaneous".into(),
    });
    rich.faults.push(FaultWindow {
        kind: "worker freeze".into(),
        target: "worker-0".into(),
        requested_ms: Some(21_000),
        start_ms: 41_000,
        end_ms: Some(41_000),
        outcome: FaultOutcome::Missed,
        crash: true,
        trigger: Some("holding >= 50".into()),
        hit: None,
        note: String::new(),
    });
    rich.faults.push(FaultWindow {
        kind: "redis pause".into(),
        target: "gitspy-redis".into(),
        requested_ms: None,
        start_ms: 45_000,
        end_ms: None,
        outcome: FaultOutcome::Applied,
        crash: false,
        trigger: None,
        hit: None,
        note: "never undone".into(),
    });
    rich.replays.push(ReplayRecord {
        name: "first half".into(),
        from: "start".into(),
        to: "outage".into(),
        dry_run: false,
        digests: [(
            "octo-org/board".to_string(),
            format!("sha256:{}", "ab".repeat(32)),
        )]
        .into_iter()
        .collect(),
    });
    rich.checks.push(CheckRecord {
        name: "retries".into(),
        measured: None,
        op: CheckOp::Lt,
        threshold: 3.5,
        unit: String::new(),
        passed: false,
        note: "no samples".into(),
    });
    rich.series.push(report::Series {
        name: "spool_depth".into(),
        unit: "records".into(),
        points: vec![(0, 0.0), (2000, 4.0), (4000, 0.0)],
    });

    vec![
        ("sample", base),
        ("aborted", aborted),
        ("rich", rich),
        ("hostile", hostile()),
        ("inconclusive", inconclusive()),
    ]
}

/// The sample as a run whose only failed check is `faults_effective`: a kill that hit nothing.
fn inconclusive() -> RunReport {
    let mut run = sample();
    run.checks.retain(|c| c.passed);
    run.faults.push(FaultWindow {
        kind: "worker kill".into(),
        target: "worker-0".into(),
        requested_ms: Some(9_000),
        start_ms: 9_000,
        end_ms: None,
        outcome: FaultOutcome::Applied,
        crash: true,
        trigger: None,
        hit: Some(FaultHit::default()),
        note: "SIGKILL".into(),
    });
    run.checks.push(CheckRecord {
        name: "faults_effective".into(),
        measured: Some(0.0),
        op: CheckOp::Ge,
        threshold: 1.0,
        unit: "faults".into(),
        passed: false,
        note: "inconclusive: the kill hit no in-flight delivery, so this run proves nothing about crash safety".into(),
    });
    run.verdict = RunReport::verdict_of(&run.checks);
    run
}

#[test]
fn inconclusive_is_shown_apart_from_data_loss_in_every_format() {
    let run = inconclusive();
    assert_eq!(run.verdict, Verdict::Inconclusive);
    assert_eq!(run.verdict.exit_code(), 3);
    let why = "the kill hit no in-flight delivery, so this run proves nothing about crash safety";
    let md = render(&run, Format::Md);
    assert!(md.starts_with("❔ **INCONCLUSIVE** redis-down"), "{md}");
    assert!(
        md.contains(&format!(
            "> **Inconclusive** (not data loss): inconclusive: {why}"
        )),
        "{md}"
    );
    assert!(md.contains("| ❔ | faults\\_effective |"), "{md}");
    assert!(
        md.contains("kill \\#1 of worker-0 at 9s: hit 0 in-flight deliveries"),
        "{md}"
    );
    let html = render(&run, Format::Html);
    assert!(
        html.contains("class=\"verdict inconclusive\""),
        "html verdict"
    );
    assert!(html.contains("<tr class=\"inconclusive\"><td class=\"result\">INCONCLUSIVE</td>"));
    let junit = render(&run, Format::Junit);
    assert!(junit.contains("type=\"inconclusive\""), "{junit}");
    assert!(
        junit.contains(&format!("message=\"inconclusive: {why}\"")),
        "{junit}"
    );
    assert!(
        !junit.contains("type=\"threshold\""),
        "no data-loss failure: {junit}"
    );
    let term = report::render_terminal(&run);
    assert!(term.starts_with("INCONCLUSIVE redis-down"), "{term}");
    assert!(
        term.contains(&format!(
            "INCONCLUSIVE (not data loss): inconclusive: {why}"
        )),
        "{term}"
    );
    // A data-loss failure next to it wins: the run is FAILED.
    let mut both = run.clone();
    both.checks.push(
        sample()
            .checks
            .into_iter()
            .find(|c| !c.passed)
            .expect("a failed check"),
    );
    assert_eq!(RunReport::verdict_of(&both.checks), Verdict::Failed);
}

#[test]
fn fault_lines_number_each_fault_and_say_what_it_hit() {
    let (_, rich) = variants()
        .into_iter()
        .find(|(n, _)| *n == "rich")
        .expect("rich");
    let lines = rich.fault_lines();
    assert!(
        lines.contains(
            &"kill #1 of worker-1 at 20s: hit 7 in-flight deliveries (7 locked); all 7 recovered"
                .to_string()
        ),
        "{lines:?}"
    );
    assert!(
        lines.contains(
            &"freeze #1 of worker-0 at 41s: missed: holding >= 50 never held".to_string()
        ),
        "{lines:?}"
    );
    let md = render(&rich, Format::Md);
    assert!(
        md.contains("| applied | kill \\#1 of worker-1 at 20s: hit 7"),
        "{md}"
    );
}

/// The sample with `HOSTILE` in every text field the system under test (or a scenario
/// author) controls.
fn hostile() -> RunReport {
    let mut run = sample();
    run.scenario.name = format!("redis-down {HOSTILE}");
    run.scenario.description = HOSTILE.into();
    run.scenario.yaml.push_str(&format!("# {HOSTILE}\n"));
    run.error = Some(HOSTILE.into());
    run.faults[0].kind = format!("redis stop {HOSTILE}");
    run.faults[0].note = HOSTILE.into();
    run.marks[0].name = HOSTILE.into();
    run.steps[0].note = HOSTILE.into();
    run.checks[7].note = format!("payload title {HOSTILE} | *x* & y");
    run.checks[0].name = format!("lost {HOSTILE}");
    run.checks[7].unit = format!("ms {HOSTILE}");
    run.processes[2].log_tail = format!(
        "INFO applied delivery x issues #1 title=\"{HOSTILE}\" <img src=x onerror=alert(1)>\n"
    );
    if let Some(c) = run.ledger.classes.get_mut("ok") {
        c.examples.push(HOSTILE.into());
    }
    run.ledger.classes.insert(
        format!("weird {HOSTILE}"),
        report::LedgerClass {
            count: 1,
            examples: vec![HOSTILE.into()],
        },
    );
    run.series[0].unit = HOSTILE.into();
    run
}

fn render(run: &RunReport, format: Format) -> String {
    let bytes = format.exporter().render(run).expect("render succeeds");
    String::from_utf8(bytes).expect("reports are UTF-8")
}

#[test]
fn sample_fixture_and_every_exported_json_match_the_schema() {
    let v = schema_validator();
    let raw = std::fs::read(sample_path()).expect("fixture readable");
    assert_valid(&v, &raw, "tests/fixtures/run-sample.json");
    for (name, run) in variants() {
        let dir = tempfile::tempdir().expect("temp dir");
        let written = report::write_all(&run, dir.path(), &Format::ALL).expect("write_all");
        assert_eq!(written.len(), 4);
        let json = std::fs::read(dir.path().join("run.json")).expect("run.json written");
        assert_valid(&v, &json, name);
        // And it reads back into the same model.
        let back = report::read_run(&dir.path().join("run.json")).expect("reads back");
        assert_eq!(back, run, "{name} does not round-trip through run.json");
    }
}

#[test]
fn schema_rejects_malformed_runs() {
    let v = schema_validator();
    let good: serde_json::Value =
        serde_json::from_slice(&std::fs::read(sample_path()).expect("fixture")).expect("json");
    type Breaker = fn(&mut serde_json::Value);
    let cases: [(&str, Breaker); 6] = [
        ("missing checks", |j| {
            j.as_object_mut().map(|o| o.remove("checks"));
        }),
        ("unknown verdict", |j| j["verdict"] = "maybe".into()),
        ("extra field", |j| j["ledger"]["surprise"] = 1.into()),
        ("negative count", |j| j["ledger"]["sent"] = (-1).into()),
        ("point with three values", |j| {
            j["series"][0]["points"][0] = serde_json::json!([0, 1.0, 2.0]);
        }),
        ("bad timestamp", |j| j["started_at"] = "yesterday".into()),
    ];
    for (what, breaker) in cases {
        let mut bad = good.clone();
        breaker(&mut bad);
        assert!(
            !schema_errors(&v, &bad).is_empty(),
            "the schema accepted a run with {what}"
        );
    }
}

#[test]
fn report_cmd_rerenders_byte_identically() {
    let run = sample();
    let first = tempfile::tempdir().expect("temp dir");
    report::write_all(&run, first.path(), &Format::ALL).expect("write_all");
    let second = tempfile::tempdir().expect("temp dir");
    report::report_cmd(
        &first.path().join("run.json"),
        &Format::ALL,
        Some(second.path()),
    )
    .expect("report_cmd");
    for name in ["run.json", "report.md", "report.html", "junit.xml"] {
        let a = std::fs::read(first.path().join(name)).expect("first render");
        let b = std::fs::read(second.path().join(name)).expect("second render");
        assert!(!a.is_empty(), "{name} is empty");
        assert!(a == b, "{name} differs after re-rendering from run.json");
    }
    // Without --out the files land next to run.json, unchanged, and nothing else appears.
    report::report_cmd(
        &second.path().join("run.json"),
        &[Format::Md, Format::Html, Format::Junit],
        None,
    )
    .expect("report_cmd in place");
    let mut names: Vec<String> = std::fs::read_dir(second.path())
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["junit.xml", "report.html", "report.md", "run.json"]);
    for name in ["report.md", "report.html", "junit.xml"] {
        let a = std::fs::read(first.path().join(name)).expect("first render");
        let b = std::fs::read(second.path().join(name)).expect("in-place render");
        assert!(a == b, "{name} differs after an in-place re-render");
    }
}

#[test]
fn committed_example_is_current_with_its_run_json() {
    // reports/example/ comes from a real smoke run (refreshed by hand, see reports/README.md):
    // its run.json must still read and validate, and every format must be its exact rendering.
    let dir = root().join("reports/example");
    let run = report::read_run(&dir.join("run.json")).expect("reports/example/run.json reads");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("run.json")).expect("run.json"))
            .expect("json");
    let validator = schema_validator();
    let errors: Vec<String> = validator
        .iter_errors(&json)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    for format in Format::ALL {
        let exporter = format.exporter();
        let want = exporter.render(&run).expect("render");
        let have = std::fs::read(dir.join(exporter.file_name())).unwrap_or_default();
        assert!(
            want == have,
            "reports/example/{} is stale; regenerate with: gitspy-chaos report reports/example/run.json",
            exporter.file_name()
        );
    }
}

#[test]
fn read_run_refuses_another_schema_version() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(sample_path()).expect("fixture")).expect("json");
    json["schema_version"] = 2.into();
    let path = dir.path().join("run.json");
    std::fs::write(&path, serde_json::to_vec(&json).expect("json")).expect("write");
    let err = format!(
        "{:#}",
        report::read_run(&path).expect_err("version 2 refused")
    );
    assert!(err.contains("schema_version 2"), "{err}");
    assert!(err.contains("reads 1"), "{err}");
}

#[test]
fn html_is_self_contained() {
    for (name, run) in variants() {
        let html = render(&run, Format::Html);
        let lower = html.to_ascii_lowercase();
        for needle in [
            "src=\"http://",
            "src=\"https://",
            "href=\"http://",
            "href=\"https://",
            "src='http",
            "href='http",
            "url(",
            "@import",
            "<script",
            "<link",
            "<img",
            "<iframe",
        ] {
            assert!(
                !lower.contains(needle),
                "{name}: report.html contains {needle:?}, it must open offline"
            );
        }
        assert!(html.starts_with("<!DOCTYPE html>"), "{name}");
        assert!(html.ends_with("</html>\n"), "{name}");
    }
}

#[test]
fn hostile_text_is_escaped_in_every_format() {
    let run = hostile();

    let html = render(&run, Format::Html);
    assert!(!html.contains("<script"), "raw <script> in report.html");
    assert!(!html.contains("<img"), "raw <img> in report.html");
    assert!(html.contains("&lt;script&gt;alert(&quot;pwned&quot;)&lt;/script&gt;"));

    let md = render(&run, Format::Md);
    assert!(!md.contains("<script"), "raw <script> in report.md");
    assert!(!md.contains("</script"), "raw </script> in report.md");
    assert!(md.contains("&lt;script&gt;"), "{md}");
    // A pipe in a note must not open a new table cell.
    let note_row = md
        .lines()
        .find(|l| l.contains("payload title"))
        .expect("the hostile note is in the check table");
    assert_eq!(note_row.matches(" | ").count(), 4, "{note_row}");

    let xml = render(&run, Format::Junit);
    assert!(!xml.contains("<script"), "raw <script> in junit.xml");
    let doc = roxmltree::Document::parse(&xml).expect("junit.xml with hostile text parses");
    assert!(doc.descendants().all(|n| n.tag_name().name() != "script"));
    let suite = doc
        .descendants()
        .find(|n| n.has_tag_name("testsuite"))
        .expect("a testsuite");
    assert_eq!(suite.attribute("name"), Some(run.scenario.name.as_str()));
    let error = doc
        .descendants()
        .find(|n| n.has_tag_name("error"))
        .expect("an error element for the aborted run");
    assert_eq!(error.attribute("message"), Some(HOSTILE));
    let failure = doc
        .descendants()
        .find(|n| n.has_tag_name("failure"))
        .expect("the failed check");
    assert_eq!(
        failure.attribute("message"),
        Some(format!("measured 640 ms {HOSTILE}, threshold ≤ 500 ms {HOSTILE}").as_str())
    );
    let terminal = report::render_terminal(&run);
    assert!(
        terminal.contains("lost <script>"),
        "terminal shows text as is"
    );
}

#[test]
fn control_characters_cannot_break_junit_or_the_terminal() {
    let mut run = sample();
    run.checks[7].note = "bell\u{7} nul\u{0} esc\u{1b}[31mred".into();
    run.processes[1].log_tail = "a\u{0}b\u{1b}[2J".into();
    let xml = render(&run, Format::Junit);
    roxmltree::Document::parse(&xml).expect("junit.xml with control characters parses");
    let term = report::render_terminal(&run);
    assert!(
        !term.contains('\u{1b}'),
        "escape sequence reached the terminal"
    );
}

#[test]
fn junit_parses_back_with_one_testcase_per_check() {
    let run = sample();
    let xml = render(&run, Format::Junit);
    let doc = roxmltree::Document::parse(&xml).expect("junit.xml parses");
    let suites: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name("testsuite"))
        .collect();
    assert_eq!(suites.len(), 1, "one testsuite per scenario");
    let suite = suites[0];
    assert_eq!(suite.attribute("name"), Some("redis-down"));
    assert_eq!(suite.attribute("tests"), Some("8"));
    assert_eq!(suite.attribute("failures"), Some("1"));
    assert_eq!(suite.attribute("errors"), Some("0"));
    assert_eq!(suite.attribute("time"), Some("47.812"));
    let seed = suite
        .descendants()
        .find(|n| n.has_tag_name("property") && n.attribute("name") == Some("seed"))
        .and_then(|n| n.attribute("value"));
    assert_eq!(seed, Some("7"));

    let cases: Vec<_> = suite
        .children()
        .filter(|n| n.has_tag_name("testcase"))
        .collect();
    let names: Vec<&str> = cases.iter().filter_map(|c| c.attribute("name")).collect();
    let want: Vec<&str> = run.checks.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, want, "one testcase per check, in order");
    for (case, check) in cases.iter().zip(&run.checks) {
        let failure = case.children().find(|n| n.has_tag_name("failure"));
        assert_eq!(failure.is_none(), check.passed, "{}", check.name);
        if let Some(f) = failure {
            assert_eq!(
                f.attribute("message"),
                Some("measured 640 ms, threshold ≤ 500 ms")
            );
            let body = f.text().unwrap_or_default();
            assert!(body.contains("measured: 640 ms"), "{body}");
            assert!(body.contains("threshold: ≤ 500 ms"), "{body}");
            assert!(body.contains("right after Redis came back"), "{body}");
        }
    }
}

#[test]
fn markdown_starts_with_a_one_line_verdict_and_has_both_tables() {
    let md = render(&sample(), Format::Md);
    let first = md.lines().next().expect("a first line");
    assert_eq!(
        first,
        "❌ **FAILED** redis-down: 7/8 checks passed · sent 40 · acknowledged 30 (30 new, 0 duplicate) · rejected 10 · no answer 0 · processed 30 · lost 0 · duplicated 0 · unexpected 0"
    );
    assert!(md.contains(
        "| ❌ | job\\_duration\\_p95 | 640 ms | ≤ 500 ms | worst poll window 40s–42s, right after Redis came back |"
    ), "{md}");
    assert!(
        md.contains("| recovered | 10 | chaos-3f9c2a-0021, "),
        "{md}"
    );
    let checks_at = md.find("### Checks").expect("check table");
    let ledger_at = md.find("### Ledger").expect("ledger table");
    assert!(checks_at < ledger_at, "checks come before the ledger");

    let mut passed = sample();
    passed.verdict = Verdict::Passed;
    passed.checks.retain(|c| c.passed);
    let first = render(&passed, Format::Md);
    assert!(
        first.starts_with("✅ **PASSED** redis-down: 7/7 checks passed · "),
        "{first}"
    );
}

#[test]
fn terminal_summary_lists_checks_and_classes() {
    let out = report::render_terminal(&sample());
    let first = out.lines().next().expect("a line");
    assert_eq!(
        first,
        "FAILED redis-down: 7/8 checks passed; sent 40, acknowledged 30 (30 new, 0 duplicate), rejected 10, no answer 0, processed 30"
    );
    let fail_row = out
        .lines()
        .find(|l| l.contains("job_duration_p95"))
        .expect("the failed check is listed");
    assert!(
        fail_row.contains("FAIL") && fail_row.contains("640 ms") && fail_row.contains("≤ 500 ms"),
        "{fail_row}"
    );
    for class in report::CLASS_ORDER {
        assert!(out.contains(class), "class {class} missing:\n{out}");
    }
}

#[test]
fn run_dir_is_utc_timestamp_and_scenario() {
    let run = sample();
    let dir = report::run_dir(Path::new("reports"), &run).expect("run dir");
    assert_eq!(dir, Path::new("reports/20261126T200638Z-redis-down"));

    let root = tempfile::tempdir().expect("temp dir");
    let first = report::create_run_dir(root.path(), &run).expect("first dir");
    let second = report::create_run_dir(root.path(), &run).expect("second dir");
    assert_eq!(first, root.path().join("20261126T200638Z-redis-down"));
    assert_eq!(second, root.path().join("20261126T200638Z-redis-down-2"));
    assert!(first.is_dir() && second.is_dir());
}

/// Runs headless Chromium on `args`, returning stdout; fails after a generous deadline.
fn chromium(args: &[String]) -> String {
    let bin = Path::new("/usr/bin/chromium");
    assert!(
        bin.exists(),
        "headless Chromium is needed for this test: apt-get install -y chromium"
    );
    let profile = tempfile::tempdir().expect("temp profile dir");
    let mut cmd = Command::new(bin);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()))
    .args(args)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    let mut child = cmd.spawn().expect("chromium starts");
    let mut stdout = child.stdout.take().expect("piped stdout");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait on chromium") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within 120s: {args:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = reader.join().expect("reader thread");
    assert!(status.success(), "chromium failed ({status}) on {args:?}");
    out
}

#[test]
fn chromium_renders_the_charts_and_the_check_table() {
    let dir = tempfile::tempdir().expect("temp dir");
    report::write_all(&sample(), dir.path(), &[Format::Html]).expect("write html");
    let url = format!("file://{}", dir.path().join("report.html").display());
    let dom = chromium(&["--dump-dom".to_string(), url]);
    assert!(
        dom.contains("<table id=\"checks\">"),
        "no check table in the DOM"
    );
    assert!(
        dom.contains("job_duration_p95"),
        "the failed check is missing"
    );
    for id in ["chart-rates", "chart-backlog", "chart-duration"] {
        assert!(
            dom.contains(&format!("<svg class=\"chart\" id=\"{id}\"")),
            "chart {id} missing from the DOM"
        );
    }
    // Two fault windows, shaded and labelled in each of the three charts.
    assert_eq!(
        dom.matches("<rect class=\"fault\"").count(),
        6,
        "fault rects"
    );
    assert_eq!(
        dom.matches("<text class=\"fault-label\"").count(),
        6,
        "fault labels"
    );
    assert!(dom.contains(">redis stop</text>") && dom.contains(">worker kill</text>"));
    for series in [
        "received_rate",
        "processed_rate",
        "waiting",
        "active",
        "p95_ms",
    ] {
        assert!(
            dom.contains(&format!("data-series=\"{series}\"")),
            "series {series} not drawn"
        );
    }
    assert!(
        dom.contains("<table id=\"ledger\">"),
        "ledger table missing"
    );
    assert!(dom.contains("<pre id=\"scenario-yaml\">name: redis-down"));
}

/// Cells of one GFM table row, splitting only on pipes that are not backslash-escaped.
fn md_cells(row: &str) -> usize {
    let mut pipes: usize = 0;
    let mut chars = row.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            '|' => pipes += 1,
            _ => {}
        }
    }
    pipes.saturating_sub(1)
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// Whatever text the system under test produces, JUnit stays well-formed and gives the
    /// text back, a Markdown row stays one row of five cells, and HTML gets no markup from it.
    #[test]
    fn any_text_is_contained_in_every_format(text in "\\PC{0,40}|[<>&\"'|\\\\`*_\\[\\]\n\t#!~]{0,20}") {
        let mut run = sample();
        run.checks[7].note = text.clone();
        run.checks[7].name = format!("p95 {text}");
        if let Some(c) = run.ledger.classes.get_mut("ok") {
            c.examples.push(text.clone());
        }

        let xml = render(&run, Format::Junit);
        let doc = roxmltree::Document::parse(&xml).map_err(|e| {
            proptest::test_runner::TestCaseError::fail(format!("junit.xml does not parse: {e}"))
        })?;
        let case = doc
            .descendants()
            .filter(|n| n.has_tag_name("testcase"))
            .nth(7)
            .ok_or_else(|| proptest::test_runner::TestCaseError::fail("testcase 8 missing"))?;
        let want = format!("p95 {text}");
        proptest::prop_assert_eq!(case.attribute("name"), Some(want.as_str()));

        let md = render(&run, Format::Md);
        let rows: Vec<&str> = md.lines().filter(|l| l.starts_with("| ❌ |")).collect();
        proptest::prop_assert_eq!(rows.len(), 1, "{}", md);
        proptest::prop_assert_eq!(md_cells(rows[0]), 5, "{}", rows[0]);
        proptest::prop_assert!(!md.contains('<'), "raw < in report.md");

        let html = render(&run, Format::Html);
        let escaped = gitspy_chaos_html_escape(&text);
        proptest::prop_assert!(!escaped.contains(['<', '>', '"', '\'']));
        proptest::prop_assert!(html.contains(&escaped));
    }
}

/// The escaping the HTML report must have applied to `s` (as a test oracle, written out
/// independently of the library's).
fn gitspy_chaos_html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// A run whose ledger and apply times are known: the exact per-second series come out as
/// expected, go through `run.json` unchanged, and a real Chromium draws them in their charts
/// (and the poller's charts keep a dot per scrape).
#[test]
fn exact_series_from_known_send_and_apply_times_render_in_chromium() {
    use gitspy_chaos::load::{LedgerEntry, Outcome};
    use gitspy_chaos::observe::timeline;
    use std::collections::BTreeMap;

    let t0 = 1_764_180_000_000u64;
    let mut entries = Vec::new();
    let mut applied = BTreeMap::new();
    // 10 deliveries a second for 5 s; the ones sent in second 2 are rejected (503) and sent
    // again in second 4; each delivery is applied 800 ms after it is acknowledged.
    for sec in 0..5u64 {
        for i in 0..10u64 {
            let id = format!("d{sec}-{i}");
            let sent = t0 + sec * 1000 + i * 50;
            let entry = |at: u64, code: u16| LedgerEntry {
                delivery: id.clone(),
                attempt: 1,
                duplicate_of: None,
                event: "issues".into(),
                scheduled_at_ms: at,
                sent_at_ms: at,
                outcome: Outcome::Status(code),
                latency_ms: 2.0,
                answer: None,
            };
            if sec == 2 {
                entries.push(entry(sent, 503));
                entries.push(entry(sent + 2000, 202));
                applied.insert(id.clone(), sent + 2000 + 802);
            } else {
                entries.push(entry(sent, 202));
                applied.insert(id.clone(), sent + 802);
            }
        }
    }
    let series = timeline::exact_series(t0, t0 + 6000, &entries, &applied);
    let pts = |name: &str| -> Vec<f64> {
        series
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("series {name}"))
            .points
            .iter()
            .map(|p| p.1)
            .collect()
    };
    assert_eq!(pts("sent_rate"), [10.0, 10.0, 10.0, 10.0, 20.0, 0.0]);
    assert_eq!(pts("rejected_rate"), [0.0, 0.0, 10.0, 0.0, 0.0, 0.0]);
    assert_eq!(pts("acked_rate"), [10.0, 10.0, 0.0, 10.0, 20.0, 0.0]);
    // Applies 802 ms after each send: the first 4 of a second land in it, the last 6 in the
    // next one.
    assert_eq!(pts("applied_rate"), [4.0, 10.0, 6.0, 4.0, 14.0, 12.0]);
    // The redelivered ones waited 2802 ms from their first send.
    assert_eq!(
        pts("latency_p99_ms"),
        [802.0, 802.0, 802.0, 802.0, 2802.0, 2802.0]
    );
    assert_eq!(
        pts("latency_p50_ms"),
        [802.0, 802.0, 802.0, 802.0, 802.0, 802.0]
    );
    assert_eq!(pts("unprocessed"), [6.0, 6.0, 0.0, 6.0, 12.0, 0.0]);
    // The rejected ones wait, unapplied, for their redelivery.
    assert_eq!(pts("unapplied"), [6.0, 6.0, 10.0, 16.0, 12.0, 0.0]);

    let mut run = sample();
    run.series.extend(series);
    run.duration_ms = 6000;
    let dir = tempfile::tempdir().expect("temp dir");
    report::write_all(&run, dir.path(), &[Format::Json, Format::Html]).expect("write");
    let back = report::read_run(&dir.path().join("run.json")).expect("read back");
    assert_eq!(back.series, run.series);
    let url = format!("file://{}", dir.path().join("report.html").display());
    let dom = chromium(&["--dump-dom".to_string(), url]);
    for id in [
        "chart-exact-rates",
        "chart-exact-latency",
        "chart-exact-unprocessed",
    ] {
        assert!(
            dom.contains(&format!("<svg class=\"chart\" id=\"{id}\"")),
            "chart {id} missing from the DOM"
        );
    }
    for s in timeline::NAMES {
        assert!(
            dom.contains(&format!("<polyline class=\"series\" data-series=\"{s}\"")),
            "series {s} not drawn as a line"
        );
    }
    assert!(
        dom.contains("<circle class=\"scrape\" data-series=\"waiting\""),
        "poller scrapes are not marked"
    );
    assert!(
        !dom.contains("<circle class=\"scrape\" data-series=\"sent_rate\""),
        "exact series are not scrapes"
    );
}
