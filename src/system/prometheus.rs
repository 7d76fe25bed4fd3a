//! A Prometheus server the harness starts for one run (`observe.prometheus: { managed: true }`):
//! Debian's `prometheus` binary from `PATH` on a free loopback port, a TSDB in the run's
//! directory, scraping the server and every worker directly (never through the network proxies)
//! at the scenario's interval and evaluating its rule files. Killed when dropped (the child is
//! `kill_on_drop`), so every way out of a run stops it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;

use crate::observe::prometheus::Prometheus;

/// A running Prometheus child.
pub struct ManagedPrometheus {
    child: tokio::process::Child,
    pub client: Prometheus,
    pub log_path: PathBuf,
}

/// Its configuration: every `(target name, metrics URL)` in one job, labelled `target`, and
/// `rules` (absolute paths).
pub fn config_yaml(targets: &[(String, String)], rules: &[PathBuf], interval: Duration) -> String {
    let secs = format!("{}ms", interval.as_millis().max(100));
    let mut y = format!(
        "# Written by gitspy-chaos for one run.\nglobal:\n  scrape_interval: {secs}\n  \
         evaluation_interval: {secs}\n  scrape_timeout: {secs}\n"
    );
    if !rules.is_empty() {
        y.push_str("rule_files:\n");
        for r in rules {
            y.push_str(&format!("  - {}\n", yaml_str(&r.display().to_string())));
        }
    }
    y.push_str("scrape_configs:\n");
    for (name, url) in targets {
        let (host, path) = split_url(url);
        y.push_str(&format!(
            "  - job_name: {}\n    metrics_path: {}\n    static_configs:\n      - targets: [{}]\n        labels: {{ target: {} }}\n",
            yaml_str(name),
            yaml_str(path),
            yaml_str(host),
            yaml_str(name)
        ));
    }
    y
}

/// `http://127.0.0.1:1234/metrics/prom` → (`127.0.0.1:1234`, `/metrics/prom`).
fn split_url(url: &str) -> (&str, &str) {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .unwrap_or(url);
    match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/metrics"),
    }
}

fn yaml_str(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

impl ManagedPrometheus {
    /// Starts Prometheus in `dir` and waits until it is ready and has scraped every target once.
    pub async fn start(
        dir: &Path,
        targets: &[(String, String)],
        rules: &[PathBuf],
        interval: Duration,
    ) -> anyhow::Result<ManagedPrometheus> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let config = dir.join("prometheus.yml");
        std::fs::write(&config, config_yaml(targets, rules, interval))
            .with_context(|| format!("writing {}", config.display()))?;
        let port = crate::system::process_redis::free_port()?;
        let log_path = dir.join("prometheus.log");
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        let child = tokio::process::Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("tsdb").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--web.enable-lifecycle")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                anyhow::anyhow!(
                    "could not start prometheus ({e})\nhint: apt-get install -y prometheus, or name a running one with `observe.prometheus.url`"
                )
            })?;
        let client =
            Prometheus::new(&format!("http://127.0.0.1:{port}")).map_err(anyhow::Error::msg)?;
        let mut p = ManagedPrometheus {
            child,
            client,
            log_path,
        };
        p.wait_scraping(targets.len(), Duration::from_secs(30))
            .await?;
        Ok(p)
    }

    /// Ready, and `count(up == 1)` equals `n` (every target scraped and up).
    async fn wait_scraping(&mut self, n: usize, within: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + within;
        let mut last;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                anyhow::bail!(
                    "prometheus exited ({status}) at start: {}\nhint: see {}",
                    self.log_tail(),
                    self.log_path.display()
                );
            }
            match self.client.ready().await {
                Err(e) => last = e,
                Ok(()) => match self
                    .client
                    .query("count(up == 1)", crate::observe::prom::now_ms())
                    .await
                {
                    Ok(s) => {
                        let up = s
                            .first()
                            .and_then(|s| s.samples.first())
                            .map_or(0.0, |(_, v)| *v);
                        if up as usize == n {
                            return Ok(());
                        }
                        last = format!("{up} of {n} targets scraped and up");
                    }
                    Err(e) => last = e,
                },
            }
            if tokio::time::Instant::now() >= deadline {
                anyhow::bail!(
                    "the managed Prometheus did not scrape every target within {within:?}: {last}\nhint: see {}",
                    self.log_path.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Its log's error lines (the last 3), else its last 5 lines.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let errors: Vec<&str> = text.lines().filter(|l| l.contains("level=error")).collect();
        let lines: Vec<&str> = if errors.is_empty() {
            text.lines().collect()
        } else {
            errors
        };
        let keep = if lines.len() > 3 { 3 } else { lines.len() };
        lines[lines.len() - keep..].join("\n")
    }

    /// Stops it (SIGKILL: its TSDB is thrown away with the run).
    pub async fn stop(&mut self) {
        let _ = self.child.kill().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_scrapes_every_target_at_its_path_and_loads_the_rules() {
        let y = config_yaml(
            &[
                ("server".into(), "http://127.0.0.1:4000/metrics/prom".into()),
                (
                    "worker-0".into(),
                    "http://127.0.0.1:4001/metrics/prom".into(),
                ),
            ],
            &[PathBuf::from("/x/alerts.yml")],
            Duration::from_secs(1),
        );
        assert!(y.contains("scrape_interval: 1000ms"), "{y}");
        assert!(y.contains("evaluation_interval: 1000ms"), "{y}");
        assert!(y.contains("- \"/x/alerts.yml\""), "{y}");
        assert!(y.contains("targets: [\"127.0.0.1:4001\"]"), "{y}");
        assert!(y.contains("metrics_path: \"/metrics/prom\""), "{y}");
        assert!(y.contains("labels: { target: \"worker-0\" }"), "{y}");
    }
}
