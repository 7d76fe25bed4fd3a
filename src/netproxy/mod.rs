//! A small TCP proxy with toxics, after Toxiproxy: the harness puts one on every link of a
//! managed run (sender→server, server→Redis, each worker→Redis) and breaks the network there.
//!
//! Every [`Proxy`] listens on `127.0.0.1:0` and opens one upstream connection per accepted
//! client connection. What it does to the bytes is a [`LinkState`] behind a `watch` channel:
//! per direction ([`Toxics`]: `up` is client→upstream, i.e. requests; `down` is the replies)
//! `partition` (a blackhole: nothing passes, connections stay open, bytes are held and — like
//! TCP retransmitting across a healed partition — delivered when it heals), `latency` with
//! seeded jitter (order kept: a chunk is delivered at its arrival + delay, never before the
//! previous one), `bandwidth`, `slice` (writes split into small pieces), `limit_data` (the
//! connection is closed after N more bytes) and `slow_close` (the close is passed on late);
//! per link `reset` (every open connection and every new one gets a RST: `SO_LINGER` 0, then
//! close). Each change applies to open connections at once. [`Stats`] count what the toxics hit.
//!
//! The pumps live in `pump.rs`, a run's set of links in `links.rs`; this file holds the
//! listener, the per-connection task and the counters.

pub mod links;
mod pump;

pub use links::{LinkRecord, NetLinks};

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// How long the proxy waits for the upstream to accept a connection (as long as a client
/// would wait for a SYN answer on a LAN before giving up, roughly); past it the client's
/// connection is closed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The toxics of one direction of a link. `Default` is a clean pipe.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Toxics {
    /// Nothing passes; bytes are read and held (at most the pump's buffer, then the sender's
    /// kernel buffers fill) and delivered when the partition heals.
    pub partition: bool,
    /// Every chunk is delivered this long after it arrived, ± `jitter` (uniform, seeded).
    pub latency: Option<Duration>,
    /// Jitter around `latency` (ignored without it).
    pub jitter: Duration,
    /// At most this many bytes per second.
    pub bandwidth: Option<u64>,
    /// Writes are split into pieces of this many bytes, `slice_delay` apart.
    pub slice: Option<usize>,
    /// Pause between two slices.
    pub slice_delay: Duration,
    /// The connection is closed (FIN both ways) after this many more bytes in this direction,
    /// counted per connection from the moment the toxic was set (`limit_epoch`).
    pub limit_data: Option<u64>,
    /// Bumped every time `limit_data` is set, so every connection counts afresh.
    pub limit_epoch: u64,
    /// An end of stream is passed on this late.
    pub slow_close: Option<Duration>,
}

/// Everything a link does to its connections.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkState {
    /// Client → upstream (requests).
    pub up: Toxics,
    /// Upstream → client (replies).
    pub down: Toxics,
    /// Every open connection is reset now and every new one right after it is accepted.
    pub reset: bool,
}

impl LinkState {
    /// The toxics of one direction.
    pub fn dir(&self, d: Dir) -> &Toxics {
        match d {
            Dir::Up => &self.up,
            Dir::Down => &self.down,
        }
    }

    /// The toxics of one direction, to change.
    pub fn dir_mut(&mut self, d: Dir) -> &mut Toxics {
        match d {
            Dir::Up => &mut self.up,
            Dir::Down => &mut self.down,
        }
    }
}

/// One direction of a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dir {
    /// Client → upstream.
    Up,
    /// Upstream → client.
    Down,
}

/// Counters of one link since it started; a fault reads them at inject and at heal and keeps
/// the difference.
#[derive(Debug, Default)]
pub struct Stats {
    accepted: AtomicU64,
    open: AtomicU64,
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
    held: AtomicU64,
    held_conns: AtomicU64,
    delayed: AtomicU64,
    resets: AtomicU64,
    cut: AtomicU64,
    slow_closed: AtomicU64,
}

/// A copy of [`Stats`] at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsSnapshot {
    /// Connections accepted.
    pub accepted: u64,
    /// Connections open now.
    pub open: u64,
    /// Bytes passed client → upstream.
    pub bytes_up: u64,
    /// Bytes passed upstream → client.
    pub bytes_down: u64,
    /// Bytes that arrived while their direction was partitioned (held back until it healed).
    pub held: u64,
    /// New connections held (not connected upstream) by a partition.
    pub held_conns: u64,
    /// Bytes delivered late by `latency`, `bandwidth` or `slice`.
    pub delayed: u64,
    /// Connections reset.
    pub resets: u64,
    /// Connections closed by `limit_data`.
    pub cut: u64,
    /// Ends of stream passed on late by `slow_close`.
    pub slow_closed: u64,
}

impl StatsSnapshot {
    /// What happened between `earlier` and `self` (`open` is the current value).
    pub fn since(&self, earlier: &StatsSnapshot) -> StatsSnapshot {
        StatsSnapshot {
            accepted: self.accepted.saturating_sub(earlier.accepted),
            open: self.open,
            bytes_up: self.bytes_up.saturating_sub(earlier.bytes_up),
            bytes_down: self.bytes_down.saturating_sub(earlier.bytes_down),
            held: self.held.saturating_sub(earlier.held),
            held_conns: self.held_conns.saturating_sub(earlier.held_conns),
            delayed: self.delayed.saturating_sub(earlier.delayed),
            resets: self.resets.saturating_sub(earlier.resets),
            cut: self.cut.saturating_sub(earlier.cut),
            slow_closed: self.slow_closed.saturating_sub(earlier.slow_closed),
        }
    }
}

impl Stats {
    fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    /// The counters now.
    pub fn snapshot(&self) -> StatsSnapshot {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            accepted: g(&self.accepted),
            open: g(&self.open),
            bytes_up: g(&self.bytes_up),
            bytes_down: g(&self.bytes_down),
            held: g(&self.held),
            held_conns: g(&self.held_conns),
            delayed: g(&self.delayed),
            resets: g(&self.resets),
            cut: g(&self.cut),
            slow_closed: g(&self.slow_closed),
        }
    }

    fn bytes(&self, d: Dir) -> &AtomicU64 {
        match d {
            Dir::Up => &self.bytes_up,
            Dir::Down => &self.bytes_down,
        }
    }
}

/// One proxied link. Dropping it stops the listener and ends every connection it carries.
pub struct Proxy {
    name: String,
    listen: SocketAddr,
    upstream: SocketAddr,
    state: watch::Sender<LinkState>,
    stats: Arc<Stats>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("name", &self.name)
            .field("listen", &self.listen)
            .field("upstream", &self.upstream)
            .finish()
    }
}

impl Proxy {
    /// Listens on `127.0.0.1:0` and forwards every connection to `upstream`. `seed` seeds the
    /// jitter (with the connection's number, so a run's jitter is reproducible per connection).
    pub async fn start(name: &str, upstream: SocketAddr, seed: u64) -> std::io::Result<Proxy> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        Proxy::with_listener(name, listener, upstream, seed)
    }

    /// [`Proxy::start`] on a listener the caller bound.
    pub fn with_listener(
        name: &str,
        listener: TcpListener,
        upstream: SocketAddr,
        seed: u64,
    ) -> std::io::Result<Proxy> {
        let listen = listener.local_addr()?;
        let (state, _) = watch::channel(LinkState::default());
        let stats = Arc::new(Stats::default());
        let task = tokio::spawn(accept_loop(
            listener,
            upstream,
            state.clone(),
            stats.clone(),
            seed ^ fnv(name),
        ));
        Ok(Proxy {
            name: name.to_string(),
            listen,
            upstream,
            state,
            stats,
            task,
        })
    }

    /// [`Proxy::start`], with an owned name and an `anyhow` error that names the link.
    pub async fn start_named(
        name: String,
        upstream: SocketAddr,
        seed: u64,
    ) -> anyhow::Result<Proxy> {
        use anyhow::Context as _;
        Proxy::start(&name, upstream, seed)
            .await
            .with_context(|| format!("starting the proxy of link {name} (to {upstream})"))
    }

    /// The link's name (`server-redis`, `worker-0-redis`, `sender-server`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where clients connect.
    pub fn listen_addr(&self) -> SocketAddr {
        self.listen
    }

    /// Where the proxy connects.
    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    /// Changes the toxics; open connections follow at once.
    pub fn update(&self, f: impl FnOnce(&mut LinkState)) {
        self.state.send_modify(f);
    }

    /// The toxics in force.
    pub fn state(&self) -> LinkState {
        self.state.borrow().clone()
    }

    /// Removes every toxic.
    pub fn heal(&self) {
        self.state.send_replace(LinkState::default());
    }

    /// The counters now.
    pub fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        // Connections end when they see the state channel closed; `send_replace` wakes the
        // ones waiting in a partition so they notice.
        self.state.send_replace(LinkState::default());
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    state: watch::Sender<LinkState>,
    stats: Arc<Stats>,
    seed: u64,
) {
    let mut n: u64 = 0;
    loop {
        let (client, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // EMFILE and the like: back off instead of spinning.
                tracing::warn!(error = %e, "proxy accept");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        n += 1;
        Stats::add(&stats.accepted, 1);
        let rx = state.subscribe();
        let stats = stats.clone();
        let seed = seed.wrapping_add(n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        tokio::spawn(async move {
            Stats::add(&stats.open, 1);
            serve_conn(client, upstream, rx, &stats, seed).await;
            stats.open.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// Closes `s` with a RST instead of a FIN.
fn rst(s: TcpStream) {
    let _ = s.set_zero_linger();
    drop(s);
}

async fn serve_conn(
    mut client: TcpStream,
    upstream: SocketAddr,
    mut rx: watch::Receiver<LinkState>,
    stats: &Stats,
    seed: u64,
) {
    // A new connection during a partition is held (connected to us, never to the upstream),
    // like a SYN that gets no answer; during a reset it is reset at once.
    let mut held = false;
    loop {
        let s = rx.borrow_and_update().clone();
        if s.reset {
            Stats::add(&stats.resets, 1);
            rst(client);
            return;
        }
        if !s.up.partition && !s.down.partition {
            break;
        }
        if !held {
            held = true;
            Stats::add(&stats.held_conns, 1);
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
    let mut server = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(upstream)).await
    {
        Ok(Ok(s)) => s,
        _ => return,
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let reset = {
        let (cr, cw) = client.split();
        let (sr, sw) = server.split();
        let up = pump::pump(cr, sw, Dir::Up, rx.clone(), stats, seed);
        let down = pump::pump(sr, cw, Dir::Down, rx.clone(), stats, seed ^ 1);
        tokio::pin!(up, down);
        // Resolves `true` on a reset, `false` when the proxy is dropped (the connection then
        // ends with a FIN). The link's state is watched by a task of its own, so the loop
        // below, woken for every chunk, polls a oneshot (atomics) instead of re-registering
        // with the link's watch channel, whose waiter list every connection shares.
        let (fire, reset) = tokio::sync::oneshot::channel::<bool>();
        let _watcher = AbortOnDrop(tokio::spawn(async move {
            let reset = loop {
                if rx.borrow_and_update().reset {
                    break true;
                }
                if rx.changed().await.is_err() {
                    break false;
                }
            };
            let _ = fire.send(reset);
        }));
        let reset = async move { reset.await.unwrap_or(false) };
        tokio::pin!(reset);
        let (mut up_done, mut down_done) = (false, false);
        loop {
            tokio::select! {
                o = &mut up, if !up_done => {
                    up_done = true;
                    if o != pump::Outcome::Eof { break false; }
                }
                o = &mut down, if !down_done => {
                    down_done = true;
                    if o != pump::Outcome::Eof { break false; }
                }
                r = &mut reset => break r,
            }
            if up_done && down_done {
                break false;
            }
        }
    };
    if reset {
        Stats::add(&stats.resets, 1);
        rst(client);
        rst(server);
    }
}

/// Aborts the task when dropped (a connection's link watcher ends with the connection).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// `gitspy-chaos proxy`: one link by hand, until Ctrl-C; prints its address first and its
/// counters last.
pub async fn proxy_cmd(
    upstream: &str,
    port: u16,
    latency: Option<Duration>,
    jitter: Option<Duration>,
    seed: u64,
) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let up = tokio::net::lookup_host(upstream)
        .await
        .with_context(|| format!("resolving {upstream}"))?
        .next()
        .with_context(|| format!("{upstream} resolves to nothing"))?;
    let p = if port == 0 {
        Proxy::start("manual", up, seed).await?
    } else {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .with_context(|| format!("binding 127.0.0.1:{port}"))?;
        Proxy::with_listener("manual", listener, up, seed)?
    };
    if let Some(l) = latency {
        p.update(|s| {
            for t in [&mut s.up, &mut s.down] {
                t.latency = Some(l);
                t.jitter = jitter.unwrap_or_default();
            }
        });
    }
    println!("proxy listening on {} -> {up}", p.listen_addr());
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    println!("{:?}", p.stats());
    Ok(())
}

/// FNV-1a of a name: folds the link's name into its jitter seed.
fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests;
