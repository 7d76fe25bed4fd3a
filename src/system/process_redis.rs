//! The `process` Redis backend: a `redis-server` child with its own data dir and AOF.
//!
//! The port is chosen once, at the first start (bind `127.0.0.1:0`, read the port, release it),
//! and every later start reuses that port and dir, so clients keep one URL and the AOF written
//! before a stop or a SIGKILL is replayed on the next start. The child is spawned with
//! `kill_on_drop`, and the temp dir (when the backend made one) is removed with the backend.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context as _};
use nix::sys::signal::{kill, Signal as NixSignal};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use tokio::sync::Mutex;

use super::{redis_ready, RedisStatus, RunState, Signal, TargetError};

/// Settings of a [`ProcessRedis`].
#[derive(Debug, Clone)]
pub struct ProcessConfig {
    /// The `redis-server` binary: a path, or a name looked up on `PATH`.
    pub redis_server: PathBuf,
    /// The data dir (AOF lives here). `None`: a fresh temp dir, removed with the backend.
    pub dir: Option<PathBuf>,
    /// The port. `None`: a free port chosen at the first start and kept.
    pub port: Option<u16>,
    /// How long a start may take until PING answers (AOF replay included).
    pub ready_timeout: Duration,
    /// How long a graceful stop may take before SIGKILL.
    pub stop_timeout: Duration,
    /// More `redis-server` arguments, appended last (so they override ours).
    pub extra_args: Vec<String>,
}

impl Default for ProcessConfig {
    fn default() -> Self {
        ProcessConfig {
            redis_server: PathBuf::from("redis-server"),
            dir: None,
            port: None,
            // Starting an empty Redis takes milliseconds; 30 s leaves room for replaying a
            // large AOF on a loaded 2-core machine.
            ready_timeout: Duration::from_secs(30),
            // Redis fsyncs the AOF and exits within a second on SIGTERM; 10 s matches Docker's
            // default stop grace.
            stop_timeout: Duration::from_secs(10),
            extra_args: Vec::new(),
        }
    }
}

#[derive(Debug)]
struct Inner {
    child: Option<Child>,
    port: Option<u16>,
    paused: bool,
    /// Exit status of the last child, for inspect.
    last_exit: Option<std::process::ExitStatus>,
}

/// A `redis-server` child process the harness owns.
#[derive(Debug)]
pub struct ProcessRedis {
    // Fields drop in declaration order: the child (kill_on_drop) goes before its temp dir.
    inner: Mutex<Inner>,
    config: ProcessConfig,
    dir: PathBuf,
    /// Keeps the temp dir alive (and removes it on drop) when the config named no dir.
    _temp: Option<tempfile::TempDir>,
    /// The port, readable without the async lock (for `url()`).
    port: std::sync::Mutex<Option<u16>>,
    /// Pid of the last redis-server started, readable without the async lock (for the run
    /// file: redis-server rewrites its command line, so `cleanup` finds it by pid and start
    /// time, not by its `--dir`).
    pid: std::sync::Mutex<Option<u32>>,
}

impl ProcessRedis {
    /// A backend that has not started anything yet; makes its temp dir when the config names
    /// no dir.
    pub fn new(config: ProcessConfig) -> anyhow::Result<Self> {
        let (dir, temp) = match &config.dir {
            Some(dir) => (dir.clone(), None),
            None => {
                let t = tempfile::Builder::new()
                    .prefix("gitspy-redis-")
                    .tempdir()
                    .context("create a temp dir for redis-server")?;
                (t.path().to_path_buf(), Some(t))
            }
        };
        let port = config.port;
        Ok(ProcessRedis {
            config,
            dir,
            _temp: temp,
            inner: Mutex::new(Inner {
                child: None,
                port,
                paused: false,
                last_exit: None,
            }),
            port: std::sync::Mutex::new(port),
            pid: std::sync::Mutex::new(None),
        })
    }

    /// The data dir (AOF under `appendonlydir/`, the log in `redis-server.log`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Pid of the last redis-server started (it may have exited since).
    pub fn pid(&self) -> Option<u32> {
        self.pid.lock().map(|p| *p).unwrap_or(None)
    }

    /// The port, once chosen.
    pub fn port(&self) -> Option<u16> {
        self.port.lock().map(|p| *p).unwrap_or(None)
    }

    /// `redis://127.0.0.1:<port>`, once the port is chosen.
    pub fn url(&self) -> Result<String, TargetError> {
        self.port()
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .ok_or(TargetError::NotStarted("process"))
    }

    /// One line for logs and reports.
    pub fn describe(&self) -> String {
        match self.port() {
            Some(p) => format!(
                "process {} on 127.0.0.1:{p}, dir {}",
                self.config.redis_server.display(),
                self.dir.display()
            ),
            None => format!(
                "process {} (not started), dir {}",
                self.config.redis_server.display(),
                self.dir.display()
            ),
        }
    }

    /// The full `redis-server` log (stdout and stderr of every incarnation).
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("redis-server.log")
    }

    /// Spawns `redis-server` if it is not running (same port and dir as before) and waits until
    /// PING answers. A paused child is resumed instead. Idempotent.
    pub async fn start(&self) -> anyhow::Result<()> {
        let mut inner = self.inner.lock().await;
        reap(&mut inner);
        if inner.child.is_some() {
            if inner.paused {
                drop(inner);
                return self.unpause().await;
            }
            let url = self.url()?;
            drop(inner);
            redis_ready::wait_until_ready(&url, self.config.ready_timeout).await?;
            return Ok(());
        }
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("create Redis data dir {}", self.dir.display()))?;
        let port = match inner.port {
            Some(p) => p,
            None => {
                let p = free_port()?;
                inner.port = Some(p);
                if let Ok(mut slot) = self.port.lock() {
                    *slot = Some(p);
                }
                p
            }
        };
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .with_context(|| format!("open {}", self.log_path().display()))?;
        let log_err = log
            .try_clone()
            .with_context(|| format!("open {}", self.log_path().display()))?;
        let mut cmd = Command::new(&self.config.redis_server);
        cmd.arg("--port")
            .arg(port.to_string())
            .args(["--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(&self.dir)
            .args(["--appendonly", "yes"])
            // AOF is the durability; no RDB snapshots forking in the background.
            .args(["--save", ""])
            .args(["--daemonize", "no"])
            .args(&self.config.extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            .kill_on_drop(true);
        let child = cmd.spawn().map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                anyhow::Error::from(TargetError::RedisServerMissing)
            } else {
                anyhow::Error::from(e)
                    .context(format!("spawn {}", self.config.redis_server.display()))
            }
        })?;
        if let Ok(mut p) = self.pid.lock() {
            *p = child.id();
        }
        inner.child = Some(child);
        inner.paused = false;
        drop(inner);

        let url = format!("redis://127.0.0.1:{port}");
        match redis_ready::wait_until_ready(&url, self.config.ready_timeout).await {
            Ok(_) => Ok(()),
            Err(e) => {
                let mut inner = self.inner.lock().await;
                reap(&mut inner);
                let exited = inner.child.is_none();
                let tail = log_tail(&self.log_path());
                if exited {
                    Err(e.context(format!(
                        "redis-server exited during start-up ({}); last log lines:\n{tail}",
                        describe_exit(inner.last_exit)
                    )))
                } else {
                    Err(e.context(format!("last log lines:\n{tail}")))
                }
            }
        }
    }

    /// SIGTERM, then waits for the exit (SIGKILL after the stop timeout, with a warning).
    pub async fn stop(&self) -> anyhow::Result<()> {
        self.signal_and_wait(Signal::Sigterm).await
    }

    /// Sends `signal`; for signals that end Redis, waits until the child has exited.
    pub async fn kill(&self, signal: Signal) -> anyhow::Result<()> {
        self.signal_and_wait(signal).await
    }

    async fn signal_and_wait(&self, signal: Signal) -> anyhow::Result<()> {
        let mut inner = self.inner.lock().await;
        reap(&mut inner);
        let Some(pid) = inner.child.as_ref().and_then(Child::id) else {
            // Already down: stopping a stopped Redis is a no-op, like `docker stop`.
            return Ok(());
        };
        let pid = Pid::from_raw(i32::try_from(pid).context("pid out of range")?);
        // A stopped (SIGSTOP) process does not act on SIGTERM until continued.
        if inner.paused && signal != Signal::Sigkill {
            kill(pid, NixSignal::SIGCONT).context("SIGCONT redis-server")?;
            inner.paused = false;
        }
        kill(pid, signal.to_nix()).with_context(|| format!("{signal} redis-server"))?;
        if !signal.terminates_redis() {
            return Ok(());
        }
        let Some(child) = inner.child.as_mut() else {
            return Ok(());
        };
        let status = match tokio::time::timeout(self.config.stop_timeout, child.wait()).await {
            Ok(status) => status.context("wait for redis-server")?,
            Err(_) => {
                tracing::warn!(
                    "redis-server (pid {pid}) still running {:?} after {signal}; sending SIGKILL",
                    self.config.stop_timeout
                );
                child.start_kill().context("SIGKILL redis-server")?;
                child.wait().await.context("wait for redis-server")?
            }
        };
        inner.last_exit = Some(status);
        inner.child = None;
        inner.paused = false;
        Ok(())
    }

    /// Stop, then start on the same port and dir.
    pub async fn restart(&self) -> anyhow::Result<()> {
        self.stop().await?;
        self.start().await
    }

    /// SIGSTOP: the kernel still accepts connections, Redis answers nothing.
    pub async fn pause(&self) -> anyhow::Result<()> {
        let mut inner = self.inner.lock().await;
        reap(&mut inner);
        let Some(pid) = inner.child.as_ref().and_then(Child::id) else {
            bail!("cannot pause redis-server: it is not running");
        };
        let pid = Pid::from_raw(i32::try_from(pid).context("pid out of range")?);
        kill(pid, NixSignal::SIGSTOP).context("SIGSTOP redis-server")?;
        inner.paused = true;
        Ok(())
    }

    /// SIGCONT, then waits until PING answers.
    pub async fn unpause(&self) -> anyhow::Result<()> {
        let mut inner = self.inner.lock().await;
        reap(&mut inner);
        let Some(pid) = inner.child.as_ref().and_then(Child::id) else {
            bail!("cannot unpause redis-server: it is not running");
        };
        let pid = Pid::from_raw(i32::try_from(pid).context("pid out of range")?);
        kill(pid, NixSignal::SIGCONT).context("SIGCONT redis-server")?;
        inner.paused = false;
        drop(inner);
        redis_ready::wait_until_ready(&self.url()?, self.config.ready_timeout).await?;
        Ok(())
    }

    /// Running, paused, exited (with the exit code) or never started.
    pub async fn inspect(&self) -> RedisStatus {
        let mut inner = self.inner.lock().await;
        reap(&mut inner);
        let pid = inner.child.as_ref().and_then(Child::id);
        let state = match (&inner.child, inner.paused, inner.last_exit) {
            (Some(_), true, _) => RunState::Paused,
            (Some(_), false, _) => RunState::Running,
            (None, _, Some(status)) => RunState::Exited {
                code: exit_code(status),
            },
            (None, _, None) => RunState::Missing,
        };
        RedisStatus {
            state,
            host_port: inner.port,
            pid,
            detail: format!(
                "dir {}, log {}",
                self.dir.display(),
                self.log_path().display()
            ),
        }
    }

    /// Stops the child (SIGTERM, SIGKILL after the stop timeout). The temp dir goes with the
    /// backend itself.
    pub async fn teardown(&self) -> anyhow::Result<()> {
        self.stop().await
    }
}

/// Records the exit of a child that died on its own since we last looked.
fn reap(inner: &mut Inner) {
    if let Some(child) = inner.child.as_mut() {
        if let Ok(Some(status)) = child.try_wait() {
            inner.last_exit = Some(status);
            inner.child = None;
            inner.paused = false;
        }
    }
}

/// The exit code, or 128 + signal for a child killed by a signal (the shell's and Docker's
/// convention: SIGKILL → 137).
fn exit_code(status: std::process::ExitStatus) -> Option<i64> {
    use std::os::unix::process::ExitStatusExt as _;
    status
        .code()
        .map(i64::from)
        .or_else(|| status.signal().map(|s| 128 + i64::from(s)))
}

fn describe_exit(status: Option<std::process::ExitStatus>) -> String {
    match status.and_then(exit_code) {
        Some(code) => format!("exit code {code}"),
        None => "exit status unknown".into(),
    }
}

/// A port free right now on 127.0.0.1 (the listener is dropped before returning). Another
/// process could take it before redis-server binds; start() then fails saying so in the log.
pub fn free_port() -> anyhow::Result<u16> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").context("bind 127.0.0.1:0 to find a port")?;
    Ok(listener
        .local_addr()
        .context("read the bound address")?
        .port())
}

fn log_tail(path: &Path) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(15)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}
