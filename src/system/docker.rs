//! The `docker` Redis backend: a container driven through the Docker API with bollard, plus the
//! label-based `cleanup` and the engine probe used by `auto` and `doctor`.
//!
//! Debian's `docker.io` (20.10) speaks API 1.41 while bollard 0.21 defaults to 1.53, so
//! [`connect`] negotiates the version with the engine before anything else. The container is
//! created only if missing, labelled `gitspy-chaos.run=<run id>`, runs Redis with AOF and
//! publishes 6379 on 127.0.0.1 only, on a host port chosen once at creation: Docker would assign a
//! new ephemeral port at every start, and clients must find Redis at the same URL after a
//! stop/start fault. Every Docker call has a timeout set where it is made.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use bollard::errors::Error as BollardError;
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerStateStatusEnum, EndpointSettings,
    HostConfig, NetworkConnectRequest, NetworkDisconnectRequest, PortBinding,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, KillContainerOptionsBuilder,
    ListContainersOptionsBuilder, ListNetworksOptionsBuilder, RemoveContainerOptionsBuilder,
    RestartContainerOptionsBuilder, StopContainerOptionsBuilder,
};
use bollard::Docker;
use futures::StreamExt as _;

use super::process_redis::free_port;
use super::{
    redis_ready, RedisStatus, RunState, Signal, TargetError, DEFAULT_CONTAINER, DEFAULT_IMAGE,
    RUN_LABEL,
};

/// Bound on the engine probe (connect + version negotiation + one call): a local daemon answers
/// in milliseconds, and `auto`/`doctor` must not hang on a wedged one.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Bound on one ordinary Docker call (inspect, create, start, pause, kill, remove…): the
/// daemon answers these in milliseconds to a second; 30 s tolerates a loaded 2-core machine and
/// still fails a hung daemon.
pub const API_TIMEOUT: Duration = Duration::from_secs(30);

/// Bound on pulling an image: long enough for a real pull over a slow link; on a machine with no
/// registry the pull fails in well under this.
pub const PULL_TIMEOUT: Duration = Duration::from_secs(300);

/// The label naming what a container is for (alongside [`RUN_LABEL`]).
pub const ROLE_LABEL: &str = "gitspy-chaos.role";

/// The port Redis listens on inside the container.
const REDIS_PORT: &str = "6379/tcp";

/// Settings of a [`DockerRedis`].
#[derive(Debug, Clone)]
pub struct DockerConfig {
    /// Container name (created if missing, reused if present).
    pub container: String,
    /// Image to create it from.
    pub image: String,
    /// The run id written into the `gitspy-chaos.run` label.
    pub run_id: String,
    /// Host port on 127.0.0.1. `None`: a free port chosen at creation, kept for the container's
    /// life (Docker's own ephemeral ports change at every start).
    pub host_port: Option<u16>,
    /// How long a start may take until PING answers.
    pub ready_timeout: Duration,
    /// Grace between SIGTERM and SIGKILL on stop/restart.
    pub stop_grace: Duration,
    /// More `redis-server` arguments, appended last.
    pub extra_args: Vec<String>,
}

/// The default container name of a run: [`DEFAULT_CONTAINER`] and the run id's last part
/// (its random nonce), e.g. `gitspy-redis-1339d710a903`.
pub fn per_run_container(run_id: &str) -> String {
    let suffix = run_id.rsplit('-').next().unwrap_or(run_id);
    if suffix.is_empty() {
        DEFAULT_CONTAINER.to_string()
    } else {
        format!("{DEFAULT_CONTAINER}-{suffix}")
    }
}

impl DockerConfig {
    /// Defaults: container `gitspy-redis-<run nonce>` ([`per_run_container`]), image
    /// [`DEFAULT_IMAGE`], a free host port.
    pub fn new(run_id: &str) -> Self {
        DockerConfig {
            // Per run: two runs at once never share a Redis.
            container: per_run_container(run_id),
            image: DEFAULT_IMAGE.to_string(),
            run_id: run_id.to_string(),
            host_port: None,
            // A fresh Redis answers within a second of its container starting; 30 s covers an
            // AOF replay on a loaded machine.
            ready_timeout: Duration::from_secs(30),
            // Docker's own default; Redis needs well under a second to flush its AOF.
            stop_grace: Duration::from_secs(10),
            extra_args: Vec::new(),
        }
    }
}

/// Connects to the local engine (`DOCKER_HOST` or `/var/run/docker.sock`) and negotiates the API
/// version down to what the engine speaks (1.41 for Debian's docker.io), all within
/// [`PROBE_TIMEOUT`].
pub async fn connect() -> anyhow::Result<Docker> {
    let docker = Docker::connect_with_local_defaults().context("connect to the Docker socket")?;
    let docker = tokio::time::timeout(PROBE_TIMEOUT, docker.negotiate_version())
        .await
        .with_context(|| format!("docker did not answer within {PROBE_TIMEOUT:?}"))?
        .context("negotiate the Docker API version")?;
    tokio::time::timeout(PROBE_TIMEOUT, docker.ping())
        .await
        .with_context(|| format!("docker did not answer ping within {PROBE_TIMEOUT:?}"))?
        .context("docker ping")?;
    Ok(docker)
}

/// Whether `image` is present in the engine (no pull).
pub async fn image_present(docker: &Docker, image: &str) -> anyhow::Result<bool> {
    match within(API_TIMEOUT, "inspect image", docker.inspect_image(image)).await {
        Ok(_) => Ok(true),
        Err(e) if is_not_found(&e) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Makes `image` present: nothing if it is, else a pull bounded by [`PULL_TIMEOUT`]; a failed
/// pull becomes [`TargetError::ImageMissing`] pointing to the offline build script.
pub async fn ensure_image(docker: &Docker, image: &str) -> anyhow::Result<()> {
    if image_present(docker, image).await? {
        return Ok(());
    }
    tracing::info!("image {image} is not present; trying to pull it");
    let options = CreateImageOptionsBuilder::new().from_image(image).build();
    let pull = async {
        let mut stream = docker.create_image(Some(options), None, None);
        while let Some(item) = stream.next().await {
            item?;
        }
        Ok::<(), BollardError>(())
    };
    let reason = match tokio::time::timeout(PULL_TIMEOUT, pull).await {
        Ok(Ok(())) if image_present(docker, image).await? => return Ok(()),
        Ok(Ok(())) => "the pull finished but the image is still absent".to_string(),
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("the pull did not finish within {PULL_TIMEOUT:?}"),
    };
    Err(TargetError::ImageMissing {
        image: image.to_string(),
        reason,
    }
    .into())
}

/// A Redis container the harness drives.
#[derive(Debug)]
pub struct DockerRedis {
    docker: Docker,
    config: DockerConfig,
    host_port: std::sync::Mutex<Option<u16>>,
    /// Whether `up()` created the container (so teardown removes it) rather than adopted it.
    created: AtomicBool,
}

impl DockerRedis {
    /// Connects to the engine ([`connect`]); creates nothing yet.
    pub async fn connect(config: DockerConfig) -> anyhow::Result<Self> {
        let docker = connect()
            .await
            .map_err(|e| TargetError::DockerUnavailable {
                reason: format!("{e:#}"),
            })?;
        Ok(Self::with_client(docker, config))
    }

    /// Uses an already connected (and version-negotiated) client.
    pub fn with_client(docker: Docker, config: DockerConfig) -> Self {
        DockerRedis {
            docker,
            host_port: std::sync::Mutex::new(config.host_port),
            config,
            created: AtomicBool::new(false),
        }
    }

    /// The Docker client (for `cleanup` and tests).
    pub fn client(&self) -> &Docker {
        &self.docker
    }

    /// The container name.
    pub fn container(&self) -> &str {
        &self.config.container
    }

    /// Whether this backend created the container (and so removes it at teardown).
    pub fn created_container(&self) -> bool {
        self.created.load(Ordering::SeqCst)
    }

    /// The published host port, once known.
    pub fn host_port(&self) -> Option<u16> {
        self.host_port.lock().map(|p| *p).unwrap_or(None)
    }

    fn set_host_port(&self, port: u16) {
        if let Ok(mut slot) = self.host_port.lock() {
            *slot = Some(port);
        }
    }

    /// `redis://127.0.0.1:<host port>`, once the port is known.
    pub fn url(&self) -> Result<String, TargetError> {
        self.host_port()
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .ok_or(TargetError::NotStarted("docker"))
    }

    /// One line for logs and reports.
    pub fn describe(&self) -> String {
        let address = match self.host_port() {
            Some(p) => format!("127.0.0.1:{p}"),
            None => "not started".to_string(),
        };
        format!(
            "docker container {} (image {}, API {}) on {address}",
            self.config.container,
            self.config.image,
            self.docker.client_version()
        )
    }

    async fn inspect_raw(&self) -> anyhow::Result<Option<ContainerInspectResponse>> {
        match within(
            API_TIMEOUT,
            "inspect container",
            self.docker
                .inspect_container(&self.config.container, None::<_>),
        )
        .await
        {
            Ok(info) => Ok(Some(info)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(e.context(format!("inspect container {}", self.config.container))),
        }
    }

    async fn inspect_existing(&self) -> anyhow::Result<ContainerInspectResponse> {
        self.inspect_raw().await?.with_context(|| {
            format!(
                "container {} does not exist (was it removed behind the harness's back?)",
                self.config.container
            )
        })
    }

    /// Creates the container if missing (pulling the image if needed), starts it, reads the
    /// published port back and waits until PING answers. Adopts an existing container of that
    /// name as it is (teardown then leaves it in place).
    pub async fn up(&self) -> anyhow::Result<()> {
        match self.inspect_raw().await? {
            Some(existing) => {
                let labels = existing
                    .config
                    .as_ref()
                    .and_then(|c| c.labels.as_ref())
                    .and_then(|l| l.get(RUN_LABEL));
                if let Some(owner) = labels.filter(|l| **l != self.config.run_id) {
                    // Another run's Redis: sharing it would mix both runs' deliveries.
                    match crate::run::system::live_harness_of(owner) {
                        Some(pid) => anyhow::bail!(
                            "container {} belongs to run {owner}, which is still running (harness pid {pid})\n\
                             hint: give this scenario another `target.redis.container`, or leave it out (each run then gets its own)",
                            self.config.container
                        ),
                        None => anyhow::bail!(
                            "container {} was left by the interrupted run {owner}\n\
                             hint: run `gitspy-chaos cleanup`, or give this scenario another `target.redis.container`",
                            self.config.container
                        ),
                    }
                }
                if labels.map(String::as_str) != Some(self.config.run_id.as_str()) {
                    tracing::warn!(
                        "reusing existing container {} (label {RUN_LABEL}={}); it is not ours to remove",
                        self.config.container,
                        labels.map(String::as_str).unwrap_or("none")
                    );
                } else {
                    self.created.store(true, Ordering::SeqCst);
                }
            }
            None => return self.create_and_start().await,
        }
        self.start().await
    }

    /// Creates and starts a new container. When the harness picked the host port itself and
    /// another process took it in the instant between picking and starting (parallel runs),
    /// the fresh container is removed and recreated on another port, up to three times.
    async fn create_and_start(&self) -> anyhow::Result<()> {
        const ATTEMPTS: usize = 3;
        let mut attempt = 1;
        loop {
            self.create().await?;
            match self.start().await {
                Ok(()) => return Ok(()),
                Err(e)
                    if self.config.host_port.is_none()
                        && attempt < ATTEMPTS
                        && is_port_taken(&e) =>
                {
                    tracing::warn!(
                        "host port of {} was taken before it started ({e:#}); recreating on another port",
                        self.config.container
                    );
                    remove_container(&self.docker, &self.config.container).await?;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn create(&self) -> anyhow::Result<()> {
        ensure_image(&self.docker, &self.config.image).await?;
        let port = match self.config.host_port {
            Some(p) => p,
            None => free_port()?,
        };
        let mut cmd: Vec<String> = [
            "redis-server",
            "--appendonly",
            "yes",
            "--protected-mode",
            "no",
            "--bind",
            "0.0.0.0",
            "--port",
            "6379",
            "--dir",
            "/data",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        cmd.extend(self.config.extra_args.iter().cloned());
        let labels = HashMap::from([
            (RUN_LABEL.to_string(), self.config.run_id.clone()),
            (ROLE_LABEL.to_string(), "redis".to_string()),
        ]);
        let bindings = HashMap::from([(
            REDIS_PORT.to_string(),
            Some(vec![PortBinding {
                host_ip: Some("127.0.0.1".to_string()),
                host_port: Some(port.to_string()),
            }]),
        )]);
        let body = ContainerCreateBody {
            image: Some(self.config.image.clone()),
            cmd: Some(cmd),
            labels: Some(labels),
            exposed_ports: Some(vec![REDIS_PORT.to_string()]),
            host_config: Some(HostConfig {
                port_bindings: Some(bindings),
                ..Default::default()
            }),
            ..Default::default()
        };
        let options = CreateContainerOptionsBuilder::new()
            .name(&self.config.container)
            .build();
        within(
            API_TIMEOUT,
            "create container",
            self.docker.create_container(Some(options), body),
        )
        .await
        .with_context(|| {
            format!(
                "create container {} from {}",
                self.config.container, self.config.image
            )
        })?;
        self.created.store(true, Ordering::SeqCst);
        self.set_host_port(port);
        tracing::info!(
            "created container {} ({}) on 127.0.0.1:{port}, label {RUN_LABEL}={}",
            self.config.container,
            self.config.image,
            self.config.run_id
        );
        Ok(())
    }

    /// Reads the host port published for 6379 on 127.0.0.1 (or any address) and records it.
    fn read_port(&self, info: &ContainerInspectResponse) -> anyhow::Result<u16> {
        let live = info
            .network_settings
            .as_ref()
            .and_then(|n| n.ports.as_ref())
            .and_then(|p| p.get(REDIS_PORT).cloned().flatten());
        let configured = info
            .host_config
            .as_ref()
            .and_then(|h| h.port_bindings.as_ref())
            .and_then(|p| p.get(REDIS_PORT).cloned().flatten());
        let bindings = live.filter(|b| !b.is_empty()).or(configured);
        let port = bindings
            .unwrap_or_default()
            .iter()
            .filter(|b| {
                matches!(
                    b.host_ip.as_deref(),
                    Some("127.0.0.1") | Some("0.0.0.0") | Some("") | None
                )
            })
            .find_map(|b| b.host_port.as_deref().and_then(|p| p.parse::<u16>().ok()))
            .with_context(|| {
                format!(
                    "container {} publishes no host port for {REDIS_PORT}: recreate it, or remove it and let the harness create it",
                    self.config.container
                )
            })?;
        self.set_host_port(port);
        Ok(port)
    }

    /// Starts the container (unpauses it if paused), then waits until PING answers.
    pub async fn start(&self) -> anyhow::Result<()> {
        let info = self.inspect_existing().await?;
        match status_of(&info) {
            Some(ContainerStateStatusEnum::RUNNING) => {}
            Some(ContainerStateStatusEnum::PAUSED) => return self.unpause().await,
            _ => {
                within(
                    API_TIMEOUT,
                    "start container",
                    self.docker.start_container(&self.config.container, None),
                )
                .await
                .with_context(|| format!("start container {}", self.config.container))?;
            }
        }
        self.wait_ready().await
    }

    async fn wait_ready(&self) -> anyhow::Result<()> {
        let info = self.inspect_existing().await?;
        self.read_port(&info)?;
        let url = self.url()?;
        redis_ready::wait_until_ready(&url, self.config.ready_timeout)
            .await
            .with_context(|| format!("container {} started", self.config.container))?;
        Ok(())
    }

    /// Unpauses first if paused: a frozen process cannot act on a signal.
    async fn thaw_if_paused(&self) -> anyhow::Result<Option<ContainerInspectResponse>> {
        let Some(info) = self.inspect_raw().await? else {
            return Ok(None);
        };
        if status_of(&info) == Some(ContainerStateStatusEnum::PAUSED) {
            within(
                API_TIMEOUT,
                "unpause container",
                self.docker.unpause_container(&self.config.container),
            )
            .await
            .with_context(|| format!("unpause container {}", self.config.container))?;
            return self.inspect_raw().await;
        }
        Ok(Some(info))
    }

    /// `docker stop`: SIGTERM, SIGKILL after the grace period; returns once it is down.
    pub async fn stop(&self) -> anyhow::Result<()> {
        let Some(info) = self.thaw_if_paused().await? else {
            bail!(
                "cannot stop container {}: it does not exist",
                self.config.container
            );
        };
        if !is_up(&info) {
            return Ok(());
        }
        let grace = self.config.stop_grace;
        let options = StopContainerOptionsBuilder::new()
            .t(secs_i32(grace))
            .build();
        // The call returns only after the container exited: grace plus the ordinary bound.
        within(
            grace + API_TIMEOUT,
            "stop container",
            self.docker
                .stop_container(&self.config.container, Some(options)),
        )
        .await
        .with_context(|| format!("stop container {}", self.config.container))?;
        self.wait_down().await
    }

    /// `docker kill --signal`; for signals that end Redis, returns once it is down.
    pub async fn kill(&self, signal: Signal) -> anyhow::Result<()> {
        let Some(info) = self.thaw_if_paused().await? else {
            bail!(
                "cannot kill container {}: it does not exist",
                self.config.container
            );
        };
        if !is_up(&info) {
            return Ok(());
        }
        let options = KillContainerOptionsBuilder::new()
            .signal(signal.name())
            .build();
        within(
            API_TIMEOUT,
            "kill container",
            self.docker
                .kill_container(&self.config.container, Some(options)),
        )
        .await
        .with_context(|| format!("kill container {} with {signal}", self.config.container))?;
        // Redis runs as PID 1 in the container, where signals it has no handler for (SIGQUIT,
        // SIGHUP) are ignored: only wait for those that end it.
        if matches!(signal, Signal::Sigkill | Signal::Sigterm | Signal::Sigint) {
            self.wait_down().await?;
        }
        Ok(())
    }

    /// Polls inspect until the container is no longer running (deadline: [`API_TIMEOUT`]).
    async fn wait_down(&self) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            let info = self.inspect_existing().await?;
            if !is_up(&info) {
                return Ok(());
            }
            if started.elapsed() > API_TIMEOUT {
                bail!(
                    "container {} still running {API_TIMEOUT:?} after it was told to stop",
                    self.config.container
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `docker restart`, then waits until PING answers.
    pub async fn restart(&self) -> anyhow::Result<()> {
        if self.thaw_if_paused().await?.is_none() {
            bail!(
                "cannot restart container {}: it does not exist",
                self.config.container
            );
        }
        let grace = self.config.stop_grace;
        let options = RestartContainerOptionsBuilder::new()
            .t(secs_i32(grace))
            .build();
        within(
            grace + API_TIMEOUT,
            "restart container",
            self.docker
                .restart_container(&self.config.container, Some(options)),
        )
        .await
        .with_context(|| format!("restart container {}", self.config.container))?;
        self.wait_ready().await
    }

    /// `docker pause` (cgroup freezer): connections to the published port are accepted by
    /// docker-proxy, nothing answers. A no-op if already paused.
    pub async fn pause(&self) -> anyhow::Result<()> {
        let info = self.inspect_existing().await?;
        match status_of(&info) {
            Some(ContainerStateStatusEnum::PAUSED) => return Ok(()),
            Some(ContainerStateStatusEnum::RUNNING) => {}
            other => bail!(
                "cannot pause container {}: it is {}",
                self.config.container,
                status_name(other)
            ),
        }
        within(
            API_TIMEOUT,
            "pause container",
            self.docker.pause_container(&self.config.container),
        )
        .await
        .with_context(|| format!("pause container {}", self.config.container))
    }

    /// `docker unpause`, then waits until PING answers. A no-op (but for the wait) if not paused.
    pub async fn unpause(&self) -> anyhow::Result<()> {
        let info = self.inspect_existing().await?;
        if status_of(&info) == Some(ContainerStateStatusEnum::PAUSED) {
            within(
                API_TIMEOUT,
                "unpause container",
                self.docker.unpause_container(&self.config.container),
            )
            .await
            .with_context(|| format!("unpause container {}", self.config.container))?;
        }
        self.wait_ready().await
    }

    /// A real network partition: disconnects the container from every network it is on
    /// (`POST /networks/{name}/disconnect`, forced). Its published port goes with the endpoint,
    /// so clients get refused connections (not silence) and open connections lose their peer.
    /// Returns what [`DockerRedis::reconnect_networks`] needs to undo it: each network's name
    /// and the container's endpoint settings on it (addresses, aliases).
    pub async fn disconnect_networks(&self) -> anyhow::Result<Vec<(String, EndpointSettings)>> {
        let info = self.inspect_existing().await?;
        let nets: Vec<(String, EndpointSettings)> = info
            .network_settings
            .and_then(|n| n.networks)
            .unwrap_or_default()
            .into_iter()
            .collect();
        anyhow::ensure!(
            !nets.is_empty(),
            "container {} is on no network: nothing to partition",
            self.config.container
        );
        for (name, _) in &nets {
            within(
                API_TIMEOUT,
                "disconnect network",
                self.docker.disconnect_network(
                    name,
                    NetworkDisconnectRequest {
                        container: self.config.container.clone(),
                        force: Some(true),
                    },
                ),
            )
            .await
            .with_context(|| format!("disconnect {} from network {name}", self.config.container))?;
        }
        Ok(nets)
    }

    /// Connects the container again to the networks [`DockerRedis::disconnect_networks`]
    /// took it off (same IP and aliases where Docker allows), then waits until Redis answers
    /// on its published port again.
    pub async fn reconnect_networks(
        &self,
        nets: &[(String, EndpointSettings)],
    ) -> anyhow::Result<()> {
        for (name, ep) in nets {
            // Only what the request accepts: runtime fields (endpoint id, gateway) are Docker's.
            let endpoint = EndpointSettings {
                ipam_config: ep.ipam_config.clone(),
                aliases: ep.aliases.clone(),
                ..Default::default()
            };
            within(
                API_TIMEOUT,
                "connect network",
                self.docker.connect_network(
                    name,
                    NetworkConnectRequest {
                        container: self.config.container.clone(),
                        endpoint_config: Some(endpoint),
                    },
                ),
            )
            .await
            .with_context(|| format!("reconnect {} to network {name}", self.config.container))?;
        }
        self.wait_ready().await
    }

    /// The container's state as Docker reports it; [`RunState::Missing`] if it does not exist.
    pub async fn inspect(&self) -> anyhow::Result<RedisStatus> {
        let Some(info) = self.inspect_raw().await? else {
            return Ok(RedisStatus {
                state: RunState::Missing,
                host_port: self.host_port(),
                pid: None,
                detail: format!("container {} does not exist", self.config.container),
            });
        };
        let state = info.state.as_ref();
        let run_state = match status_of(&info) {
            Some(ContainerStateStatusEnum::CREATED) => RunState::Created,
            Some(ContainerStateStatusEnum::RUNNING) => RunState::Running,
            Some(ContainerStateStatusEnum::PAUSED) => RunState::Paused,
            Some(ContainerStateStatusEnum::RESTARTING) => RunState::Restarting,
            Some(ContainerStateStatusEnum::EXITED) | Some(ContainerStateStatusEnum::DEAD) => {
                RunState::Exited {
                    code: state.and_then(|s| s.exit_code),
                }
            }
            other => RunState::Other(status_name(other)),
        };
        let pid = state
            .and_then(|s| s.pid)
            .filter(|p| *p > 0)
            .and_then(|p| u32::try_from(p).ok());
        let host_port = self.read_port(&info).ok().or(self.host_port());
        let health = state
            .and_then(|s| s.health.as_ref())
            .and_then(|h| h.status)
            .map(|h| h.to_string())
            .unwrap_or_else(|| "none".into());
        let id: String = info
            .id
            .clone()
            .unwrap_or_default()
            .chars()
            .take(12)
            .collect();
        Ok(RedisStatus {
            state: run_state,
            host_port,
            pid,
            detail: format!(
                "container {} ({id}), image {}, health {health}, started {}",
                self.config.container,
                self.config.image,
                state.and_then(|s| s.started_at.clone()).unwrap_or_default()
            ),
        })
    }

    /// Removes the container if this backend created it (force, with its anonymous volumes);
    /// an adopted container is only brought back to running (unpaused/started), never removed.
    /// The container's whole log (`docker logs`, stdout and stderr), while it still exists.
    pub async fn logs(&self) -> anyhow::Result<Vec<u8>> {
        let opts = bollard::query_parameters::LogsOptionsBuilder::new()
            .stdout(true)
            .stderr(true)
            .build();
        let mut stream = self.docker.logs(&self.config.container, Some(opts));
        let mut out = Vec::new();
        while let Some(chunk) = stream.next().await {
            out.extend_from_slice(chunk.context("docker logs")?.as_ref());
        }
        Ok(out)
    }

    pub async fn teardown(&self) -> anyhow::Result<()> {
        if self.created_container() {
            self.remove().await
        } else {
            match self.inspect_raw().await? {
                None => Ok(()),
                Some(info) if is_up(&info) => {
                    self.thaw_if_paused().await?;
                    Ok(())
                }
                Some(_) => self.start().await,
            }
        }
    }

    /// Removes the container (force, with its anonymous volumes), whoever created it. A no-op
    /// if it is already gone.
    pub async fn remove(&self) -> anyhow::Result<()> {
        // Unpause first: Docker 20.10 refuses to kill a frozen container on some kernels.
        self.thaw_if_paused().await?;
        remove_container(&self.docker, &self.config.container).await
    }
}

async fn remove_container(docker: &Docker, name: &str) -> anyhow::Result<()> {
    let options = RemoveContainerOptionsBuilder::new()
        .force(true)
        .v(true)
        .build();
    match within(
        API_TIMEOUT,
        "remove container",
        docker.remove_container(name, Some(options)),
    )
    .await
    {
        Ok(()) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(e.context(format!("remove container {name}"))),
    }
}

/// A container carrying the `gitspy-chaos.run` label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelledContainer {
    /// Container id.
    pub id: String,
    /// Name without the leading `/`.
    pub name: String,
    /// The run id in its label.
    pub run_id: String,
    /// Docker's state word (`running`, `paused`, `exited`…).
    pub state: String,
}

/// A network carrying the `gitspy-chaos.run` label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelledNetwork {
    /// Network id.
    pub id: String,
    /// Network name.
    pub name: String,
    /// The run id in its label.
    pub run_id: String,
}

fn label_filter(run_id: Option<&str>) -> HashMap<String, Vec<String>> {
    let value = match run_id {
        Some(id) => format!("{RUN_LABEL}={id}"),
        None => RUN_LABEL.to_string(),
    };
    HashMap::from([("label".to_string(), vec![value])])
}

/// Every container (running or not) labelled `gitspy-chaos.run`, or `gitspy-chaos.run=<run_id>`.
pub async fn list_labelled(
    docker: &Docker,
    run_id: Option<&str>,
) -> anyhow::Result<Vec<LabelledContainer>> {
    let options = ListContainersOptionsBuilder::new()
        .all(true)
        .filters(&label_filter(run_id))
        .build();
    let found = within(
        API_TIMEOUT,
        "list containers",
        docker.list_containers(Some(options)),
    )
    .await?;
    Ok(found
        .into_iter()
        .map(|c| LabelledContainer {
            id: c.id.unwrap_or_default(),
            name: c
                .names
                .and_then(|n| n.into_iter().next())
                .map(|n| n.trim_start_matches('/').to_string())
                .unwrap_or_default(),
            run_id: c
                .labels
                .and_then(|l| l.get(RUN_LABEL).cloned())
                .unwrap_or_default(),
            state: c.state.map(|s| s.to_string()).unwrap_or_default(),
        })
        .collect())
}

/// Every network labelled `gitspy-chaos.run` (or with the given run id).
pub async fn list_labelled_networks(
    docker: &Docker,
    run_id: Option<&str>,
) -> anyhow::Result<Vec<LabelledNetwork>> {
    let options = ListNetworksOptionsBuilder::new()
        .filters(&label_filter(run_id))
        .build();
    let found = within(
        API_TIMEOUT,
        "list networks",
        docker.list_networks(Some(options)),
    )
    .await?;
    Ok(found
        .into_iter()
        .map(|n| LabelledNetwork {
            id: n.id.unwrap_or_default(),
            name: n.name.unwrap_or_default(),
            run_id: n
                .labels
                .and_then(|l| l.get(RUN_LABEL).cloned())
                .unwrap_or_default(),
        })
        .collect())
}

/// What `cleanup` should do.
#[derive(Debug, Clone, Default)]
pub struct CleanupOptions {
    /// Only this run's leftovers; `None`: every run's.
    pub run_id: Option<String>,
    /// Remove containers and networks (the default for `gitspy-chaos cleanup`); `false` only
    /// restores containers to running (unpause, start) and keeps everything.
    pub remove: bool,
}

/// What `cleanup` did; one entry per container or network, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CleanupReport {
    /// Containers that were paused and got unpaused.
    pub unpaused: Vec<String>,
    /// Containers that were stopped and got started (restore mode).
    pub started: Vec<String>,
    /// Containers removed.
    pub removed: Vec<String>,
    /// Networks removed.
    pub networks_removed: Vec<String>,
    /// What failed, one line each; cleanup goes on past a failure.
    pub errors: Vec<String>,
}

/// Undoes what an interrupted run left: unpauses paused labelled containers, then removes them
/// (or, with `remove: false`, starts the stopped ones), then removes labelled networks. Goes on
/// past individual failures and lists them in the report.
pub async fn cleanup(docker: &Docker, options: &CleanupOptions) -> anyhow::Result<CleanupReport> {
    let run_id = options.run_id.as_deref();
    let mut report = CleanupReport::default();
    for c in list_labelled(docker, run_id).await? {
        if c.state == "paused" {
            match within(
                API_TIMEOUT,
                "unpause container",
                docker.unpause_container(&c.id),
            )
            .await
            {
                Ok(()) => report.unpaused.push(c.name.clone()),
                Err(e) => report.errors.push(format!("unpause {}: {e:#}", c.name)),
            }
        }
        if options.remove {
            match remove_container(docker, &c.id).await {
                Ok(()) => report.removed.push(c.name.clone()),
                Err(e) => report.errors.push(format!("remove {}: {e:#}", c.name)),
            }
        } else if c.state != "running" && c.state != "paused" {
            match within(
                API_TIMEOUT,
                "start container",
                docker.start_container(&c.id, None),
            )
            .await
            {
                Ok(()) => report.started.push(c.name.clone()),
                Err(e) => report.errors.push(format!("start {}: {e:#}", c.name)),
            }
        }
    }
    if options.remove {
        for n in list_labelled_networks(docker, run_id).await? {
            match within(API_TIMEOUT, "remove network", docker.remove_network(&n.id)).await {
                Ok(()) => report.networks_removed.push(n.name.clone()),
                Err(e) if is_not_found(&e) => report.networks_removed.push(n.name.clone()),
                Err(e) => report
                    .errors
                    .push(format!("remove network {}: {e:#}", n.name)),
            }
        }
    }
    Ok(report)
}

/// Runs one Docker call under `limit`, naming the call on a timeout.
async fn within<T>(
    limit: Duration,
    what: &str,
    call: impl std::future::Future<Output = Result<T, BollardError>>,
) -> anyhow::Result<T> {
    match tokio::time::timeout(limit, call).await {
        Ok(result) => Ok(result?),
        Err(_) => bail!("docker {what} did not answer within {limit:?}"),
    }
}

/// Whether starting failed because the published host port is in use.
fn is_port_taken(e: &anyhow::Error) -> bool {
    let text = format!("{e:#}");
    text.contains("port is already allocated") || text.contains("address already in use")
}

/// Whether an error is Docker's 404 (no such container/image/network).
fn is_not_found(e: &anyhow::Error) -> bool {
    matches!(
        e.downcast_ref::<BollardError>(),
        Some(BollardError::DockerResponseServerError {
            status_code: 404,
            ..
        })
    )
}

fn status_of(info: &ContainerInspectResponse) -> Option<ContainerStateStatusEnum> {
    info.state.as_ref().and_then(|s| s.status)
}

fn status_name(status: Option<ContainerStateStatusEnum>) -> String {
    status
        .map(|s| s.to_string())
        .unwrap_or_else(|| "in an unknown state".into())
}

/// Running, paused or restarting: a process exists that a stop or kill must end.
fn is_up(info: &ContainerInspectResponse) -> bool {
    matches!(
        status_of(info),
        Some(ContainerStateStatusEnum::RUNNING)
            | Some(ContainerStateStatusEnum::PAUSED)
            | Some(ContainerStateStatusEnum::RESTARTING)
    )
}

fn secs_i32(d: Duration) -> i32 {
    i32::try_from(d.as_secs()).unwrap_or(i32::MAX)
}
