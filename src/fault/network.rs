//! Network faults: a toxic on the harness's TCP proxies (`crate::netproxy`), on one link or a
//! set of them (`server-redis`, `workers-redis`, `redis`, `workers-store`, …), in one direction or
//! both.
//!
//! With `for`, the step lasts that long and heals its toxic at the end; without it the toxic
//! stays until a `heal: true` on the link or the end of the scenario ([`heal`]). What it hit is
//! read from the proxies' counters: connections open at the injection plus those opened while
//! it was in force, bytes held back by a partition, bytes delivered late, connections reset or
//! cut, ends of stream delayed — and, on links that carry webhooks, the requests answered
//! non-2xx or spooled meanwhile ([`super::efficacy::fill_after_run`]).

use std::sync::Arc;

use crate::netproxy::{LinkState, NetLinks, Proxy, StatsSnapshot};
use crate::report::{FaultHit, FaultOutcome, FaultWindow, NetworkHit};
use crate::run::steps::Ctx;
use crate::scenario::model::{Direction, LinkSel, NetworkFault, Via};
use crate::system::RedisBackend;

use super::log;
use super::Pending;

/// A network fault in force without `for`: healed by a later `heal: true` or the final heal.
pub struct Active {
    fault: NetworkFault,
    window: usize,
    links: Vec<(Arc<Proxy>, StatsSnapshot)>,
    /// `via: docker`: the networks the Redis container was disconnected from.
    docker: Option<Vec<(String, bollard::models::EndpointSettings)>>,
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// The proxies `sel` names.
pub fn select(net: &NetLinks, sel: LinkSel) -> Vec<Arc<Proxy>> {
    net.iter()
        .filter(|p| {
            let n = p.name();
            match sel {
                LinkSel::All => true,
                LinkSel::SenderServer => n == "sender-server",
                LinkSel::ServerRedis => n == "server-redis",
                LinkSel::WorkersRedis => n.starts_with("worker-") && n.ends_with("-redis"),
                LinkSel::WorkerRedis(i) => n == format!("worker-{i}-redis"),
                LinkSel::Redis => n.ends_with("-redis"),
                LinkSel::ServerStore => n == "server-store",
                LinkSel::WorkersStore => n.starts_with("worker-") && n.ends_with("-store"),
                LinkSel::WorkerStore(i) => n == format!("worker-{i}-store"),
                LinkSel::Store => n.ends_with("-store"),
            }
        })
        .cloned()
        .collect()
}

/// Whether a fault-log target is a link that carries webhook requests or their enqueue, so the
/// requests answered non-2xx or spooled while it was in force count as what it hit.
pub fn carries_requests(target: &str) -> bool {
    target
        .strip_prefix("network ")
        .is_some_and(|l| matches!(l, "sender-server" | "server-redis" | "redis" | "all"))
}

/// The worker whose link `n` acts on, when it names exactly one (`worker-<i>-redis`,
/// `worker-<i>-store`): a `holding` trigger watches it and the fault log records what it held.
pub fn single_worker(n: &NetworkFault) -> Option<usize> {
    match n.link {
        LinkSel::WorkerRedis(i) | LinkSel::WorkerStore(i) => Some(i as usize),
        _ => None,
    }
}

/// A partition or reset of one worker's link cuts its processing short like a freeze does:
/// it counts as a crash fault for `faults_effective` (it must catch the worker holding
/// deliveries). Other network faults slow or refuse work without stranding it.
pub fn is_crash(n: &NetworkFault) -> bool {
    single_worker(n).is_some() && (n.partition || n.reset)
}

/// `network partition`, `network latency`, …
pub fn kind_name(n: &NetworkFault) -> String {
    format!("network {}", n.toxic_name())
}

/// The fault-log target: `network server-redis`.
fn target(sel: LinkSel) -> String {
    format!("network {sel}")
}

/// Sets (`on`) or clears this fault's toxic in `s`.
fn apply(s: &mut LinkState, n: &NetworkFault, on: bool) {
    if n.reset {
        s.reset = on;
        return;
    }
    let dirs: &[crate::netproxy::Dir] = match n.direction {
        Direction::Both => &[crate::netproxy::Dir::Up, crate::netproxy::Dir::Down],
        Direction::Up => &[crate::netproxy::Dir::Up],
        Direction::Down => &[crate::netproxy::Dir::Down],
    };
    for d in dirs {
        let t = s.dir_mut(*d);
        if n.partition {
            t.partition = on;
        }
        if let Some(l) = n.latency {
            t.latency = on.then(|| l.get());
            t.jitter = if on {
                n.jitter.map(|j| j.get()).unwrap_or_default()
            } else {
                std::time::Duration::ZERO
            };
        }
        if let Some(b) = n.bandwidth {
            t.bandwidth = on.then_some(b.0);
        }
        if let Some(b) = n.slice {
            t.slice = on.then_some(b.0 as usize);
            t.slice_delay = if on {
                n.slice_delay.map(|d| d.get()).unwrap_or_default()
            } else {
                std::time::Duration::ZERO
            };
        }
        if let Some(b) = n.limit_data {
            t.limit_data = on.then_some(b.0);
            t.limit_epoch += 1;
        }
        if let Some(d) = n.slow_close {
            t.slow_close = on.then(|| d.get());
        }
    }
}

pub async fn inject(ctx: &Ctx, n: NetworkFault, pending: &Pending) -> anyhow::Result<String> {
    let links = select(&ctx.sys.lock().await.net, n.link);
    let kind = kind_name(&n);
    if links.is_empty() {
        let note = format!("no proxied link `{}` in this run (attach mode?)", n.link);
        log::refused(ctx, &kind, &target(n.link), pending, false, note.clone());
        return Ok(format!("refused: {note}"));
    }
    if n.heal {
        for l in &links {
            l.heal();
        }
        let names: Vec<&str> = links.iter().map(|l| l.name()).collect();
        close(ctx, |a| {
            a.links.iter().any(|(p, _)| names.contains(&p.name()))
        })
        .await;
        return Ok(format!("healed {}", names.join(", ")));
    }
    // What the one worker behind the link holds, read right before the toxic (its entries are
    // the ones another worker may reclaim while the link is cut).
    let mut hit = FaultHit::default();
    if let Some(i) = single_worker(&n) {
        let (url, consumer) = {
            let sys = ctx.sys.lock().await;
            (sys.redis.url().ok(), sys.consumer(i))
        };
        if let Some(url) = url {
            match super::efficacy::worker_hit(&url, &consumer, &ctx.profile.redis).await {
                Ok(h) => hit = h,
                Err(e) => tracing::warn!(error = %e, "reading what worker-{i} holds"),
            }
        }
    }
    let before: Vec<(Arc<Proxy>, StatsSnapshot)> =
        links.iter().map(|l| (l.clone(), l.stats())).collect();
    let mut docker = None;
    let mut note = String::new();
    if n.via == Via::Docker {
        let sys = ctx.sys.lock().await;
        let RedisBackend::Docker(d) = &sys.redis else {
            let note = format!(
                "`via: docker` needs the Docker backend; this run's Redis is {}",
                sys.redis.kind().as_str()
            );
            drop(sys);
            log::refused(ctx, &kind, &target(n.link), pending, false, note.clone());
            return Ok(format!("refused: {note}"));
        };
        let nets = d.disconnect_networks().await?;
        note = format!(
            "container {} disconnected from {} through the Docker API; ",
            d.container(),
            nets.iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        docker = Some(nets);
    } else {
        for l in &links {
            l.update(|s| apply(s, &n, true));
        }
    }
    if carries_requests(&target(n.link)) {
        hit.in_flight_requests = ctx.sender.in_flight();
    }
    note.push_str(
        &links
            .iter()
            .map(|l| format!("{} ({} → {})", l.name(), l.listen_addr(), l.upstream()))
            .collect::<Vec<_>>()
            .join(", "),
    );
    let window = {
        let mut t = ctx.timeline();
        t.faults.push(FaultWindow {
            kind: kind.clone(),
            target: target(n.link),
            requested_ms: Some(pending.requested_ms),
            start_ms: ctx.now_ms(),
            end_ms: None,
            outcome: FaultOutcome::Applied,
            crash: is_crash(&n),
            trigger: pending.trigger.clone(),
            hit: Some(hit),
            note: format!("{}: {note}", describe(&n)),
        });
        t.faults.len() - 1
    };
    let active = Active {
        fault: n,
        window,
        links: before,
        docker,
    };
    match n.duration {
        Some(d) => {
            ctx.say(format!("fault {kind} on {} for {d}", n.link));
            tokio::time::sleep(d.get()).await;
            let hit = finish(ctx, &active).await;
            Ok(format!("{kind} on {} for {d}: {}", n.link, hit.summary()))
        }
        None => {
            lock(&ctx.net_faults).push(active);
            Ok(format!("{kind} on {} until healed", n.link))
        }
    }
}

/// Heals every network fault still in force and every link (the final heal).
pub async fn heal(ctx: &Ctx) {
    close(ctx, |_| true).await;
    ctx.sys.lock().await.net.heal_all();
}

/// Heals and records the active faults `which` picks.
async fn close(ctx: &Ctx, which: impl Fn(&Active) -> bool) {
    let picked: Vec<Active> = {
        let mut all = lock(&ctx.net_faults);
        let (picked, kept) = std::mem::take(&mut *all).into_iter().partition(&which);
        *all = kept;
        picked
    };
    for a in &picked {
        finish(ctx, a).await;
    }
}

/// Clears the toxic of `a`, closes its window and records what it hit.
async fn finish(ctx: &Ctx, a: &Active) -> NetworkHit {
    if let Some(nets) = &a.docker {
        let sys = ctx.sys.lock().await;
        if let RedisBackend::Docker(d) = &sys.redis {
            if let Err(e) = d.reconnect_networks(nets).await {
                tracing::warn!(error = %format!("{e:#}"), "reconnecting the Redis container");
            }
        }
    }
    let mut hit = NetworkHit {
        links: a.links.iter().map(|(p, _)| p.name().to_string()).collect(),
        docker: a.docker.is_some(),
        ..NetworkHit::default()
    };
    for (p, before) in &a.links {
        p.update(|s| apply(s, &a.fault, false));
        let d = p.stats().since(before);
        hit.connections += before.open + d.accepted;
        hit.held_connections += d.held_conns;
        hit.bytes_held += d.held;
        hit.bytes_delayed += d.delayed;
        hit.bytes_passed += d.bytes_up + d.bytes_down;
        hit.resets += d.resets;
        hit.cut += d.cut;
        hit.slow_closed += d.slow_closed;
    }
    let at = ctx.now_ms();
    let mut t = ctx.timeline();
    if let Some(w) = t.faults.get_mut(a.window) {
        w.end_ms = Some(at.max(w.start_ms));
        w.hit.get_or_insert_with(FaultHit::default).network = Some(hit.clone());
    }
    hit
}

fn describe(n: &NetworkFault) -> String {
    let dir = match n.direction {
        Direction::Both => "",
        Direction::Up => " (requests)",
        Direction::Down => " (replies)",
    };
    let what = if n.partition && n.via == Via::Docker {
        "the Redis container leaves its network".to_string()
    } else if n.partition {
        "blackhole".to_string()
    } else if n.reset {
        "RST on every connection".to_string()
    } else if let Some(l) = n.latency {
        match n.jitter {
            Some(j) => format!("latency {l} ± {j}"),
            None => format!("latency {l}"),
        }
    } else if let Some(b) = n.bandwidth {
        format!("bandwidth {} B/s", b.0)
    } else if let Some(b) = n.slice {
        format!("writes sliced into {} B pieces", b.0)
    } else if let Some(b) = n.limit_data {
        format!("close after {} B", b.0)
    } else if let Some(d) = n.slow_close {
        format!("close passed on {d} late")
    } else {
        "heal".to_string()
    };
    format!("{what}{dir}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Dur;

    fn fault(link: LinkSel) -> NetworkFault {
        NetworkFault {
            link,
            direction: Direction::Both,
            partition: false,
            reset: false,
            latency: None,
            jitter: None,
            bandwidth: None,
            slice: None,
            slice_delay: None,
            limit_data: None,
            slow_close: None,
            heal: false,
            duration: None,
            via: Via::Proxy,
        }
    }

    #[test]
    fn a_toxic_is_set_on_its_directions_and_cleared_alone() {
        let mut s = LinkState::default();
        let lat = NetworkFault {
            latency: Some(Dur::millis(200)),
            jitter: Some(Dur::millis(50)),
            ..fault(LinkSel::Redis)
        };
        let part = NetworkFault {
            partition: true,
            direction: Direction::Up,
            ..fault(LinkSel::Redis)
        };
        apply(&mut s, &lat, true);
        apply(&mut s, &part, true);
        assert!(s.up.partition && !s.down.partition);
        assert_eq!(s.down.latency, Some(std::time::Duration::from_millis(200)));
        apply(&mut s, &part, false);
        assert!(!s.up.partition);
        assert_eq!(s.up.jitter, std::time::Duration::from_millis(50));
        apply(&mut s, &lat, false);
        assert_eq!(s, LinkState::default());
    }

    #[test]
    fn link_names_read_back_as_written() {
        for name in [
            "sender-server",
            "server-redis",
            "workers-redis",
            "worker-2-redis",
            "redis",
            "server-store",
            "workers-store",
            "worker-2-store",
            "store",
            "all",
        ] {
            let sel: LinkSel = name.parse().unwrap();
            assert_eq!(sel.to_string(), name);
            assert_eq!(sel.is_store(), name.ends_with("store"), "{name}");
        }
        assert_eq!("worker-3-store".parse(), Ok(LinkSel::WorkerStore(3)));
        for bad in [
            "worker-x-store",
            "worker--store",
            "stores",
            "worker-1-postgres",
        ] {
            assert!(bad.parse::<LinkSel>().is_err(), "{bad}");
        }
        let n = NetworkFault {
            partition: true,
            ..fault(LinkSel::WorkerStore(1))
        };
        assert_eq!(single_worker(&n), Some(1));
        assert!(
            is_crash(&n),
            "a partition of one worker's store link strands its work"
        );
        assert!(!is_crash(&NetworkFault {
            partition: true,
            ..fault(LinkSel::WorkersStore)
        }));
    }

    #[tokio::test]
    async fn link_selection_by_name() {
        let up: std::net::SocketAddr = "127.0.0.1:9".parse().unwrap();
        let mut net = NetLinks::default();
        for n in [
            "server-redis",
            "sender-server",
            "worker-0-redis",
            "worker-1-redis",
            "server-store",
            "worker-0-store",
            "worker-1-store",
        ] {
            net.push(Proxy::start(n, up, 1).await.unwrap());
        }
        let names = |sel| {
            select(&net, sel)
                .iter()
                .map(|p| p.name().to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(LinkSel::ServerRedis), ["server-redis"]);
        assert_eq!(
            names(LinkSel::WorkersRedis),
            ["worker-0-redis", "worker-1-redis"]
        );
        assert_eq!(names(LinkSel::WorkerRedis(1)), ["worker-1-redis"]);
        assert_eq!(names(LinkSel::Redis).len(), 3);
        assert_eq!(names(LinkSel::ServerStore), ["server-store"]);
        assert_eq!(
            names(LinkSel::WorkersStore),
            ["worker-0-store", "worker-1-store"]
        );
        assert_eq!(names(LinkSel::WorkerStore(0)), ["worker-0-store"]);
        assert_eq!(names(LinkSel::Store).len(), 3);
        assert_eq!(names(LinkSel::All).len(), 7);
        assert!(!carries_requests("network workers-store"));
        assert!(carries_requests("network server-redis"));
        assert!(!carries_requests("network workers-redis"));
    }
}
