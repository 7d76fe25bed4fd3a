//! Test helpers: a real `redis-server` on a free port with its own dir and AOF, real `gitspy`
//! processes on port 0 (their bound address read from the first stdout line), signing, polling.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const SECRET: &str = "test-secret";

pub fn fixture(rel: &str) -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/github")
        .join(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("fixture {}: {e}", p.display()))
}

pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().unwrap().port()
}

/// `redis-server` from `PATH`; fails saying what to install when it is absent.
pub fn redis_server_bin() -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("redis-server"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("redis-server is not on PATH: install it (`apt-get install -y redis-server`)")
        })
}

/// A redis-server child; killed on drop.
pub struct Redis {
    pub port: u16,
    pub dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Redis {
    pub fn start() -> Redis {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Redis {
            port: free_port(),
            dir,
            child: None,
        };
        r.spawn();
        r
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        let child = Command::new(redis_server_bin())
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(c) = redis::Client::open(self.url()) {
                if let Ok(mut conn) = c.get_connection_with_timeout(Duration::from_millis(500)) {
                    if redis::cmd("PING").query::<String>(&mut conn).is_ok() {
                        return;
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} never answered PING",
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL, like a crash.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts again on the same port and dir (AOF reloads the data).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Starts again on the same port with an EMPTY dir: Redis lost its data.
    pub fn restart_empty(&mut self) {
        self.kill();
        self.dir = tempfile::tempdir().unwrap();
        self.spawn();
    }

    pub fn conn(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .unwrap()
            .get_connection_with_timeout(Duration::from_secs(5))
            .unwrap()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A `gitspy` child process; killed on drop. Its stderr goes to a file kept for failure messages.
pub struct Proc {
    pub child: Child,
    pub addr: String,
    /// `gitspy serve` with `GITSPY_ADMIN_ADDR`: the admin address from the second stdout line.
    pub admin: Option<String>,
    pub log: PathBuf,
}

impl Proc {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// A URL on the admin address when the server has one, else on its only address.
    pub fn admin_url(&self, path: &str) -> String {
        format!(
            "http://{}{path}",
            self.admin.as_deref().unwrap_or(&self.addr)
        )
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn sigterm(&self) {
        // SAFETY-free: kill(2) through the `kill` binary keeps the tests free of unsafe code.
        let ok = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// Waits for exit; returns the exit code.
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st.code();
            }
            if Instant::now() > deadline {
                panic!(
                    "process did not exit within {within:?}; log:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A temp workspace for one system under test: database, spool, logs.
pub struct Sys {
    pub dir: tempfile::TempDir,
    /// `GITSPY_DB` when it is a PostgreSQL URL; `None`: the SQLite file [`Sys::db`].
    pub db_url: Option<String>,
}

impl Sys {
    pub fn new() -> Sys {
        Sys {
            dir: tempfile::tempdir().unwrap(),
            db_url: None,
        }
    }
    /// A system whose store is the PostgreSQL database `url`.
    pub fn with_postgres(url: String) -> Sys {
        Sys {
            db_url: Some(url),
            ..Sys::new()
        }
    }
    pub fn db(&self) -> PathBuf {
        self.dir.path().join("gitspy.db")
    }
    /// What `GITSPY_DB` is set to.
    pub fn db_env(&self) -> String {
        match &self.db_url {
            Some(u) => u.clone(),
            None => self.db().display().to_string(),
        }
    }

    pub fn spawn(&self, args: &[&str], env: &[(&str, String)], name: &str) -> Proc {
        let log = self.dir.path().join(format!("{name}.log"));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_gitspy"));
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("GITSPY_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn gitspy");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            // The first line (the address) and, with an admin address, the second.
            for _ in 0..2 {
                if let Some(Ok(line)) = lines.next() {
                    let _ = tx.send(line);
                }
            }
            for _ in lines {}
        });
        let first = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "gitspy {args:?} printed no address; log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
        };
        let addr = first
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line `{first}`"))
            .to_owned();
        let admin = env.iter().any(|(k, _)| *k == "GITSPY_ADMIN_ADDR").then(|| {
            let second = rx
                .recv_timeout(Duration::from_secs(30))
                .unwrap_or_else(|_| panic!("gitspy {args:?} printed no admin address"));
            second
                .strip_prefix("admin listening on http://")
                .unwrap_or_else(|| panic!("unexpected second line `{second}`"))
                .to_owned()
        });
        Proc {
            child,
            addr,
            admin,
            log,
        }
    }

    pub fn serve(&self, redis: &Redis, extra: &[(&str, String)]) -> Proc {
        self.serve_as(redis, extra, "serve")
    }

    /// [`Sys::serve`] with its own log name, for a second server (a restart) on the same dir.
    pub fn serve_as(&self, redis: &Redis, extra: &[(&str, String)], name: &str) -> Proc {
        let mut env = vec![
            ("GITSPY_LISTEN", "127.0.0.1:0".to_string()),
            ("REDIS_URL", redis.url()),
            ("GITHUB_WEBHOOK_SECRET", SECRET.to_string()),
            ("GITSPY_DB", self.db_env()),
            (
                "GITSPY_SPOOL_DIR",
                self.dir.path().join("spool").display().to_string(),
            ),
        ];
        env.extend(extra.iter().map(|(k, v)| (*k, v.clone())));
        let p = self.spawn(&["serve"], &env, name);
        wait_ready(&p);
        p
    }

    pub fn worker(&self, redis: &Redis, extra: &[(&str, String)], name: &str) -> Proc {
        let mut env = vec![
            ("WORKER_METRICS_PORT", "0".to_string()),
            ("REDIS_URL", redis.url()),
            ("GITSPY_DB", self.db_env()),
            ("GITSPY_BLOCK", "500ms".to_string()),
        ];
        env.extend(extra.iter().map(|(k, v)| (*k, v.clone())));
        self.spawn(&["worker"], &env, name)
    }
}

fn wait_ready(p: &Proc) {
    let url = p.admin_url("/readyz");
    wait_for(
        Duration::from_secs(30),
        "server /readyz to answer 200",
        || reqwest::blocking_get_status(&url) == Some(200),
    );
}

/// Polls `cond` until true or panics saying what never happened.
pub fn wait_for(within: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    loop {
        if cond() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn sign(body: &[u8]) -> String {
    gitspy::github::signature::sign(SECRET.as_bytes(), body)
}

/// Minimal blocking HTTP helpers over reqwest's async client on a private runtime.
pub mod reqwest {
    use std::sync::OnceLock;
    use std::time::Duration;

    pub use ::reqwest::*;

    fn rt() -> &'static tokio::runtime::Runtime {
        static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
        RT.get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap()
        })
    }

    pub fn client() -> Client {
        Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap()
    }

    pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
        rt().block_on(f)
    }

    pub fn blocking_get_status(url: &str) -> Option<u16> {
        block_on(async {
            client()
                .get(url)
                .send()
                .await
                .ok()
                .map(|r| r.status().as_u16())
        })
    }
}

/// A response reduced to what tests check.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub body: String,
    pub retry_after: Option<String>,
    pub elapsed: Duration,
}

impl Resp {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

pub struct Post<'a> {
    pub event: Option<&'a str>,
    pub delivery: Option<&'a str>,
    pub signature: Option<String>,
    pub content_type: &'a str,
    pub body: Vec<u8>,
}

impl<'a> Post<'a> {
    /// A correctly signed JSON delivery.
    pub fn signed(event: &'a str, delivery: &'a str, body: Vec<u8>) -> Self {
        Post {
            event: Some(event),
            delivery: Some(delivery),
            signature: Some(sign(&body)),
            content_type: "application/json",
            body,
        }
    }
}

pub async fn post_async(client: &::reqwest::Client, url: &str, p: &Post<'_>) -> Resp {
    let started = std::time::Instant::now();
    let mut rb = client
        .post(url)
        .header("content-type", p.content_type)
        .body(p.body.clone());
    if let Some(e) = p.event {
        rb = rb.header("x-github-event", e);
    }
    if let Some(d) = p.delivery {
        rb = rb.header("x-github-delivery", d);
    }
    if let Some(s) = &p.signature {
        rb = rb.header("x-hub-signature-256", s);
    }
    let r = rb.send().await.expect("POST /webhooks");
    let status = r.status().as_u16();
    let retry_after = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap_or("").to_owned());
    let body = r.text().await.unwrap_or_default();
    Resp {
        status,
        body,
        retry_after,
        elapsed: started.elapsed(),
    }
}

pub fn post(server: &Proc, p: &Post<'_>) -> Resp {
    let url = server.url("/webhooks");
    reqwest::block_on(async { post_async(&reqwest::client(), &url, p).await })
}

pub fn get_json(url: &str) -> (u16, serde_json::Value) {
    reqwest::block_on(async {
        let r = reqwest::client().get(url).send().await.expect("GET");
        let s = r.status().as_u16();
        (s, r.json().await.unwrap_or(serde_json::Value::Null))
    })
}

pub fn get_text(url: &str) -> (u16, String) {
    reqwest::block_on(async {
        let r = reqwest::client().get(url).send().await.expect("GET");
        let s = r.status().as_u16();
        (s, r.text().await.unwrap_or_default())
    })
}

pub fn post_json(url: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
    reqwest::block_on(async {
        let r = reqwest::client()
            .post(url)
            .json(&body)
            .send()
            .await
            .expect("POST");
        let s = r.status().as_u16();
        (s, r.json().await.unwrap_or(serde_json::Value::Null))
    })
}

/// The delivery as `GET /deliveries/{id}` reports it.
pub fn delivery(server: &Proc, id: &str) -> serde_json::Value {
    get_json(&server.url(&format!("/deliveries/{id}"))).1
}

pub fn wait_processed(server: &Proc, ids: &[String], within: Duration) {
    wait_for(
        within,
        &format!("{} deliveries to be processed", ids.len()),
        || {
            let (_, v) = post_json(
                &server.url("/deliveries/lookup"),
                serde_json::json!({ "ids": ids }),
            );
            v["deliveries"].as_array().is_some_and(|a| {
                a.len() == ids.len() && a.iter().all(|d| d["state"] == "processed")
            })
        },
    );
}

pub fn xlen(redis: &Redis, key: &str) -> u64 {
    redis::cmd("XLEN")
        .arg(key)
        .query(&mut redis.conn())
        .unwrap()
}

pub fn get(redis: &Redis, key: &str) -> Option<String> {
    redis::cmd("GET").arg(key).query(&mut redis.conn()).unwrap()
}

/// All `events:*:lock` keys with their PTTL.
pub fn locks(redis: &Redis) -> Vec<(String, i64)> {
    let mut c = redis.conn();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("events:*:lock")
        .query(&mut c)
        .unwrap();
    keys.into_iter()
        .map(|k| {
            let t: i64 = redis::cmd("PTTL").arg(&k).query(&mut c).unwrap();
            (k, t)
        })
        .collect()
}

/// A sample value from a Prometheus text exposition (exact series match), if present.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        l.strip_prefix(series)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    })
}

/// Unique ids per test so parallel tests never share keys.
pub fn id(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The directory of the PostgreSQL server binaries (`initdb`, `postgres`), found as the harness
/// finds them ([`gitspy_contract::pg::bin_dir`]); fails saying what to install.
pub fn pg_bin_dir() -> PathBuf {
    gitspy_contract::pg::bin_dir().unwrap_or_else(|e| panic!("{e}"))
}

/// A real PostgreSQL server on a free port with its own temporary data directory (initdb'd for
/// the test, trust authentication on 127.0.0.1 only); stopped (fast shutdown) on drop.
pub struct Postgres {
    pub port: u16,
    pub dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Postgres {
    pub fn start() -> Postgres {
        let bin = pg_bin_dir();
        let dir = tempfile::tempdir().unwrap();
        // The same command lines as the harness's managed PostgreSQL (gitspy_contract::pg).
        if gitspy_contract::pg::is_root() {
            let st = gitspy_contract::pg::chown_command(dir.path())
                .status()
                .expect("chown the PostgreSQL data dir");
            assert!(st.success(), "chown postgres {}", dir.path().display());
        }
        let data = dir.path().join("data");
        let out = gitspy_contract::pg::initdb(&bin, &data)
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let port = free_port();
        let log = dir.path().join("postgres.log");
        // fsync off: these tests kill gitspy processes, never the database's host, and the machine
        // is shared; every other setting is the harness's.
        let child = gitspy_contract::pg::server(&bin, &data, port, dir.path())
            .args(["-c", "fsync=off"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn postgres");
        let pg = Postgres {
            port,
            dir,
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if postgres::Client::connect(&pg.url_of("postgres"), postgres::NoTls).is_ok() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "postgres on port {port} never accepted a connection; log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        pg
    }

    /// The URL of database `db` on this server.
    pub fn url_of(&self, db: &str) -> String {
        gitspy_contract::pg::url(self.port, db)
    }

    /// Creates a fresh database and returns its URL (one per system under test).
    pub fn create_db(&self, name: &str) -> String {
        let mut c = self.client("postgres");
        c.batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        self.url_of(name)
    }

    pub fn client(&self, db: &str) -> postgres::Client {
        postgres::Client::connect(&self.url_of(db), postgres::NoTls)
            .unwrap_or_else(|e| panic!("connect to postgres {db}: {e}"))
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SIGINT: fast shutdown (backends end, no checkpoint wait); SIGKILL if it hangs.
            let _ = Command::new("kill")
                .args(["-INT", &c.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}
