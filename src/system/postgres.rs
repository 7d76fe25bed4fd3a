//! The managed PostgreSQL of `target.store: postgres` (process backend): `initdb` into a fresh
//! temp dir, one `postgres` server on a free 127.0.0.1 port (trust authentication, loopback only),
//! a `gitspy` database, and the URL GitSpy gets as `GITSPY_DB`. PostgreSQL refuses to run as root,
//! so when the harness is root the server binaries run as the `postgres` user (`setpriv` execs
//! them: the child's pid is the server's, and signals reach it). Stopped with a fast shutdown
//! (SIGINT) at teardown; recorded in the run file so `cleanup` can kill what an interrupted run
//! left.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context as _};
use tokio::process::{Child, Command};

/// The database GitSpy's tables live in.
pub const DATABASE: &str = "gitspy";

/// The directory of `initdb`/`postgres`: `GITSPY_PG_BIN`, else the newest
/// `/usr/lib/postgresql/*/bin`, else `PATH`.
pub fn bin_dir() -> anyhow::Result<PathBuf> {
    if let Some(d) = std::env::var_os("GITSPY_PG_BIN") {
        return Ok(PathBuf::from(d));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((v, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .find(|dir| dir.join("initdb").is_file())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "target.store: postgres needs the PostgreSQL server binaries (initdb, postgres)\n\
                 hint: apt-get install -y postgresql (or set GITSPY_PG_BIN to their directory)"
            )
        })
}

fn is_root() -> bool {
    // `/proc/self` belongs to the process's effective user (no unsafe `geteuid` needed).
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// `bin` as the `postgres` user when the harness is root, as itself otherwise.
fn command(bin: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=postgres",
            "--regid=postgres",
            "--clear-groups",
            "--",
        ])
        .arg(bin);
        c
    } else {
        Command::new(bin)
    }
}

/// A PostgreSQL server the harness owns.
pub struct ManagedPostgres {
    port: u16,
    /// Data dir, socket and `postgres.log`; removed with the backend.
    temp: tempfile::TempDir,
    child: Option<Child>,
    pid: Option<u32>,
}

impl ManagedPostgres {
    /// `initdb`, start, create the database. Fails with what to install when the binaries are
    /// missing.
    pub async fn start() -> anyhow::Result<ManagedPostgres> {
        let bin = bin_dir()?;
        let temp = tempfile::Builder::new()
            .prefix("gitspy-chaos-pg-")
            .tempdir()
            .context("creating a temp dir for PostgreSQL")?;
        if is_root() {
            let st = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(temp.path())
                .status()
                .await
                .context("chown of the PostgreSQL dir (is there a `postgres` user?)")?;
            if !st.success() {
                bail!(
                    "cannot give {} to the postgres user (PostgreSQL refuses to run as root)\n\
                     hint: apt-get install -y postgresql creates that user",
                    temp.path().display()
                );
            }
        }
        let data = temp.path().join("data");
        let out = command(&bin.join("initdb"))
            .args([
                "--auth=trust",
                "--username=postgres",
                "--no-sync",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
                "-D",
            ])
            .arg(&data)
            .stdin(Stdio::null())
            .output()
            .await
            .context("running initdb")?;
        if !out.status.success() {
            bail!(
                "initdb failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .context("choosing a port for PostgreSQL")?
            .port();
        let log = temp.path().join("postgres.log");
        let child = command(&bin.join("postgres"))
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1"])
            .arg("-c")
            .arg(format!("unix_socket_directories={}", temp.path().display()))
            .args(["-c", "max_connections=200"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).context("creating postgres.log")?)
            .kill_on_drop(true)
            .spawn()
            .context("starting postgres")?;
        let pid = child.id();
        let mut pg = ManagedPostgres {
            port,
            temp,
            child: Some(child),
            pid,
        };
        pg.wait_ready(Duration::from_secs(60)).await?;
        let (client, conn) = pg.connect("postgres").await?;
        let task = tokio::spawn(conn);
        client
            .batch_execute(&format!("CREATE DATABASE {DATABASE}"))
            .await
            .context("CREATE DATABASE")?;
        drop(client);
        let _ = task.await;
        Ok(pg)
    }

    async fn wait_ready(&mut self, within: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Ok((_c, conn)) = self.connect("postgres").await {
                drop(conn);
                return Ok(());
            }
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(st)) = child.try_wait() {
                    bail!(
                        "postgres exited ({st}) before accepting connections; log:\n{}",
                        self.log_tail()
                    );
                }
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "postgres did not accept connections within {within:?}; log:\n{}",
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The last lines of the server's log.
    pub fn log_tail(&self) -> String {
        let text =
            std::fs::read_to_string(self.temp.path().join("postgres.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// The URL of database `db` on this server.
    pub fn url_of(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// The URL GitSpy gets.
    pub fn url(&self) -> String {
        self.url_of(DATABASE)
    }

    /// A client on database `db` (the caller spawns the connection future).
    pub async fn connect(
        &self,
        db: &str,
    ) -> anyhow::Result<(
        tokio_postgres::Client,
        tokio_postgres::Connection<tokio_postgres::Socket, tokio_postgres::tls::NoTlsStream>,
    )> {
        connect(&self.url_of(db)).await
    }

    /// The server's pid (its postmaster).
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// The temp dir (data, socket, log).
    pub fn dir(&self) -> &Path {
        self.temp.path()
    }

    /// Fast shutdown (SIGINT), SIGKILL after 15 s.
    pub async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Some(pid) = child.id() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGINT,
            );
        }
        if tokio::time::timeout(Duration::from_secs(15), child.wait())
            .await
            .is_err()
        {
            let _ = child.kill().await;
        }
    }
}

/// Connects to `url` with a 5 s timeout.
pub async fn connect(
    url: &str,
) -> anyhow::Result<(
    tokio_postgres::Client,
    tokio_postgres::Connection<tokio_postgres::Socket, tokio_postgres::tls::NoTlsStream>,
)> {
    let mut config: tokio_postgres::Config = url.parse().context("PostgreSQL URL")?;
    config.connect_timeout(Duration::from_secs(5));
    config.application_name("gitspy-chaos");
    config
        .connect(tokio_postgres::NoTls)
        .await
        .context("connecting to PostgreSQL")
}
