//! The managed PostgreSQL of `target.store: postgres` (process backend): `initdb` into a fresh
//! temp dir, one `postgres` server on a free 127.0.0.1 port (trust authentication, loopback only),
//! a `gitspy` database, and the URL GitSpy gets as `GITSPY_DB`. PostgreSQL refuses to run as root,
//! so when the harness is root the server binaries run as the `postgres` user (`setpriv` execs
//! them: the child's pid is the server's, and signals reach it). Stopped with a fast shutdown
//! (SIGINT) at teardown; recorded in the run file so `cleanup` can kill what an interrupted run
//! left. The binaries and command lines are shared with GitSpy's store tests
//! ([`gitspy_contract::pg`]).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context as _};
use gitspy_contract::pg;
use tokio::process::{Child, Command};

/// The database GitSpy's tables live in.
pub const DATABASE: &str = "gitspy";

/// The directory of `initdb`/`postgres`: `GITSPY_PG_BIN`, else the newest
/// `/usr/lib/postgresql/*/bin`, else `PATH` ([`gitspy_contract::pg::bin_dir`]).
pub fn bin_dir() -> anyhow::Result<PathBuf> {
    pg::bin_dir().map_err(|e| anyhow::anyhow!("target.store: postgres: {e}"))
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
        if pg::is_root() {
            let st = Command::from(pg::chown_command(temp.path()))
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
        let out = Command::from(pg::initdb(&bin, &data))
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
        let child = Command::from(pg::server(&bin, &data, port, temp.path()))
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
        pg::url(self.port, db)
    }

    /// The URL GitSpy gets.
    pub fn url(&self) -> String {
        self.url_of(DATABASE)
    }

    /// The server's TCP address (what a proxy on a link to it forwards to).
    pub fn addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The URL GitSpy gets when it reaches the server through `via` (a proxy of the link).
    pub fn url_via(&self, via: std::net::SocketAddr) -> String {
        format!("postgres://postgres@{via}/{DATABASE}")
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
