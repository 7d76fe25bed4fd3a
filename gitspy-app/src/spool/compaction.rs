//! Compaction: rewriting `spool.log` as a new generation without its drained prefix (always
//! when everything was drained), and building a new log file under its temporary name.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::durable::{io_err, sync_dir};
use super::*;

impl Spool {
    /// Rewrites the log without its drained prefix when it is worth it (always when empty).
    pub(super) fn maybe_compact(&mut self) -> Result<(), SpoolError> {
        let dead = self.head - LOG_HEADER_LEN;
        let live = self.live_bytes();
        let worth_it = if live == 0 {
            dead > 0
        } else {
            dead >= self.options.compact_after_dead_bytes && dead >= live
        };
        if worth_it {
            self.rewrite()
        } else {
            Ok(())
        }
    }

    /// Replaces `spool.log` with a new generation holding only the live records.
    fn rewrite(&mut self) -> Result<(), SpoolError> {
        let new_generation = self.generation + 1;
        let file = build_and_rename_log(
            &self.dir,
            new_generation,
            Some((&self.file, self.head, self.end)),
        )?;
        // The new generation is now what `spool.log` names: switch to it before anything else
        // can fail, so appends never go to the unlinked old inode.
        let shift = self.head - LOG_HEADER_LEN;
        self.file = file;
        self.generation = new_generation;
        self.head = LOG_HEADER_LEN;
        self.end -= shift;
        for entry in &mut self.entries {
            entry.offset -= shift;
        }
        if let Err(e) = sync_dir(&self.dir) {
            // The rename may not be durable: after a crash `spool.log` could name the old
            // inode again, and records appended to the new one would vanish. Refuse appends
            // until `open` has re-synced the directory.
            self.poisoned = true;
            return Err(e);
        }
        // If this fails, the older checkpoint generation already means "start after the
        // header", which is exactly right.
        self.write_head(self.generation, self.head)
    }
}

/// Builds `spool.log.tmp` (header of `generation`, then `live` bytes copied from the old log
/// if given), fsyncs it and renames it over `spool.log`. Returns a read/write handle on the
/// new file. The caller fsyncs the directory.
pub(super) fn build_and_rename_log(
    dir: &Path,
    generation: u64,
    live: Option<(&File, u64, u64)>,
) -> Result<File, SpoolError> {
    let tmp = dir.join(LOG_TMP_FILE);
    let log = dir.join(LOG_FILE);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(io_err("create", &tmp))?;
    let mut header = [0u8; LOG_HEADER_LEN as usize];
    header[0..8].copy_from_slice(&LOG_MAGIC);
    header[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    header[12..20].copy_from_slice(&generation.to_le_bytes());
    let crc = crc32fast::hash(&header[0..20]);
    header[20..24].copy_from_slice(&crc.to_le_bytes());
    file.write_all_at(&header, 0)
        .map_err(io_err("write", &tmp))?;
    if let Some((old, from, to)) = live {
        let mut buf = vec![0u8; IO_CHUNK];
        let mut src = from;
        let mut dst = LOG_HEADER_LEN;
        while src < to {
            let n = (to - src).min(IO_CHUNK as u64) as usize;
            old.read_exact_at(&mut buf[..n], src)
                .map_err(io_err("read live records from", &log))?;
            file.write_all_at(&buf[..n], dst)
                .map_err(io_err("write", &tmp))?;
            src += n as u64;
            dst += n as u64;
        }
    }
    file.sync_all().map_err(io_err("fsync", &tmp))?;
    fs::rename(&tmp, &log).map_err(io_err("rename new generation to", &log))?;
    Ok(file)
}
