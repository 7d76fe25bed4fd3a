//! Durable writes: files written and fsynced, directories fsynced after a rename or creation,
//! the checkpoint replaced atomically, and the one way I/O errors are wrapped.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::*;

impl Spool {
    /// Atomically replaces the checkpoint: tmp file, fsync, rename, fsync directory.
    pub(super) fn write_head(&self, generation: u64, offset: u64) -> Result<(), SpoolError> {
        let mut bytes = [0u8; HEAD_LEN];
        bytes[0..8].copy_from_slice(&HEAD_MAGIC);
        bytes[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        bytes[12..20].copy_from_slice(&generation.to_le_bytes());
        bytes[20..28].copy_from_slice(&offset.to_le_bytes());
        let crc = crc32fast::hash(&bytes[0..28]);
        bytes[28..32].copy_from_slice(&crc.to_le_bytes());
        let tmp = self.dir.join(HEAD_TMP_FILE);
        write_file_durably(&tmp, &bytes)?;
        fs::rename(&tmp, &self.head_path)
            .map_err(io_err("rename checkpoint to", &self.head_path))?;
        sync_dir(&self.dir)
    }
}

pub(super) fn io_err<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> SpoolError + 'a {
    move |source| SpoolError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

pub(super) fn write_file_durably(path: &Path, bytes: &[u8]) -> Result<(), SpoolError> {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(io_err("create", path))?;
    file.write_all_at(bytes, 0).map_err(io_err("write", path))?;
    file.sync_all().map_err(io_err("fsync", path))
}

/// Fsyncs a directory so that renames and creations inside it are durable.
pub(super) fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync directory", dir))
}

/// `create_dir_all`, then fsync the parent of every directory it created.
pub(super) fn create_dir_durably(dir: &Path) -> Result<(), SpoolError> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut missing = Vec::new();
    let mut cur = dir;
    while !cur.as_os_str().is_empty() && !cur.exists() {
        missing.push(cur.to_path_buf());
        cur = cur.parent().unwrap_or(Path::new(""));
    }
    fs::create_dir_all(dir).map_err(io_err("create directory", dir))?;
    for created in missing.iter().rev() {
        let parent = match created.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        sync_dir(parent)?;
    }
    Ok(())
}
