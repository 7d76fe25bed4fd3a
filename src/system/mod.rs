//! The Redis the harness drives (SPEC §2.2): one [`RedisBackend`] with the same operations
//! whatever runs Redis — a Docker container ([`docker`]), a `redis-server` child process
//! ([`process_redis`]) or an external URL the harness must not touch.
//!
//! Fault steps call [`RedisBackend::apply`]; the `auto` backend is resolved by [`choose`], a pure
//! function over what [`probe`] found on the machine, so the selection rules are unit-tested
//! without a Docker engine. [`doctor`] turns the same probe into install hints.

pub mod attach;
pub mod docker;
pub mod postgres;
pub mod process_redis;
pub mod procs;
pub mod profile;
pub mod prometheus;
pub mod redis_ready;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

pub use docker::{DockerConfig, DockerRedis};
pub use process_redis::{ProcessConfig, ProcessRedis};

/// The label every container and network the harness creates carries, with the run id as value;
/// `cleanup` finds leftovers by it.
pub const RUN_LABEL: &str = "gitspy-chaos.run";

/// The image the Docker backend uses when the scenario names none: the offline build of
/// `docker/build-redis-image.sh` (no registry is reachable on the project's machines).
pub const DEFAULT_IMAGE: &str = "gitspy-redis:7";

/// The container name the Docker backend uses when the scenario names none.
pub const DEFAULT_CONTAINER: &str = "gitspy-redis";

/// The script that builds [`DEFAULT_IMAGE`] (and, given more tags, e.g. `redis:7-alpine`).
pub const IMAGE_SCRIPT: &str = "docker/build-redis-image.sh";

/// The script that starts the Docker daemon once.
pub const DOCKER_SETUP_SCRIPT: &str = "scripts/setup-docker.sh";

/// Which Redis backend a scenario or the `--backend` flag asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// A container driven through the Docker API.
    Docker,
    /// A `redis-server` child process.
    Process,
    /// A Redis given by URL; observation only.
    External,
    /// Docker when it can run the image, else a process, else an error saying what to install.
    Auto,
}

impl BackendKind {
    /// The lowercase name used in scenarios, flags and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Docker => "docker",
            BackendKind::Process => "process",
            BackendKind::External => "external",
            BackendKind::Auto => "auto",
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for BackendKind {
    type Err = TargetError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "docker" => Ok(BackendKind::Docker),
            "process" => Ok(BackendKind::Process),
            "external" => Ok(BackendKind::External),
            "auto" => Ok(BackendKind::Auto),
            other => Err(TargetError::UnknownBackend(other.to_string())),
        }
    }
}

/// A signal a `kill` fault sends. Docker receives it by name, a process by number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Signal {
    /// SIGKILL: a crash; nothing is flushed.
    Sigkill,
    /// SIGTERM: a graceful shutdown request.
    Sigterm,
    /// SIGINT.
    Sigint,
    /// SIGQUIT.
    Sigquit,
    /// SIGHUP.
    Sighup,
}

impl Signal {
    /// The conventional name, as Docker's kill endpoint takes it.
    pub fn name(self) -> &'static str {
        match self {
            Signal::Sigkill => "SIGKILL",
            Signal::Sigterm => "SIGTERM",
            Signal::Sigint => "SIGINT",
            Signal::Sigquit => "SIGQUIT",
            Signal::Sighup => "SIGHUP",
        }
    }

    /// Whether Redis exits on this signal (so a kill waits until it is down). Redis reloads
    /// nothing on SIGHUP and ignores it by default.
    pub fn terminates_redis(self) -> bool {
        !matches!(self, Signal::Sighup)
    }

    pub(crate) fn to_nix(self) -> nix::sys::signal::Signal {
        use nix::sys::signal::Signal as N;
        match self {
            Signal::Sigkill => N::SIGKILL,
            Signal::Sigterm => N::SIGTERM,
            Signal::Sigint => N::SIGINT,
            Signal::Sigquit => N::SIGQUIT,
            Signal::Sighup => N::SIGHUP,
        }
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Signal {
    type Err = TargetError;

    /// Accepts `SIGKILL`, `KILL`, `kill` and `9` alike.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let upper = s.trim().to_ascii_uppercase();
        let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
        match bare {
            "KILL" | "9" => Ok(Signal::Sigkill),
            "TERM" | "15" => Ok(Signal::Sigterm),
            "INT" | "2" => Ok(Signal::Sigint),
            "QUIT" | "3" => Ok(Signal::Sigquit),
            "HUP" | "1" => Ok(Signal::Sighup),
            _ => Err(TargetError::UnknownSignal(s.to_string())),
        }
    }
}

/// One fault (or its undoing) applied to Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RedisFault {
    /// Graceful stop (SIGTERM, then SIGKILL after the grace period).
    Stop,
    /// Start again (same port, same data); returns once PING answers.
    Start,
    /// Stop then start; returns once PING answers.
    Restart,
    /// Send a signal; for signals that end Redis, returns once it is down.
    Kill(Signal),
    /// Freeze: connections are accepted but nothing answers.
    Pause,
    /// Thaw; returns once PING answers.
    Unpause,
}

impl RedisFault {
    /// The operation's name, for reports and errors.
    pub fn name(self) -> &'static str {
        match self {
            RedisFault::Stop => "stop",
            RedisFault::Start => "start",
            RedisFault::Restart => "restart",
            RedisFault::Kill(_) => "kill",
            RedisFault::Pause => "pause",
            RedisFault::Unpause => "unpause",
        }
    }
}

/// What [`RedisBackend::inspect`] saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Not created yet (container missing, process never started).
    Missing,
    /// Created but never started (Docker only).
    Created,
    /// Running (not necessarily answering yet).
    Running,
    /// Frozen by pause.
    Paused,
    /// Docker is restarting it.
    Restarting,
    /// Stopped or killed; the exit code if one is known.
    Exited { code: Option<i64> },
    /// Anything else the engine reports, verbatim.
    Other(String),
}

/// The observable state of the Redis under test.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedisStatus {
    /// Lifecycle state.
    pub state: RunState,
    /// The host port Redis is reachable on (127.0.0.1), when known.
    pub host_port: Option<u16>,
    /// The Redis process id on the host, when running.
    pub pid: Option<u32>,
    /// Engine-specific detail (container id, health, start time, data dir…), for reports.
    pub detail: String,
}

/// Errors a caller branches on: unsupported operations, nothing to run Redis with.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// The scenario asked for a fault this backend cannot do.
    #[error("the {backend} Redis backend cannot {op}")]
    Unsupported {
        /// Backend name.
        backend: &'static str,
        /// Operation name.
        op: &'static str,
    },
    /// `url()` before the backend has a port.
    #[error("the {0} Redis backend has no address yet: call up() first")]
    NotStarted(&'static str),
    /// Unknown `--backend` value.
    #[error("unknown Redis backend `{0}`: expected docker, process, external or auto")]
    UnknownBackend(String),
    /// Unknown signal name.
    #[error("unknown signal `{0}`: expected SIGKILL, SIGTERM, SIGINT, SIGQUIT or SIGHUP")]
    UnknownSignal(String),
    /// `--backend docker` but no engine answers.
    #[error("docker does not answer: {reason}\nhint: install it with `apt-get install -y docker.io`, then start the daemon once with `{DOCKER_SETUP_SCRIPT}`")]
    DockerUnavailable {
        /// What the connection attempt said.
        reason: String,
    },
    /// The image is absent and could not be pulled.
    #[error("docker image `{image}` is not present and could not be pulled ({reason})\nhint: build an offline equivalent from the host's redis-server with `{IMAGE_SCRIPT} {image}`")]
    ImageMissing {
        /// The image reference.
        image: String,
        /// Why the pull failed.
        reason: String,
    },
    /// `--backend process` but no redis-server.
    #[error("redis-server is not on PATH\nhint: apt-get install -y redis-server")]
    RedisServerMissing,
    /// `--backend external` without a URL.
    #[error("the external Redis backend needs a Redis URL")]
    ExternalUrlMissing,
    /// `auto`: neither Docker with the image nor redis-server.
    #[error("no Redis backend is available: {docker}; redis-server is not on PATH\nhint: apt-get install -y redis-server (process backend), or apt-get install -y docker.io && {DOCKER_SETUP_SCRIPT} && {IMAGE_SCRIPT} (docker backend)")]
    NothingAvailable {
        /// Why Docker cannot be used.
        docker: String,
    },
}

/// What the machine offers, as [`probe`] finds it; [`choose`] decides from this alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Availability {
    /// The Docker engine and the image.
    pub docker: DockerProbe,
    /// `redis-server` found on `PATH`.
    pub redis_server: Option<PathBuf>,
}

/// The Docker part of [`Availability`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DockerProbe {
    /// No engine answered (not installed, not running, no permission).
    Unreachable {
        /// What the attempt said.
        reason: String,
    },
    /// An engine answered.
    Answers {
        /// The API version it speaks (e.g. `1.41`).
        api_version: String,
        /// Whether the requested image is present locally.
        image_present: bool,
    },
}

impl DockerProbe {
    fn summary(&self, image: &str) -> String {
        match self {
            DockerProbe::Unreachable { reason } => format!("docker does not answer ({reason})"),
            DockerProbe::Answers {
                image_present: false,
                ..
            } => format!("docker answers but image `{image}` is not present"),
            DockerProbe::Answers { .. } => format!("docker answers and has image `{image}`"),
        }
    }
}

/// Resolves the requested backend against what the machine offers (SPEC §2.2 `auto`): Docker
/// when an engine answers and the image is present, else a process when `redis-server` is on
/// `PATH`, else [`TargetError::NothingAvailable`] saying what to install. An explicit request is
/// honoured or refused, never silently swapped. An explicit `docker` with the image absent is
/// accepted: [`DockerRedis::up`] tries to pull and then points to the offline script.
pub fn choose(
    requested: BackendKind,
    available: &Availability,
    image: &str,
) -> Result<BackendKind, TargetError> {
    match requested {
        BackendKind::External => Ok(BackendKind::External),
        BackendKind::Docker => match &available.docker {
            DockerProbe::Unreachable { reason } => Err(TargetError::DockerUnavailable {
                reason: reason.clone(),
            }),
            DockerProbe::Answers { .. } => Ok(BackendKind::Docker),
        },
        BackendKind::Process => match available.redis_server {
            Some(_) => Ok(BackendKind::Process),
            None => Err(TargetError::RedisServerMissing),
        },
        BackendKind::Auto => match (&available.docker, &available.redis_server) {
            (
                DockerProbe::Answers {
                    image_present: true,
                    ..
                },
                _,
            ) => Ok(BackendKind::Docker),
            (_, Some(_)) => Ok(BackendKind::Process),
            (docker, None) => Err(TargetError::NothingAvailable {
                docker: docker.summary(image),
            }),
        },
    }
}

/// Looks at the machine: does a Docker engine answer (and has it `image`), is `redis-server` on
/// `PATH`. Bounded by [`docker::PROBE_TIMEOUT`] per Docker call.
pub async fn probe(image: &str) -> Availability {
    let docker = match docker::connect().await {
        Err(e) => DockerProbe::Unreachable {
            reason: format!("{e:#}"),
        },
        Ok(client) => {
            let api_version = client.client_version().to_string();
            match docker::image_present(&client, image).await {
                Ok(image_present) => DockerProbe::Answers {
                    api_version,
                    image_present,
                },
                Err(e) => DockerProbe::Unreachable {
                    reason: format!("{e:#}"),
                },
            }
        }
    };
    Availability {
        docker,
        redis_server: find_on_path("redis-server"),
    }
}

/// The first executable file called `name` in the directories of `PATH`.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// One line of `gitspy-chaos doctor` about the Redis backends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DoctorCheck {
    /// What was checked.
    pub name: String,
    /// Whether it is usable.
    pub ok: bool,
    /// What was found (version, path, error).
    pub detail: String,
    /// How to fix it, when not ok.
    pub hint: Option<String>,
}

/// Checks for `doctor`: the Docker engine and its API version, the image, `redis-server`.
pub async fn doctor(image: &str) -> Vec<DoctorCheck> {
    let available = probe(image).await;
    let mut checks = Vec::new();
    match &available.docker {
        DockerProbe::Unreachable { reason } => {
            checks.push(DoctorCheck {
                name: "docker engine".into(),
                ok: false,
                detail: reason.clone(),
                hint: Some(format!(
                    "apt-get install -y docker.io, then start the daemon with {DOCKER_SETUP_SCRIPT}"
                )),
            });
            checks.push(DoctorCheck {
                name: format!("docker image {image}"),
                ok: false,
                detail: "not checked: docker does not answer".into(),
                hint: Some(format!("{IMAGE_SCRIPT} {image} (once docker answers)")),
            });
        }
        DockerProbe::Answers {
            api_version,
            image_present,
        } => {
            checks.push(DoctorCheck {
                name: "docker engine".into(),
                ok: true,
                detail: format!("answers, API {api_version}"),
                hint: None,
            });
            checks.push(DoctorCheck {
                name: format!("docker image {image}"),
                ok: *image_present,
                detail: if *image_present {
                    "present".into()
                } else {
                    "absent (no registry is reachable here)".into()
                },
                hint: (!*image_present).then(|| format!("{IMAGE_SCRIPT} {image}")),
            });
        }
    }
    checks.push(match &available.redis_server {
        Some(path) => DoctorCheck {
            name: "redis-server".into(),
            ok: true,
            detail: path.display().to_string(),
            hint: None,
        },
        None => DoctorCheck {
            name: "redis-server".into(),
            ok: false,
            detail: "not on PATH".into(),
            hint: Some("apt-get install -y redis-server".into()),
        },
    });
    checks
}

/// What [`RedisBackend::connect`] needs besides the backend kind.
#[derive(Debug, Clone)]
pub struct BackendOptions {
    /// Settings of the Docker backend (container, image, run id…).
    pub docker: DockerConfig,
    /// Settings of the process backend.
    pub process: ProcessConfig,
    /// The URL of the external backend.
    pub external_url: Option<String>,
}

impl BackendOptions {
    /// Defaults for a run: container [`DEFAULT_CONTAINER`], image [`DEFAULT_IMAGE`], a fresh
    /// temp dir and free port for a process.
    pub fn new(run_id: &str) -> Self {
        BackendOptions {
            docker: DockerConfig::new(run_id),
            process: ProcessConfig::default(),
            external_url: None,
        }
    }
}

/// A Redis reachable through the URL given; the harness never stops or breaks it.
#[derive(Debug, Clone)]
pub struct ExternalRedis {
    url: String,
    ready_timeout: Duration,
}

impl ExternalRedis {
    /// Observe the Redis at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        ExternalRedis {
            url: url.into(),
            // A Redis someone else runs should already be up: 10 s covers a slow network.
            ready_timeout: Duration::from_secs(10),
        }
    }
}

/// The Redis under test, whatever runs it. Every method takes `&self`, so one backend can be
/// shared (`Arc`) between a fault step and the observers running beside it.
#[derive(Debug)]
pub enum RedisBackend {
    /// A Docker container.
    Docker(DockerRedis),
    /// A `redis-server` child process.
    Process(ProcessRedis),
    /// A Redis URL; observation only.
    External(ExternalRedis),
}

impl RedisBackend {
    /// Probes the machine, resolves `requested` with [`choose`] and builds the backend (not
    /// started yet: call [`RedisBackend::up`]).
    pub async fn connect(
        requested: BackendKind,
        options: BackendOptions,
    ) -> anyhow::Result<RedisBackend> {
        let kind = if requested == BackendKind::External {
            BackendKind::External
        } else {
            let available = probe(&options.docker.image).await;
            choose(requested, &available, &options.docker.image)?
        };
        match kind {
            BackendKind::Docker => Ok(RedisBackend::Docker(
                DockerRedis::connect(options.docker).await?,
            )),
            BackendKind::Process => Ok(RedisBackend::Process(ProcessRedis::new(options.process)?)),
            BackendKind::External => {
                let url = options
                    .external_url
                    .ok_or(TargetError::ExternalUrlMissing)?;
                Ok(RedisBackend::External(ExternalRedis::new(url)))
            }
            BackendKind::Auto => anyhow::bail!("internal error: choose() resolved to auto"),
        }
    }

    /// Keeps Redis's full log as a file and returns its path: the process backend's own log
    /// file, or the container's `docker logs` written to `dir/redis.log` (call it before the
    /// teardown removes the container); `None` for an external Redis or when it cannot be read.
    pub async fn keep_log(&self, dir: &std::path::Path) -> Option<std::path::PathBuf> {
        match self {
            RedisBackend::Process(p) => Some(p.log_path()).filter(|p| p.exists()),
            RedisBackend::Docker(d) => {
                let bytes = d.logs().await.ok()?;
                let path = dir.join("redis.log");
                std::fs::create_dir_all(dir).ok()?;
                std::fs::write(&path, bytes).ok()?;
                Some(path)
            }
            RedisBackend::External(_) => None,
        }
    }

    /// The backend actually in use.
    pub fn kind(&self) -> BackendKind {
        match self {
            RedisBackend::Docker(_) => BackendKind::Docker,
            RedisBackend::Process(_) => BackendKind::Process,
            RedisBackend::External(_) => BackendKind::External,
        }
    }

    /// Whether this backend can apply `fault` (scenario validation asks before running).
    pub fn supports(&self, _fault: RedisFault) -> bool {
        // Docker and process backends do every fault (a process is paused with SIGSTOP).
        match self {
            RedisBackend::Docker(_) | RedisBackend::Process(_) => true,
            RedisBackend::External(_) => false,
        }
    }

    /// Makes Redis exist and answer PING: creates the container if missing (or spawns the
    /// process) and starts it. Idempotent.
    pub async fn up(&self) -> anyhow::Result<()> {
        match self {
            RedisBackend::Docker(d) => d.up().await,
            RedisBackend::Process(p) => p.start().await,
            RedisBackend::External(e) => {
                redis_ready::wait_until_ready(&e.url, e.ready_timeout)
                    .await
                    .with_context(|| format!("external Redis {} does not answer", e.url))?;
                Ok(())
            }
        }
    }

    /// Applies one fault (or its undoing); returns once its effect is observable.
    pub async fn apply(&self, fault: RedisFault) -> anyhow::Result<()> {
        match fault {
            RedisFault::Stop => self.stop().await,
            RedisFault::Start => self.start().await,
            RedisFault::Restart => self.restart().await,
            RedisFault::Kill(signal) => self.kill(signal).await,
            RedisFault::Pause => self.pause().await,
            RedisFault::Unpause => self.unpause().await,
        }
    }

    fn unsupported(&self, op: &'static str) -> anyhow::Error {
        TargetError::Unsupported {
            backend: self.kind().as_str(),
            op,
        }
        .into()
    }

    /// Graceful stop; returns once Redis is down.
    pub async fn stop(&self) -> anyhow::Result<()> {
        match self {
            RedisBackend::Docker(d) => d.stop().await,
            RedisBackend::Process(p) => p.stop().await,
            RedisBackend::External(_) => Err(self.unsupported("stop")),
        }
    }

    /// Start after a stop or kill, same port and data; returns once PING answers.
    pub async fn start(&self) -> anyhow::Result<()> {
        match self {
            RedisBackend::Docker(d) => d.start().await,
            RedisBackend::Process(p) => p.start().await,
            RedisBackend::External(_) => Err(self.unsupported("start")),
        }
    }

    /// Stop then start; returns once PING answers.
    pub async fn restart(&self) -> anyhow::Result<()> {
        match self {
            RedisBackend::Docker(d) => d.restart().await,
            RedisBackend::Process(p) => p.restart().await,
            RedisBackend::External(_) => Err(self.unsupported("restart")),
        }
    }

    /// Sends `signal`; for signals that end Redis, returns once it is down.
    pub async fn kill(&self, signal: Signal) -> anyhow::Result<()> {
        match self {
            RedisBackend::Docker(d) => d.kill(signal).await,
            RedisBackend::Process(p) => p.kill(signal).await,
            RedisBackend::External(_) => Err(self.unsupported("kill")),
        }
    }

    /// Freezes Redis (Docker: cgroup freezer; process: SIGSTOP).
    pub async fn pause(&self) -> anyhow::Result<()> {
        match self {
            RedisBackend::Docker(d) => d.pause().await,
            RedisBackend::Process(p) => p.pause().await,
            RedisBackend::External(_) => Err(self.unsupported("pause")),
        }
    }

    /// Thaws Redis; returns once PING answers.
    pub async fn unpause(&self) -> anyhow::Result<()> {
        match self {
            RedisBackend::Docker(d) => d.unpause().await,
            RedisBackend::Process(p) => p.unpause().await,
            RedisBackend::External(_) => Err(self.unsupported("unpause")),
        }
    }

    /// The current state, as the engine (or the OS) reports it.
    pub async fn inspect(&self) -> anyhow::Result<RedisStatus> {
        match self {
            RedisBackend::Docker(d) => d.inspect().await,
            RedisBackend::Process(p) => Ok(p.inspect().await),
            RedisBackend::External(e) => {
                // One PING; 2 s is plenty for a healthy Redis and keeps inspection snappy.
                let answers = redis_ready::ping(&e.url, Duration::from_secs(2)).await;
                Ok(RedisStatus {
                    state: if answers.is_ok() {
                        RunState::Running
                    } else {
                        RunState::Other("unreachable".into())
                    },
                    host_port: None,
                    pid: None,
                    detail: match answers {
                        Ok(()) => format!("external {}", e.url),
                        Err(err) => format!("external {}: {err:#}", e.url),
                    },
                })
            }
        }
    }

    /// Undoes what the backend created: removes the container it created (with its anonymous
    /// volumes), stops the process it spawned. Leaves anything it merely attached to running.
    pub async fn teardown(&self) -> anyhow::Result<()> {
        match self {
            RedisBackend::Docker(d) => d.teardown().await,
            RedisBackend::Process(p) => p.teardown().await,
            RedisBackend::External(_) => Ok(()),
        }
    }

    /// The URL clients (GitSpy, the probe) use: `redis://127.0.0.1:<port>` for managed backends.
    pub fn url(&self) -> Result<String, TargetError> {
        match self {
            RedisBackend::Docker(d) => d.url(),
            RedisBackend::Process(p) => p.url(),
            RedisBackend::External(e) => Ok(e.url.clone()),
        }
    }

    /// One line for logs and reports: backend, container or binary, address.
    pub fn describe(&self) -> String {
        match self {
            RedisBackend::Docker(d) => d.describe(),
            RedisBackend::Process(p) => p.describe(),
            RedisBackend::External(e) => format!("external Redis at {}", e.url),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answers(image_present: bool) -> DockerProbe {
        DockerProbe::Answers {
            api_version: "1.41".into(),
            image_present,
        }
    }

    fn unreachable() -> DockerProbe {
        DockerProbe::Unreachable {
            reason: "socket /var/run/docker.sock not found".into(),
        }
    }

    fn avail(docker: DockerProbe, redis: bool) -> Availability {
        Availability {
            docker,
            redis_server: redis.then(|| PathBuf::from("/usr/bin/redis-server")),
        }
    }

    /// One row: requested backend, what the machine has, expected choice or error text.
    fn check(requested: BackendKind, available: Availability, expect: Result<BackendKind, &str>) {
        let got = choose(requested, &available, "gitspy-redis:7");
        match (got, expect) {
            (Ok(kind), Ok(want)) => assert_eq!(kind, want, "{requested} with {available:?}"),
            (Err(err), Err(want)) => {
                let text = err.to_string();
                assert!(text.contains(want), "{requested}: `{text}` lacks `{want}`");
            }
            (got, want) => panic!("{requested} with {available:?}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn auto_prefers_docker_when_engine_and_image_are_there() {
        check(
            BackendKind::Auto,
            avail(answers(true), true),
            Ok(BackendKind::Docker),
        );
        check(
            BackendKind::Auto,
            avail(answers(true), false),
            Ok(BackendKind::Docker),
        );
    }

    #[test]
    fn auto_falls_back_to_process_without_image_or_engine() {
        check(
            BackendKind::Auto,
            avail(answers(false), true),
            Ok(BackendKind::Process),
        );
        check(
            BackendKind::Auto,
            avail(unreachable(), true),
            Ok(BackendKind::Process),
        );
    }

    #[test]
    fn auto_with_nothing_says_what_to_install() {
        check(
            BackendKind::Auto,
            avail(unreachable(), false),
            Err("apt-get install -y redis-server"),
        );
        check(
            BackendKind::Auto,
            avail(unreachable(), false),
            Err("apt-get install -y docker.io"),
        );
        check(
            BackendKind::Auto,
            avail(answers(false), false),
            Err("image `gitspy-redis:7` is not present"),
        );
        check(
            BackendKind::Auto,
            avail(answers(false), false),
            Err(IMAGE_SCRIPT),
        );
    }

    #[test]
    fn explicit_requests_are_honoured_or_refused_never_swapped() {
        check(
            BackendKind::Docker,
            avail(answers(false), true),
            Ok(BackendKind::Docker),
        );
        check(
            BackendKind::Docker,
            avail(unreachable(), true),
            Err(DOCKER_SETUP_SCRIPT),
        );
        check(
            BackendKind::Process,
            avail(answers(true), true),
            Ok(BackendKind::Process),
        );
        check(
            BackendKind::Process,
            avail(answers(true), false),
            Err("apt-get install -y redis-server"),
        );
        check(
            BackendKind::External,
            avail(unreachable(), false),
            Ok(BackendKind::External),
        );
    }

    #[test]
    fn signals_parse_in_every_usual_spelling() {
        for (text, want) in [
            ("SIGKILL", Signal::Sigkill),
            ("kill", Signal::Sigkill),
            ("9", Signal::Sigkill),
            ("SIGTERM", Signal::Sigterm),
            ("term", Signal::Sigterm),
            ("sighup", Signal::Sighup),
            ("INT", Signal::Sigint),
            ("3", Signal::Sigquit),
        ] {
            assert_eq!(text.parse::<Signal>().unwrap(), want, "{text}");
        }
        assert!("SIGFOO".parse::<Signal>().is_err());
        assert_eq!(Signal::Sigkill.to_string(), "SIGKILL");
    }

    #[test]
    fn backend_kind_round_trips_through_its_name() {
        for kind in [
            BackendKind::Docker,
            BackendKind::Process,
            BackendKind::External,
            BackendKind::Auto,
        ] {
            assert_eq!(kind.as_str().parse::<BackendKind>().unwrap(), kind);
        }
        assert!("podman".parse::<BackendKind>().is_err());
    }
}
