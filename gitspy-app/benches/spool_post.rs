//! End-to-end cost of the spool: `POST /webhooks` latency of a real `gitspy serve` in spool mode
//! answering `queued` (Redis up) versus `spooled` (Redis killed: one fsynced append per delivery),
//! sequentially and with several requests in flight (concurrent appends share an fsync: group
//! commit in `ingress_spool`).
//!
//! Not a criterion bench: each sample is one HTTP round trip against real processes (redis-server
//! and the `gitspy` binary), so a plain loop with percentiles says more. Everything lives under
//! `target/tmp` (a real disk; `/tmp` may be a tmpfs where fsync costs nothing). Run with
//!
//! `cargo bench -p gitspy --bench spool_post` (optional argument: requests per run, default 200;
//! `--profile dev` measures the debug build without a release rebuild).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SECRET: &str = "bench-secret";

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

fn start_redis(dir: &Path, port: u16, appendfsync: &str) -> Killed {
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .args(["--appendonly", "yes", "--appendfsync", appendfsync])
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn redis-server (apt-get install -y redis-server)");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "redis-server never listened");
        std::thread::sleep(Duration::from_millis(50));
    }
    Killed(child)
}

fn start_server(dir: &Path, redis_port: u16) -> (Killed, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gitspy"))
        .arg("serve")
        .env_clear()
        .env("GITSPY_LISTEN", "127.0.0.1:0")
        .env("REDIS_URL", format!("redis://127.0.0.1:{redis_port}"))
        .env("GITHUB_WEBHOOK_SECRET", SECRET)
        .env("GITSPY_DB", dir.join("gitspy.db"))
        .env("GITSPY_ON_REDIS_DOWN", "spool")
        .env("GITSPY_SPOOL_DIR", dir.join("spool"))
        .env("GITSPY_REDIS_TIMEOUT", "1s")
        .env("GITSPY_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn gitspy serve");
    let stdout = child.stdout.take().expect("stdout");
    let mut first = String::new();
    BufReader::new(stdout)
        .read_line(&mut first)
        .expect("read the address line");
    let addr = first
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line `{first}`"))
        .to_owned();
    (Killed(child), format!("{addr}/webhooks"))
}

/// Sends `n` deliveries with `in_flight` requests at a time; returns each latency and the wall time.
async fn run(
    client: &reqwest::Client,
    url: &str,
    body: &[u8],
    prefix: &str,
    n: usize,
    in_flight: usize,
    expect: &str,
) -> (Vec<Duration>, Duration) {
    let signature = gitspy::github::signature::sign(SECRET.as_bytes(), body);
    let started = Instant::now();
    let mut latencies = Vec::with_capacity(n);
    let mut next = 0;
    while next < n {
        let batch: Vec<_> = (next..(next + in_flight).min(n))
            .map(|i| {
                let rb = client
                    .post(url)
                    .header("content-type", "application/json")
                    .header("x-github-event", "issues")
                    .header("x-github-delivery", format!("{prefix}-{i}"))
                    .header("x-hub-signature-256", &signature)
                    .body(body.to_vec());
                async move {
                    let t = Instant::now();
                    let r = rb.send().await.expect("POST /webhooks");
                    let status = r.status().as_u16();
                    let text = r.text().await.unwrap_or_default();
                    assert!(
                        status == 202 && text.contains(expect),
                        "expected 202 {expect}, got {status} {text}"
                    );
                    t.elapsed()
                }
            })
            .collect();
        next += batch.len();
        latencies.extend(futures::future::join_all(batch).await);
    }
    (latencies, started.elapsed())
}

fn report(label: &str, mut l: Vec<Duration>, wall: Duration) {
    l.sort();
    let pct = |p: f64| l[((l.len() as f64 - 1.0) * p).round() as usize];
    let mean = l.iter().sum::<Duration>() / l.len() as u32;
    println!(
        "{label:<44} n={:<4} mean={:>8.3?} p50={:>8.3?} p90={:>8.3?} p99={:>8.3?} max={:>8.3?} throughput={:>7.0}/s",
        l.len(),
        mean,
        pct(0.5),
        pct(0.9),
        pct(0.99),
        l[l.len() - 1],
        l.len() as f64 / wall.as_secs_f64()
    );
}

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(200);
    let body = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/github/issues/opened.json"),
    )
    .expect("fixture issues/opened.json");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http client");
    println!("payload {} bytes, {n} requests per run", body.len());
    for appendfsync in ["everysec", "always"] {
        let root = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
        let redis_dir = root.path().join("redis");
        std::fs::create_dir_all(&redis_dir).expect("redis dir");
        let port = free_port();
        let redis = start_redis(&redis_dir, port, appendfsync);
        let (_server, url) = start_server(root.path(), port);
        rt.block_on(async {
            // Warm up connections and the script cache.
            run(&client, &url, &body, "warm", 20, 1, "queued").await;
            for in_flight in [1, 8] {
                let (l, wall) = run(
                    &client,
                    &url,
                    &body,
                    &format!("q{in_flight}"),
                    n,
                    in_flight,
                    "queued",
                )
                .await;
                report(
                    &format!("queued  (redis appendfsync {appendfsync}) x{in_flight}"),
                    l,
                    wall,
                );
            }
        });
        drop(redis);
        rt.block_on(async {
            // The first delivery after the kill meets the dead connection; from then on the
            // non-empty spool takes every delivery without asking Redis.
            run(&client, &url, &body, "first", 1, 1, "spooled").await;
            for in_flight in [1, 8] {
                let (l, wall) = run(
                    &client,
                    &url,
                    &body,
                    &format!("s{in_flight}"),
                    n,
                    in_flight,
                    "spooled",
                )
                .await;
                report(
                    &format!("spooled (fsynced, group commit) x{in_flight}"),
                    l,
                    wall,
                );
            }
        });
    }
}
