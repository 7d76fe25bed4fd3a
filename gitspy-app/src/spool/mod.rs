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

mod codec;
mod compaction;
mod durable;
mod recovery;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use codec::{decode_record, encode_record, validate};
use durable::io_err;

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

    /// Undoes a partial append so the torn bytes never precede a later record.
    fn roll_back_to(&mut self, end: u64) {
        let undone = self.file.set_len(end).and_then(|()| self.file.sync_data());
        if undone.is_err() {
            self.poisoned = true;
        }
    }
}
