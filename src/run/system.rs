//! The managed system under test: Redis through a backend, one `gitspy serve`, N `gitspy worker`.
//! Started for a run, faulted by steps, torn down at the end — and recorded in a run file so
//! `gitspy-chaos cleanup` can undo what an interrupted run left.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use gitspy_contract::units::Dur;
use gitspy_contract::{EndpointPaths, Profile};

use crate::system::procs::{proc_start_ticks, ManagedProc, Role};
use crate::system::{BackendKind, BackendOptions, RedisBackend, RUN_LABEL};

/// Lock TTL and claim-idle the harness gives managed workers: short enough that a crashed
/// worker's deliveries are reclaimed within a scenario, long enough for the heartbeat. Typed:
/// the env value is written from it in the shared grammar, never re-parsed.
pub const WORKER_LOCK_TTL: Duration = Duration::from_secs(10);
/// How long a managed process gets for a clean SIGTERM exit.
pub const STOP_GRACE: Duration = Duration::from_secs(20);

/// The environment the harness gives every managed GitSpy process unless `target.env` or
/// `--target-env` says otherwise (shown by `list` and recorded in run.json), under the names of
/// the target profile.
pub fn default_target_env(env: &gitspy_contract::EnvNames) -> Vec<(String, String)> {
    let ttl = Dur(WORKER_LOCK_TTL).to_string();
    vec![
        (env.redis_timeout.clone(), "1s".into()),
        (env.lock_ttl.clone(), ttl.clone()),
        (env.claim_idle.clone(), ttl),
        (env.block.clone(), "1s".into()),
    ]
}

/// Variables the harness sets itself for each managed process: `target.env` may not.
pub const HARNESS_OWNED_ENV: &[&str] = &[
    "REDIS_URL",
    "GITSPY_DB",
    "GITHUB_WEBHOOK_SECRET",
    "GITSPY_LISTEN",
    "WORKER_METRICS_PORT",
    "GITSPY_CONSUMER",
    "GITSPY_SPOOL_DIR",
    "GITSPY_ON_REDIS_DOWN",
    "GITSPY_ADMIN_ADDR",
];

/// Whether `key` may be set through `target.env` / `--target-env`.
pub fn check_target_env_key(key: &str) -> Result<(), String> {
    if key.is_empty()
        || !key
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
    {
        return Err("not an environment variable name (A-Z, 0-9 and _)".into());
    }
    if HARNESS_OWNED_ENV.contains(&key) {
        return Err(if key == "GITSPY_ON_REDIS_DOWN" {
            "set by the harness from `target.on_redis_down`".into()
        } else if key == "GITSPY_ADMIN_ADDR" {
            "set by the harness from `target.admin_address`".into()
        } else {
            "set by the harness for each process".into()
        });
    }
    Ok(())
}

/// The environment in force: the defaults, then the scenario's `target.env`, then
/// `--target-env`, later ones winning.
pub fn effective_target_env(
    names: &gitspy_contract::EnvNames,
    scenario: &std::collections::BTreeMap<String, String>,
    cli: &[(String, String)],
) -> std::collections::BTreeMap<String, String> {
    let mut env: std::collections::BTreeMap<String, String> =
        default_target_env(names).into_iter().collect();
    env.extend(scenario.iter().map(|(k, v)| (k.clone(), v.clone())));
    env.extend(cli.iter().cloned());
    env
}

/// What the run file records: enough for `cleanup` to find and undo everything.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunFile {
    pub run_id: String,
    pub harness_pid: u32,
    pub processes: Vec<RecordedProc>,
    pub container: Option<String>,
    /// Data dir of a process-backend redis-server.
    pub redis_dir: Option<PathBuf>,
    /// The process-backend redis-server itself (it rewrites its command line, so `cleanup`
    /// finds it by pid and start time).
    #[serde(default)]
    pub redis_proc: Option<RecordedProc>,
    /// The managed PostgreSQL server (`target.store: postgres`) and its temp dir.
    #[serde(default)]
    pub postgres_proc: Option<RecordedProc>,
    #[serde(default)]
    pub postgres_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecordedProc {
    pub role: String,
    pub pid: u32,
    pub start_ticks: Option<u64>,
}

/// The consumer name the harness gives managed worker `i` of run `run_id`.
pub fn consumer_name(run_id: &str, i: usize) -> String {
    format!("{run_id}-worker-{i}")
}

/// Where run files live: one JSON per live run.
pub fn runs_dir() -> PathBuf {
    std::env::temp_dir().join("gitspy-chaos").join("runs")
}

/// A running system the harness attached to instead of starting it.
#[derive(Debug, Clone)]
pub struct AttachTarget {
    /// Where webhooks go (the load balancer's public address in a multi-server deployment).
    pub server_url: String,
    /// The admin address: reads, `/readyz` and metrics (absent: `server_url` serves them).
    pub admin_url: Option<String>,
    /// Every server's metrics URL when there are several (absent: one server).
    pub server_metrics_urls: Vec<String>,
    pub worker_urls: Vec<String>,
    pub worker_matcher: Option<crate::scenario::ProcessMatcher>,
    pub server_matcher: Option<crate::scenario::ProcessMatcher>,
}

pub struct System {
    /// Set in attach mode: nothing of the system was started by the harness but (maybe) Redis.
    pub attach: Option<AttachTarget>,
    pub run_id: String,
    pub redis: RedisBackend,
    pub server: ManagedProc,
    pub workers: Vec<ManagedProc>,
    pub secret: String,
    pub dir: PathBuf,
    /// HTTP paths of the system (its profile's; GitSpy's by default).
    pub paths: EndpointPaths,
    /// Managed mode: the TCP proxy on every link (network faults act there); empty in attach
    /// mode.
    pub net: crate::netproxy::NetLinks,
    /// Managed mode: the environment every GitSpy process was started with
    /// ([`effective_target_env`]); empty in attach mode (see [`System::setting`]).
    pub env: std::collections::BTreeMap<String, String>,
    /// Managed mode with `target.store: postgres`: the PostgreSQL server GitSpy's store is in.
    pub postgres: Option<crate::system::postgres::ManagedPostgres>,
    run_file: PathBuf,
}

/// Settings of a managed system.
pub struct SystemSpec<'a> {
    pub run_id: &'a str,
    pub gitspy_bin: &'a Path,
    pub backend: BackendKind,
    pub container: Option<String>,
    pub image: Option<String>,
    pub workers: u32,
    pub spool: bool,
    /// Where the database, spool and process logs go.
    pub dir: &'a Path,
    /// Test-only: start GitSpy with every duplicate check off (proves the harness sees duplicates).
    pub disable_dedupe: bool,
    /// Environment of every GitSpy process ([`effective_target_env`]).
    pub env: std::collections::BTreeMap<String, String>,
    /// The names of the system (env variables, endpoints) from its target profile.
    pub profile: &'a Profile,
    /// Seeds the network proxies' jitter.
    pub seed: u64,
    /// Start the server with an admin address (`target.admin_address`): reads go there,
    /// webhooks to the public address.
    pub admin_address: bool,
    /// The board store GitSpy gets.
    pub store: crate::scenario::model::StoreKind,
}

/// Which processes a setting is read from in attach mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettingOf {
    Server,
    Worker,
}

/// A duration setting in force in the system under test, and where it was learned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    pub value: Duration,
    /// `target env`, `GITSPY_LOCK_TTL of pid 123`, or `GitSpy's default`.
    pub source: String,
}

/// `name`'s value in `env` if set and readable, else `default` (GitSpy's own default, the
/// contract's `*_DEFAULT`), saying which.
pub fn setting_from(
    env: &std::collections::BTreeMap<String, String>,
    name: &str,
    default: &str,
) -> Setting {
    match env
        .get(name)
        .and_then(|v| gitspy_contract::units::parse_duration(v).ok())
    {
        Some(value) => Setting {
            value,
            source: format!("{name} in the target env"),
        },
        None => Setting {
            value: gitspy_contract::units::parse_duration(default).unwrap_or_default(),
            source: format!("GitSpy's default {name}"),
        },
    }
}

impl System {
    pub async fn start(spec: SystemSpec<'_>) -> anyhow::Result<System> {
        std::fs::create_dir_all(spec.dir)
            .with_context(|| format!("cannot create {}", spec.dir.display()))?;
        let mut opts = BackendOptions::new(spec.run_id);
        if let Some(c) = &spec.container {
            opts.docker.container = c.clone();
        }
        if let Some(i) = &spec.image {
            opts.docker.image = i.clone();
        }
        // A 2xx from GitSpy means "in Redis": only true across a Redis crash with fsync per write.
        let fsync = vec!["--appendfsync".to_string(), "always".to_string()];
        opts.docker.extra_args.extend(fsync.clone());
        opts.process.extra_args.extend(fsync);
        opts.process.dir = Some(spec.dir.join("redis"));
        let redis = RedisBackend::connect(spec.backend, opts).await?;
        let mut sys = System {
            attach: None,
            run_id: spec.run_id.to_string(),
            redis,
            server: ManagedProc::new(Role::Server, spec.gitspy_bin, Vec::new(), spec.dir),
            workers: Vec::new(),
            secret: format!("chaos-{}", spec.run_id),
            dir: spec.dir.to_path_buf(),
            paths: spec.profile.endpoints.clone(),
            net: crate::netproxy::NetLinks::default(),
            env: spec.env.clone(),
            postgres: None,
            run_file: runs_dir().join(format!("{}.json", spec.run_id)),
        };
        sys.record();
        sys.redis.up().await.context("starting Redis")?;
        sys.record();
        if spec.store == crate::scenario::model::StoreKind::Postgres {
            let pg = crate::system::postgres::ManagedPostgres::start()
                .await
                .context("starting PostgreSQL (target.store: postgres)")?;
            sys.postgres = Some(pg);
            sys.record();
        }
        // Every process reaches Redis through a proxy of its own (network faults act there).
        let real_redis = sys.redis.url()?;
        let redis_addr = crate::netproxy::links::redis_upstream(&real_redis).await?;
        let proxy = |name: String| crate::netproxy::Proxy::start_named(name, redis_addr, spec.seed);
        let server_link = sys.net.push(proxy("server-redis".into()).await?);
        let redis_url =
            crate::netproxy::links::redis_url_via(&real_redis, server_link.listen_addr())?;
        // With a PostgreSQL store each process reaches it through a proxy of its own too
        // (`server-store`, `worker-<i>-store`); the harness's own reads go straight to it.
        let pg_addr = sys.postgres.as_ref().map(|pg| pg.addr());
        let db = match pg_addr {
            Some(addr) => {
                let link =
                    crate::netproxy::Proxy::start_named("server-store".into(), addr, spec.seed);
                let link = sys.net.push(link.await?);
                sys.postgres
                    .as_ref()
                    .map(|pg| pg.url_via(link.listen_addr()))
                    .unwrap_or_else(|| sys.db_env())
            }
            None => sys.db_env(),
        };
        let env = &spec.profile.env;
        let mut common = vec![(env.redis_url.clone(), redis_url), (env.db.clone(), db)];
        common.extend(spec.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        if spec.disable_dedupe {
            common.push((env.test_disable_dedupe.clone(), "true".into()));
        }
        let mut server_env = common.clone();
        server_env.push((env.webhook_secret.clone(), sys.secret.clone()));
        server_env.push((
            env.on_redis_down.clone(),
            if spec.spool { "spool" } else { "reject" }.into(),
        ));
        server_env.push((
            env.spool_dir.clone(),
            spec.dir.join("spool").display().to_string(),
        ));
        sys.server = ManagedProc::new(Role::Server, spec.gitspy_bin, server_env, spec.dir);
        if spec.admin_address {
            sys.server.with_admin_address(&env.admin_addr);
        }
        sys.server.start().await?;
        sys.record();
        if let Some(addr) = sys.server.addr {
            let link = crate::netproxy::Proxy::start_named("sender-server".into(), addr, spec.seed);
            sys.net.push(link.await?);
        }
        let worker_env = common;
        for i in 0..spec.workers as usize {
            // A consumer name per worker, so the harness can read what each one holds.
            let mut env = worker_env.clone();
            let link = sys.net.push(proxy(format!("worker-{i}-redis")).await?);
            let url = crate::netproxy::links::redis_url_via(&real_redis, link.listen_addr())?;
            let store_url = match pg_addr {
                Some(addr) => {
                    let link = crate::netproxy::Proxy::start_named(
                        format!("worker-{i}-store"),
                        addr,
                        spec.seed,
                    );
                    let link = sys.net.push(link.await?);
                    sys.postgres
                        .as_ref()
                        .map(|pg| pg.url_via(link.listen_addr()))
                }
                None => None,
            };
            for (k, v) in env.iter_mut() {
                if *k == spec.profile.env.redis_url {
                    *v = url.clone();
                } else if *k == spec.profile.env.db {
                    if let Some(u) = &store_url {
                        *v = u.clone();
                    }
                }
            }
            env.push(("GITSPY_CONSUMER".into(), consumer_name(spec.run_id, i)));
            let mut w = ManagedProc::new(Role::Worker(i), spec.gitspy_bin, env, spec.dir);
            w.start().await?;
            sys.workers.push(w);
            sys.record();
        }
        sys.wait_ready(Duration::from_secs(60)).await?;
        Ok(sys)
    }

    /// The duration setting `name` the system runs with: managed mode, the environment the
    /// harness gave it; attach mode, the environment of the first matched process of that kind
    /// (`/proc/<pid>/environ`); else `default`, GitSpy's own.
    pub async fn setting(&self, name: &str, of: SettingOf, default: &str) -> Setting {
        let Some(a) = &self.attach else {
            return setting_from(&self.env, name, default);
        };
        let matcher = match of {
            SettingOf::Server => a.server_matcher.clone(),
            SettingOf::Worker => a.worker_matcher.clone(),
        };
        let name_owned = name.to_string();
        let found = match matcher {
            Some(m) => tokio::task::spawn_blocking(move || {
                let procs = crate::system::attach::find(&m).ok()?;
                procs.iter().find_map(|p| {
                    let v = crate::system::attach::env_value(p.pid, &name_owned)?;
                    gitspy_contract::units::parse_duration(&v)
                        .ok()
                        .map(|d| (p.pid, d))
                })
            })
            .await
            .ok()
            .flatten(),
            None => None,
        };
        match found {
            Some((pid, value)) => Setting {
                value,
                source: format!("{name} of pid {pid}"),
            },
            None => setting_from(&Default::default(), name, default),
        }
    }

    /// Attaches to a running system: Redis through its backend (a Docker container or an external
    /// URL — never started unless it is a stopped container), the server and workers by URL.
    #[allow(clippy::too_many_arguments)] // one call site; a struct would only rename them
    pub async fn attach(
        run_id: &str,
        gitspy_bin: &Path,
        backend: BackendKind,
        container: Option<String>,
        redis_url: &str,
        target: AttachTarget,
        secret: String,
        dir: &Path,
    ) -> anyhow::Result<System> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let mut opts = BackendOptions::new(run_id);
        opts.external_url = Some(redis_url.to_string());
        if let Some(c) = container {
            opts.docker.container = c;
        }
        let redis = RedisBackend::connect(backend, opts).await?;
        redis
            .up()
            .await
            .context("the attached Redis does not answer")?;
        let sys = System {
            attach: Some(target),
            run_id: run_id.to_string(),
            redis,
            server: ManagedProc::new(Role::Server, gitspy_bin, Vec::new(), dir),
            workers: Vec::new(),
            secret,
            dir: dir.to_path_buf(),
            paths: EndpointPaths::default(),
            net: crate::netproxy::NetLinks::default(),
            env: Default::default(),
            postgres: None,
            run_file: runs_dir().join(format!("{run_id}.json")),
        };
        sys.record();
        sys.wait_ready(Duration::from_secs(30)).await?;
        Ok(sys)
    }

    /// The consumer name of managed worker `i` (`GITSPY_CONSUMER`).
    pub fn consumer(&self, i: usize) -> String {
        consumer_name(&self.run_id, i)
    }

    /// What GitSpy's processes get as `GITSPY_DB`: the managed PostgreSQL's URL, else the
    /// run's SQLite file.
    pub fn db_env(&self) -> String {
        match &self.postgres {
            Some(pg) => pg.url(),
            None => self.dir.join("gitspy.db").display().to_string(),
        }
    }

    /// Where the harness reads the server (lookups, boards, `/readyz`, metrics, debug): its
    /// admin address when it has one, else its only address.
    pub fn server_url(&self, path: &str) -> String {
        if let Some(a) = &self.attach {
            let base = a.admin_url.as_deref().unwrap_or(&a.server_url);
            return format!("{}{path}", base.trim_end_matches('/'));
        }
        self.server.url(path).unwrap_or_default()
    }

    /// The URL the sender posts webhooks to: through the `sender-server` proxy in managed mode
    /// (so network faults reach it), the server's public address in attach mode. Lookups,
    /// scrapes and probes go straight to the server (observation is never faulted).
    pub fn ingress_url(&self, path: &str) -> String {
        if let Some(a) = &self.attach {
            return format!("{}{path}", a.server_url.trim_end_matches('/'));
        }
        match self.net.get("sender-server") {
            Some(p) => format!("http://{}{path}", p.listen_addr()),
            None => self.server_url(path),
        }
    }

    /// `(target name, metrics URL)` of every process.
    pub fn metric_targets(&self) -> Vec<(String, String)> {
        if let Some(a) = &self.attach {
            let mut v = if a.server_metrics_urls.is_empty() {
                vec![("server".to_string(), self.server_url(&self.paths.metrics))]
            } else {
                a.server_metrics_urls
                    .iter()
                    .enumerate()
                    .map(|(i, u)| {
                        let name = if i == 0 {
                            "server".to_string()
                        } else {
                            format!("server-{i}")
                        };
                        (name, u.clone())
                    })
                    .collect()
            };
            for (i, u) in a.worker_urls.iter().enumerate() {
                v.push((format!("worker-{i}"), u.clone()));
            }
            return v;
        }
        let mut v = vec![("server".to_string(), self.server_url(&self.paths.metrics))];
        for w in &self.workers {
            if let Some(u) = w.url(&self.paths.metrics) {
                v.push((w.role.name(), u));
            }
        }
        v
    }

    pub async fn wait_ready(&self, within: Duration) -> anyhow::Result<()> {
        let url = self.server_url(&self.paths.readyz);
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(3))
            .build()?;
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Ok(r) = client.get(&url).send().await {
                if r.status().is_success() {
                    return Ok(());
                }
            }
            if tokio::time::Instant::now() > deadline {
                anyhow::bail!("gitspy serve never became ready at {url} within {within:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Writes the run file (best effort: a failure only weakens `cleanup`).
    pub fn record(&self) {
        let mut f = RunFile {
            run_id: self.run_id.clone(),
            harness_pid: std::process::id(),
            container: match &self.redis {
                RedisBackend::Docker(d) => Some(d.container().to_string()),
                _ => None,
            },
            ..RunFile::default()
        };
        for p in std::iter::once(&self.server).chain(self.workers.iter()) {
            if let Some(pid) = p.pid {
                f.processes.push(RecordedProc {
                    role: p.role.name(),
                    pid,
                    start_ticks: p.start_ticks,
                });
            }
        }
        if let Some(pg) = &self.postgres {
            f.postgres_dir = Some(pg.dir().to_path_buf());
            f.postgres_proc = pg.pid().map(|pid| RecordedProc {
                role: "postgres".into(),
                pid,
                start_ticks: proc_start_ticks(pid),
            });
        }
        if let RedisBackend::Process(p) = &self.redis {
            f.redis_dir = Some(p.dir().to_path_buf());
            f.redis_proc = p.pid().map(|pid| RecordedProc {
                role: "redis".into(),
                pid,
                start_ticks: proc_start_ticks(pid),
            });
        }
        let _ = std::fs::create_dir_all(runs_dir());
        if let Ok(json) = serde_json::to_vec_pretty(&f) {
            let _ = std::fs::write(&self.run_file, json);
        }
    }

    /// Stops everything and removes what this run created; never fails the run.
    pub async fn teardown(&mut self) {
        for w in &mut self.workers {
            if let Err(e) = w.stop(STOP_GRACE).await {
                tracing::warn!(worker = %w.role.name(), error = %e, "stopping worker");
            }
        }
        if let Err(e) = self.server.stop(STOP_GRACE).await {
            tracing::warn!(error = %e, "stopping server");
        }
        if let Some(pg) = self.postgres.as_mut() {
            pg.stop().await;
            // The server's log goes with its temp dir: keep a copy beside the processes' logs.
            let _ = std::fs::copy(pg.dir().join("postgres.log"), self.dir.join("postgres.log"));
        }
        if let Err(e) = self.redis.teardown().await {
            tracing::warn!(error = %e, "tearing down Redis");
        }
        let _ = std::fs::remove_file(&self.run_file);
    }
}

/// `gitspy-chaos cleanup`: kills processes recorded by interrupted runs (after re-checking pid and
/// start time), and unpauses/starts/removes every container and network labelled by the harness.
pub async fn cleanup() -> anyhow::Result<Vec<String>> {
    let mut done = Vec::new();
    // Runs whose harness is still alive are left alone, their containers too.
    let mut live_runs = std::collections::BTreeSet::new();
    if let Ok(entries) = std::fs::read_dir(runs_dir()) {
        for e in entries.flatten() {
            let path = e.path();
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            let Ok(f) = serde_json::from_str::<RunFile>(&text) else {
                continue;
            };
            if f.harness_pid != std::process::id()
                && proc_start_ticks(f.harness_pid).is_some()
                && is_live_harness(f.harness_pid)
            {
                done.push(format!(
                    "run {}: its harness (pid {}) is still running; left alone",
                    f.run_id, f.harness_pid
                ));
                live_runs.insert(f.run_id.clone());
                continue;
            }
            let mut killed: Vec<&RecordedProc> = Vec::new();
            for p in f
                .processes
                .iter()
                .chain(f.redis_proc.iter())
                .chain(f.postgres_proc.iter())
            {
                if p.pid == std::process::id() {
                    continue;
                }
                match (proc_start_ticks(p.pid), p.start_ticks) {
                    (Some(now), Some(then)) if now == then => {
                        // A frozen process dies of SIGKILL too; SIGCONT first does no harm.
                        let pid = nix::unistd::Pid::from_raw(p.pid as i32);
                        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT);
                        done.push(format!(
                            "killed {} (pid {}) of run {}",
                            p.role, p.pid, f.run_id
                        ));
                        killed.push(p);
                    }
                    _ => {}
                }
            }
            let mut by_dir = Vec::new();
            if let Some(dir) = &f.redis_dir {
                for pid in redis_servers_in(dir) {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid as i32),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                    done.push(format!(
                        "killed redis-server (pid {pid}) of run {}",
                        f.run_id
                    ));
                    by_dir.push(pid);
                }
            }
            // The record goes only once everything in it is gone: a second `cleanup` can
            // still find what this one could not.
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            let alive = || {
                killed
                    .iter()
                    .filter(|p| p.start_ticks.is_some() && proc_start_ticks(p.pid) == p.start_ticks)
                    .count()
                    + by_dir
                        .iter()
                        .filter(|pid| proc_start_ticks(**pid).is_some())
                        .count()
            };
            while alive() > 0 && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            if alive() == 0 {
                if let Some(dir) = &f.postgres_dir {
                    if std::fs::remove_dir_all(dir).is_ok() {
                        done.push(format!("removed {} of run {}", dir.display(), f.run_id));
                    }
                }
                let _ = std::fs::remove_file(&path);
            } else {
                done.push(format!(
                    "run {}: {} process(es) still alive; its record is kept for the next cleanup",
                    f.run_id,
                    alive()
                ));
            }
        }
    }
    match crate::system::docker::connect().await {
        Ok(docker) => {
            use crate::system::docker;
            let mut runs = std::collections::BTreeSet::new();
            for c in docker::list_labelled(&docker, None).await? {
                runs.insert(c.run_id);
            }
            for n in docker::list_labelled_networks(&docker, None).await? {
                runs.insert(n.run_id);
            }
            for run_id in runs.difference(&live_runs) {
                let report = docker::cleanup(
                    &docker,
                    &docker::CleanupOptions {
                        run_id: Some(run_id.clone()),
                        remove: true,
                    },
                )
                .await?;
                for c in &report.removed {
                    done.push(format!(
                        "removed container {c} of run {run_id} (label {RUN_LABEL})"
                    ));
                }
                for n in &report.networks_removed {
                    done.push(format!("removed network {n} of run {run_id}"));
                }
                for err in &report.errors {
                    done.push(format!("error: {err}"));
                }
            }
        }
        Err(e) => done.push(format!(
            "docker not reachable ({e:#}); no containers to clean"
        )),
    }
    Ok(done)
}

/// The pid of the harness running `run_id`, when its run file exists and that harness is alive.
pub fn live_harness_of(run_id: &str) -> Option<u32> {
    let text = std::fs::read_to_string(runs_dir().join(format!("{run_id}.json"))).ok()?;
    let f: RunFile = serde_json::from_str(&text).ok()?;
    (f.harness_pid == std::process::id() || is_live_harness(f.harness_pid)).then_some(f.harness_pid)
}

fn is_live_harness(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
        .map(|c| c.contains("gitspy-chaos"))
        .unwrap_or(false)
}

/// redis-server processes whose command line names `dir` (the process backend passes `--dir`).
fn redis_servers_in(dir: &Path) -> Vec<u32> {
    let want = dir.display().to_string();
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for e in entries.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) {
                let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
                if cmd.contains("redis-server") && cmd.contains(&want) {
                    out.push(pid);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn the_lock_ttl_in_force_is_the_target_env_one_not_the_harness_default() {
        let names = gitspy_contract::EnvNames::default();
        let mut scenario = BTreeMap::new();
        scenario.insert(names.lock_ttl.clone(), "20s".to_string());
        let env = effective_target_env(&names, &scenario, &[]);
        let s = setting_from(
            &env,
            &names.lock_ttl,
            gitspy_contract::env::LOCK_TTL_DEFAULT,
        );
        assert_eq!(s.value, Duration::from_secs(20));
        // Without target.env: the harness's default for managed workers.
        let env = effective_target_env(&names, &BTreeMap::new(), &[]);
        let s = setting_from(
            &env,
            &names.lock_ttl,
            gitspy_contract::env::LOCK_TTL_DEFAULT,
        );
        assert_eq!(s.value, WORKER_LOCK_TTL);
        // `--target-env` wins over the scenario.
        let env = effective_target_env(
            &names,
            &scenario,
            &[(names.lock_ttl.clone(), "45s".to_string())],
        );
        let s = setting_from(
            &env,
            &names.lock_ttl,
            gitspy_contract::env::LOCK_TTL_DEFAULT,
        );
        assert_eq!(s.value, Duration::from_secs(45));
        // Nothing set (attach mode, no readable process): GitSpy's own default, said so.
        let s = setting_from(
            &BTreeMap::new(),
            &names.lock_ttl,
            gitspy_contract::env::LOCK_TTL_DEFAULT,
        );
        assert_eq!(s.value, Duration::from_secs(30));
        assert!(s.source.contains("default"), "{}", s.source);
    }

    #[test]
    fn env_value_reads_this_process_environment() {
        // PATH is set for every test process.
        let v = crate::system::attach::env_value(std::process::id(), "PATH");
        assert_eq!(v, std::env::var("PATH").ok());
        assert_eq!(
            crate::system::attach::env_value(std::process::id(), "NO_SUCH_VAR_GITSPY_CHAOS"),
            None
        );
    }
}
