//! `promql` checks against a real Prometheus (`/usr/bin/prometheus`, Debian's package) that the
//! test starts on a free port with a temporary TSDB, scraping a real GitSpy (server and worker,
//! real Redis) the test also started; the harness runs in attach mode and asks Prometheus' HTTP
//! API at the end. Passing bounds pass, broken ones fail with the expression, the value and the
//! bound; an empty answer fails as "no data"; an unreachable Prometheus or a PromQL syntax error
//! is "could not run" (exit 2) before anything is sent.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Child processes killed (and reaped) when the test ends, passed or not.
pub struct Kids(pub Vec<Child>);
impl Drop for Kids {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Starts `gitspy <args>` and returns it with the address of its first stdout line.
fn gitspy(args: &[&str], env: &[(&str, String)]) -> (Child, String) {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_gitspy-chaos")).with_file_name("gitspy");
    assert!(bin.is_file(), "build gitspy first: cargo build -p gitspy");
    let mut c = Command::new(bin);
    c.args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .env("NO_COLOR", "1");
    for (k, v) in env {
        c.env(k, v);
    }
    let mut child = c.spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("first line `{line}`"))
        .to_string();
    (child, addr)
}

/// A Prometheus process scraping `targets` (`host:port`, path `/metrics/prom`) every second.
pub struct Prometheus {
    pub url: String,
    _child: Kids,
}

impl Prometheus {
    pub fn start(dir: &Path, targets: &[String]) -> Prometheus {
        let bin = Path::new("/usr/bin/prometheus");
        let bin = if bin.is_file() {
            bin.to_path_buf()
        } else {
            PathBuf::from("prometheus")
        };
        let port = crate::util::free_port();
        let list: Vec<String> = targets
            .iter()
            .map(|t| format!("\"{}\"", t.trim_start_matches("http://")))
            .collect();
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global: {{ scrape_interval: 1s, evaluation_interval: 1s }}\n\
                 scrape_configs:\n  - job_name: gitspy\n    metrics_path: /metrics/prom\n    \
                 static_configs:\n      - targets: [{}]\n",
                list.join(", ")
            ),
        )
        .unwrap();
        let child = Command::new(&bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("prometheus is needed for this test ({e}): apt-get install -y prometheus")
            });
        let p = Prometheus {
            url: format!("http://127.0.0.1:{port}"),
            _child: Kids(vec![child]),
        };
        // Ready, and every target scraped once.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let up = curl(&format!("{}/api/v1/query?query=count(up%3D%3D1)", p.url));
            if up.contains(&format!("\"{}\"]", targets.len())) {
                return p;
            }
            assert!(
                Instant::now() < deadline,
                "Prometheus did not scrape {targets:?} within 30 s: {up}\n{}",
                std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

fn curl(url: &str) -> String {
    Command::new("curl")
        .args(["-s", "--max-time", "2", url])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// A GitSpy server and one worker on a fresh Redis and database.
struct Gitspy {
    redis_url: String,
    server: String,
    worker: String,
    _kids: Kids,
    _redis: crate::util::Redis,
}

fn start_gitspy(dir: &Path) -> Gitspy {
    let redis = crate::util::Redis::start();
    let redis_url = redis.url.trim_end_matches('/').to_owned();
    let db = dir.join("gitspy.db").display().to_string();
    let common = vec![("REDIS_URL", redis_url.clone()), ("GITSPY_DB", db)];
    let mut env = common.clone();
    env.extend([
        ("GITSPY_LISTEN", "127.0.0.1:0".to_string()),
        ("GITHUB_WEBHOOK_SECRET", "prom-secret".to_string()),
    ]);
    let (server, server_addr) = gitspy(&["serve"], &env);
    let mut env = common;
    env.push(("WORKER_METRICS_PORT", "0".into()));
    let (worker, worker_addr) = gitspy(&["worker"], &env);
    Gitspy {
        redis_url,
        server: server_addr,
        worker: worker_addr,
        _kids: Kids(vec![server, worker]),
        _redis: redis,
    }
}

/// Sends 10, lets Prometheus scrape the (new) histogram series, sends 10 more: a rate over the
/// run then sees an increase.
fn scenario(g: &Gitspy, prom_url: &str, name: &str, checks: &str) -> String {
    format!(
        r#"name: {name}
seed: 3
target:
  redis: {{ backend: external, url: "{redis}" }}
  workers: 1
  attach:
    server_url: "{server}"
    worker_metrics_urls: ["{worker}/metrics/prom"]
observe:
  poll_interval: 1s
  prometheus: {{ url: "{prom_url}" }}
steps:
  - send: {{ count: 10, rate: 40/s }}
  - wait: {{ drained: true, timeout: 60s }}
  - wait: {{ for: 2500ms }}
  - send: {{ count: 10, rate: 40/s }}
  - wait: {{ drained: true, timeout: 60s }}
checks:
  - deliveries: {{ lost: 0, duplicated: 0 }}
{checks}"#,
        redis = g.redis_url,
        server = g.server,
        worker = g.worker,
    )
}

fn run(dir: &Path, file_name: &str, yaml: &str) -> (Output, Option<serde_json::Value>) {
    let file = dir.join(file_name);
    std::fs::write(&file, yaml).unwrap();
    let reports = dir.join(format!("reports-{file_name}"));
    let out = Command::new(env!("CARGO_BIN_EXE_gitspy-chaos"))
        .arg("run")
        .arg(&file)
        .arg("--report-dir")
        .arg(&reports)
        .env("GITHUB_WEBHOOK_SECRET", "prom-secret")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let run_json = std::fs::read_dir(&reports)
        .ok()
        .and_then(|mut d| d.next())
        .and_then(|e| e.ok())
        .and_then(|e| std::fs::read(e.path().join("run.json")).ok())
        .map(|b| serde_json::from_slice(&b).unwrap());
    (out, run_json)
}

fn check<'a>(run: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    run["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {:#}", run["checks"]))
}

fn text(o: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn promql_checks_ask_a_real_prometheus_at_the_end_and_over_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let g = start_gitspy(dir.path());
    let prom = Prometheus::start(dir.path(), &[g.server.clone(), g.worker.clone()]);

    // Bounds that hold: the exact count at the end (Prometheus scraped after the drain), both
    // targets up at every second of the run, the plan's P95 job latency.
    let pass = scenario(
        &g,
        &prom.url,
        "promql-pass",
        r#"  - promql: { name: processed, expr: 'sum(gitspy_jobs_processed_total)', equals: 20 }
  - promql: { name: up, expr: 'sum(up)', min: 2, max: 2, over: run }
  - promql: { expr: 'histogram_quantile(0.95, sum(rate(gitspy_job_duration_ms_bucket[5m])) by (le))', max: 5000 }
"#,
    );
    let (out, run_json) = run(dir.path(), "pass.yaml", &pass);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let v = run_json.expect("run.json");
    let processed = check(&v, "promql.processed");
    assert_eq!(processed["measured"], 20.0, "{processed:#}");
    assert_eq!(processed["passed"], true);
    let up = check(&v, "promql.up.min");
    assert_eq!(up["measured"], 2.0, "{up:#}");
    assert!(
        up["note"].as_str().unwrap().contains("over the run"),
        "{up:#}"
    );
    assert_eq!(check(&v, "promql.up.max")["passed"], true);
    assert_eq!(check(&v, "promql.3")["passed"], true);

    // Bounds that do not hold, a metric that does not exist, an `over: run` bound broken once.
    let fail = scenario(
        &g,
        &prom.url,
        "promql-fail",
        r#"  - promql: { name: too-many, expr: 'sum(gitspy_jobs_processed_total)', max: 25 }
  - promql: { name: missing, expr: 'sum(gitspy_no_such_metric_total)', max: 1 }
  - promql: { name: never-zero, expr: 'sum(gitspy_jobs_processed_total)', min: 1, over: run }
"#,
    );
    let (out, run_json) = run(dir.path(), "fail.yaml", &fail);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let v = run_json.expect("run.json");
    // Counters add up: 20 from the first run plus 20 now.
    let c = check(&v, "promql.too-many");
    assert_eq!(c["passed"], false, "{c:#}");
    assert_eq!(c["measured"], 40.0, "{c:#}");
    let note = c["note"].as_str().unwrap();
    assert!(
        note.contains("sum(gitspy_jobs_processed_total)") && note.contains("≤ 25"),
        "{note}"
    );
    let c = check(&v, "promql.missing");
    assert_eq!(c["passed"], false, "{c:#}");
    assert!(c["measured"].is_null(), "{c:#}");
    assert!(c["note"].as_str().unwrap().starts_with("no data"), "{c:#}");
    // At the run's start the sum was 20 (never below 1): this one passes; the run fails on the
    // two above only.
    assert_eq!(check(&v, "promql.never-zero")["passed"], true);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("promql.too-many"), "{stdout}");
}

#[test]
fn an_unreachable_prometheus_or_a_promql_syntax_error_could_not_run() {
    let dir = tempfile::tempdir().unwrap();
    let g = start_gitspy(dir.path());
    let dead = format!("http://127.0.0.1:{}", crate::util::free_port());
    let yaml = scenario(
        &g,
        &dead,
        "promql-unreachable",
        "  - promql: { expr: 'sum(up)', min: 1 }\n",
    );
    let (out, _) = run(dir.path(), "dead.yaml", &yaml);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("Prometheus at {dead} is unreachable")),
        "{stderr}"
    );

    let prom = Prometheus::start(dir.path(), std::slice::from_ref(&g.server));
    let yaml = scenario(
        &g,
        &prom.url,
        "promql-syntax",
        "  - promql: { expr: 'sum(up', min: 1 }\n",
    );
    let (out, _) = run(dir.path(), "syntax.yaml", &yaml);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bad_data"), "{stderr}");
    assert!(stderr.contains("sum(up"), "{stderr}");
}

const MANAGED_RULES: &str = r#"groups:
  - name: test
    rules:
      - alert: TestRedisDown
        expr: min(gitspy_redis_up) == 0
        for: 2s
      - alert: TestAlwaysFiring
        expr: vector(1)
"#;

const MANAGED_SCENARIO: &str = r#"name: alert-managed
seed: 1
target: { redis: { backend: process }, workers: 1, on_redis_down: reject }
observe:
  poll_interval: 1s
  prometheus: { managed: true, rules: [rules.yml], interval: 1s }
steps:
  - send: { count: 5, rate: 20/s }
  - wait: { drained: true, timeout: 30s }
  - fault: { redis: stop }
  - wait: { for: 8s }
  - fault: { redis: start }
  - wait: { drained: true, timeout: 30s }
checks:
  - deliveries: { lost: 0, duplicated: 0 }
  - alert: { name: TestRedisDown, fires_during: redis, within: 5s }
  - alert: { name: TestAlwaysFiring, never: true }
  - promql: { name: scraped, expr: 'count(up{target=~"server|worker-0"})', equals: 2 }
"#;

/// `observe.prometheus: { managed: true }`: the run starts Prometheus itself, scraping its
/// managed server and worker with the scenario's rules; the `alert` check reads `ALERTS`: an
/// alert on Redis down fires inside the `redis stop` window and resolves after it, and an alert
/// that fires all the time fails `never: true` (the check can fail). A rule file Prometheus
/// refuses is exit 2.
#[test]
fn a_managed_prometheus_evaluates_the_scenarios_rules_and_alert_checks_read_alerts() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rules.yml"), MANAGED_RULES).unwrap();
    let (out, run_json) = run(dir.path(), "managed.yaml", MANAGED_SCENARIO);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let v = run_json.expect("run.json");
    let fires = check(&v, "alert.TestRedisDown.fires");
    assert_eq!(fires["passed"], true, "{fires:#}");
    let after = fires["measured"].as_f64().unwrap();
    assert!((2.0..=8.0).contains(&after), "{fires:#}");
    let resolves = check(&v, "alert.TestRedisDown.resolves");
    assert_eq!(resolves["passed"], true, "{resolves:#}");
    let always = check(&v, "alert.TestAlwaysFiring");
    assert_eq!(always["passed"], false, "{always:#}");
    assert!(always["measured"].as_f64().unwrap() >= 5.0, "{always:#}");
    assert_eq!(check(&v, "promql.scraped")["passed"], true);
    // Its configuration and log are kept with the run.
    let run_dir = std::fs::read_dir(dir.path().join("reports-managed.yaml"))
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    let config = std::fs::read_to_string(run_dir.join("system/prometheus/prometheus.yml")).unwrap();
    assert!(config.contains("rules.yml"), "{config}");
    assert!(config.contains("worker-0"), "{config}");

    std::fs::write(
        dir.path().join("rules.yml"),
        "groups:\n  - name: t\n    rules:\n      - alert: Broken\n        expr: 'sum('\n",
    )
    .unwrap();
    let (out, _) = run(dir.path(), "broken.yaml", MANAGED_SCENARIO);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("managed Prometheus"), "{stderr}");
    // Prometheus' own complaint, not just "it exited".
    assert!(stderr.contains("unclosed left parenthesis"), "{stderr}");
}
