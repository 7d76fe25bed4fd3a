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
