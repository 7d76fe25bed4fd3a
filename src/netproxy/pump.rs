//! One direction of one proxied connection. While the direction has no toxic the bytes are
//! copied straight through; from its first toxic on, a reader takes chunks off the source as they
//! arrive (stamping their arrival) and a writer applies the direction's toxics before it
//! passes them on. The two are joined by a bounded channel, so a partition holds at most
//! `CHANNEL` chunks in the proxy before the source's kernel buffers fill up, as they would on a
//! real network.

use std::time::Duration;

use rand::{Rng as _, SeedableRng as _};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::{Dir, LinkState, Stats};

/// Chunks in flight between reader and writer.
const CHANNEL: usize = 64;
/// Largest chunk read at once while toxics are in force (what a partition holds per chunk).
const CHUNK: usize = 16 * 1024;
/// Largest chunk read at once on the clean fast path: a batch of webhook bodies on the way to
/// Redis is hundreds of KiB, and every chunk costs a read and a write.
const FAST_CHUNK: usize = 64 * 1024;

/// How a pump ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The source closed cleanly; the end was passed on (a half-close).
    Eof,
    /// `limit_data` closed the connection.
    Cut,
    /// A read or write failed, or the proxy is shutting down.
    Broken,
}

enum Item {
    Data(Vec<u8>, Instant),
    Eof,
    Error,
}

pub async fn pump(
    mut src: ReadHalf<'_>,
    mut dst: WriteHalf<'_>,
    dir: Dir,
    rx: watch::Receiver<LinkState>,
    stats: &Stats,
    seed: u64,
) -> Outcome {
    // Fast path while this direction has no toxic: copy straight through, as `io::copy`
    // would, with one buffer and no allocation per chunk. The toxics are looked at after each
    // read (an atomic version check, no waker registered per chunk): what was read after a
    // toxic arrived goes through the queued path below, which the connection keeps for good,
    // so order is kept and nothing read under a toxic passes untouched. The proxy going away
    // ends an idle connection through `serve_conn`'s watch of the link.
    let mut rx = rx;
    let mut carried: Option<Item> = None;
    if is_clean(rx.borrow_and_update().dir(dir)) {
        let mut buf = vec![0u8; FAST_CHUNK];
        loop {
            let n = match src.read(&mut buf).await {
                Ok(n) => n,
                Err(_) => return Outcome::Broken,
            };
            match rx.has_changed() {
                Err(_closed) => return Outcome::Broken,
                Ok(true) if !is_clean(rx.borrow_and_update().dir(dir)) => {
                    carried = Some(if n == 0 {
                        Item::Eof
                    } else {
                        Item::Data(buf[..n].to_vec(), Instant::now())
                    });
                    break;
                }
                Ok(_) => {}
            }
            if n == 0 {
                let _ = dst.shutdown().await;
                return Outcome::Eof;
            }
            if dst.write_all(&buf[..n]).await.is_err() {
                return Outcome::Broken;
            }
            Stats::add(stats.bytes(dir), n as u64);
        }
    }
    let (tx, mut items) = mpsc::channel::<Item>(CHANNEL);
    let reader_rx = rx.clone();
    let reader = async {
        if let Some(item) = carried {
            let eof = matches!(item, Item::Eof);
            if let Item::Data(bytes, _) = &item {
                if reader_rx.borrow().dir(dir).partition {
                    Stats::add(&stats.held, bytes.len() as u64);
                }
            }
            if tx.send(item).await.is_err() || eof {
                return;
            }
        }
        let mut buf = vec![0u8; CHUNK];
        loop {
            match src.read(&mut buf).await {
                Ok(0) => {
                    let _ = tx.send(Item::Eof).await;
                    return;
                }
                Ok(n) => {
                    if reader_rx.borrow().dir(dir).partition {
                        Stats::add(&stats.held, n as u64);
                    }
                    if tx
                        .send(Item::Data(buf[..n].to_vec(), Instant::now()))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                Err(_) => {
                    let _ = tx.send(Item::Error).await;
                    return;
                }
            }
        }
    };
    let writer = async {
        let mut rx = rx;
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut last_due = Instant::now();
        // Bytes passed since `limit_data` was last set (epoch).
        let mut epoch = rx.borrow().dir(dir).limit_epoch;
        let mut passed: u64 = 0;
        while let Some(item) = items.recv().await {
            // A partition holds everything, the end of stream included.
            loop {
                if !rx.borrow_and_update().dir(dir).partition {
                    break;
                }
                if rx.changed().await.is_err() {
                    return Outcome::Broken;
                }
            }
            let t = rx.borrow().dir(dir).clone();
            let (bytes, arrived) = match item {
                Item::Data(b, at) => (b, at),
                Item::Error => return Outcome::Broken,
                Item::Eof => {
                    if let Some(d) = t.slow_close {
                        Stats::add(&stats.slow_closed, 1);
                        tokio::time::sleep(d).await;
                    }
                    let _ = dst.shutdown().await;
                    return Outcome::Eof;
                }
            };
            let mut late = false;
            if let Some(lat) = t.latency {
                let delay = jittered(lat, t.jitter, &mut rng);
                let due = (arrived + delay).max(last_due);
                last_due = due;
                tokio::time::sleep_until(due).await;
                late = true;
            }
            let mut bytes = bytes.as_slice();
            let mut cut = false;
            if t.limit_epoch != epoch {
                epoch = t.limit_epoch;
                passed = 0;
            }
            if let Some(limit) = t.limit_data {
                let left = limit.saturating_sub(passed);
                if bytes.len() as u64 >= left {
                    bytes = &bytes[..left as usize];
                    cut = true;
                }
            }
            let mut piece = t.slice.unwrap_or(bytes.len());
            if let Some(bps) = t.bandwidth {
                // Pieces of a tenth of a second's worth, so the rate is smooth.
                piece = piece.min((bps / 10).max(1) as usize);
            }
            let piece = piece.max(1);
            for (i, part) in bytes.chunks(piece).enumerate() {
                if i > 0 && !t.slice_delay.is_zero() {
                    tokio::time::sleep(t.slice_delay).await;
                }
                // A piece leaves once the link had the time to carry it.
                if let Some(bps) = t.bandwidth.filter(|b| *b > 0) {
                    tokio::time::sleep(Duration::from_secs_f64(part.len() as f64 / bps as f64))
                        .await;
                    late = true;
                }
                if dst.write_all(part).await.is_err() {
                    return Outcome::Broken;
                }
                if t.slice.is_some() {
                    let _ = dst.flush().await;
                    tokio::task::yield_now().await;
                    late = true;
                }
            }
            let n = bytes.len() as u64;
            passed += n;
            Stats::add(stats.bytes(dir), n);
            if late {
                Stats::add(&stats.delayed, n);
            }
            if cut {
                Stats::add(&stats.cut, 1);
                let _ = dst.flush().await;
                return Outcome::Cut;
            }
        }
        Outcome::Eof
    };
    tokio::pin!(writer);
    tokio::select! {
        o = &mut writer => o,
        () = reader => (&mut writer).await,
    }
}

/// Whether `t` leaves the bytes alone (`limit_epoch` is bookkeeping, not a toxic).
fn is_clean(t: &super::Toxics) -> bool {
    *t == super::Toxics {
        limit_epoch: t.limit_epoch,
        ..super::Toxics::default()
    }
}

/// `lat` ± a uniform share of `jitter`, never below zero.
pub(super) fn jittered(lat: Duration, jitter: Duration, rng: &mut rand::rngs::StdRng) -> Duration {
    if jitter.is_zero() {
        return lat;
    }
    let j = jitter.as_secs_f64();
    let d = lat.as_secs_f64() + rng.random_range(-j..=j);
    Duration::from_secs_f64(d.max(0.0))
}
