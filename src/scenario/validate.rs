//! Checks on a parsed scenario that the types alone cannot express, collecting every problem
//! (not just the first) so one `validate` run shows the author all there is to fix.
//!
//! Nothing here touches the system under test: the same checks run before `run` starts anything.

use std::collections::{BTreeMap, BTreeSet};

use super::model::{
    At, Check, FaultKind, OnRedisDown, Pos, ProcessAction, RedisBackend, Replay, Scenario, Send,
    Step, Wait, Which,
};
use super::Problem;

/// The event types a send step can generate (`X-GitHub-Event` names): the generator's own list,
/// so `validate` accepts exactly what `run` can send.
pub const KNOWN_EVENTS: &[&str] = crate::load::payload::EVENTS;

/// Every problem with `scenario`, in file order. Empty means valid.
pub fn validate(scenario: &Scenario) -> Vec<Problem> {
    let mut v = Validator {
        scenario,
        problems: Vec::new(),
        marks: BTreeMap::new(),
        all_marks: all_marks(&scenario.steps),
        replays: BTreeMap::new(),
        replay_count: 0,
        sends: 0,
        worker_kills: false,
    };
    v.scenario_level();
    let mut set = BTreeSet::new();
    v.steps(&scenario.steps, Ctx::default(), &mut set);
    v.checks();
    v.prometheus();
    v.problems.sort_by_key(|p| p.pos);
    v.problems
}

fn all_marks(steps: &[At<Step>]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for step in steps {
        match &step.value {
            Step::Mark(name) => {
                out.insert(name.value.clone());
            }
            Step::Parallel(children) => out.extend(all_marks(children)),
            Step::Repeat(rep) => out.extend(all_marks(&rep.steps)),
            _ => {}
        }
    }
    out
}

/// Where in the step tree a step sits.
#[derive(Debug, Clone, Copy, Default)]
struct Ctx {
    in_repeat: bool,
}

/// What validation knows about a replay when later steps and checks refer to it.
struct ReplayInfo {
    pos: Pos,
    dry_run: bool,
}

struct Validator<'a> {
    scenario: &'a Scenario,
    problems: Vec<Problem>,
    /// Every mark and where it was first set.
    marks: BTreeMap<String, Pos>,
    /// Every mark set anywhere in the scenario, to tell "never set" from "set too late".
    all_marks: BTreeSet<String>,
    /// Every replay by name.
    replays: BTreeMap<String, ReplayInfo>,
    replay_count: usize,
    sends: usize,
    worker_kills: bool,
}

impl Validator<'_> {
    fn push(&mut self, pos: Pos, message: impl Into<String>, hint: impl Into<String>) {
        self.problems.push(Problem {
            pos,
            message: message.into(),
            hint: hint.into(),
        });
    }

    fn scenario_level(&mut self) {
        self.target_env();
        let s = self.scenario;
        let name = &s.name;
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            self.push(
                name.pos,
                format!("invalid scenario name `{}`", name.value),
                "use lowercase letters, digits and `-` (it names the report directory)",
            );
        }
        if s.steps.is_empty() {
            self.push(
                s.steps.pos,
                "the scenario has no steps",
                "add at least one step, e.g. `- send: {count: 20}`",
            );
        }
        if s.checks.is_empty() {
            self.push(
                s.checks.pos,
                "the scenario has no checks, so it could never fail",
                "add at least one check, e.g. `- deliveries: {lost: 0, duplicated: 0}`",
            );
        }
        if s.observe.poll_interval.is_zero() {
            self.push(
                s.observe.poll_interval.pos,
                "`poll_interval` is zero",
                "poll every few seconds, e.g. `poll_interval: 10s`",
            );
        }
        self.target();
    }

    fn target(&mut self) {
        let t = &self.scenario.target;
        let backend = t.redis.backend.value;
        let pos = t.redis.backend.pos_or(t.pos);
        if backend == RedisBackend::External && t.redis.url.is_none() {
            self.push(
                pos,
                "the `external` Redis backend needs a `url`",
                "add `url: redis://host:port` under `target.redis`",
            );
        }
        let docker_only = t.redis.container.is_some() || t.redis.image.is_some();
        if docker_only && matches!(backend, RedisBackend::Process | RedisBackend::External) {
            self.push(
                pos,
                format!(
                    "`container` and `image` only apply to docker, but the backend is `{}`",
                    backend.as_str()
                ),
                "remove them, or use `backend: docker`",
            );
        }
        if t.attach.is_some() {
            if matches!(backend, RedisBackend::Process | RedisBackend::Auto) {
                self.push(
                    pos,
                    format!(
                        "in attach mode the Redis backend cannot be `{}`: the harness would start its own Redis",
                        backend.as_str()
                    ),
                    "use `backend: docker` with the running container's name, or `backend: external`",
                );
            }
            if t.redis.url.is_none() {
                self.push(
                    t.pos,
                    "attach mode needs the Redis URL to probe",
                    "add `url: redis://host:port` under `target.redis`",
                );
            }
            if t.admin_address {
                self.push(
                    t.pos,
                    "`admin_address` in attach mode: the harness starts no server",
                    "use `admin_url: http://host:port` under `target.attach` to name the deployment's admin address",
                );
            }
        }
    }

    /// Checks a list of steps run in sequence; `set` holds the marks set before them and
    /// receives those they set.
    fn steps(&mut self, steps: &[At<Step>], ctx: Ctx, set: &mut BTreeSet<String>) {
        for step in steps {
            self.step(step, ctx, set);
        }
    }

    fn step(&mut self, step: &At<Step>, ctx: Ctx, set: &mut BTreeSet<String>) {
        let pos = step.pos;
        match &step.value {
            Step::Send(send) => self.send(send, pos),
            Step::Wait(wait) => self.wait(wait, pos),
            Step::Sleep(d) => {
                if d.is_zero() {
                    self.push(
                        d.pos_or(pos),
                        "`sleep` of zero",
                        "remove the step or give a duration like `5s`",
                    );
                }
            }
            Step::Mark(name) => self.mark(name, ctx, set),
            Step::Fault(fault) => self.fault(fault, pos),
            Step::Redeliver(_) => {}
            Step::DeadRequeue(_) => {
                if self.scenario.target.redis.backend.value == RedisBackend::External
                    && self.scenario.target.redis.url.is_none()
                {
                    self.push(
                        pos,
                        "`dead_requeue` needs the Redis URL",
                        "give `target.redis.url`",
                    );
                }
            }
            Step::Replay(replay) => self.replay(replay, pos, ctx, set),
            Step::Parallel(children) => {
                if children.is_empty() {
                    self.push(
                        children.pos_or(pos),
                        "`parallel` has no steps",
                        "list the steps to run at the same time, or remove the block",
                    );
                }
                // Branches run at the same time: a mark set in one branch is not known to be
                // set when a sibling starts, only once the whole block is over.
                let before = set.clone();
                for child in children.iter() {
                    let mut branch = before.clone();
                    self.step(child, ctx, &mut branch);
                    set.extend(branch);
                }
            }
            Step::Repeat(rep) => {
                if rep.every.is_zero() {
                    self.push(
                        rep.every.pos_or(pos),
                        "`every` is zero",
                        "give the period between rounds, e.g. `every: 30s`",
                    );
                }
                match (&rep.duration, &rep.times) {
                    (None, None) => self.push(
                        pos,
                        "`repeat` needs `for` or `times`",
                        "add `for: 5m` (keep going that long) or `times: 3`",
                    ),
                    (Some(_), Some(t)) => self.push(
                        t.pos_or(pos),
                        "`repeat` has both `for` and `times`",
                        "keep one of them",
                    ),
                    (Some(d), None) if d.value < rep.every.value => self.push(
                        d.pos_or(pos),
                        format!(
                            "`for: {}` is shorter than `every: {}`, so the steps run once",
                            d.value, rep.every.value
                        ),
                        "make `for` a multiple of `every`, or drop the `repeat`",
                    ),
                    (None, Some(t)) if t.value == 0 => self.push(
                        t.pos_or(pos),
                        "`times` is zero",
                        "give the number of rounds, at least 1",
                    ),
                    _ => {}
                }
                if rep.steps.is_empty() {
                    self.push(
                        rep.steps.pos_or(pos),
                        "`repeat` has no steps",
                        "list the steps of one round under `steps:`",
                    );
                }
                self.steps(&rep.steps, Ctx { in_repeat: true }, set);
            }
        }
    }

    fn send(&mut self, send: &Send, pos: Pos) {
        self.sends += 1;
        let count = &send.count;
        if count.value < 0 {
            self.push(
                count.pos_or(pos),
                format!("`count` is negative ({})", count.value),
                "give the number of deliveries to send, at least 1",
            );
        } else if count.value == 0 {
            self.push(
                count.pos_or(pos),
                "`count` is 0, so the step sends nothing",
                "give the number of deliveries to send, at least 1, or remove the step",
            );
        }
        if send.concurrency.value == 0 {
            self.push(
                send.concurrency.pos_or(pos),
                "`concurrency` is 0, so nothing could be sent",
                "allow at least 1 request in flight",
            );
        }
        if send.timeout.is_zero() {
            self.push(
                send.timeout.pos_or(pos),
                "request `timeout` is zero",
                "give each request time to answer, e.g. `timeout: 5s`",
            );
        }
        if send.poison.value > 0 && send.same {
            self.push(
                send.poison.pos_or(pos),
                "`same: true` and `poison` cannot be combined",
                "`same` sends one delivery id; send the poison in a step of its own",
            );
        }
        if let Some(dup) = &send.duplicates {
            if send.same {
                self.push(
                    pos,
                    "`same: true` and `duplicates` cannot be combined",
                    "`same` already sends every request with one id; drop one of them",
                );
            }
            if dup.copies.value < 2 {
                self.push(
                    dup.copies.pos_or(pos),
                    format!("`copies: {}` sends no duplicate", dup.copies.value),
                    "`copies` counts the original too: use 2 or more",
                );
            }
            let f = dup.fraction.value;
            if !(0.0..=1.0).contains(&f) {
                self.push(
                    dup.fraction.pos_or(pos),
                    format!("`fraction: {f}` is not between 0 and 1"),
                    "give the share of deliveries that get copies, e.g. `fraction: 0.5`",
                );
            }
        }
        if let Some(events) = &send.events {
            for name in events.keys() {
                if !KNOWN_EVENTS.contains(&name.as_str()) {
                    self.push(
                        events.pos_or(pos),
                        format!("unknown event type `{name}`"),
                        format!("use one of: {}", KNOWN_EVENTS.join(", ")),
                    );
                }
            }
            if events.values().all(|w| *w == 0) {
                self.push(
                    events.pos_or(pos),
                    "the event mix has no weight above 0",
                    "give at least one event type a weight, e.g. `{issues: 1}`",
                );
            }
        }
    }

    fn wait(&mut self, wait: &Wait, pos: Pos) {
        match (wait.drained, &wait.duration) {
            (false, None) => self.push(
                pos,
                "`wait` says neither what nor how long to wait for",
                "write `wait: {drained: true, timeout: 2m}` or `wait: {for: 30s}`",
            ),
            (true, Some(d)) => self.push(
                d.pos_or(pos),
                "`wait` has both `drained` and `for`",
                "keep one: `drained: true` waits for the queue, `for` waits a fixed time",
            ),
            (false, Some(d)) if d.is_zero() => self.push(
                d.pos_or(pos),
                "`wait` for zero time",
                "remove the step or give a duration like `for: 5s`",
            ),
            _ => {}
        }
        if let Some(t) = &wait.timeout {
            if !wait.drained {
                self.push(
                    t.pos_or(pos),
                    "`timeout` only applies to `drained: true`",
                    "remove `timeout`, or wait with `drained: true`",
                );
            } else if t.is_zero() {
                self.push(
                    t.pos_or(pos),
                    "`timeout` is zero",
                    "give the drain time to happen, e.g. `timeout: 2m`",
                );
            }
        }
    }

    fn mark(&mut self, name: &At<String>, ctx: Ctx, set: &mut BTreeSet<String>) {
        if name.trim().is_empty() {
            self.push(
                name.pos,
                "empty mark name",
                "name the instant, e.g. `mark: outage`",
            );
            return;
        }
        if ctx.in_repeat {
            self.push(
                name.pos,
                format!(
                    "mark `{}` inside `repeat` would be set once per round",
                    name.value
                ),
                "move the mark before or after the `repeat` block",
            );
        }
        if let Some(first) = self.marks.get(&name.value) {
            let first = *first;
            self.push(
                name.pos,
                format!("mark `{}` is set twice", name.value),
                format!(
                    "it was first set at line {}; give each mark its own name",
                    first.line
                ),
            );
        } else {
            self.marks.insert(name.value.clone(), name.pos);
        }
        set.insert(name.value.clone());
    }

    fn fault(&mut self, fault: &super::model::Fault, pos: Pos) {
        let t = &self.scenario.target;
        let Some(kind) = fault.kind() else {
            let named = [
                fault.redis.is_some(),
                fault.worker.is_some(),
                fault.server.is_some(),
                fault.store.is_some(),
                fault.network.is_some(),
            ]
            .iter()
            .filter(|b| **b)
            .count();
            let both_store = fault
                .store
                .is_some_and(|st| st.terminate_connections && !st.lock.is_zero());
            self.push(
                pos,
                if named == 0 {
                    "the fault names nothing to break"
                } else if both_store {
                    "a store fault names both `lock` and `terminate_connections`"
                } else {
                    "the fault names more than one thing to break"
                },
                "write one fault per step: `fault: {redis: stop}`, `fault: {worker: kill}`, `fault: {server: restart}`, `fault: {store: {lock: 25s}}` or `fault: {network: {link: server-redis, partition: true, for: 5s}}`",
            );
            return;
        };
        if fault.which.is_some()
            && !matches!(kind, FaultKind::Worker(..) | FaultKind::WorkerCrashAt(..))
        {
            self.push(
                pos,
                "`which` only applies to worker faults",
                "remove `which`",
            );
        }
        self.trigger(fault, kind, pos);
        match kind {
            FaultKind::Network(n) => {
                let npos = fault.network.as_ref().map_or(pos, |n| n.pos_or(pos));
                self.network(&n, npos);
            }
            FaultKind::WorkerCrashAt(c, _) | FaultKind::ServerCrashAt(c) => {
                let worker = matches!(kind, FaultKind::WorkerCrashAt(..));
                if c.crash_point().in_worker() != worker {
                    let (is, other) = if c.crash_point().in_worker() {
                        ("a worker", "worker")
                    } else {
                        ("a server", "server")
                    };
                    self.push(
                        pos,
                        format!("`{}` is {is} crash point", c.crash_point()),
                        format!("write it under `{other}:`; worker points: after-lock, after-commit, after-ack; server points: after-enqueue, spool-append, spool-drain"),
                    );
                }
                if c.nth == 0 {
                    self.push(
                        pos,
                        "`nth: 0` never fires",
                        "hits count from 1: `nth: 1` is the first",
                    );
                }
                if matches!(kind, FaultKind::WorkerCrashAt(_, Which::All)) {
                    self.push(
                        pos,
                        "`crash_at` with `which: all`",
                        "a crash point is armed in one worker: use an index or `random`",
                    );
                }
                if let (FaultKind::WorkerCrashAt(_, Which::Index(i)), w) = (kind, t.workers.value) {
                    if i >= w {
                        self.push(
                            pos,
                            format!(
                                "worker index {i} is out of range: the target has {w} worker(s)"
                            ),
                            "indexes count from 0",
                        );
                    }
                }
                if worker && t.workers.value == 0 {
                    self.push(
                        pos,
                        "a worker crash point, but the target has no workers",
                        "set `workers:` to 1 or more",
                    );
                }
                if t.attach.is_some() {
                    self.push(
                        pos,
                        "`crash_at` in attach mode: a crash point is armed in a `failpoints` build the harness started (it checks the build and watches the process abort); an attached deployment's build and supervisor are its own",
                        "use managed mode with `--gitspy-bin` a `cargo build -p gitspy --features failpoints` binary, or `fault: {worker: kill}` in attach mode",
                    );
                }
                if fault.when.is_some() {
                    self.push(
                        pos,
                        "`when` with `crash_at`",
                        "a crash point waits for its own hit: remove `when` (keep `within` as the deadline)",
                    );
                }
                if worker {
                    self.worker_kills = true;
                }
            }
            FaultKind::Store(d) => {
                if t.attach.is_some() {
                    self.push(
                        pos,
                        "a store fault in attach mode",
                        "the harness locks the SQLite file of a system it started: use managed mode",
                    );
                }
                if d.is_zero() {
                    self.push(
                        pos,
                        "`store: {lock: 0s}` locks nothing",
                        "give a duration such as `lock: 25s` (or, on PostgreSQL, `terminate_connections: true`)",
                    );
                }
            }
            FaultKind::StoreTerminate => {
                if t.attach.is_some() {
                    self.push(
                        pos,
                        "a store fault in attach mode",
                        "the harness terminates connections to a PostgreSQL it started: use managed mode",
                    );
                }
            }
            FaultKind::Redis(action) => {
                let backend = t.redis.backend.value;
                if !backend.supports(action) {
                    let hint = "an external Redis is observed only; use `backend: docker` or `process` to break it".to_owned();
                    self.push(
                        pos,
                        format!(
                            "the `{}` Redis backend cannot `{}`",
                            backend.as_str(),
                            action.as_str()
                        ),
                        hint,
                    );
                }
            }
            FaultKind::Worker(action, which) => {
                let workers = t.workers.value;
                if workers == 0 {
                    self.push(
                        pos,
                        format!(
                            "worker `{}`, but the target has no workers",
                            action.as_str()
                        ),
                        "set `workers:` under `target` to 1 or more",
                    );
                } else if let Which::Index(i) = which {
                    if i >= workers {
                        self.push(
                            pos,
                            format!(
                                "worker index {i} is out of range: the target has {workers} worker(s)"
                            ),
                            format!("indexes count from 0: use 0 to {}", workers - 1),
                        );
                    }
                }
                if let Some(attach) = &t.attach {
                    if attach.worker_process.is_none() {
                        self.push(
                            pos,
                            "a worker fault in attach mode needs `worker_process`",
                            "add `worker_process: {executable: gitspy, env_marker: NAME=value}` under `target.attach`",
                        );
                    }
                }
                if action == ProcessAction::Kill {
                    self.worker_kills = true;
                }
            }
            FaultKind::Server(action) => {
                if matches!(action, ProcessAction::Freeze | ProcessAction::Thaw) {
                    self.push(
                        pos,
                        format!("the server cannot `{}`", action.as_str()),
                        "freeze and thaw are worker faults: `fault: {worker: freeze}`",
                    );
                }
                if let Some(attach) = &t.attach {
                    if attach.server_process.is_none() {
                        self.push(
                            pos,
                            "a server fault in attach mode needs `server_process`",
                            "add `server_process: {executable: gitspy, env_marker: NAME=value}` under `target.attach`",
                        );
                    }
                }
            }
        }
    }

    /// A network fault: managed mode, one toxic, fields that belong to it, a link that exists.
    fn network(&mut self, n: &super::model::NetworkFault, pos: Pos) {
        use super::model::{Direction, LinkSel};
        let t = &self.scenario.target;
        if t.attach.is_some() {
            self.push(
                pos,
                "a network fault in attach mode",
                "the harness proxies the links of a system it started: use managed mode",
            );
        }
        match n.toxics() {
            1 => {}
            0 => self.push(
                pos,
                "the network fault names no toxic",
                "name one of `partition: true`, `reset: true`, `latency: 200ms`, `bandwidth: 64KiB/s`, `slice: 8B`, `limit_data: 100B`, `slow_close: 2s` or `heal: true`",
            ),
            _ => self.push(
                pos,
                "the network fault names more than one toxic",
                "one toxic per step; several steps (in a `parallel` block, or one after another) add up on a link",
            ),
        }
        if n.jitter.is_some() && n.latency.is_none() {
            self.push(
                pos,
                "`jitter` without `latency`",
                "add `latency: 200ms` or remove `jitter`",
            );
        }
        if n.jitter
            .zip(n.latency)
            .is_some_and(|(j, l)| j.get() > l.get())
        {
            self.push(
                pos,
                "`jitter` is larger than `latency`",
                "the delay would be cut at zero: keep jitter at most the latency",
            );
        }
        if n.slice_delay.is_some() && n.slice.is_none() {
            self.push(
                pos,
                "`slice_delay` without `slice`",
                "add `slice: 8B` or remove `slice_delay`",
            );
        }
        if n.slice.is_some_and(|b| b.0 == 0) || n.bandwidth.is_some_and(|b| b.0 == 0) {
            self.push(
                pos,
                "a slice or bandwidth of 0 bytes",
                "give at least 1 byte",
            );
        }
        if (n.reset || n.heal) && n.direction != Direction::Both {
            self.push(
                pos,
                "`direction` with `reset` or `heal`",
                "reset and heal act on whole connections: remove `direction`",
            );
        }
        if n.heal && n.duration.is_some() {
            self.push(pos, "`for` with `heal`", "a heal is instant: remove `for`");
        }
        if n.duration.is_some_and(|d| d.is_zero()) {
            self.push(
                pos,
                "`for: 0s` injects nothing",
                "give a duration such as `for: 5s`",
            );
        }
        if n.via == super::model::Via::Docker {
            if !n.partition || n.link != LinkSel::Redis || n.direction != Direction::Both {
                self.push(
                    pos,
                    "`via: docker` partitions the Redis container from everyone",
                    "write `network: {link: redis, partition: true, via: docker}`",
                );
            }
            if t.redis.backend.value != RedisBackend::Docker {
                self.push(
                    pos,
                    format!("`via: docker` with the `{}` Redis backend", t.redis.backend.as_str()),
                    "set `redis: {backend: docker}` under `target`, or drop `via` to partition through the proxy",
                );
            }
        }
        let workers = t.workers.value;
        match n.link {
            LinkSel::WorkerRedis(i) if i >= workers => self.push(
                pos,
                format!("link `worker-{i}-redis`: the target has {workers} worker(s)"),
                if workers == 0 {
                    "set `workers:` under `target` to 1 or more".to_string()
                } else {
                    format!("indexes count from 0: use 0 to {}", workers - 1)
                },
            ),
            LinkSel::WorkerStore(i) if i >= workers => self.push(
                pos,
                format!("link `worker-{i}-store`: the target has {workers} worker(s)"),
                if workers == 0 {
                    "set `workers:` under `target` to 1 or more".to_string()
                } else {
                    format!("indexes count from 0: use 0 to {}", workers - 1)
                },
            ),
            LinkSel::WorkersRedis | LinkSel::WorkersStore if workers == 0 => self.push(
                pos,
                format!("link `{}`, but the target has no workers", n.link),
                "set `workers:` under `target` to 1 or more",
            ),
            _ => {}
        }
    }

    /// `target.env`: managed mode only, well-formed names, none the harness sets itself.
    fn target_env(&mut self) {
        let t = &self.scenario.target;
        let env = &t.env;
        let pos = env.pos_or(t.pos);
        if env.is_empty() {
            return;
        }
        if t.attach.is_some() {
            self.push(
                pos,
                "`target.env` in attach mode",
                "the harness starts no GitSpy process in attach mode: configure the deployment instead",
            );
        }
        for key in env.keys() {
            if let Err(why) = crate::run::system::check_target_env_key(key) {
                self.push(pos, format!("`target.env.{key}`: {why}"), "remove it");
            }
        }
    }

    /// `when` names exactly one condition that fits the fault; `within` only with `when`.
    fn trigger(&mut self, fault: &super::model::Fault, kind: FaultKind, pos: Pos) {
        let within_pos = fault.within.as_ref().map_or(pos, |w| w.pos_or(pos));
        let crash_at = matches!(
            kind,
            FaultKind::WorkerCrashAt(..) | FaultKind::ServerCrashAt(_)
        );
        let Some(when) = &fault.when else {
            if fault.within.is_some() && !crash_at {
                self.push(
                    within_pos,
                    "`within` without `when`",
                    "add a condition such as `when: {holding: 3}`, or remove `within`",
                );
            }
            return;
        };
        if when.count() != 1 {
            self.push(
                pos,
                "`when` must name exactly one condition",
                "write one of `when: {holding: N}`, `{backlog: N}`, `{spooled: N}`, `{in_flight_requests: N}`",
            );
        }
        if when.holding.is_some() {
            match kind {
                FaultKind::Worker(_, Which::All) => self.push(
                    pos,
                    "`when: {holding: N}` with `which: all`",
                    "a holding condition watches one worker: use `which: random` or an index",
                ),
                // Attach mode too: the watched worker's consumer is the `GITSPY_CONSUMER` it was
                // started with (read from its environment when the fault step runs).
                FaultKind::Worker(..) => {}
                FaultKind::Network(n) if crate::fault::network::single_worker(&n).is_some() => {}
                _ => self.push(
                    pos,
                    "`when: {holding: N}` only applies to worker faults",
                    "use `backlog`, `spooled` or `in_flight_requests` for Redis and server faults",
                ),
            }
        }
        if fault.within.as_ref().is_some_and(|w| w.is_zero()) {
            self.push(
                within_pos,
                "`within: 0s` gives the condition no time to hold",
                "give a deadline such as `within: 20s`",
            );
        }
    }

    fn replay(&mut self, replay: &Replay, pos: Pos, ctx: Ctx, set: &BTreeSet<String>) {
        self.replay_count += 1;
        if ctx.in_repeat {
            self.push(
                pos,
                "`replay` inside `repeat` would run once per round under one name",
                "move the replay after the `repeat` block",
            );
        }
        let name = replay.name_or_default(self.replay_count);
        let name_pos = replay.name.as_ref().map_or(pos, |n| n.pos);
        for bound in [&replay.from, &replay.to].into_iter().flatten() {
            if !set.contains(&bound.value) {
                let (message, hint) = if self.all_marks.contains(&bound.value) {
                    (
                        format!("mark `{}` is not set yet when this replay runs", bound.value),
                        "move the `mark` step before the replay (a mark in a parallel branch counts only after the block)",
                    )
                } else {
                    (
                        format!("mark `{}` is used but never set", bound.value),
                        "add a `- mark: NAME` step before this replay, or fix the spelling",
                    )
                };
                self.push(bound.pos_or(pos), message, hint);
            }
        }
        if let (Some(from), Some(to)) = (&replay.from, &replay.to) {
            if from.value == to.value {
                self.push(
                    to.pos_or(pos),
                    format!("the replay window from `{}` to itself is empty", from.value),
                    "use two different marks",
                );
            }
        }
        if replay.verify {
            if let Some(from) = &replay.from {
                self.push(
                    from.pos_or(pos),
                    "`verify` needs a window that starts at the beginning of the log",
                    "remove `from` (a partial window cannot be compared with the whole store) or `verify`",
                );
            }
        }
        if let Some(prev) = &replay.state_from {
            match self.replays.get(&prev.value) {
                None => self.push(
                    prev.pos_or(pos),
                    format!("`state_from: {}` names no earlier replay", prev.value),
                    "name a replay step that runs before this one (`name:` on that step)",
                ),
                Some(info) if info.dry_run => self.push(
                    prev.pos_or(pos),
                    format!(
                        "`state_from: {}` names a dry run, which writes no state",
                        prev.value
                    ),
                    "remove `dry_run` from that replay, or start from another one",
                ),
                Some(_) => {}
            }
        }
        if let Some(first) = self.replays.get(&name) {
            let line = first.pos.line;
            self.push(
                name_pos,
                format!("replay name `{name}` is used twice"),
                format!("it was first used at line {line}; give each replay its own name"),
            );
        } else {
            self.replays.insert(
                name,
                ReplayInfo {
                    pos: name_pos,
                    dry_run: replay.dry_run,
                },
            );
        }
    }

    fn checks(&mut self) {
        let mut seen: BTreeMap<&'static str, Pos> = BTreeMap::new();
        let mut promql_names: BTreeMap<String, Pos> = BTreeMap::new();
        let scenario = self.scenario;
        for check in scenario.checks.iter() {
            let pos = check.pos;
            let key = check.key();
            // Several `replay_identical` checks compare different groups of replays.
            let repeatable = matches!(
                check.value,
                Check::ReplayIdentical(_) | Check::Promql(_) | Check::Alert(_)
            );
            if let (Some(first), false) = (seen.get(key), repeatable) {
                let line = first.line;
                self.push(
                    pos,
                    format!("check `{key}` is listed twice"),
                    format!("it is first listed at line {line}; merge the two"),
                );
            } else {
                seen.insert(key, pos);
            }
            let judges_deliveries = matches!(
                check.value,
                Check::Deliveries(_)
                    | Check::ProcessedMatchesStore
                    | Check::IngressMatchesLedger
                    | Check::Failed(_)
                    | Check::Retries(_)
                    | Check::JobDurationP95(_)
                    | Check::BoardMatchesModel
                    | Check::DuplicateAnswers
                    | Check::RejectsWithinRedisTimeout(_)
            );
            if judges_deliveries && self.sends == 0 {
                self.push(
                    pos,
                    format!("check `{key}` references nothing: the scenario sends no webhook"),
                    "add a `send` step, or remove the check",
                );
            }
            match &check.value {
                Check::JobDurationP95(m) if m.max.is_zero() => self.push(
                    m.max.pos_or(pos),
                    "`job_duration_p95` with `max: 0s` can never pass",
                    "give a threshold such as `max: 500ms`",
                ),
                Check::ReplayIdentical(names) => self.replay_identical(names, pos),
                Check::Promql(q) => self.promql(q, pos, &mut promql_names),
                Check::Alert(a) => self.alert(a, pos),
                Check::ReplayOrderIndependent
                    if !self.scenario.replays().iter().any(|(_, r)| r.shuffle.is_some()) =>
                {
                    self.push(
                        pos,
                        "check `replay_order_independent` references nothing: no replay step has `shuffle`",
                        "add `shuffle: { duplicates: 20 }` to a replay step, or remove the check",
                    )
                }
                Check::RejectsWithinRedisTimeout(_)
                    if self.scenario.target.value.on_redis_down == OnRedisDown::Spool =>
                {
                    self.push(
                        pos,
                        "check `rejects_within_redis_timeout` needs `on_redis_down: reject`: in spool mode the server answers 202",
                        "remove the check, or set `target.on_redis_down: reject`",
                    )
                }
                Check::ReplayVerify if !self.scenario_has_verify() => self.push(
                    pos,
                    "check `replay_verify` references nothing: no replay step has `verify: true`",
                    "add `verify: true` to a replay over the whole log, or remove the check",
                ),
                _ => {}
            }
        }
    }

    fn replay_identical(&mut self, names: &[At<String>], pos: Pos) {
        if self.replays.is_empty() {
            self.push(
                pos,
                "check `replay_identical` references nothing: the scenario has no replay step",
                "add the replay steps to compare, or remove the check",
            );
            return;
        }
        if names.len() < 2 {
            self.push(
                pos,
                "`replay_identical` needs at least two replays to compare",
                "list two or more replay names, e.g. `replay_identical: [folded, union]`",
            );
        }
        for name in names {
            match self.replays.get(&name.value) {
                None => {
                    let known: Vec<&str> = self.replays.keys().map(String::as_str).collect();
                    self.push(
                        name.pos_or(pos),
                        format!(
                            "`replay_identical` names `{}`, which is no replay",
                            name.value
                        ),
                        format!("the replays are: {}", known.join(", ")),
                    );
                }
                Some(info) if info.dry_run => self.push(
                    name.pos_or(pos),
                    format!(
                        "replay `{}` is a dry run and writes no board to compare",
                        name.value
                    ),
                    "remove `dry_run` from that replay, or compare other replays",
                ),
                Some(_) => {}
            }
        }
    }

    /// `observe.prometheus` itself: a URL to ask, or a managed one.
    fn prometheus(&mut self) {
        let Some(p) = &self.scenario.observe.prometheus else {
            return;
        };
        match (&p.value.url, p.value.managed) {
            (None, false) => self.push(
                p.pos,
                "`observe.prometheus` names no Prometheus",
                "give its base URL, e.g. `prometheus: { url: \"http://127.0.0.1:9090\" }`, or let the run start one: `prometheus: { managed: true }`",
            ),
            (Some(u), true) => self.push(
                u.pos_or(p.pos),
                "`observe.prometheus` has both `url` and `managed: true`",
                "keep `url` to ask a running Prometheus, or `managed: true` to start one",
            ),
            (Some(u), false)
                if !(u.value.starts_with("http://") || u.value.starts_with("https://")) =>
            {
                self.push(
                    u.pos_or(p.pos),
                    format!("`observe.prometheus.url` `{}` is no http(s) URL", u.value),
                    "e.g. `url: \"http://127.0.0.1:9090\"`",
                )
            }
            _ => {}
        }
        if !p.value.managed {
            if let Some(r) = p.value.rules.first() {
                self.push(
                    r.pos_or(p.pos),
                    "`observe.prometheus.rules` without `managed: true`",
                    "a running Prometheus loads its own rule files; `rules` are for a managed one",
                );
            }
            if let Some(i) = &p.value.interval {
                self.push(
                    i.pos_or(p.pos),
                    "`observe.prometheus.interval` without `managed: true`",
                    "a running Prometheus has its own scrape interval; remove `interval`",
                );
            }
        }
        if let Some(i) = p.value.interval.as_ref().filter(|i| i.is_zero()) {
            self.push(
                i.pos_or(p.pos),
                "`observe.prometheus.interval` is zero",
                "e.g. `interval: 1s`",
            );
        }
    }

    fn alert(&mut self, a: &crate::scenario::model::AlertCheck, pos: Pos) {
        if self.scenario.observe.prometheus.is_none() {
            self.push(
                pos,
                "check `alert` needs a Prometheus to ask",
                "add `observe: { prometheus: { managed: true, rules: [alerts.yml] } }` or a `url`",
            );
        }
        if a.name.trim().is_empty() {
            self.push(
                a.name.pos_or(pos),
                "`alert.name` is empty",
                "name the alert, e.g. `name: GitSpyRedisDown`",
            );
        }
        match (&a.fires_during, a.never) {
            (None, false) => self.push(
                pos,
                "check `alert` says neither when the alert must fire nor that it must not",
                "add `fires_during: <fault kind>` (e.g. `redis`) or `never: true`",
            ),
            (Some(d), true) => self.push(
                d.pos_or(pos),
                "check `alert` has both `fires_during` and `never: true`",
                "keep one",
            ),
            (Some(d), false) if !self.has_fault_steps() => self.push(
                d.pos_or(pos),
                format!(
                    "check `alert` must fire during fault `{}`, but the scenario has no fault step",
                    d.value
                ),
                "add the fault, e.g. `- fault: { redis: stop }`",
            ),
            _ => {}
        }
    }

    fn has_fault_steps(&self) -> bool {
        fn any(steps: &[At<Step>]) -> bool {
            steps.iter().any(|s| match &s.value {
                Step::Fault(_) => true,
                Step::Parallel(c) => any(c),
                Step::Repeat(r) => any(&r.steps),
                _ => false,
            })
        }
        any(&self.scenario.steps)
    }

    fn promql(
        &mut self,
        q: &crate::scenario::model::PromqlCheck,
        pos: Pos,
        names: &mut BTreeMap<String, Pos>,
    ) {
        if self.scenario.observe.prometheus.is_none() {
            self.push(
                pos,
                "check `promql` needs a Prometheus to ask",
                "add `observe: { prometheus: { url: \"http://127.0.0.1:9090\" } }`",
            );
        }
        if q.expr.trim().is_empty() {
            self.push(
                q.expr.pos_or(pos),
                "`promql.expr` is empty",
                "give a PromQL expression, e.g. `expr: 'sum(up)'`",
            );
        }
        if q.min.is_none() && q.max.is_none() && q.equals.is_none() {
            self.push(
                pos,
                "check `promql` has no bound, so it could never fail",
                "add `max`, `min` or `equals`, e.g. `max: 500`",
            );
        }
        if q.equals.is_some() && (q.min.is_some() || q.max.is_some()) {
            self.push(
                pos,
                "check `promql` has `equals` together with `min`/`max`",
                "use either `equals` or the range `min`/`max`",
            );
        }
        for v in [q.min, q.max, q.equals].into_iter().flatten() {
            if !v.is_finite() {
                self.push(
                    pos,
                    format!("check `promql` has the bound {v}, which is no finite number"),
                    "give a finite number",
                );
            }
        }
        if let (Some(lo), Some(hi)) = (q.min, q.max) {
            if lo > hi {
                self.push(
                    pos,
                    format!("check `promql` has `min: {lo}` above `max: {hi}`: it can never pass"),
                    "swap them",
                );
            }
        }
        if let (Some(at), Some(_)) = (&q.at, &q.over) {
            self.push(
                at.pos_or(pos),
                "check `promql` has both `at` and `over`",
                "`at: end` is one instant query; `over: run` checks every sample of the run: keep one",
            );
        }
        if let Some(step) = &q.step {
            if q.over.is_none() {
                self.push(
                    step.pos_or(pos),
                    "`promql.step` without `over: run`",
                    "`step` is the resolution of `over: run`; add it or remove `step`",
                );
            } else if step.is_zero() {
                self.push(step.pos_or(pos), "`promql.step` is zero", "e.g. `step: 1s`");
            }
        }
        if let Some(name) = &q.name {
            let npos = name.pos_or(pos);
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                self.push(
                    npos,
                    format!("invalid `promql` name `{}`", name.value),
                    "use letters, digits, `_` and `-` (it names the check in the report)",
                );
            } else if let Some(first) = names.get(&name.value) {
                let line = first.line;
                self.push(
                    npos,
                    format!("two `promql` checks are named `{}`", name.value),
                    format!("the first is at line {line}; give each its own name"),
                );
            } else {
                names.insert(name.value.clone(), npos);
            }
        }
    }

    fn scenario_has_verify(&self) -> bool {
        fn any(steps: &[At<Step>]) -> bool {
            steps.iter().any(|s| match &s.value {
                Step::Replay(r) => r.verify,
                Step::Parallel(c) => any(c),
                Step::Repeat(r) => any(&r.steps),
                _ => false,
            })
        }
        any(&self.scenario.steps)
    }
}

impl<T> At<T> {
    /// This value's position, or `fallback` when it has none (a default filled in by serde).
    fn pos_or(&self, fallback: Pos) -> Pos {
        if self.pos == Pos::default() {
            fallback
        } else {
            self.pos
        }
    }
}
