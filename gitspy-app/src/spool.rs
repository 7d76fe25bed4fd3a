//! The durable spool: where the server parks accepted deliveries while Redis is down
//! (`GITSPY_ON_REDIS_DOWN=spool`, SPEC §1.2/§1.3), so that a 202 is never a lie.
//!
//! This module is only a file format and a synchronous API — no Redis, no axum. The server
//! calls [`Spool::append`] (inside `spawn_blocking`, behind a `Mutex`) and answers 202 only
//! after it returned `Ok`; a single background drain task [`Spool::peek`]s the oldest records,
//! enqueues them into Redis through the normal atomic enqueue, and calls [`Spool::pop_front`]
//! only after Redis confirmed.
//!
//! # Guarantees
//!
//! - `append` returns `Ok` only after the record is written and `fdatasync`ed; the log file's
//!   directory entry was fsynced when the file was created or renamed, so an acknowledged
//!   record survives a crash or power loss.
//! - A crash in the middle of `append` leaves at most one torn record at the end of the log
//!   (of `append_batch`: a torn rest of that batch). [`Spool::open`] detects it (length beyond
//!   end of file, bad magic, bad checksum…), truncates it away and reports it in
//!   [`OpenReport`]. It was never acknowledged, so nothing is lost.
//!   A crash *after* the write reached the disk but before `append` returned may leave a whole,
//!   valid, unacknowledged record: it is kept and drained (GitHub's retry of it is then a
//!   duplicate that Redis's atomic enqueue recognises).
//! - A damaged record **followed by the start of a later append** cannot be a torn tail: appends
//!   are serialised, each one is fsynced before the next begins, and a failed one is rolled back
//!   or poisons the spool, so only the last append can be torn. `open` then fails with
//!   [`SpoolError::CorruptMiddle`] and leaves every file untouched for an operator, rather than
//!   silently dropping the acknowledged records after the damage. The same applies to a
//!   damaged file header or checkpoint ([`SpoolError::CorruptFile`]).
//! - Recovery rule, precisely: at the first record that fails to decode (at offset `o`),
//!   `open` searches the rest of the file byte by byte for valid records. If one of them has
//!   the batch-start flag, the damage is in an acknowledged append → `CorruptMiddle`. Otherwise
//!   everything from `o` to the end belongs to the last append (a single record, or the rest
//!   of an [`Spool::append_batch`] whose pages reached the disk out of order) and is truncated.
//!   Records of that last batch before `o` are kept: they may not have been acknowledged, in
//!   which case GitHub's retry is a duplicate that Redis dedupes.
//! - What cannot be told apart: damage to the *last* append after it was acknowledged (a bad
//!   disk sector) looks exactly like a torn write and is dropped too. A payload that itself
//!   contains a well-formed spool record could, after damage before it, be mistaken for a later
//!   append; the result is an error for the operator, never a silent drop.
//! - `pop_front` moves a checkpoint that is replaced atomically (write a temporary file,
//!   fsync, rename, fsync the directory). A crash before the rename keeps the old checkpoint:
//!   the records are drained again and Redis dedupes them; a crash after it forgets exactly
//!   the popped records. Nothing is ever forgotten before `pop_front` was called.
//!
//! # On-disk format (version 1)
//!
//! The spool directory holds two authoritative files and, transiently, two temporary ones.
//! All integers are little-endian; every checksum is CRC-32 (IEEE 802.3, the `crc32fast`
//! polynomial).
//!
//! `spool.log` — the data file, append-only between rewrites:
//!
//! ```text
//! file header, 24 bytes
//!   0..8    magic   b"GITSPYSL"
//!   8..12   u32     format version = 1
//!   12..20  u64     generation (1 for a new spool, +1 on every rewrite)
//!   20..24  u32     CRC-32 of bytes 0..20
//! then records, back to back:
//!   0..4    magic   b"GSR" 0x01 (the last byte is the record version)
//!   4..6    u16     delivery id length in bytes, 1..=1024
//!   6..8    u16     flags: bit 0 = first record written by one append call (every
//!                   `append`, the first of an `append_batch`); other bits reserved, 0
//!   8..12   u32     payload length in bytes, 0..=268435456 (256 MiB)
//!   12..16  u32     CRC-32 of record bytes 4..12, then the id, then the payload
//!   16..    id      the delivery id (UTF-8), then the payload (opaque bytes)
//! ```
//!
//! `spool.head` — the checkpoint, 32 bytes, only ever replaced by rename:
//!
//! ```text
//!   0..8    magic   b"GITSPYSH"
//!   8..12   u32     format version = 1
//!   12..20  u64     generation of the spool.log it refers to
//!   20..28  u64     byte offset in spool.log of the first live (not yet drained) record
//!   28..32  u32     CRC-32 of bytes 0..28
//! ```
//!
//! How `open` reads them:
//!
//! - checkpoint generation = log generation: live records start at the checkpoint's offset;
//! - checkpoint generation < log generation, or no checkpoint: the log was rewritten (or the
//!   checkpoint deleted) after the checkpoint was saved, so live records start right after the
//!   log header. Deleting `spool.head` by hand therefore re-drains everything still in the log;
//! - checkpoint generation > log generation, a checkpoint past the end of the log, a damaged
//!   header or checkpoint, or a checkpoint without a log: [`SpoolError::CorruptFile`].
//!
//! `spool.log.tmp` and `spool.head.tmp` are half-built replacements; they are never read and
//! `open` deletes them.
//!
//! Rewrites: when `pop_front` has drained everything, the log is replaced by an empty one of
//! the next generation (write `spool.log.tmp`, fsync, rename, fsync the directory, then save
//! the checkpoint). When the drained prefix reaches [`SpoolOptions::compact_after_dead_bytes`]
//! and is at least as large as the live part, the live records are copied into the new
//! generation the same way. A crash between the rename and the checkpoint leaves an older
//! checkpoint generation, which the rules above resolve to "start after the header".
//!
//! # Errors the caller must act on
//!
//! - `append` → any `Err`: the delivery is not durable; answer 503, never 202. After a failed
//!   fsync (or a failed rollback of a failed write) the spool is poisoned: every later append
//!   returns [`SpoolError::Poisoned`] until the spool is reopened with [`Spool::open`].
//! - `pop_front` → `Err`: nothing was forgotten in memory; peek and send again later (Redis
//!   dedupes). A failed log rewrite after a successful pop is only logged and retried.
//! - `open` → `CorruptFile`/`CorruptMiddle`: stop and tell the operator; do not delete files.
//!
//! # Concurrency
//!
//! One process owns a spool directory at a time (the server holds one `Spool`); nothing here
//! locks the directory against a second process. One drain task pops: `pop_front(n)` forgets
//! the `n` oldest records, which are the ones the last `peek` returned only if nobody else
//! popped in between.

use std::collections::{HashMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Name of the data file inside the spool directory.
pub const LOG_FILE: &str = "spool.log";
/// Name of the checkpoint file inside the spool directory.
pub const HEAD_FILE: &str = "spool.head";
const LOG_TMP_FILE: &str = "spool.log.tmp";
const HEAD_TMP_FILE: &str = "spool.head.tmp";

const FORMAT_VERSION: u32 = 1;
const LOG_MAGIC: [u8; 8] = *b"GITSPYSL";
const HEAD_MAGIC: [u8; 8] = *b"GITSPYSH";
/// Size of the `spool.log` file header; the first record starts here.
pub const LOG_HEADER_LEN: u64 = 24;
const HEAD_LEN: usize = 32;

const RECORD_MAGIC: [u8; 4] = [b'G', b'S', b'R', 1];
/// Record flag: first record of one append call (the unit that is fsynced and acknowledged).
const FLAG_BATCH_START: u16 = 1;
/// Size of a record header (magic, lengths, flags, checksum).
pub const RECORD_HEADER_LEN: usize = 16;
/// Longest delivery id a record may carry (GitHub's are 36-byte GUIDs).
pub const MAX_DELIVERY_LEN: usize = 1024;
/// Largest payload a record may carry. GitHub caps webhook bodies at 25 MiB; this leaves room
/// for a raised `GITSPY_MAX_BODY` and the server's envelope, and lets `open` reject a garbage
/// length without trying to read gigabytes.
pub const MAX_PAYLOAD_LEN: usize = 256 * 1024 * 1024;

/// Chunk used when copying live records into a new generation or searching for a valid record.
const IO_CHUNK: usize = 1 << 20;

/// One spooled delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolRecord {
    /// The `X-GitHub-Delivery` id; indexed for [`Spool::contains`].
    pub delivery: String,
    /// Opaque bytes: the server's serialised delivery.
    pub payload: Vec<u8>,
}

/// What [`Spool::open`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenReport {
    /// Live records in the spool (still to be drained).
    pub records: usize,
    /// 1 if a torn last record was found and truncated away, else 0.
    pub torn_records_dropped: u64,
    /// Bytes truncated from the end of the log with the torn record.
    pub torn_bytes_dropped: u64,
    /// Bytes of the live records (what `spool.log` holds beyond drained data and its header).
    pub live_bytes: u64,
}

/// Tuning knobs; [`Spool::open`] uses the defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolOptions {
    /// Rewrite the log without its drained prefix once that prefix is at least this many
    /// bytes and at least as large as the live part. (A fully drained log is always reset.)
    pub compact_after_dead_bytes: u64,
}

impl Default for SpoolOptions {
    fn default() -> Self {
        SpoolOptions {
            compact_after_dead_bytes: 64 * 1024 * 1024,
        }
    }
}

/// Why a record could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordDefect {
    #[error("only {available} bytes left, a record header needs {RECORD_HEADER_LEN}")]
    TruncatedHeader { available: u64 },
    #[error("bad record magic {found:02x?}")]
    BadMagic { found: [u8; 4] },
    #[error("delivery id length {len} is outside 1..={MAX_DELIVERY_LEN}")]
    BadIdLength { len: usize },
    #[error("flags {flags:#06x} set reserved bits")]
    ReservedFlags { flags: u16 },
    #[error("payload length {len} exceeds {MAX_PAYLOAD_LEN}")]
    PayloadTooLong { len: usize },
    #[error("record needs {needed} bytes but only {available} are left in the file")]
    BeyondEof { needed: u64, available: u64 },
    #[error("checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum { stored: u32, computed: u32 },
    #[error("delivery id is not UTF-8")]
    IdNotUtf8,
}

/// Failures of the spool. Callers branch on them: an `Io`/`Poisoned` error on `append` means
/// "not durable, do not answer 2xx"; `Corrupt*` errors on `open` need an operator.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool i/o failed: {op} {}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "spool file {} is damaged: {reason}; the spool was left untouched — move the spool \
         directory aside for inspection before restarting",
        path.display()
    )]
    CorruptFile { path: PathBuf, reason: String },
    #[error(
        "spool record at byte {offset} of {} is damaged ({defect}) but a later append starts \
         at byte {next_valid}, so this is not a torn write; refusing to drop acknowledged \
         deliveries — move the spool directory aside for inspection before restarting",
        path.display()
    )]
    CorruptMiddle {
        path: PathBuf,
        /// Where the damaged record starts.
        offset: u64,
        defect: RecordDefect,
        /// Where a valid record of a later append starts.
        next_valid: u64,
    },
    #[error("spool record at byte {offset} of {} no longer reads back: {defect}", path.display())]
    CorruptRecord {
        path: PathBuf,
        offset: u64,
        defect: RecordDefect,
    },
    #[error("cannot spool delivery id {delivery:?}: {reason}")]
    InvalidDelivery { delivery: String, reason: String },
    #[error("cannot spool a payload of {len} bytes: the limit is {MAX_PAYLOAD_LEN} bytes")]
    PayloadTooLarge { len: usize },
    #[error(
        "the spool refuses writes after a failed write or fsync left its file in an unknown \
         state; reopen it (Spool::open) to recover"
    )]
    Poisoned,
    #[error("cannot pop {requested} records: the spool holds only {len}")]
    PopBeyondEnd { requested: usize, len: usize },
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> SpoolError + 'a {
    move |source| SpoolError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Where a live record sits in `spool.log`.
#[derive(Debug)]
struct Entry {
    offset: u64,
    len: u64,
    delivery: String,
}

/// An open spool directory. See the module docs for the format and the guarantees.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    log_path: PathBuf,
    head_path: PathBuf,
    /// Read/write handle on the current `spool.log` inode.
    file: File,
    generation: u64,
    /// Offset of the first live record (== `end` when empty).
    head: u64,
    /// Offset just past the last durable record; everything beyond is not ours.
    end: u64,
    entries: VecDeque<Entry>,
    /// Delivery id → number of live records carrying it.
    index: HashMap<String, u32>,
    options: SpoolOptions,
    /// Set when a failed write/fsync left the log in an unknown state: appends refuse until
    /// the spool is reopened and recovered.
    poisoned: bool,
}

impl Spool {
    /// Opens (creating if needed) the spool in `dir` with default options, recovers it and
    /// truncates a torn last record.
    pub fn open(dir: &Path) -> Result<(Spool, OpenReport), SpoolError> {
        Spool::open_with(dir, SpoolOptions::default())
    }

    /// [`Spool::open`] with explicit options.
    pub fn open_with(dir: &Path, options: SpoolOptions) -> Result<(Spool, OpenReport), SpoolError> {
        create_dir_durably(dir)?;
        let log_path = dir.join(LOG_FILE);
        let head_path = dir.join(HEAD_FILE);
        for tmp in [LOG_TMP_FILE, HEAD_TMP_FILE] {
            let path = dir.join(tmp);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("remove leftover temporary file", &path)(e)),
            }
        }

        let head_record = read_head(&head_path)?;
        let (file, generation) = match OpenOptions::new().read(true).write(true).open(&log_path) {
            Ok(file) => {
                let generation = read_log_header(&file, &log_path)?;
                (file, generation)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if head_record.is_some() {
                    return Err(SpoolError::CorruptFile {
                        path: log_path,
                        reason: format!(
                            "it is missing while {HEAD_FILE} exists (if the spool was discarded \
                             on purpose, delete {HEAD_FILE} too)"
                        ),
                    });
                }
                // The directory fsync below (before any append) makes the rename durable.
                let file = build_and_rename_log(dir, 1, None)?;
                (file, 1)
            }
            Err(e) => return Err(io_err("open", &log_path)(e)),
        };
        let file_len = file.metadata().map_err(io_err("stat", &log_path))?.len();

        let (start, head_is_current) = match head_record {
            Some((head_gen, offset)) if head_gen == generation => {
                if offset < LOG_HEADER_LEN || offset > file_len {
                    return Err(SpoolError::CorruptFile {
                        path: head_path,
                        reason: format!(
                            "checkpoint offset {offset} lies outside {LOG_FILE} \
                             ({LOG_HEADER_LEN}..={file_len})"
                        ),
                    });
                }
                (offset, true)
            }
            Some((head_gen, _)) if head_gen > generation => {
                return Err(SpoolError::CorruptFile {
                    path: head_path,
                    reason: format!(
                        "checkpoint generation {head_gen} is newer than {LOG_FILE}'s {generation}"
                    ),
                });
            }
            // Older checkpoint (crash between a log rewrite and the checkpoint) or none.
            _ => (LOG_HEADER_LEN, false),
        };

        let mut entries = VecDeque::new();
        let mut index: HashMap<String, u32> = HashMap::new();
        let mut offset = start;
        let mut torn_bytes = 0;
        while offset < file_len {
            match read_record_at(&file, offset, file_len).map_err(io_err("read", &log_path))? {
                Ok(decoded) => {
                    *index.entry(decoded.delivery.clone()).or_default() += 1;
                    entries.push_back(Entry {
                        offset,
                        len: decoded.total_len,
                        delivery: decoded.delivery,
                    });
                    offset += decoded.total_len;
                }
                Err(defect) => {
                    if let Some(next_valid) = find_later_append(&file, offset, file_len)
                        .map_err(io_err("scan", &log_path))?
                    {
                        return Err(SpoolError::CorruptMiddle {
                            path: log_path,
                            offset,
                            defect,
                            next_valid,
                        });
                    }
                    // Nothing valid follows: the torn tail of an append that never returned.
                    file.set_len(offset)
                        .map_err(io_err("truncate torn record from", &log_path))?;
                    file.sync_all()
                        .map_err(io_err("fsync after truncating", &log_path))?;
                    torn_bytes = file_len - offset;
                    break;
                }
            }
        }

        let mut spool = Spool {
            dir: dir.to_path_buf(),
            log_path,
            head_path,
            file,
            generation,
            head: start,
            end: offset,
            entries,
            index,
            options,
            poisoned: false,
        };
        if !head_is_current {
            spool.write_head(spool.generation, spool.head)?;
        }
        // Makes every earlier rename durable before new appends are acknowledged, even if the
        // process that did the rename died before its own directory fsync.
        sync_dir(&spool.dir)?;
        if let Err(error) = spool.maybe_compact() {
            tracing::warn!(error = %error, dir = %spool.dir.display(), "spool compaction failed at open; will retry");
        }
        let report = OpenReport {
            records: spool.len(),
            torn_records_dropped: u64::from(torn_bytes > 0),
            torn_bytes_dropped: torn_bytes,
            live_bytes: spool.live_bytes(),
        };
        Ok((spool, report))
    }

    /// Appends one record; it is durable (written and fsynced) when this returns `Ok`.
    pub fn append(&mut self, rec: &SpoolRecord) -> Result<(), SpoolError> {
        self.append_batch(std::slice::from_ref(rec))
    }

    /// Appends several records with a single fsync (group commit): all of them are durable
    /// when this returns `Ok`, none is acknowledged otherwise.
    pub fn append_batch(&mut self, recs: &[SpoolRecord]) -> Result<(), SpoolError> {
        if self.poisoned {
            return Err(SpoolError::Poisoned);
        }
        if recs.is_empty() {
            return Ok(());
        }
        let mut bytes = Vec::new();
        let mut lens = Vec::with_capacity(recs.len());
        for (i, rec) in recs.iter().enumerate() {
            validate(rec)?;
            let before = bytes.len();
            encode_record(rec, i == 0, &mut bytes);
            lens.push((bytes.len() - before) as u64);
        }
        let start = self.end;
        if let Err(e) = self.file.write_all_at(&bytes, start) {
            self.roll_back_to(start);
            return Err(io_err("append to", &self.log_path)(e));
        }
        crate::failpoint!(crate::failpoints::SPOOL_APPEND);
        if let Err(e) = self.file.sync_data() {
            // After a failed fsync the kernel may have dropped dirty pages: the file's content
            // is unknown until it is re-read by `open`.
            self.poisoned = true;
            return Err(io_err("fsync", &self.log_path)(e));
        }
        let mut offset = start;
        for (rec, len) in recs.iter().zip(lens) {
            *self.index.entry(rec.delivery.clone()).or_default() += 1;
            self.entries.push_back(Entry {
                offset,
                len,
                delivery: rec.delivery.clone(),
            });
            offset += len;
        }
        self.end = offset;
        Ok(())
    }

    /// Number of live records (the `gitspy_spool_depth` gauge).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing waits to be drained.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes of the live records.
    pub fn live_bytes(&self) -> u64 {
        self.end - self.head
    }

    /// The spool directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// True if a live record carries this delivery id.
    pub fn contains(&self, delivery: &str) -> bool {
        self.index.contains_key(delivery)
    }

    /// The delivery ids of the live records, oldest first (no payload is read), so a caller can
    /// keep its own index without taking the lock `append` holds across its fsync.
    pub fn delivery_ids(&self) -> Vec<String> {
        self.entries.iter().map(|e| e.delivery.clone()).collect()
    }

    /// Reads the `n` oldest live records (fewer if the spool holds fewer), oldest first,
    /// without removing them. Checksums are verified again.
    pub fn peek(&self, n: usize) -> Result<Vec<SpoolRecord>, SpoolError> {
        let n = n.min(self.entries.len());
        if n == 0 {
            return Ok(Vec::new());
        }
        let (Some(first), Some(last)) = (self.entries.front(), self.entries.get(n - 1)) else {
            return Ok(Vec::new());
        };
        let base = first.offset;
        let stop = last.offset + last.len;
        let mut buf = vec![0u8; (stop - base) as usize];
        self.file
            .read_exact_at(&mut buf, base)
            .map_err(io_err("read", &self.log_path))?;
        let mut out = Vec::with_capacity(n);
        for entry in self.entries.iter().take(n) {
            let at = (entry.offset - base) as usize;
            let bytes = &buf[at..at + entry.len as usize];
            let decoded = decode_record(bytes).map_err(|defect| SpoolError::CorruptRecord {
                path: self.log_path.clone(),
                offset: entry.offset,
                defect,
            })?;
            out.push(decoded);
        }
        Ok(out)
    }

    /// Durably forgets the `n` oldest records — call it only after Redis confirmed them.
    ///
    /// On `Err` the in-memory spool is unchanged (the records are still live and the next
    /// `peek` returns them again); on disk the checkpoint may or may not have moved, both of
    /// which are safe (at worst the records are drained twice and Redis dedupes them).
    pub fn pop_front(&mut self, n: usize) -> Result<(), SpoolError> {
        if n > self.entries.len() {
            return Err(SpoolError::PopBeyondEnd {
                requested: n,
                len: self.entries.len(),
            });
        }
        if n == 0 {
            return Ok(());
        }
        let new_head = self.entries.get(n).map_or(self.end, |e| e.offset);
        self.write_head(self.generation, new_head)?;
        self.head = new_head;
        for entry in self.entries.drain(..n) {
            if let Some(count) = self.index.get_mut(&entry.delivery) {
                *count -= 1;
                if *count == 0 {
                    self.index.remove(&entry.delivery);
                }
            }
        }
        // The pop itself is durable; a failed rewrite only leaves the file longer than it
        // needs to be and is retried on the next pop. Reporting it as a pop failure would
        // invite the caller to pop again — and lose records.
        if let Err(error) = self.maybe_compact() {
            tracing::warn!(error = %error, dir = %self.dir.display(), "spool compaction failed; will retry");
        }
        Ok(())
    }

    /// Rewrites the log without its drained prefix when it is worth it (always when empty).
    fn maybe_compact(&mut self) -> Result<(), SpoolError> {
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

    /// Atomically replaces the checkpoint: tmp file, fsync, rename, fsync directory.
    fn write_head(&self, generation: u64, offset: u64) -> Result<(), SpoolError> {
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

    /// Undoes a partial append so the torn bytes never precede a later record.
    fn roll_back_to(&mut self, end: u64) {
        let undone = self.file.set_len(end).and_then(|()| self.file.sync_data());
        if undone.is_err() {
            self.poisoned = true;
        }
    }
}

fn validate(rec: &SpoolRecord) -> Result<(), SpoolError> {
    let id_len = rec.delivery.len();
    if id_len == 0 || id_len > MAX_DELIVERY_LEN {
        return Err(SpoolError::InvalidDelivery {
            delivery: rec.delivery.chars().take(64).collect(),
            reason: format!("its length {id_len} is outside 1..={MAX_DELIVERY_LEN} bytes"),
        });
    }
    if rec.payload.len() > MAX_PAYLOAD_LEN {
        return Err(SpoolError::PayloadTooLarge {
            len: rec.payload.len(),
        });
    }
    Ok(())
}

fn encode_record(rec: &SpoolRecord, batch_start: bool, out: &mut Vec<u8>) {
    let id = rec.delivery.as_bytes();
    let mut header = [0u8; RECORD_HEADER_LEN];
    header[0..4].copy_from_slice(&RECORD_MAGIC);
    // Lengths were validated against MAX_DELIVERY_LEN / MAX_PAYLOAD_LEN, which fit.
    header[4..6].copy_from_slice(&(id.len() as u16).to_le_bytes());
    let flags = if batch_start { FLAG_BATCH_START } else { 0 };
    header[6..8].copy_from_slice(&flags.to_le_bytes());
    header[8..12].copy_from_slice(&(rec.payload.len() as u32).to_le_bytes());
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&header[4..12]);
    hasher.update(id);
    hasher.update(&rec.payload);
    header[12..16].copy_from_slice(&hasher.finalize().to_le_bytes());
    out.reserve(RECORD_HEADER_LEN + id.len() + rec.payload.len());
    out.extend_from_slice(&header);
    out.extend_from_slice(id);
    out.extend_from_slice(&rec.payload);
}

/// Lengths from a record header that passed the structural checks.
struct RecordShape {
    id_len: usize,
    payload_len: usize,
    stored_crc: u32,
    batch_start: bool,
}

impl RecordShape {
    fn total_len(&self) -> u64 {
        (RECORD_HEADER_LEN + self.id_len + self.payload_len) as u64
    }
}

fn le_u16(b: &[u8]) -> u16 {
    u16::from_le_bytes([b[0], b[1]])
}

fn le_u32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

fn decode_header(header: &[u8; RECORD_HEADER_LEN]) -> Result<RecordShape, RecordDefect> {
    if header[0..4] != RECORD_MAGIC {
        return Err(RecordDefect::BadMagic {
            found: [header[0], header[1], header[2], header[3]],
        });
    }
    let id_len = le_u16(&header[4..6]) as usize;
    if id_len == 0 || id_len > MAX_DELIVERY_LEN {
        return Err(RecordDefect::BadIdLength { len: id_len });
    }
    let flags = le_u16(&header[6..8]);
    if flags & !FLAG_BATCH_START != 0 {
        return Err(RecordDefect::ReservedFlags { flags });
    }
    let payload_len = le_u32(&header[8..12]) as usize;
    if payload_len > MAX_PAYLOAD_LEN {
        return Err(RecordDefect::PayloadTooLong { len: payload_len });
    }
    Ok(RecordShape {
        id_len,
        payload_len,
        stored_crc: le_u32(&header[12..16]),
        batch_start: flags & FLAG_BATCH_START != 0,
    })
}

/// Checks the body (id + payload) against the header and splits it.
fn decode_body(
    header: &[u8; RECORD_HEADER_LEN],
    shape: &RecordShape,
    body: &[u8],
) -> Result<SpoolRecord, RecordDefect> {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&header[4..12]);
    hasher.update(body);
    let computed = hasher.finalize();
    if computed != shape.stored_crc {
        return Err(RecordDefect::Checksum {
            stored: shape.stored_crc,
            computed,
        });
    }
    let (id, payload) = body.split_at(shape.id_len);
    let delivery = std::str::from_utf8(id).map_err(|_| RecordDefect::IdNotUtf8)?;
    Ok(SpoolRecord {
        delivery: delivery.to_owned(),
        payload: payload.to_vec(),
    })
}

/// Decodes one whole record from exactly its bytes.
fn decode_record(bytes: &[u8]) -> Result<SpoolRecord, RecordDefect> {
    let available = bytes.len() as u64;
    let Some(header) = bytes.first_chunk::<RECORD_HEADER_LEN>() else {
        return Err(RecordDefect::TruncatedHeader { available });
    };
    let shape = decode_header(header)?;
    if shape.total_len() != available {
        return Err(RecordDefect::BeyondEof {
            needed: shape.total_len(),
            available,
        });
    }
    decode_body(header, &shape, &bytes[RECORD_HEADER_LEN..])
}

struct Decoded {
    delivery: String,
    total_len: u64,
    batch_start: bool,
}

/// Reads and verifies the record at `offset`. The outer error is I/O, the inner one says why
/// the bytes there are not a valid record.
fn read_record_at(
    file: &File,
    offset: u64,
    file_len: u64,
) -> io::Result<Result<Decoded, RecordDefect>> {
    let available = file_len.saturating_sub(offset);
    if available < RECORD_HEADER_LEN as u64 {
        return Ok(Err(RecordDefect::TruncatedHeader { available }));
    }
    let mut header = [0u8; RECORD_HEADER_LEN];
    file.read_exact_at(&mut header, offset)?;
    let shape = match decode_header(&header) {
        Ok(shape) => shape,
        Err(defect) => return Ok(Err(defect)),
    };
    if shape.total_len() > available {
        return Ok(Err(RecordDefect::BeyondEof {
            needed: shape.total_len(),
            available,
        }));
    }
    let mut body = vec![0u8; shape.id_len + shape.payload_len];
    file.read_exact_at(&mut body, offset + RECORD_HEADER_LEN as u64)?;
    Ok(decode_body(&header, &shape, &body).map(|rec| Decoded {
        delivery: rec.delivery,
        total_len: shape.total_len(),
        batch_start: shape.batch_start,
    }))
}

/// The record at `offset` is damaged: returns the offset of a valid record after it that
/// starts a later append (proof that the damage is in acknowledged data), or `None` if every
/// valid record after it continues the same append (so the damage is in the last, possibly
/// torn, append). Only used on the recovery path, so a byte-by-byte search is fine.
fn find_later_append(file: &File, offset: u64, file_len: u64) -> io::Result<Option<u64>> {
    let mut from = offset + 1;
    while let Some((at, decoded)) = find_valid_record(file, from, file_len)? {
        if decoded.batch_start {
            return Ok(Some(at));
        }
        from = at + decoded.total_len;
    }
    Ok(None)
}

/// The first valid record starting at or after `from`.
fn find_valid_record(file: &File, from: u64, file_len: u64) -> io::Result<Option<(u64, Decoded)>> {
    let magic_len = RECORD_MAGIC.len();
    let mut buf = vec![0u8; IO_CHUNK + magic_len - 1];
    let mut pos = from;
    while pos + magic_len as u64 <= file_len {
        let want = (buf.len() as u64).min(file_len - pos) as usize;
        file.read_exact_at(&mut buf[..want], pos)?;
        let candidates = (want + 1 - magic_len).min(IO_CHUNK);
        for i in 0..candidates {
            if buf[i..i + magic_len] == RECORD_MAGIC {
                let at = pos + i as u64;
                if let Ok(decoded) = read_record_at(file, at, file_len)? {
                    return Ok(Some((at, decoded)));
                }
            }
        }
        pos += IO_CHUNK as u64;
    }
    Ok(None)
}

/// Reads the checkpoint: `None` if absent, `(generation, offset)` if valid.
fn read_head(path: &Path) -> Result<Option<(u64, u64)>, SpoolError> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("read", path)(e)),
    };
    let corrupt = |reason: String| SpoolError::CorruptFile {
        path: path.to_path_buf(),
        reason,
    };
    if bytes.len() != HEAD_LEN {
        return Err(corrupt(format!(
            "checkpoint is {} bytes, expected {HEAD_LEN}",
            bytes.len()
        )));
    }
    if bytes[0..8] != HEAD_MAGIC {
        return Err(corrupt("bad checkpoint magic".to_owned()));
    }
    let stored = le_u32(&bytes[28..32]);
    let computed = crc32fast::hash(&bytes[0..28]);
    if stored != computed {
        return Err(corrupt(format!(
            "checkpoint checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"
        )));
    }
    let version = le_u32(&bytes[8..12]);
    if version != FORMAT_VERSION {
        return Err(corrupt(format!(
            "checkpoint format version {version}, this build reads {FORMAT_VERSION}"
        )));
    }
    Ok(Some((le_u64(&bytes[12..20]), le_u64(&bytes[20..28]))))
}

/// Validates the log's file header and returns its generation.
fn read_log_header(file: &File, path: &Path) -> Result<u64, SpoolError> {
    let corrupt = |reason: String| SpoolError::CorruptFile {
        path: path.to_path_buf(),
        reason,
    };
    let len = file.metadata().map_err(io_err("stat", path))?.len();
    if len < LOG_HEADER_LEN {
        return Err(corrupt(format!(
            "{len} bytes is shorter than the {LOG_HEADER_LEN}-byte file header"
        )));
    }
    let mut header = [0u8; LOG_HEADER_LEN as usize];
    file.read_exact_at(&mut header, 0)
        .map_err(io_err("read header of", path))?;
    if header[0..8] != LOG_MAGIC {
        return Err(corrupt("bad file magic".to_owned()));
    }
    let stored = le_u32(&header[20..24]);
    let computed = crc32fast::hash(&header[0..20]);
    if stored != computed {
        return Err(corrupt(format!(
            "file header checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"
        )));
    }
    let version = le_u32(&header[8..12]);
    if version != FORMAT_VERSION {
        return Err(corrupt(format!(
            "format version {version}, this build reads {FORMAT_VERSION}"
        )));
    }
    Ok(le_u64(&header[12..20]))
}

/// Builds `spool.log.tmp` (header of `generation`, then `live` bytes copied from the old log
/// if given), fsyncs it and renames it over `spool.log`. Returns a read/write handle on the
/// new file. The caller fsyncs the directory.
fn build_and_rename_log(
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

fn write_file_durably(path: &Path, bytes: &[u8]) -> Result<(), SpoolError> {
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
fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync directory", dir))
}

/// `create_dir_all`, then fsync the parent of every directory it created.
fn create_dir_durably(dir: &Path) -> Result<(), SpoolError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rec(i: usize) -> SpoolRecord {
        SpoolRecord {
            delivery: format!("delivery-{i:04}"),
            payload: format!("{{\"n\":{i},\"pad\":\"{}\"}}", "x".repeat(i % 7 * 9)).into_bytes(),
        }
    }

    fn recs(range: std::ops::Range<usize>) -> Vec<SpoolRecord> {
        range.map(rec).collect()
    }

    fn open(dir: &Path) -> (Spool, OpenReport) {
        Spool::open(dir).unwrap()
    }

    fn all(spool: &Spool) -> Vec<SpoolRecord> {
        spool.peek(usize::MAX).unwrap()
    }

    fn append_all(spool: &mut Spool, records: &[SpoolRecord]) {
        for r in records {
            spool.append(r).unwrap();
        }
    }

    fn log_len(dir: &Path) -> u64 {
        fs::metadata(dir.join(LOG_FILE)).unwrap().len()
    }

    /// Encoded size of a record.
    fn encoded_len(r: &SpoolRecord) -> u64 {
        let mut out = Vec::new();
        encode_record(r, true, &mut out);
        out.len() as u64
    }

    fn copy_spool(from: &Path) -> tempfile::TempDir {
        let to = tempfile::tempdir().unwrap();
        for name in [LOG_FILE, HEAD_FILE] {
            fs::copy(from.join(name), to.path().join(name)).unwrap();
        }
        to
    }

    fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
        let mut files: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let name = e.file_name().to_string_lossy().into_owned();
                (name, fs::read(e.path()).unwrap())
            })
            .collect();
        files.sort();
        files
    }

    fn flip_byte(path: &Path, at: u64) {
        let mut bytes = fs::read(path).unwrap();
        bytes[at as usize] ^= 0xFF;
        fs::write(path, bytes).unwrap();
    }

    #[test]
    fn append_reopen_peek_pop_and_drain_keep_order() {
        let dir = tempfile::tempdir().unwrap();
        let expected = recs(0..10);
        {
            let (mut spool, report) = open(dir.path());
            assert_eq!(report.records, 0);
            assert!(spool.is_empty());
            append_all(&mut spool, &expected);
            assert_eq!(spool.len(), 10);
        }
        let (mut spool, report) = open(dir.path());
        let total: u64 = expected.iter().map(encoded_len).sum();
        assert_eq!(
            report,
            OpenReport {
                records: 10,
                torn_records_dropped: 0,
                torn_bytes_dropped: 0,
                live_bytes: total,
            }
        );
        assert_eq!(all(&spool), expected);
        assert_eq!(spool.peek(3).unwrap(), expected[..3]);
        assert_eq!(spool.peek(0).unwrap(), Vec::new());
        // peek does not remove.
        assert_eq!(spool.len(), 10);

        spool.pop_front(4).unwrap();
        assert_eq!(all(&spool), expected[4..]);
        drop(spool);
        let (mut spool, report) = open(dir.path());
        assert_eq!(report.records, 6);
        assert_eq!(all(&spool), expected[4..]);

        spool.pop_front(6).unwrap();
        assert!(spool.is_empty());
        assert_eq!(log_len(dir.path()), LOG_HEADER_LEN, "drained log is reset");
        drop(spool);
        let (mut spool, report) = open(dir.path());
        assert_eq!(report.records, 0);
        assert_eq!(report.live_bytes, 0);
        assert_eq!(all(&spool), Vec::new());

        // The reset spool still works.
        spool.append(&rec(42)).unwrap();
        drop(spool);
        let (spool, _) = open(dir.path());
        assert_eq!(all(&spool), vec![rec(42)]);
    }

    #[test]
    fn append_batch_is_durable_as_a_unit() {
        let dir = tempfile::tempdir().unwrap();
        let (mut spool, _) = open(dir.path());
        spool.append_batch(&recs(0..3)).unwrap();
        spool.append_batch(&[]).unwrap();
        spool.append(&rec(3)).unwrap();
        drop(spool);
        let (spool, report) = open(dir.path());
        assert_eq!(report.records, 4);
        assert_eq!(all(&spool), recs(0..4));
    }

    /// Builds a spool of records 0..4 with record 0 already drained, so the checkpoint is
    /// not at the header; returns the offset where the last record starts.
    fn spool_with_drained_prefix(dir: &Path) -> u64 {
        let (mut spool, _) = open(dir);
        append_all(&mut spool, &recs(0..4));
        spool.pop_front(1).unwrap();
        spool.entries.back().unwrap().offset
    }

    #[test]
    fn torn_tail_at_every_length_keeps_earlier_records_and_repairs_the_file() {
        let base = tempfile::tempdir().unwrap();
        let last_start = spool_with_drained_prefix(base.path());
        let full_len = log_len(base.path());
        assert_eq!(full_len - last_start, encoded_len(&rec(3)));

        // Cut exactly at the record boundary: nothing is torn.
        let dir = copy_spool(base.path());
        File::options()
            .write(true)
            .open(dir.path().join(LOG_FILE))
            .unwrap()
            .set_len(last_start)
            .unwrap();
        let (spool, report) = open(dir.path());
        assert_eq!((report.records, report.torn_records_dropped), (2, 0));
        assert_eq!(all(&spool), recs(1..3));

        // Every cut inside the last record (header or body) is a torn write.
        for cut in last_start + 1..full_len {
            let dir = copy_spool(base.path());
            File::options()
                .write(true)
                .open(dir.path().join(LOG_FILE))
                .unwrap()
                .set_len(cut)
                .unwrap();
            let (mut spool, report) = open(dir.path());
            assert_eq!(report.records, 2, "cut at {cut}");
            assert_eq!(report.torn_records_dropped, 1, "cut at {cut}");
            assert_eq!(report.torn_bytes_dropped, cut - last_start, "cut at {cut}");
            assert_eq!(all(&spool), recs(1..3), "cut at {cut}");
            assert_eq!(
                log_len(dir.path()),
                last_start,
                "torn bytes truncated, cut at {cut}"
            );

            spool.append(&rec(99)).unwrap();
            drop(spool);
            let (spool, report) = open(dir.path());
            assert_eq!(report.torn_records_dropped, 0, "cut at {cut}");
            assert_eq!(all(&spool), vec![rec(1), rec(2), rec(99)], "cut at {cut}");
        }
    }

    #[test]
    fn damaged_byte_in_the_last_record_is_dropped_as_torn() {
        let base = tempfile::tempdir().unwrap();
        let last_start = spool_with_drained_prefix(base.path());
        let full_len = log_len(base.path());
        for at in last_start..full_len {
            let dir = copy_spool(base.path());
            flip_byte(&dir.path().join(LOG_FILE), at);
            let (spool, report) = open(dir.path());
            assert_eq!(report.records, 2, "flip at {at}");
            assert_eq!(report.torn_records_dropped, 1, "flip at {at}");
            assert_eq!(
                report.torn_bytes_dropped,
                full_len - last_start,
                "flip at {at}"
            );
            assert_eq!(all(&spool), recs(1..3), "flip at {at}");
        }
    }

    #[test]
    fn damaged_middle_record_is_an_error_and_the_files_stay_untouched() {
        let base = tempfile::tempdir().unwrap();
        let (mut spool, _) = open(base.path());
        append_all(&mut spool, &recs(0..3));
        let middle = spool.entries[1].offset;
        let after = spool.entries[2].offset;
        drop(spool);
        for at in middle..after {
            let dir = copy_spool(base.path());
            flip_byte(&dir.path().join(LOG_FILE), at);
            let before = snapshot(dir.path());
            match Spool::open(dir.path()) {
                Err(SpoolError::CorruptMiddle {
                    offset, next_valid, ..
                }) => {
                    assert_eq!((offset, next_valid), (middle, after), "flip at {at}");
                }
                other => panic!("flip at {at}: expected CorruptMiddle, got {other:?}"),
            }
            assert_eq!(snapshot(dir.path()), before, "flip at {at}: files changed");
        }
    }

    /// r0 by `append`, then r1..r4 by one `append_batch`; returns where each record starts.
    fn spool_ending_in_a_batch(dir: &Path) -> Vec<u64> {
        let (mut spool, _) = open(dir);
        spool.append(&rec(0)).unwrap();
        spool.append_batch(&recs(1..4)).unwrap();
        spool.entries.iter().map(|e| e.offset).collect()
    }

    #[test]
    fn damage_inside_the_last_batch_drops_the_batch_from_the_damage_on() {
        let base = tempfile::tempdir().unwrap();
        let starts = spool_ending_in_a_batch(base.path());
        let full_len = log_len(base.path());
        let record_at = |at: u64| starts.iter().rposition(|&s| s <= at).unwrap();

        for at in starts[1]..full_len {
            let dir = copy_spool(base.path());
            flip_byte(&dir.path().join(LOG_FILE), at);
            let (spool, report) = open(dir.path());
            let k = record_at(at);
            assert_eq!(all(&spool), recs(0..k), "flip at {at}");
            assert_eq!(report.torn_records_dropped, 1, "flip at {at}");
            assert_eq!(
                report.torn_bytes_dropped,
                full_len - starts[k],
                "flip at {at}"
            );
        }
        for cut in starts[1] + 1..full_len {
            let dir = copy_spool(base.path());
            File::options()
                .write(true)
                .open(dir.path().join(LOG_FILE))
                .unwrap()
                .set_len(cut)
                .unwrap();
            let (spool, report) = open(dir.path());
            let k = record_at(cut);
            let torn = cut - starts[k];
            assert_eq!(all(&spool), recs(0..k), "cut at {cut}");
            assert_eq!(
                report.torn_records_dropped,
                u64::from(torn > 0),
                "cut at {cut}"
            );
            assert_eq!(report.torn_bytes_dropped, torn, "cut at {cut}");
        }

        // Pages of the unsynced batch reached the disk out of order: a hole where its first
        // record should be, its later records intact. Still the last append: dropped whole.
        let dir = copy_spool(base.path());
        let path = dir.path().join(LOG_FILE);
        let mut bytes = fs::read(&path).unwrap();
        bytes[starts[1] as usize..starts[2] as usize].fill(0);
        fs::write(&path, bytes).unwrap();
        let (mut spool, report) = open(dir.path());
        assert_eq!(all(&spool), vec![rec(0)]);
        assert_eq!(report.torn_bytes_dropped, full_len - starts[1]);
        spool.append(&rec(9)).unwrap();
        drop(spool);
        let (spool, _) = open(dir.path());
        assert_eq!(all(&spool), vec![rec(0), rec(9)]);
    }

    #[test]
    fn damage_before_a_later_append_is_an_error() {
        let base = tempfile::tempdir().unwrap();
        let mut starts = spool_ending_in_a_batch(base.path());
        // A single append after the batch: damage inside the batch is now acknowledged data.
        let (mut spool, _) = open(base.path());
        spool.append(&rec(4)).unwrap();
        starts.push(spool.entries[4].offset);
        drop(spool);

        // (byte to damage, the later append that proves it is not a torn write)
        let cases = [
            (starts[0] + 3, starts[1]),
            (starts[1] + 20, starts[4]),
            (starts[2] + 6, starts[4]),
            (starts[3] + 17, starts[4]),
        ];
        for (at, next) in cases {
            let dir = copy_spool(base.path());
            flip_byte(&dir.path().join(LOG_FILE), at);
            let before = snapshot(dir.path());
            match Spool::open(dir.path()) {
                Err(SpoolError::CorruptMiddle { next_valid, .. }) => {
                    assert_eq!(next_valid, next, "flip at {at}")
                }
                other => panic!("flip at {at}: expected CorruptMiddle, got {other:?}"),
            }
            assert_eq!(snapshot(dir.path()), before, "flip at {at}: files changed");
        }
    }

    #[test]
    fn contains_tracks_live_records_across_reopen_and_pop() {
        let dir = tempfile::tempdir().unwrap();
        let rec_with = |id: &str| SpoolRecord {
            delivery: id.to_owned(),
            payload: id.as_bytes().to_vec(),
        };
        let (mut spool, _) = open(dir.path());
        append_all(
            &mut spool,
            &[rec_with("a"), rec_with("b"), rec_with("a"), rec_with("c")],
        );
        assert!(spool.contains("a") && spool.contains("b") && spool.contains("c"));
        assert!(!spool.contains("z"));

        spool.pop_front(1).unwrap();
        assert!(spool.contains("a"), "the second copy of a is still live");
        drop(spool);
        let (mut spool, _) = open(dir.path());
        assert!(spool.contains("a") && spool.contains("b") && spool.contains("c"));

        spool.pop_front(2).unwrap();
        assert!(!spool.contains("a") && !spool.contains("b") && spool.contains("c"));
        drop(spool);
        let (mut spool, _) = open(dir.path());
        assert!(!spool.contains("a") && !spool.contains("b") && spool.contains("c"));

        spool.pop_front(1).unwrap();
        assert!(!spool.contains("c"));
        drop(spool);
        let (spool, _) = open(dir.path());
        assert!(!spool.contains("c"));
    }

    #[test]
    fn leftover_temporary_files_are_ignored_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let (mut spool, _) = open(dir.path());
        append_all(&mut spool, &recs(0..5));
        spool.pop_front(2).unwrap();
        // A crash while writing the next checkpoint (pointing past record 3) and while
        // building a new log generation leaves half-written temporary files behind.
        let mut next_head = [0u8; HEAD_LEN];
        next_head[0..8].copy_from_slice(&HEAD_MAGIC);
        next_head[12..20].copy_from_slice(&spool.generation.to_le_bytes());
        next_head[20..28].copy_from_slice(&spool.entries[2].offset.to_le_bytes());
        fs::write(dir.path().join(HEAD_TMP_FILE), &next_head[..13]).unwrap();
        fs::write(dir.path().join(LOG_TMP_FILE), b"GITSPYSL\x01\x00").unwrap();
        drop(spool);

        let (spool, report) = open(dir.path());
        assert_eq!(report.records, 3);
        assert_eq!(all(&spool), recs(2..5));
        assert!(!dir.path().join(HEAD_TMP_FILE).exists());
        assert!(!dir.path().join(LOG_TMP_FILE).exists());
    }

    #[test]
    fn stale_checkpoint_after_a_log_rewrite_starts_after_the_header() {
        let dir = tempfile::tempdir().unwrap();
        let options = SpoolOptions {
            compact_after_dead_bytes: 1,
        };
        let (mut spool, _) = Spool::open_with(dir.path(), options.clone()).unwrap();
        append_all(&mut spool, &recs(0..6));
        spool.pop_front(1).unwrap();
        // Dead 1 record < live 5: no rewrite yet.
        assert_eq!(spool.generation, 1);
        let old_head = fs::read(dir.path().join(HEAD_FILE)).unwrap();

        spool.pop_front(3).unwrap();
        // Dead 4 records >= live 2: rewritten into generation 2 holding only the live ones.
        assert_eq!(spool.generation, 2);
        let live: u64 = recs(4..6).iter().map(encoded_len).sum();
        assert_eq!(log_len(dir.path()), LOG_HEADER_LEN + live);
        assert_eq!(all(&spool), recs(4..6));
        drop(spool);
        let (spool, _) = Spool::open_with(dir.path(), options.clone()).unwrap();
        assert_eq!(all(&spool), recs(4..6));
        drop(spool);

        // A crash between renaming the new generation and saving its checkpoint leaves the
        // generation-1 checkpoint behind: its offset must not be applied to generation 2.
        fs::write(dir.path().join(HEAD_FILE), &old_head).unwrap();
        let (mut spool, report) = Spool::open_with(dir.path(), options.clone()).unwrap();
        assert_eq!(report.records, 2);
        assert_eq!(all(&spool), recs(4..6));
        assert_eq!(
            read_head(&dir.path().join(HEAD_FILE)).unwrap(),
            Some((2, LOG_HEADER_LEN))
        );

        // Same after a full drain (generation 3, empty).
        let before_drain = fs::read(dir.path().join(HEAD_FILE)).unwrap();
        spool.pop_front(2).unwrap();
        assert_eq!(spool.generation, 3);
        drop(spool);
        fs::write(dir.path().join(HEAD_FILE), &before_drain).unwrap();
        let (spool, report) = Spool::open_with(dir.path(), options).unwrap();
        assert_eq!(report.records, 0);
        assert!(spool.is_empty());
    }

    #[test]
    fn missing_checkpoint_redrains_the_whole_log() {
        let dir = tempfile::tempdir().unwrap();
        let (mut spool, _) = open(dir.path());
        append_all(&mut spool, &recs(0..3));
        spool.pop_front(1).unwrap();
        drop(spool);
        fs::remove_file(dir.path().join(HEAD_FILE)).unwrap();
        let (spool, report) = open(dir.path());
        assert_eq!(report.records, 3);
        assert_eq!(all(&spool), recs(0..3));
        assert!(dir.path().join(HEAD_FILE).exists());
    }

    #[test]
    fn damaged_or_impossible_checkpoints_and_headers_are_errors() {
        let base = tempfile::tempdir().unwrap();
        let (mut spool, _) = open(base.path());
        append_all(&mut spool, &recs(0..3));
        spool.pop_front(1).unwrap();
        let generation = spool.generation;
        drop(spool);

        let head_with = |generation: u64, offset: u64| {
            let mut bytes = [0u8; HEAD_LEN];
            bytes[0..8].copy_from_slice(&HEAD_MAGIC);
            bytes[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
            bytes[12..20].copy_from_slice(&generation.to_le_bytes());
            bytes[20..28].copy_from_slice(&offset.to_le_bytes());
            let crc = crc32fast::hash(&bytes[0..28]);
            bytes[28..32].copy_from_slice(&crc.to_le_bytes());
            bytes.to_vec()
        };
        let full_len = log_len(base.path());
        type Damage = Box<dyn Fn(&Path)>;
        let cases: Vec<(&str, Damage)> = vec![
            (
                "flipped checkpoint byte",
                Box::new(|d: &Path| flip_byte(&d.join(HEAD_FILE), 21)),
            ),
            (
                "short checkpoint",
                Box::new(|d: &Path| fs::write(d.join(HEAD_FILE), b"GITSPYSH").unwrap()),
            ),
            (
                "checkpoint newer than log",
                Box::new(move |d: &Path| {
                    fs::write(d.join(HEAD_FILE), head_with(generation + 1, LOG_HEADER_LEN)).unwrap()
                }),
            ),
            (
                "checkpoint past the end",
                Box::new(move |d: &Path| {
                    fs::write(d.join(HEAD_FILE), head_with(generation, full_len + 1)).unwrap()
                }),
            ),
            (
                "flipped log header byte",
                Box::new(|d: &Path| flip_byte(&d.join(LOG_FILE), 13)),
            ),
            (
                "log missing",
                Box::new(|d: &Path| fs::remove_file(d.join(LOG_FILE)).unwrap()),
            ),
        ];
        for (name, damage) in cases {
            let dir = copy_spool(base.path());
            damage(dir.path());
            let before = snapshot(dir.path());
            match Spool::open(dir.path()) {
                Err(SpoolError::CorruptFile { .. }) => {}
                other => panic!("{name}: expected CorruptFile, got {other:?}"),
            }
            assert_eq!(snapshot(dir.path()), before, "{name}: files changed");
        }
    }

    #[test]
    fn invalid_appends_and_pops_are_refused_without_change() {
        let dir = tempfile::tempdir().unwrap();
        let (mut spool, _) = open(dir.path());
        append_all(&mut spool, &recs(0..2));
        let len_before = log_len(dir.path());
        for delivery in [String::new(), "x".repeat(MAX_DELIVERY_LEN + 1)] {
            let bad = SpoolRecord {
                delivery,
                payload: b"{}".to_vec(),
            };
            assert!(matches!(
                spool.append(&bad),
                Err(SpoolError::InvalidDelivery { .. })
            ));
            // A batch with one bad record writes nothing.
            assert!(matches!(
                spool.append_batch(&[rec(7), bad]),
                Err(SpoolError::InvalidDelivery { .. })
            ));
        }
        assert!(matches!(
            spool.pop_front(3),
            Err(SpoolError::PopBeyondEnd {
                requested: 3,
                len: 2
            })
        ));
        spool.pop_front(0).unwrap();
        assert_eq!(log_len(dir.path()), len_before);
        assert_eq!(all(&spool), recs(0..2));
        // The longest allowed id is fine.
        let longest = SpoolRecord {
            delivery: "y".repeat(MAX_DELIVERY_LEN),
            payload: Vec::new(),
        };
        spool.append(&longest).unwrap();
        drop(spool);
        let (spool, _) = open(dir.path());
        assert_eq!(all(&spool).last(), Some(&longest));
    }

    #[test]
    fn open_creates_nested_directories() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("data").join("spool");
        let (mut spool, report) = open(&dir);
        assert_eq!(report.records, 0);
        spool.append(&rec(1)).unwrap();
        drop(spool);
        let (spool, _) = open(&dir);
        assert_eq!(all(&spool), vec![rec(1)]);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Append { id: u8, payload_len: usize },
        AppendBatch(Vec<(u8, usize)>),
        Pop(usize),
        Peek(usize),
        Reopen,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u8..6, 0usize..200).prop_map(|(id, payload_len)| Op::Append { id, payload_len }),
            1 => proptest::collection::vec((0u8..6, 0usize..200), 0..4).prop_map(Op::AppendBatch),
            2 => (0usize..4).prop_map(Op::Pop),
            1 => (0usize..5).prop_map(Op::Peek),
            1 => Just(Op::Reopen),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        /// Any sequence of appends, batches, pops, peeks and reopens behaves like a FIFO queue, with a
        /// tiny compaction threshold so rewrites happen often.
        #[test]
        fn behaves_like_a_fifo_queue(ops in proptest::collection::vec(op(), 1..30)) {
            let dir = tempfile::tempdir().unwrap();
            let options = SpoolOptions { compact_after_dead_bytes: 64 };
            let (mut spool, _) = Spool::open_with(dir.path(), options.clone()).unwrap();
            let mut model: VecDeque<SpoolRecord> = VecDeque::new();
            for (serial, op) in ops.into_iter().enumerate() {
                match op {
                    Op::Append { id, payload_len } => {
                        let r = SpoolRecord {
                            delivery: format!("d{id}"),
                            payload: vec![serial as u8; payload_len],
                        };
                        spool.append(&r).unwrap();
                        model.push_back(r);
                    }
                    Op::AppendBatch(shapes) => {
                        let batch: Vec<_> = shapes
                            .into_iter()
                            .map(|(id, payload_len)| SpoolRecord {
                                delivery: format!("d{id}"),
                                payload: vec![serial as u8; payload_len],
                            })
                            .collect();
                        spool.append_batch(&batch).unwrap();
                        model.extend(batch);
                    }
                    Op::Pop(n) => {
                        let n = n.min(model.len());
                        spool.pop_front(n).unwrap();
                        model.drain(..n);
                    }
                    Op::Peek(n) => {
                        let expected: Vec<_> = model.iter().take(n).cloned().collect();
                        prop_assert_eq!(spool.peek(n).unwrap(), expected);
                    }
                    Op::Reopen => {
                        drop(spool);
                        let (reopened, report) =
                            Spool::open_with(dir.path(), options.clone()).unwrap();
                        prop_assert_eq!(report.torn_records_dropped, 0);
                        spool = reopened;
                    }
                }
                prop_assert_eq!(spool.len(), model.len());
                for id in 0..6 {
                    let id = format!("d{id}");
                    prop_assert_eq!(spool.contains(&id), model.iter().any(|r| r.delivery == id));
                }
            }
            let expected: Vec<_> = model.into_iter().collect();
            prop_assert_eq!(all(&spool), expected);
        }
    }
}
