//! Opening a spool directory: reading and checking the file header and the checkpoint, scanning
//! the records, truncating a torn last append and refusing damage in acknowledged data
//! (the recovery rule in the module docs of [`super`]).

use std::collections::{HashMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::codec::{decode_body, decode_header, le_u32, le_u64};
use super::compaction::build_and_rename_log;
use super::durable::{create_dir_durably, io_err, sync_dir};
use super::*;

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
}

pub(super) struct Decoded {
    delivery: String,
    total_len: u64,
    batch_start: bool,
}

/// Reads and verifies the record at `offset`. The outer error is I/O, the inner one says why
/// the bytes there are not a valid record.
pub(super) fn read_record_at(
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
pub(super) fn find_later_append(
    file: &File,
    offset: u64,
    file_len: u64,
) -> io::Result<Option<u64>> {
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
pub(super) fn find_valid_record(
    file: &File,
    from: u64,
    file_len: u64,
) -> io::Result<Option<(u64, Decoded)>> {
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
pub(super) fn read_head(path: &Path) -> Result<Option<(u64, u64)>, SpoolError> {
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
pub(super) fn read_log_header(file: &File, path: &Path) -> Result<u64, SpoolError> {
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
