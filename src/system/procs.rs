//! Managed GitSpy processes: `gitspy serve` and N `gitspy worker`, started on port 0 (the bound
//! address is read from the first stdout line), tracked by their `Child` handle, and faulted with
//! kill (SIGKILL), stop (SIGTERM) and restart with the same command line (and the same port).
//!
//! Output is kept twice: the whole of it in a log file of the run, the last lines in memory for the
//! report.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context as _};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::process::{Child, Command};

/// How many lines of each process's output the report keeps.
pub const LOG_TAIL_LINES: usize = 200;
/// How long a process may take to print its address.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Which GitSpy process this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "index")]
pub enum Role {
    Server,
    Worker(usize),
}

impl Role {
    pub fn name(&self) -> String {
        match self {
            Role::Server => "server".into(),
            Role::Worker(i) => format!("worker-{i}"),
        }
    }
}

/// Finds the gitspy binary: `--gitspy-bin`, else `GITSPY_BIN`, else next to this executable, else
/// on `PATH`.
pub fn find_gitspy_bin(flag: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(p) = flag {
        if p.is_file() {
            return Ok(p.to_path_buf());
        }
        bail!("--gitspy-bin {}: no such file", p.display());
    }
    if let Some(p) = std::env::var_os("GITSPY_BIN") {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Ok(p);
        }
        bail!("GITSPY_BIN={}: no such file", p.display());
    }
    if let Ok(me) = std::env::current_exe() {
        if let Some(dir) = me.parent() {
            for cand in [dir.join("gitspy"), dir.join("../gitspy")] {
                if cand.is_file() {
                    return Ok(cand);
                }
            }
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let cand = dir.join("gitspy");
            if cand.is_file() {
                return Ok(cand);
            }
        }
    }
    bail!(
        "cannot find the gitspy binary\nhint: build it with `cargo build -p gitspy` (it lands next to \
         gitspy-chaos), or pass --gitspy-bin PATH / set GITSPY_BIN"
    )
}

/// The start time of a process in clock ticks since boot (`/proc/<pid>/stat` field 22): with the
/// pid it identifies one process for its whole life, so a recycled pid is never mistaken for it.
pub fn proc_start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// A bounded in-memory tail of a process's output.
#[derive(Default)]
struct Tail(VecDeque<String>);

impl Tail {
    fn push(&mut self, line: String) {
        if self.0.len() == LOG_TAIL_LINES {
            self.0.pop_front();
        }
        self.0.push_back(line);
    }
}

/// One run of a managed process, from a start to its end: the unit per-process accounting
/// compares metrics and store by (a restart is a new instance with fresh counters).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Instance {
    /// The worker's consumer name in the group (`GITSPY_CONSUMER` from its env, else `<role>.<n>`;
    /// the store's `applied_by`); `None` for the server.
    pub consumer: Option<String>,
    /// Unix ms right before the process was spawned.
    pub started_ms: u64,
    /// Unix ms once the harness saw it gone (`None`: still running).
    pub ended_ms: Option<u64>,
    /// `kill` or `stop` when the harness ended it.
    pub ended_by: Option<String>,
}

/// One managed GitSpy process.
pub struct ManagedProc {
    pub role: Role,
    bin: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    /// The env var that carries the listen address/port (pinned after the first start).
    listen_var: &'static str,
    child: Option<Child>,
    pub addr: Option<SocketAddr>,
    /// The server's admin-address env var when it is started with one (`target.admin_address`).
    admin_var: Option<String>,
    /// The admin address it printed (second stdout line); reads and scrapes go there.
    pub admin: Option<SocketAddr>,
    pub pid: Option<u32>,
    pub start_ticks: Option<u64>,
    pub restarts: u32,
    /// Every start of this process, in order.
    pub instances: Vec<Instance>,
    /// Stopped with SIGSTOP (a `freeze` fault) and not yet continued.
    pub frozen: bool,
    log_path: PathBuf,
    tail: Arc<Mutex<Tail>>,
}

impl ManagedProc {
    pub fn new(role: Role, bin: &Path, env: Vec<(String, String)>, log_dir: &Path) -> ManagedProc {
        let (args, listen_var) = match role {
            Role::Server => (vec!["serve".to_string()], "GITSPY_LISTEN"),
            Role::Worker(_) => (vec!["worker".to_string()], "WORKER_METRICS_PORT"),
        };
        ManagedProc {
            role,
            bin: bin.to_path_buf(),
            args,
            env,
            listen_var,
            child: None,
            addr: None,
            admin_var: None,
            admin: None,
            pid: None,
            start_ticks: None,
            restarts: 0,
            instances: Vec::new(),
            frozen: false,
            log_path: log_dir.join(format!("{}.log", role.name())),
            tail: Arc::new(Mutex::new(Tail::default())),
        }
    }

    /// Starts the server with an admin address in `var` (port 0 the first time, then pinned):
    /// it then serves only `POST /webhooks` on [`ManagedProc::addr`].
    pub fn with_admin_address(&mut self, var: &str) {
        self.admin_var = Some(var.to_string());
    }

    /// A URL for reading the process (metrics, lookups, health): on its admin address when it
    /// has one, else on its only address.
    pub fn url(&self, path: &str) -> Option<String> {
        self.admin
            .or(self.addr)
            .map(|a| format!("http://{a}{path}"))
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The last lines of output (stdout after the address line, and stderr).
    pub fn log_tail(&self) -> String {
        match self.tail.lock() {
            Ok(t) => t.0.iter().cloned().collect::<Vec<_>>().join("\n"),
            Err(_) => String::new(),
        }
    }

    /// True while the child has not exited.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Starts the process and waits for its address line. After the first start the same address is
    /// reused, so URLs stay valid across restarts.
    pub async fn start(&mut self) -> anyhow::Result<()> {
        if self.is_running() {
            return Ok(());
        }
        let mut cmd = Command::new(&self.bin);
        cmd.args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd.env("NO_COLOR", "1");
        let consumer = match self.role {
            Role::Worker(_) => Some(
                self.env
                    .iter()
                    .find(|(k, _)| k == "GITSPY_CONSUMER")
                    .map(|(_, v)| v.clone())
                    .unwrap_or_else(|| {
                        format!("{}.{}", self.role.name(), self.instances.len() + 1)
                    }),
            ),
            Role::Server => None,
        };
        if let Some(c) = &consumer {
            cmd.env("GITSPY_CONSUMER", c);
        }
        let started_ms = crate::observe::prom::now_ms();
        match (self.role, self.addr) {
            (Role::Server, Some(a)) => {
                cmd.env(self.listen_var, a.to_string());
            }
            (Role::Server, None) => {
                cmd.env(self.listen_var, "127.0.0.1:0");
            }
            (Role::Worker(_), Some(a)) => {
                cmd.env(self.listen_var, a.port().to_string());
            }
            (Role::Worker(_), None) => {
                cmd.env(self.listen_var, "0");
            }
        }
        if let Some(var) = &self.admin_var {
            let a = self
                .admin
                .map_or_else(|| "127.0.0.1:0".to_string(), |a| a.to_string());
            cmd.env(var, a);
        }
        let mut child = cmd.spawn().with_context(|| {
            format!("cannot start {} ({})", self.role.name(), self.bin.display())
        })?;
        let pid = child.id();
        let log = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .await
            .with_context(|| format!("cannot open {}", self.log_path.display()))?;
        let log = Arc::new(tokio::sync::Mutex::new(log));
        let (tx, rx) = tokio::sync::oneshot::channel::<String>();
        let (admin_tx, admin_rx) = tokio::sync::oneshot::channel::<String>();
        if let Some(out) = child.stdout.take() {
            let tail = self.tail.clone();
            let log = log.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(out).lines();
                let mut tx = Some(tx);
                let mut admin_tx = Some(admin_tx);
                while let Ok(Some(line)) = lines.next_line().await {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(line.clone());
                    } else if let Some(admin_tx) = admin_tx.take() {
                        let _ = admin_tx.send(line.clone());
                    }
                    record(&tail, &log, line).await;
                }
            });
        }
        if let Some(err) = child.stderr.take() {
            let tail = self.tail.clone();
            let log = log.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(err).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    record(&tail, &log, line).await;
                }
            });
        }
        let first = match tokio::time::timeout(START_TIMEOUT, rx).await {
            Ok(Ok(line)) => line,
            _ => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                // Give the log readers a moment to drain what the process said before dying.
                tokio::time::sleep(Duration::from_millis(100)).await;
                bail!(
                    "{} did not print its address within {START_TIMEOUT:?}; last output:\n{}",
                    self.role.name(),
                    self.log_tail()
                );
            }
        };
        let addr: SocketAddr = first
            .strip_prefix("listening on http://")
            .and_then(|a| a.trim().parse().ok())
            .with_context(|| format!("{}: unexpected first line `{first}`", self.role.name()))?;
        self.addr = Some(addr);
        if self.admin_var.is_some() {
            let second = match tokio::time::timeout(START_TIMEOUT, admin_rx).await {
                Ok(Ok(line)) => line,
                _ => {
                    let _ = child.start_kill();
                    let _ = child.wait().await;
                    bail!(
                        "{} did not print its admin address within {START_TIMEOUT:?}",
                        self.role.name()
                    );
                }
            };
            let admin: SocketAddr = second
                .strip_prefix("admin listening on http://")
                .and_then(|a| a.trim().parse().ok())
                .with_context(|| {
                    format!("{}: unexpected second line `{second}`", self.role.name())
                })?;
            self.admin = Some(admin);
        }
        self.pid = pid;
        self.start_ticks = pid.and_then(proc_start_ticks);
        self.child = Some(child);
        // An instance that ended on its own (not through kill/stop) ends here at the latest.
        self.ended("exited");
        self.instances.push(Instance {
            consumer,
            started_ms,
            ended_ms: None,
            ended_by: None,
        });
        Ok(())
    }

    /// Records the end of the current instance (if it has not ended yet).
    pub fn ended(&mut self, by: &str) {
        if let Some(i) = self.instances.last_mut().filter(|i| i.ended_ms.is_none()) {
            i.ended_ms = Some(crate::observe::prom::now_ms());
            i.ended_by = Some(by.to_owned());
        }
    }

    /// Re-checks that the child we are about to signal is still ours and alive.
    fn live_pid(&mut self) -> Option<u32> {
        let running = self.is_running();
        let pid = self.pid?;
        if !running {
            return None;
        }
        // Our own Child handle has not been reaped, so the pid cannot have been recycled; the
        // start-time check guards against mistakes anyway.
        if self.start_ticks.is_some() && proc_start_ticks(pid) != self.start_ticks {
            return None;
        }
        if pid == std::process::id() {
            return None;
        }
        Some(pid)
    }

    /// SIGKILL: a crash. Waits until the process is gone.
    pub async fn kill(&mut self) -> anyhow::Result<()> {
        if self.live_pid().is_none() {
            return Ok(());
        }
        if let Some(c) = self.child.as_mut() {
            c.start_kill().context("SIGKILL")?;
            let _ = c.wait().await;
        }
        self.child = None;
        self.ended("kill");
        self.frozen = false;
        Ok(())
    }

    /// SIGTERM, then up to `grace` for a clean exit, then SIGKILL. Returns the exit code if clean.
    pub async fn stop(&mut self, grace: Duration) -> anyhow::Result<Option<i32>> {
        let Some(pid) = self.live_pid() else {
            self.child = None;
            return Ok(None);
        };
        let pid = i32::try_from(pid).context("pid out of range")?;
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        )
        .context("SIGTERM")?;
        if self.frozen {
            // A stopped process acts on SIGTERM only once continued.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGCONT,
            );
            self.frozen = false;
        }
        let code = match self.child.as_mut() {
            Some(c) => match tokio::time::timeout(grace, c.wait()).await {
                Ok(Ok(st)) => st.code(),
                _ => {
                    let _ = c.start_kill();
                    let _ = c.wait().await;
                    None
                }
            },
            None => None,
        };
        self.child = None;
        self.ended("stop");
        Ok(code)
    }

    /// The environment the process is started with.
    pub fn env(&self) -> &[(String, String)] {
        &self.env
    }

    /// Sets (or replaces) one environment variable for the next start.
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_string(), value.to_string()));
    }

    /// SIGSTOP (freeze) or SIGCONT (thaw) to the live process; a process that is not running
    /// gets nothing and the call says so.
    pub fn pause(&mut self, freeze: bool) -> anyhow::Result<()> {
        let Some(pid) = self.live_pid() else {
            anyhow::bail!("{} is not running", self.role.name());
        };
        let pid = i32::try_from(pid).context("pid out of range")?;
        let sig = if freeze {
            nix::sys::signal::Signal::SIGSTOP
        } else {
            nix::sys::signal::Signal::SIGCONT
        };
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig)
            .with_context(|| format!("{sig} to {}", self.role.name()))?;
        self.frozen = freeze;
        Ok(())
    }

    /// Stop (SIGTERM) and start again with the same command line and address.
    pub async fn restart(&mut self, grace: Duration) -> anyhow::Result<()> {
        self.stop(grace).await?;
        self.restarts += 1;
        self.start().await
    }

    /// Start again after a kill or stop (counts as a restart when it had run before).
    pub async fn start_again(&mut self) -> anyhow::Result<()> {
        if self.is_running() {
            return Ok(());
        }
        if self.pid.is_some() {
            self.restarts += 1;
        }
        self.start().await
    }
}

async fn record(
    tail: &Arc<Mutex<Tail>>,
    log: &Arc<tokio::sync::Mutex<tokio::fs::File>>,
    line: String,
) {
    {
        let mut f = log.lock().await;
        let _ = f.write_all(line.as_bytes()).await;
        let _ = f.write_all(b"\n").await;
    }
    if let Ok(mut t) = tail.lock() {
        t.push(line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_ticks_of_this_process() {
        let a = proc_start_ticks(std::process::id());
        assert!(a.is_some());
        assert_eq!(a, proc_start_ticks(std::process::id()));
        assert_eq!(proc_start_ticks(u32::MAX), None);
    }

    #[test]
    fn tail_is_bounded() {
        let mut t = Tail::default();
        for i in 0..(LOG_TAIL_LINES + 10) {
            t.push(i.to_string());
        }
        assert_eq!(t.0.len(), LOG_TAIL_LINES);
        assert_eq!(t.0.front().map(String::as_str), Some("10"));
    }
}
