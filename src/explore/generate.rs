//! The seeded scenario grammar of `explore`: one run seed → one [`Scenario`], always the same.
//!
//! A generated scenario is a short sequence of *episodes*, each drawn from every fault kind,
//! trigger and send shape the scenario format has: sends (plain, bursts of parallel sends, one
//! delivery id sent many times, paced rounds in a `repeat`, duplicates with concurrent copies,
//! event mixes); worker kill (triggered by `holding`), freeze … thaw, restart; server restart or
//! kill (triggered by `in_flight_requests`, or by `spooled` during an outage in spool mode);
//! Redis stop/kill/pause outages and restarts (triggered by `backlog`); store locks — short
//! ones GitSpy waits out, and long ones past a shortened `GITSPY_STORE_BUSY_TIMEOUT` (set in
//! `target.env`) that make applies fail and dead-letter, followed by `dead_requeue: {min: 1}`;
//! network toxics on every link and direction (partition, reset, latency with jitter,
//! bandwidth, slice with a delay, limit_data, slow_close) for a few seconds; and, when the build
//! has failpoints, every crash point (worker `after-lock`/`after-commit`/`after-ack`, server
//! `after-enqueue`, and in spool mode `spool-append`/`spool-drain`). Then a drain and,
//! sometimes, a shuffled replay. Each episode breaks something and repairs it (what a send
//! could not deliver is redelivered), so a correct GitSpy passes every generated scenario: a
//! failing one is a finding. Everything is bounded by [`Bounds`] (episodes per run, deliveries
//! per send, workers, durations).

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::scenario::{
    At, ByteRate, Bytes, CrashAt, CrashPoint, DeadRequeue, DeliveryLimits, Direction, Duplicates,
    EffectiveMin, Expect, Fault, LinkSel, NetworkFault, Observe, OnRedisDown, ProcessAction,
    ProcessFault, Redeliver, RedisAction, RedisBackend, RedisTarget, Repeat, Replay, Scenario,
    Send, Shuffle, Step, StoreFault, Target, Via, Wait, When, Which,
};
use crate::scenario::{BacklogLimit, Check, Dur, Rate};

/// Limits of the grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// Most episodes (fault or send blocks) per scenario; at least 1.
    pub max_episodes: u32,
    /// Most deliveries of one send; at least 1.
    pub max_count: u32,
    /// Most workers of the target; at least 1.
    pub max_workers: u32,
    /// Whether crash points may be generated (the gitspy binary has failpoints).
    pub failpoints: bool,
}

impl Default for Bounds {
    fn default() -> Self {
        Bounds {
            max_episodes: 3,
            max_count: 40,
            max_workers: 2,
            failpoints: false,
        }
    }
}

/// The store's busy timeout a scenario with dead-lettering store locks gives GitSpy
/// (`GITSPY_STORE_BUSY_TIMEOUT`), with two attempts per delivery and a short retry base: an
/// apply that meets the lock fails within a second and is dead-lettered well inside the lock.
pub const SHORT_BUSY_ENV: [(&str, &str); 3] = [
    ("GITSPY_STORE_BUSY_TIMEOUT", "300ms"),
    ("GITSPY_MAX_ATTEMPTS", "2"),
    ("GITSPY_RETRY_BASE", "200ms"),
];

/// The seed of run `index` (0-based) of an exploration with `seed`: SplitMix64 of both, so
/// neighbouring runs get unrelated scenarios and any run can be regenerated from its own seed.
/// At most 2^53 − 1, so `explore.json` readers that use doubles keep it exact.
pub fn run_seed(seed: u64, index: u64) -> u64 {
    let mut z = seed
        .wrapping_add(index.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    // 53 bits: the seed survives JSON readers that hold numbers as doubles (jq, JavaScript).
    (z ^ (z >> 31)) >> 11
}

/// The scenario of run seed `seed`: same seed and bounds, same scenario (also its `seed:`).
pub fn generate(seed: u64, bounds: &Bounds) -> Scenario {
    let mut g = Gen {
        rng: StdRng::seed_from_u64(seed),
        bounds: *bounds,
        workers: 1,
        spool: false,
        replay: false,
        short_busy: None,
        worker_links: false,
    };
    g.workers = g.rng.random_range(1..=bounds.max_workers.max(1));
    g.spool = g.rng.random_bool(0.3);
    let on_redis_down = if g.spool {
        OnRedisDown::Spool
    } else {
        OnRedisDown::Reject
    };
    let episodes = g.rng.random_range(1..=bounds.max_episodes.max(1));
    let mut steps = Vec::new();
    for _ in 0..episodes {
        steps.extend(g.episode());
    }
    steps.push(Step::Wait(Wait {
        drained: true,
        timeout: Some(At::new(Dur::secs(60))),
        duration: None,
    }));
    if g.worker_links {
        // A finish held by a cut worker link reaches Redis at the heal; the worker counts it
        // on its next try. Give it that try before the counters are judged.
        steps.push(Step::Sleep(At::new(Dur::secs(5))));
    }
    if g.rng.random_bool(0.3) {
        g.replay = true;
        steps.push(Step::Replay(Replay {
            name: Some(At::new("shuffled".into())),
            from: None,
            to: None,
            dry_run: true,
            state_from: None,
            verify: false,
            repo: None,
            shuffle: Some(Shuffle {
                seed: None,
                duplicates: 5,
            }),
        }));
    }
    let mut env = BTreeMap::new();
    if g.short_busy == Some(true) {
        for (k, v) in SHORT_BUSY_ENV {
            env.insert(k.to_string(), v.to_string());
        }
    }
    Scenario {
        name: At::new(format!("explore-{seed:016x}")),
        description: format!("generated by `gitspy-chaos explore` from run seed {seed}"),
        seed: Some(seed),
        target: At::new(Target {
            redis: RedisTarget {
                backend: At::new(RedisBackend::Auto),
                container: None,
                image: None,
                url: None,
            },
            workers: At::new(g.workers),
            on_redis_down,
            attach: None,
            env: At::new(env),
            profile: None,
            admin_address: false,
            store: Default::default(),
        }),
        observe: Observe {
            poll_interval: At::new(Dur::secs(2)),
            prometheus: None,
        },
        steps: At::new(steps.into_iter().map(At::new).collect()),
        checks: At::new(checks(g.replay)),
    }
}

/// The checks of every generated scenario: the strict ones a correct GitSpy passes whatever
/// the faults (retries and durations vary with faults, so they are not judged).
fn checks(replay: bool) -> Vec<At<Check>> {
    let mut c = vec![
        Check::Deliveries(DeliveryLimits::default()),
        Check::ProcessedMatchesStore,
        Check::Backlog(BacklogLimit {
            max: 0,
            within: At::new(Dur::secs(30)),
        }),
        Check::NoStuckLocks,
        Check::BoardMatchesModel,
        Check::DuplicateAnswers,
        // Whether a generated kill lands is luck: explore looks for failures, not proofs.
        Check::FaultsEffective(EffectiveMin { min: 0 }),
    ];
    if replay {
        c.push(Check::ReplayOrderIndependent);
    }
    c.into_iter().map(At::new).collect()
}

/// The kinds of episode, drawn uniformly (plain sends twice as often).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Episode {
    Send,
    Burst,
    SameId,
    Paced,
    WorkerKill,
    WorkerFreeze,
    WorkerRestart,
    ServerRestart,
    ServerKill,
    RedisOutage,
    RedisTriggered,
    RedisRestart,
    StoreLock,
    Network,
    SpoolServerRestart,
    WorkerCrash,
    ServerCrash,
    SpoolCrash,
}

struct Gen {
    rng: StdRng,
    bounds: Bounds,
    workers: u32,
    /// `on_redis_down: spool`.
    spool: bool,
    replay: bool,
    /// Chosen at the first store lock: `Some(true)` makes every lock of the scenario outlast a
    /// shortened busy timeout (applies fail, dead letters are requeued).
    short_busy: Option<bool>,
    /// A network toxic touched a worker's Redis link.
    worker_links: bool,
}

impl Gen {
    fn count(&mut self) -> i64 {
        i64::from(self.rng.random_range(1..=self.bounds.max_count.max(1)))
    }

    fn send(&mut self, expect: Expect) -> Step {
        let count = self.count();
        let rate = self.rng.random_bool(0.5).then(|| Rate {
            count: self.rng.random_range(10..=60),
            per: Dur::secs(1),
        });
        let duplicates = self.rng.random_bool(0.25).then(|| Duplicates {
            copies: At::new(self.rng.random_range(2..=3)),
            fraction: At::new(0.5),
            concurrent: self.rng.random_bool(0.5),
        });
        let events = self.rng.random_bool(0.2).then(|| {
            let mut m = BTreeMap::new();
            m.insert("issues".to_string(), self.rng.random_range(1..=3));
            m.insert("pull_request".to_string(), self.rng.random_range(1..=3));
            if self.rng.random_bool(0.5) {
                m.insert("issue_comment".to_string(), self.rng.random_range(1..=3));
            }
            At::new(m)
        });
        Step::Send(Send {
            count: At::new(count),
            rate,
            concurrency: At::new(self.rng.random_range(1..=8)),
            expect,
            duplicates,
            same: false,
            events,
            timeout: At::new(Dur::secs(if expect == Expect::Accepted { 5 } else { 2 })),
            poison: At::new(0),
        })
    }

    fn which(&mut self) -> Which {
        match self.rng.random_range(0..3) {
            0 => Which::Random,
            1 => Which::All,
            _ => Which::Index(self.rng.random_range(0..self.workers)),
        }
    }

    fn fault(&mut self) -> Fault {
        Fault {
            redis: None,
            worker: None,
            server: None,
            store: None,
            network: None,
            which: None,
            when: None,
            within: None,
        }
    }

    fn worker(&mut self, action: ProcessAction, which: Which) -> Step {
        let mut f = self.fault();
        f.worker = Some(ProcessFault::Action(action));
        f.which = Some(which);
        Step::Fault(f)
    }

    fn redis(&mut self, action: RedisAction) -> Step {
        let mut f = self.fault();
        f.redis = Some(action);
        Step::Fault(f)
    }

    fn server(&mut self, action: ProcessAction) -> Step {
        let mut f = self.fault();
        f.server = Some(ProcessFault::Action(action));
        Step::Fault(f)
    }

    fn sleep(&mut self, lo_ms: u64, hi_ms: u64) -> Step {
        Step::Sleep(At::new(Dur::millis(self.rng.random_range(lo_ms..=hi_ms))))
    }

    fn drained(secs: u64) -> Step {
        Step::Wait(Wait {
            drained: true,
            timeout: Some(At::new(Dur::secs(secs))),
            duration: None,
        })
    }

    fn parallel(steps: Vec<Step>) -> Step {
        Step::Parallel(At::new(steps.into_iter().map(At::new).collect()))
    }

    /// The episodes this scenario's target and build allow.
    fn kinds(&self) -> Vec<Episode> {
        use Episode::*;
        let mut k = vec![
            Send,
            Send,
            Burst,
            SameId,
            Paced,
            WorkerKill,
            WorkerFreeze,
            WorkerRestart,
            ServerRestart,
            ServerKill,
            RedisOutage,
            RedisTriggered,
            RedisRestart,
            StoreLock,
            Network,
            Network,
        ];
        if self.spool {
            k.push(SpoolServerRestart);
        }
        if self.bounds.failpoints {
            k.extend([WorkerCrash, ServerCrash]);
            if self.spool {
                k.push(SpoolCrash);
            }
        }
        k
    }

    /// One episode: something sent, something broken, and its repair.
    fn episode(&mut self) -> Vec<Step> {
        let kinds = self.kinds();
        let kind = kinds[self.rng.random_range(0..kinds.len())];
        match kind {
            Episode::Send => vec![self.send(Expect::Accepted)],
            Episode::Burst => {
                // Several sends at once: requests of different steps race at the server.
                let n = self.rng.random_range(2..=3);
                let sends = (0..n).map(|_| self.send(Expect::Accepted)).collect();
                vec![Self::parallel(sends)]
            }
            Episode::SameId => {
                // One delivery id, many requests (GitHub's retries), racing when concurrent.
                let Step::Send(mut s) = self.send(Expect::Accepted) else {
                    unreachable!("send() returns a send step")
                };
                s.count.value = i64::from(self.rng.random_range(2..=8));
                s.same = true;
                s.duplicates = None;
                vec![Step::Send(s)]
            }
            Episode::Paced => {
                // Small paced sends round after round.
                let Step::Send(mut s) = self.send(Expect::Accepted) else {
                    unreachable!("send() returns a send step")
                };
                s.count.value = (s.count.value + 3) / 4;
                s.rate = Some(Rate {
                    count: self.rng.random_range(10..=40),
                    per: Dur::secs(1),
                });
                vec![Step::Repeat(Repeat {
                    every: At::new(Dur::millis(self.rng.random_range(500..=1500))),
                    duration: None,
                    times: Some(At::new(self.rng.random_range(2..=4))),
                    steps: At::new(vec![At::new(Step::Send(s))]),
                })]
            }
            Episode::WorkerKill => {
                // A kill that waits until its worker holds work.
                let which = match self.which() {
                    Which::All => Which::Random,
                    w => w,
                };
                let mut kill = self.fault();
                kill.worker = Some(ProcessFault::Action(ProcessAction::Kill));
                kill.which = Some(which);
                kill.when = Some(When {
                    holding: Some(self.rng.random_range(1..=3)),
                    ..When::default()
                });
                kill.within = Some(At::new(Dur::secs(10)));
                vec![
                    Self::parallel(vec![self.send(Expect::Accepted), Step::Fault(kill)]),
                    self.worker(ProcessAction::Start, Which::All),
                ]
            }
            Episode::WorkerFreeze => {
                // A zombie: frozen while holding work, thawed later.
                let which = Which::Index(self.rng.random_range(0..self.workers));
                vec![
                    self.worker(ProcessAction::Freeze, which),
                    self.send(Expect::Accepted),
                    self.sleep(500, 4000),
                    self.worker(ProcessAction::Thaw, which),
                ]
            }
            Episode::WorkerRestart => {
                let which = self.which();
                vec![
                    self.worker(ProcessAction::Restart, which),
                    self.send(Expect::Accepted),
                ]
            }
            Episode::ServerRestart => {
                // A restart mid-send, at once or once requests are in flight.
                let mut restart = self.fault();
                restart.server = Some(ProcessFault::Action(ProcessAction::Restart));
                if self.rng.random_bool(0.5) {
                    restart.when = Some(self.in_flight());
                    restart.within = Some(At::new(Dur::secs(10)));
                }
                vec![
                    Self::parallel(vec![self.send(Expect::Any), Step::Fault(restart)]),
                    Step::Redeliver(Redeliver::Failed),
                ]
            }
            Episode::ServerKill => {
                // SIGKILL with requests in flight, then a start (a no-op when the trigger
                // missed) and GitHub's redelivery of what got no answer.
                let mut kill = self.fault();
                kill.server = Some(ProcessFault::Action(ProcessAction::Kill));
                kill.when = Some(self.in_flight());
                kill.within = Some(At::new(Dur::secs(10)));
                vec![
                    Self::parallel(vec![self.send(Expect::Any), Step::Fault(kill)]),
                    self.sleep(100, 1500),
                    self.server(ProcessAction::Start),
                    Step::Redeliver(Redeliver::Failed),
                ]
            }
            Episode::RedisOutage => {
                let action = self.outage();
                vec![
                    self.redis(action),
                    self.send(Expect::Any),
                    self.sleep(200, 2000),
                    self.redis(Self::repair(action)),
                    Step::Redeliver(Redeliver::Failed),
                ]
            }
            Episode::RedisTriggered => {
                // An outage once work piles up in the stream; the repair is a no-op when the
                // trigger missed.
                let action = self.outage();
                let mut f = self.fault();
                f.redis = Some(action);
                f.when = Some(When {
                    backlog: Some(self.rng.random_range(1..=10)),
                    ..When::default()
                });
                f.within = Some(At::new(Dur::secs(10)));
                vec![
                    Self::parallel(vec![self.send(Expect::Any), Step::Fault(f)]),
                    self.sleep(200, 2000),
                    self.redis(Self::repair(action)),
                    Step::Redeliver(Redeliver::Failed),
                ]
            }
            Episode::RedisRestart => vec![
                self.redis(RedisAction::Restart),
                self.send(Expect::Any),
                Step::Redeliver(Redeliver::Failed),
            ],
            Episode::StoreLock => self.store_lock(),
            Episode::Network => self.network(),
            Episode::SpoolServerRestart => {
                // Spool mode: Redis down, the server spools and is restarted (or killed and
                // started) with records in its spool; they must all reach Redis once.
                let action = if self.rng.random_bool(0.5) {
                    ProcessAction::Restart
                } else {
                    ProcessAction::Kill
                };
                let mut f = self.fault();
                f.server = Some(ProcessFault::Action(action));
                f.when = Some(When {
                    spooled: Some(self.rng.random_range(1..=5)),
                    ..When::default()
                });
                f.within = Some(At::new(Dur::secs(10)));
                vec![
                    self.redis(RedisAction::Stop),
                    Self::parallel(vec![self.send(Expect::Any), Step::Fault(f)]),
                    self.server(ProcessAction::Start),
                    self.redis(RedisAction::Start),
                    Step::Redeliver(Redeliver::Failed),
                ]
            }
            Episode::WorkerCrash => {
                let point = match self.rng.random_range(0..3) {
                    0 => CrashPoint::AfterLock,
                    1 => CrashPoint::AfterCommit,
                    _ => CrashPoint::AfterAck,
                };
                let mut arm = self.fault();
                arm.worker = Some(ProcessFault::CrashAt(CrashAt {
                    crash_at: point,
                    nth: self.rng.random_range(1..=3),
                }));
                arm.which = Some(Which::Index(self.rng.random_range(0..self.workers)));
                arm.within = Some(At::new(Dur::secs(10)));
                vec![
                    Self::parallel(vec![Step::Fault(arm), self.send(Expect::Accepted)]),
                    self.worker(ProcessAction::Start, Which::All),
                ]
            }
            Episode::ServerCrash => {
                let arm = self.server_crash(CrashPoint::AfterEnqueue);
                vec![
                    Self::parallel(vec![arm, self.send(Expect::Any)]),
                    self.server(ProcessAction::Start),
                    Step::Redeliver(Redeliver::Failed),
                ]
            }
            Episode::SpoolCrash => {
                // Spool mode: the server dies inside a spool append (Redis down) or inside the
                // drain that follows Redis's return.
                if self.rng.random_bool(0.5) {
                    let arm = self.server_crash(CrashPoint::SpoolAppend);
                    vec![
                        self.redis(RedisAction::Stop),
                        Self::parallel(vec![arm, self.send(Expect::Any)]),
                        self.server(ProcessAction::Start),
                        self.redis(RedisAction::Start),
                        Step::Redeliver(Redeliver::Failed),
                    ]
                } else {
                    let arm = self.server_crash(CrashPoint::SpoolDrain);
                    vec![
                        self.redis(RedisAction::Stop),
                        self.send(Expect::Any),
                        Self::parallel(vec![self.redis(RedisAction::Start), arm]),
                        self.server(ProcessAction::Start),
                        Step::Redeliver(Redeliver::Failed),
                    ]
                }
            }
        }
    }

    fn in_flight(&mut self) -> When {
        When {
            in_flight_requests: Some(self.rng.random_range(1..=4)),
            ..When::default()
        }
    }

    fn outage(&mut self) -> RedisAction {
        match self.rng.random_range(0..3) {
            0 => RedisAction::Stop,
            1 => RedisAction::Kill,
            _ => RedisAction::Pause,
        }
    }

    fn repair(action: RedisAction) -> RedisAction {
        if action == RedisAction::Pause {
            RedisAction::Unpause
        } else {
            RedisAction::Start
        }
    }

    fn server_crash(&mut self, point: CrashPoint) -> Step {
        let mut arm = self.fault();
        arm.server = Some(ProcessFault::CrashAt(CrashAt {
            crash_at: point,
            nth: self.rng.random_range(1..=3),
        }));
        arm.within = Some(At::new(Dur::secs(10)));
        Step::Fault(arm)
    }

    /// A store lock. The scenario's first lock decides for all of them: either GitSpy waits
    /// it out (up to 3 s, inside the default 10 s busy timeout), or the scenario shortens the
    /// busy timeout (`target.env`, [`SHORT_BUSY_ENV`]) and holds the lock for 3–5 s while a
    /// send arrives: applies fail, run out of their two attempts and are dead-lettered; once
    /// drained, `dead_requeue: {min: 1}` puts them back (and fails the run if nothing was
    /// dead-lettered: a build that retries forever).
    fn store_lock(&mut self) -> Vec<Step> {
        let short = *self
            .short_busy
            .get_or_insert_with(|| self.rng.random_bool(0.5));
        let mut lock = self.fault();
        if !short {
            lock.store = Some(StoreFault {
                lock: Dur::millis(self.rng.random_range(500..=3000)),
                terminate_connections: false,
            });
            return vec![Self::parallel(vec![
                Step::Fault(lock),
                self.send(Expect::Accepted),
            ])];
        }
        lock.store = Some(StoreFault {
            lock: Dur::millis(self.rng.random_range(3000..=5000)),
            terminate_connections: false,
        });
        let Step::Send(mut send) = self.send(Expect::Accepted) else {
            unreachable!("send() returns a send step")
        };
        // Fast, so deliveries meet the lock.
        send.rate = None;
        vec![
            Step::Fault(lock),
            Step::Send(send),
            Self::drained(60),
            Step::DeadRequeue(DeadRequeue { min: 1 }),
            Self::drained(60),
        ]
    }

    /// A network toxic on one link (or a group of links), one direction, for 1–5 s while a
    /// send runs; then what got no answer is redelivered.
    fn network(&mut self) -> Vec<Step> {
        let link = match self.rng.random_range(0..6) {
            0 => LinkSel::SenderServer,
            1 => LinkSel::ServerRedis,
            2 => LinkSel::WorkersRedis,
            3 => LinkSel::WorkerRedis(self.rng.random_range(0..self.workers)),
            4 => LinkSel::Redis,
            _ => LinkSel::All,
        };
        if link != LinkSel::SenderServer && link != LinkSel::ServerRedis {
            self.worker_links = true;
        }
        let mut n = NetworkFault {
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
            duration: Some(Dur::millis(self.rng.random_range(1000..=5000))),
            via: Via::Proxy,
        };
        match self.rng.random_range(0..7) {
            0 => n.partition = true,
            1 => n.reset = true,
            2 => {
                let ms = self.rng.random_range(20..=500);
                n.latency = Some(Dur::millis(ms));
                if self.rng.random_bool(0.5) {
                    n.jitter = Some(Dur::millis(self.rng.random_range(0..=ms)));
                }
            }
            3 => n.bandwidth = Some(ByteRate(self.rng.random_range(1..=64) * 1024)),
            4 => {
                n.slice = Some(Bytes(self.rng.random_range(1..=256)));
                if self.rng.random_bool(0.5) {
                    n.slice_delay = Some(Dur::millis(self.rng.random_range(1..=20)));
                }
            }
            5 => n.limit_data = Some(Bytes(self.rng.random_range(64..=4096))),
            _ => n.slow_close = Some(Dur::millis(self.rng.random_range(200..=2000))),
        }
        if !n.reset {
            n.direction = match self.rng.random_range(0..3) {
                0 => Direction::Both,
                1 => Direction::Up,
                _ => Direction::Down,
            };
        }
        let mut f = self.fault();
        f.network = Some(At::new(n));
        if self.rng.random_bool(0.3) {
            f.when = Some(self.in_flight());
            f.within = Some(At::new(Dur::secs(10)));
        }
        vec![
            Self::parallel(vec![self.send(Expect::Any), Step::Fault(f)]),
            self.sleep(500, 2000),
            Step::Redeliver(Redeliver::Failed),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::load::{parse, to_yaml};
    use crate::scenario::validate::validate;

    fn with_failpoints() -> Bounds {
        Bounds {
            failpoints: true,
            ..Bounds::default()
        }
    }

    #[test]
    fn the_same_seed_generates_the_same_sequence_of_scenarios() {
        let a: Vec<String> = (0..20)
            .map(|i| to_yaml(&generate(run_seed(7, i), &with_failpoints())).unwrap())
            .collect();
        let b: Vec<String> = (0..20)
            .map(|i| to_yaml(&generate(run_seed(7, i), &with_failpoints())).unwrap())
            .collect();
        assert_eq!(a, b);
        let other: Vec<String> = (0..20)
            .map(|i| to_yaml(&generate(run_seed(8, i), &with_failpoints())).unwrap())
            .collect();
        assert_ne!(a, other, "another seed must give other scenarios");
        assert!((0..1000).all(|i| run_seed(u64::MAX, i) < 1 << 53));
        let distinct: std::collections::BTreeSet<&String> = a.iter().collect();
        assert!(distinct.len() > 15, "runs of one exploration differ");
    }

    #[test]
    fn every_generated_scenario_validates_and_reads_back_from_its_yaml() {
        let long = Bounds {
            max_episodes: 6,
            ..with_failpoints()
        };
        for bounds in [Bounds::default(), with_failpoints(), long] {
            for i in 0..400 {
                let s = generate(run_seed(1, i), &bounds);
                let problems = validate(&s);
                let yaml = to_yaml(&s).unwrap();
                assert!(problems.is_empty(), "{problems:?}\n{yaml}");
                let back = parse(&yaml).unwrap_or_else(|p| panic!("{p:?}\n{yaml}"));
                assert_eq!(to_yaml(&back).unwrap(), yaml);
                assert!(validate(&back).is_empty());
                assert!(!s.needs_failpoints() || bounds.failpoints);
                assert!(
                    crate::explore::shrink::sound(&s),
                    "a dead_requeue without its lock\n{yaml}"
                );
            }
        }
    }

    #[test]
    fn the_grammar_covers_every_fault_kind_it_knows() {
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..400 {
            for f in generate(run_seed(3, i), &with_failpoints()).faults() {
                let text = f.to_string();
                seen.insert(text.split(" (").next().unwrap_or("").to_string());
            }
        }
        for want in [
            "worker kill",
            "worker start",
            "worker freeze",
            "worker thaw",
            "worker restart",
            "server restart",
            "server start",
            "redis stop",
            "redis kill",
            "redis pause",
            "redis unpause",
            "redis start",
            "redis restart",
            "worker crash at after-commit",
            "server crash at after-enqueue",
        ] {
            assert!(seen.contains(want), "{want} never generated; seen {seen:?}");
        }
        assert!(seen.iter().any(|s| s.starts_with("store lock")));
    }

    /// Walks every step, nested ones included.
    fn walk<'a>(steps: &'a [At<Step>], out: &mut Vec<&'a Step>) {
        for st in steps {
            out.push(&st.value);
            match &st.value {
                Step::Parallel(inner) => walk(inner, out),
                Step::Repeat(r) => walk(&r.steps, out),
                _ => {}
            }
        }
    }

    #[test]
    fn the_grammar_covers_every_toxic_link_direction_trigger_crash_point_and_send_shape() {
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..1500 {
            let s = generate(run_seed(4, i), &with_failpoints());
            if s.target.env.contains_key("GITSPY_STORE_BUSY_TIMEOUT") {
                seen.insert("env short busy timeout".to_string());
            }
            if s.target.on_redis_down == OnRedisDown::Spool {
                seen.insert("spool mode".to_string());
            }
            let mut steps = Vec::new();
            walk(&s.steps, &mut steps);
            for st in steps {
                match st {
                    Step::Send(send) => {
                        if send.same {
                            seen.insert("send same".into());
                        }
                        if send.rate.is_some() {
                            seen.insert("send rate".into());
                        }
                        if send.duplicates.as_ref().is_some_and(|d| d.concurrent) {
                            seen.insert("send concurrent duplicates".into());
                        }
                        if send.events.is_some() {
                            seen.insert("send events".into());
                        }
                        if send.concurrency.value > 1 {
                            seen.insert("send concurrency".into());
                        }
                    }
                    Step::Repeat(_) => {
                        seen.insert("repeat".into());
                    }
                    Step::Parallel(inner)
                        if inner
                            .iter()
                            .filter(|x| matches!(x.value, Step::Send(_)))
                            .count()
                            > 1 =>
                    {
                        seen.insert("burst".into());
                    }
                    Step::DeadRequeue(d) if d.min > 0 => {
                        seen.insert("dead_requeue min".into());
                    }
                    Step::Fault(f) => {
                        if let Some(w) = &f.when {
                            for (set, name) in [
                                (w.holding.is_some(), "when holding"),
                                (w.backlog.is_some(), "when backlog"),
                                (w.spooled.is_some(), "when spooled"),
                                (w.in_flight_requests.is_some(), "when in_flight_requests"),
                            ] {
                                if set {
                                    seen.insert(name.to_string());
                                }
                            }
                        }
                        if let Some(n) = &f.network {
                            seen.insert(format!("toxic {}", n.toxic_name()));
                            seen.insert(format!("link {}", n.link));
                            seen.insert(format!("direction {:?}", n.direction));
                            if n.jitter.is_some() {
                                seen.insert("jitter".into());
                            }
                            if n.slice_delay.is_some() {
                                seen.insert("slice_delay".into());
                            }
                        }
                        if let Some(ProcessFault::CrashAt(c)) = f.worker.or(f.server) {
                            seen.insert(format!("crash {}", c.crash_at));
                        }
                        if f.server == Some(ProcessFault::Action(ProcessAction::Kill)) {
                            seen.insert("server kill".into());
                        }
                    }
                    _ => {}
                }
            }
        }
        let mut want: Vec<String> = [
            "env short busy timeout",
            "spool mode",
            "send same",
            "send rate",
            "send concurrent duplicates",
            "send events",
            "send concurrency",
            "repeat",
            "burst",
            "dead_requeue min",
            "when holding",
            "when backlog",
            "when spooled",
            "when in_flight_requests",
            "jitter",
            "slice_delay",
            "server kill",
            "direction Both",
            "direction Up",
            "direction Down",
            "link sender-server",
            "link server-redis",
            "link workers-redis",
            "link worker-0-redis",
            "link worker-1-redis",
            "link redis",
            "link all",
        ]
        .map(String::from)
        .to_vec();
        for t in [
            "partition",
            "reset",
            "latency",
            "bandwidth",
            "slice",
            "limit_data",
            "slow_close",
        ] {
            want.push(format!("toxic {t}"));
        }
        for p in [
            "after-lock",
            "after-commit",
            "after-ack",
            "after-enqueue",
            "spool-append",
            "spool-drain",
        ] {
            want.push(format!("crash {p}"));
        }
        for w in want {
            assert!(seen.contains(&w), "{w} never generated; seen {seen:?}");
        }
    }

    #[test]
    fn a_scenario_with_dead_lettering_locks_shortens_the_busy_timeout_and_requeues() {
        let mut found = 0;
        for i in 0..400 {
            let s = generate(run_seed(6, i), &Bounds::default());
            let mut steps = Vec::new();
            walk(&s.steps, &mut steps);
            let requeues = steps
                .iter()
                .filter(|st| matches!(st, Step::DeadRequeue(d) if d.min == 1))
                .count();
            let short = s.target.env.contains_key("GITSPY_STORE_BUSY_TIMEOUT");
            let locks = s
                .faults()
                .iter()
                .filter(|k| matches!(k, crate::scenario::FaultKind::Store(_)))
                .count();
            // Short busy timeout if and only if a lock dead-letters, and then every lock does.
            assert_eq!(short, requeues > 0, "{}", to_yaml(&s).unwrap());
            if short {
                assert!(locks >= 1);
                for (k, v) in SHORT_BUSY_ENV {
                    assert_eq!(s.target.env.get(k).map(String::as_str), Some(v));
                }
                found += 1;
            }
        }
        assert!(
            found > 10,
            "only {found} scenarios with dead-lettering locks"
        );
    }
}
