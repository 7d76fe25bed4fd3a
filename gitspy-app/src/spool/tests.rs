//! Unit tests of the spool: round trips, crash points, torn tails, damage in the middle,
//! compaction, property tests of order and durability.

use super::*;
use std::fs;

use super::recovery::read_head;
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
