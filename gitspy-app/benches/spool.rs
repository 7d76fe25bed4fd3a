//! Criterion benchmarks of the durable spool on this machine's disk: what one fsynced append
//! costs (the extra latency of a spooled 202), what group commit would save, and what the
//! drain task pays to read and forget a batch of 100 records.
//!
//! Run briefly with
//! `cargo bench -p gitspy --bench spool -- --warm-up-time 1 --measurement-time 5`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use gitspy::spool::{Spool, SpoolRecord};

/// About the size of a GitHub `issues` webhook body.
const PAYLOAD_LEN: usize = 7 * 1024;
const BATCH: usize = 100;
/// Appended records are popped (untimed) past this depth so the file stays small however fast
/// the disk is.
const MAX_DEPTH: usize = 2_000;

fn record(n: usize) -> SpoolRecord {
    let mut payload =
        format!("{{\"action\":\"opened\",\"issue\":{{\"number\":{n},\"body\":\"").into_bytes();
    payload.resize(PAYLOAD_LEN - 3, b'x');
    payload.extend_from_slice(b"\"}}");
    SpoolRecord {
        delivery: format!("00000000-0000-0000-0000-{n:012}"),
        payload,
    }
}

fn open_spool() -> (tempfile::TempDir, Spool) {
    // Under target/ rather than /tmp: /tmp may be a tmpfs, and fsync there costs nothing.
    let root = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    let dir = tempfile::tempdir_in(root).unwrap();
    let (spool, _) = Spool::open(dir.path()).unwrap();
    (dir, spool)
}

fn trim(spool: &mut Spool) {
    if spool.len() >= MAX_DEPTH {
        spool.pop_front(spool.len()).unwrap();
    }
}

fn bench_spool(c: &mut Criterion) {
    let mut group = c.benchmark_group("spool");

    let (_dir, mut spool) = open_spool();
    let rec = record(1);
    group.throughput(Throughput::Elements(1));
    group.bench_function("append_7KiB_durable", |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            for _ in 0..iters {
                trim(&mut spool);
                let start = Instant::now();
                spool.append(black_box(&rec)).unwrap();
                timed += start.elapsed();
            }
            timed
        })
    });

    let batch: Vec<SpoolRecord> = (0..BATCH).map(record).collect();
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("append_batch_100x7KiB_one_fsync", |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            for _ in 0..iters {
                trim(&mut spool);
                let start = Instant::now();
                spool.append_batch(black_box(&batch)).unwrap();
                timed += start.elapsed();
            }
            timed
        })
    });

    // The drain task's side: read the 100 oldest and forget them, with more waiting behind.
    spool.pop_front(spool.len()).unwrap();
    spool.append_batch(&batch).unwrap();
    group.bench_function("peek_pop_100_with_backlog", |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            for _ in 0..iters {
                spool.append_batch(&batch).unwrap();
                let start = Instant::now();
                let got = spool.peek(BATCH).unwrap();
                spool.pop_front(got.len()).unwrap();
                timed += start.elapsed();
                black_box(got);
            }
            timed
        })
    });

    // The last batch of a backlog: popping it empties the spool and resets the log.
    spool.pop_front(spool.len()).unwrap();
    group.bench_function("peek_pop_100_to_empty", |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            for _ in 0..iters {
                spool.append_batch(&batch).unwrap();
                let start = Instant::now();
                let got = spool.peek(BATCH).unwrap();
                spool.pop_front(got.len()).unwrap();
                timed += start.elapsed();
                black_box(got);
            }
            timed
        })
    });
    group.finish();
}

criterion_group!(benches, bench_spool);
criterion_main!(benches);
