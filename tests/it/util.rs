//! Helpers shared by the CLI tests: run the real binary from the crate root, so that paths in
//! its output are relative and snapshots do not depend on where the repository lives.

use std::path::{Path, PathBuf};

/// What one run of the binary produced.
#[derive(Debug)]
pub struct Output {
    /// The exit code (`-1` if killed by a signal, which no test expects).
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// The crate root; every command runs there.
pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Run `gitspy-chaos ARGS…` in the crate root with a clean, colourless environment.
pub fn chaos(args: &[&str]) -> Output {
    let out = assert_cmd::cargo::cargo_bin_cmd!("gitspy-chaos")
        .args(args)
        .current_dir(root())
        .env_remove("RUST_LOG")
        .env_remove("GITSPY_BIN")
        .env("NO_COLOR", "1")
        .output()
        .expect("the gitspy-chaos binary runs");
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).expect("stdout is UTF-8"),
        stderr: String::from_utf8(out.stderr).expect("stderr is UTF-8"),
    }
}

/// `gitspy-chaos ARGS… --report-dir DIR` in the crate root against the workspace's `gitspy`
/// (next to the harness binary): (exit code, stdout, stderr).
pub fn run_managed(args: &[&str], report_dir: &Path) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gitspy-chaos"))
        .args(args)
        .arg("--report-dir")
        .arg(report_dir)
        .current_dir(root())
        .env(
            "GITSPY_BIN",
            PathBuf::from(env!("CARGO_BIN_EXE_gitspy-chaos")).with_file_name("gitspy"),
        )
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .output()
        .expect("gitspy-chaos runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The one run directory under `reports`.
pub fn only_run_dir(reports: &Path) -> PathBuf {
    std::fs::read_dir(reports)
        .unwrap()
        .flatten()
        .next()
        .expect("a run directory")
        .path()
}

/// The `run.json` of the one run under `reports`.
pub fn only_run_json(reports: &Path) -> serde_json::Value {
    let path = only_run_dir(reports).join("run.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The names of a run.json's checks, in report order; with `failed_only`, of those that did
/// not pass.
pub fn check_names(run: &serde_json::Value, failed_only: bool) -> Vec<&str> {
    run["checks"]
        .as_array()
        .expect("run.json has checks")
        .iter()
        .filter(|c| !failed_only || c["passed"] != true)
        .filter_map(|c| c["name"].as_str())
        .collect()
}

/// The `*.yaml` files of a directory under the crate root, as relative paths, sorted.
pub fn yaml_files(dir: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join(dir))
        .unwrap_or_else(|e| panic!("reading {dir}: {e}"))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .map(|p| {
            p.strip_prefix(root())
                .expect("under the root")
                .to_path_buf()
        })
        .collect();
    files.sort();
    files
}

/// A free TCP port on 127.0.0.1 (bound, read, released). Prefer port 0 where the program under
/// test can report what it bound; this is for programs that cannot (redis-server).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0");
    l.local_addr().expect("reading the bound address").port()
}

/// `redis-server` from `PATH`; fails saying what to install when it is absent.
pub fn redis_server_bin() -> PathBuf {
    gitspy_chaos::system::find_on_path("redis-server").unwrap_or_else(|| {
        panic!("redis-server is not on PATH: install it (`apt-get install -y redis-server`)")
    })
}

/// A real `redis-server` on a free port with its own temporary directory and AOF; killed (and
/// the directory removed) when dropped.
pub struct Redis {
    pub url: String,
    _dir: tempfile::TempDir,
    child: std::process::Child,
}

impl Redis {
    /// Starts one and waits (up to 20 s) until it answers `PING`.
    pub fn start() -> Redis {
        let dir = tempfile::tempdir().expect("creating a temp dir");
        let port = free_port();
        let child = std::process::Command::new(redis_server_bin())
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "yes"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawning redis-server");
        let redis = Redis {
            url: format!("redis://127.0.0.1:{port}/"),
            _dir: dir,
            child,
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let pong = redis::Client::open(redis.url.as_str())
                .and_then(|c| c.get_connection_with_timeout(std::time::Duration::from_millis(500)))
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
            if pong.is_ok() {
                return redis;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server on port {port} never answered PING within 20 s"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
