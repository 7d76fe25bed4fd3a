//! How both crates start a throwaway local PostgreSQL server: the harness's managed store
//! (`target.store: postgres`, `gitspy-chaos` `src/system/postgres.rs`) and GitSpy's store tests
//! (`gitspy-app/tests/it/util.rs`). Not a protocol between the two, but the one place the server
//! binaries are found and the `initdb` and `postgres` command lines are written, so the two
//! cannot drift. Plain `std::process::Command` builders: the async harness wraps them in
//! `tokio::process::Command::from`, the tests run them as they are.
//!
//! PostgreSQL refuses to run as root: when the caller is root, every server binary runs as the
//! `postgres` user through `setpriv`, which execs it (the child's pid is the program's, so
//! signals reach it), and the data directory is given to that user first ([`chown_command`]).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The directory of `initdb` and `postgres`: `GITSPY_PG_BIN`, else the newest
/// `/usr/lib/postgresql/*/bin`, else the first `PATH` entry holding `initdb`; the error says
/// what to install.
pub fn bin_dir() -> Result<PathBuf, String> {
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
            "the PostgreSQL server binaries (initdb, postgres) were not found\n\
             hint: apt-get install -y postgresql (or set GITSPY_PG_BIN to their directory)"
                .to_string()
        })
}

/// Whether this process runs as root (`/proc/self` belongs to the effective user).
pub fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// `bin` as the `postgres` user when the caller is root, as itself otherwise.
pub fn command(bin: &Path) -> Command {
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

/// `chown -R postgres:postgres dir`: run it first when [`is_root`].
pub fn chown_command(dir: &Path) -> Command {
    let mut c = Command::new("chown");
    c.args(["-R", "postgres:postgres"]).arg(dir);
    c
}

/// `initdb` of a new cluster in `data`: trust authentication, superuser `postgres`, UTF-8, no
/// fsync of the new files (a throwaway cluster).
pub fn initdb(bin: &Path, data: &Path) -> Command {
    let mut c = command(&bin.join("initdb"));
    c.args([
        "--auth=trust",
        "--username=postgres",
        "--no-sync",
        "--encoding=UTF8",
        "--locale=C.UTF-8",
        "-D",
    ])
    .arg(data)
    .stdin(Stdio::null());
    c
}

/// The `postgres` server on `data`: 127.0.0.1:`port` only, its unix socket in `socket_dir`
/// (never the system's), 200 connections. Callers add `-c` settings of their own and the
/// stdio.
pub fn server(bin: &Path, data: &Path, port: u16, socket_dir: &Path) -> Command {
    let mut c = command(&bin.join("postgres"));
    c.arg("-D")
        .arg(data)
        .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1"])
        .arg("-c")
        .arg(format!("unix_socket_directories={}", socket_dir.display()))
        .args(["-c", "max_connections=200"])
        .stdin(Stdio::null());
    c
}

/// The URL of database `db` on a server of this module at 127.0.0.1:`port`.
pub fn url(port: u16, db: &str) -> String {
    format!("postgres://postgres@127.0.0.1:{port}/{db}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_listens_on_loopback_with_its_own_socket_dir() {
        let c = server(Path::new("/pg/bin"), Path::new("/d"), 5999, Path::new("/s"));
        let args: Vec<String> = std::iter::once(c.get_program())
            .chain(c.get_args())
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let joined = args.join(" ");
        assert!(joined.contains("/pg/bin/postgres"), "{joined}");
        assert!(
            joined.contains("-D /d -p 5999 -c listen_addresses=127.0.0.1"),
            "{joined}"
        );
        assert!(joined.contains("unix_socket_directories=/s"), "{joined}");
        assert_eq!(
            url(5999, "gitspy"),
            "postgres://postgres@127.0.0.1:5999/gitspy"
        );
    }
}
