//! Shrinking a failing scenario: greedy reduction, one smaller candidate at a time.
//!
//! [`candidates`] lists every one-edit-smaller variant of a scenario, biggest cut first: a run of
//! top-level steps dropped (halves, then quarters, …), a step dropped (at any depth), a `parallel`/`repeat` block unwrapped, a send simplified (count cut to
//! 1, halved or less one; duplicates, rate, event mix dropped; concurrency 1), a trigger dropped,
//! durations (sleeps, locks, network toxics, drain deadlines down to 30 s) halved, a repeat cut to one round, a worker fewer.
//! Candidates that do not validate are skipped, and so are those that would fail for any build
//! ([`sound`]: a `dead_requeue: {min: 1}` left without the store lock that dead-letters). [`shrink`] tries them in order and keeps the first that still fails (asked of the
//! caller's test, which for real runs means "fails k of m tries"), then starts over from it, until
//! no candidate fails or the caller's budget says stop. The result is 1-minimal for these edits.

use crate::scenario::validate::validate;
use crate::scenario::{At, Dur, Scenario, Step, Which};

/// One candidate tried during shrinking.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Attempt {
    /// The edit, e.g. `drop step 3`, `steps[2].send: count 40 → 20`.
    pub edit: String,
    /// Steps of the candidate (nested steps counted).
    pub steps: usize,
    /// Whether it still failed (and so was kept).
    pub failed: bool,
}

/// What [`shrink`] ends with.
#[derive(Debug, Clone)]
pub struct Shrunk {
    /// The smallest failing scenario found.
    pub scenario: Scenario,
    /// Every candidate tried, in order.
    pub attempts: Vec<Attempt>,
    /// Whether the reduction ran to its end (no smaller candidate fails); `false` when the
    /// budget stopped it first.
    pub complete: bool,
}

/// The answer of the caller's test for one candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The candidate still fails: keep it.
    Fails,
    /// It does not (or not often enough): drop it.
    Passes,
    /// Stop shrinking (budget spent, interrupted); the candidate is not kept.
    Stop,
}

/// Steps of a scenario, nested ones included (a `parallel` of two sends is three steps).
pub fn size(s: &Scenario) -> usize {
    fn count(steps: &[At<Step>]) -> usize {
        steps
            .iter()
            .map(|st| {
                1 + match &st.value {
                    Step::Parallel(inner) => count(inner),
                    Step::Repeat(r) => count(&r.steps),
                    _ => 0,
                }
            })
            .sum()
    }
    count(&s.steps)
}

/// Reduce `start` (which fails) while `test` says the candidate still fails.
pub fn shrink(start: &Scenario, mut test: impl FnMut(&Scenario) -> Verdict) -> Shrunk {
    let mut current = start.clone();
    let mut attempts = Vec::new();
    'outer: loop {
        for (edit, cand) in candidates(&current) {
            let verdict = test(&cand);
            attempts.push(Attempt {
                edit,
                steps: size(&cand),
                failed: verdict == Verdict::Fails,
            });
            match verdict {
                Verdict::Fails => {
                    current = cand;
                    continue 'outer;
                }
                Verdict::Passes => {}
                Verdict::Stop => {
                    return Shrunk {
                        scenario: current,
                        attempts,
                        complete: false,
                    }
                }
            }
        }
        return Shrunk {
            scenario: current,
            attempts,
            complete: true,
        };
    }
}

/// Where a list of steps sits: the top level, or inside the block at these indexes.
type ListPath = Vec<usize>;

fn list_mut<'a>(steps: &'a mut Vec<At<Step>>, path: &[usize]) -> Option<&'a mut Vec<At<Step>>> {
    let Some((first, rest)) = path.split_first() else {
        return Some(steps);
    };
    match &mut steps.get_mut(*first)?.value {
        Step::Parallel(inner) => list_mut(&mut inner.value, rest),
        Step::Repeat(r) => list_mut(&mut r.steps.value, rest),
        _ => None,
    }
}

fn lists(steps: &[At<Step>], here: &mut ListPath, out: &mut Vec<(ListPath, usize)>) {
    out.push((here.clone(), steps.len()));
    for (i, st) in steps.iter().enumerate() {
        let inner = match &st.value {
            Step::Parallel(inner) => &inner.value,
            Step::Repeat(r) => &r.steps.value,
            _ => continue,
        };
        here.push(i);
        lists(inner, here, out);
        here.pop();
    }
}

fn label(path: &[usize], i: usize) -> String {
    let mut s = String::from("steps");
    for p in path {
        s.push_str(&format!("[{p}]"));
    }
    format!("{s}[{i}]")
}

fn halve(d: Dur, floor: Dur) -> Option<Dur> {
    let h = Dur(d.get() / 2);
    (h >= floor && h < d).then_some(h)
}

/// Every one-edit-smaller valid variant of `s`, biggest cut first.
pub fn candidates(s: &Scenario) -> Vec<(String, Scenario)> {
    let mut out: Vec<(String, Scenario)> = Vec::new();
    let mut all = Vec::new();
    lists(&s.steps, &mut Vec::new(), &mut all);
    let mut push = |edit: String, f: &dyn Fn(&mut Scenario) -> bool| {
        let mut c = s.clone();
        if f(&mut c) && c != *s && validate(&c).is_empty() && sound(&c) {
            out.push((edit, c));
        }
    };
    // 0. Drop a run of top-level steps, halves first (as delta debugging does): one failing
    // run can cut a whole episode or more, where step-by-step drops would need one each.
    let top = s.steps.len();
    let mut chunk = top / 2;
    while chunk >= 2 {
        for start in (0..top).step_by(chunk) {
            let end = (start + chunk).min(top);
            if end - start < 2 {
                continue;
            }
            push(format!("drop steps[{start}..{end}]"), &|c| {
                c.steps.value.drain(start..end);
                true
            });
        }
        chunk /= 2;
    }
    // 1. Drop a step (a whole block first: top-level lists come first).
    for (path, len) in &all {
        for i in 0..*len {
            push(format!("drop {}", label(path, i)), &|c| {
                list_mut(&mut c.steps.value, path).is_some_and(|l| {
                    l.remove(i);
                    true
                })
            });
        }
    }
    // 2. Unwrap a block: its steps run in its place, once, in order.
    for (path, len) in &all {
        for i in 0..*len {
            push(format!("unwrap {}", label(path, i)), &|c| {
                let Some(l) = list_mut(&mut c.steps.value, path) else {
                    return false;
                };
                let inner = match &l[i].value {
                    Step::Parallel(inner) => inner.value.clone(),
                    Step::Repeat(r) => r.steps.value.clone(),
                    _ => return false,
                };
                l.splice(i..=i, inner);
                true
            });
        }
    }
    // 3. Simplify one step.
    for (path, len) in &all {
        for i in 0..*len {
            let at = label(path, i);
            for (what, edit) in step_edits() {
                push(format!("{at}: {what}"), &|c| {
                    list_mut(&mut c.steps.value, path)
                        .and_then(|l| l.get_mut(i))
                        .is_some_and(|st| edit(&mut st.value))
                });
            }
        }
    }
    // 4. The target: one worker fewer.
    push("one worker fewer".into(), &|c| {
        let w = &mut c.target.value.workers.value;
        if *w > 1 {
            *w -= 1;
            true
        } else {
            false
        }
    });
    out
}

/// Whether a candidate still means what the grammar meant: every `dead_requeue: {min: N}`
/// (N > 0) follows, in the same list, a store lock of at least 2 s, then a send, then a drained
/// wait, and the target keeps the shortened busy timeout. Without them a correct GitSpy
/// dead-letters nothing and the step fails for every build — a candidate that "still fails" for
/// the wrong reason, which shrinking must not slide into.
pub fn sound(s: &Scenario) -> bool {
    fn list(steps: &[At<Step>], env_ok: bool) -> bool {
        steps.iter().enumerate().all(|(i, st)| match &st.value {
            Step::DeadRequeue(d) if d.min > 0 => {
                if !env_ok {
                    return false;
                }
                let before = &steps[..i];
                let Some(lock) = before.iter().rposition(|b| {
                    matches!(&b.value, Step::Fault(f)
                        if f.store.is_some_and(|l| l.lock >= Dur::secs(2)))
                }) else {
                    return false;
                };
                let after_lock = &before[lock + 1..];
                let Some(wait) = after_lock
                    .iter()
                    .position(|b| matches!(&b.value, Step::Wait(w) if w.drained))
                else {
                    return false;
                };
                after_lock[..wait]
                    .iter()
                    .any(|b| matches!(&b.value, Step::Send(_)))
            }
            Step::Parallel(inner) => list(inner, env_ok),
            Step::Repeat(r) => list(&r.steps, env_ok),
            _ => true,
        })
    }
    let env = &s.target.value.env.value;
    let env_ok = crate::explore::generate::SHORT_BUSY_ENV
        .iter()
        .all(|(k, _)| env.contains_key(*k));
    list(&s.steps, env_ok)
}

type StepEdit = fn(&mut Step) -> bool;

fn step_edits() -> Vec<(&'static str, StepEdit)> {
    vec![
        ("count → 1", |st| match st {
            Step::Send(s) if s.count.value > 1 => {
                s.count.value = 1;
                true
            }
            _ => false,
        }),
        ("count halved", |st| match st {
            Step::Send(s) if s.count.value > 3 => {
                s.count.value /= 2;
                true
            }
            _ => false,
        }),
        ("count − 1", |st| match st {
            Step::Send(s) if s.count.value > 1 => {
                s.count.value -= 1;
                true
            }
            _ => false,
        }),
        ("no duplicates", |st| match st {
            Step::Send(s) if s.duplicates.is_some() || s.same => {
                s.duplicates = None;
                s.same = false;
                true
            }
            _ => false,
        }),
        ("no rate", |st| match st {
            Step::Send(s) if s.rate.is_some() => {
                s.rate = None;
                true
            }
            _ => false,
        }),
        ("no event mix", |st| match st {
            Step::Send(s) if s.events.is_some() => {
                s.events = None;
                true
            }
            _ => false,
        }),
        ("concurrency 1", |st| match st {
            Step::Send(s) if s.concurrency.value > 1 => {
                s.concurrency.value = 1;
                true
            }
            _ => false,
        }),
        ("no trigger", |st| match st {
            Step::Fault(f) if f.when.is_some() => {
                f.when = None;
                f.within = None;
                true
            }
            _ => false,
        }),
        ("worker 0", |st| match st {
            Step::Fault(f) if f.worker.is_some() && f.which != Some(Which::Index(0)) => {
                f.which = Some(Which::Index(0));
                true
            }
            _ => false,
        }),
        ("lock halved", |st| match st {
            Step::Fault(f) => match f.store.as_mut() {
                Some(store) => halve(store.lock, Dur::millis(100)).is_some_and(|h| {
                    store.lock = h;
                    true
                }),
                None => false,
            },
            _ => false,
        }),
        ("duration halved", |st| match st {
            Step::Sleep(d) => halve(d.value, Dur::millis(100)).is_some_and(|h| {
                d.value = h;
                true
            }),
            Step::Wait(w) => match w.duration.as_mut() {
                Some(d) => halve(d.value, Dur::millis(100)).is_some_and(|h| {
                    d.value = h;
                    true
                }),
                // A drained wait's deadline, not below 30 s: a correct GitSpy drains within
                // seconds once healed, and a liveness failure waits it out in every candidate.
                None => {
                    let t = w.timeout();
                    halve(t, Dur::secs(30)).is_some_and(|h| {
                        w.timeout = Some(At::new(h));
                        true
                    })
                }
            },
            Step::Repeat(r) => match r.duration.as_mut() {
                Some(d) if d.value > r.every.value => {
                    d.value = r.every.value;
                    true
                }
                _ => false,
            },
            _ => false,
        }),
        ("toxic shorter", |st| match st {
            Step::Fault(f) => match f.network.as_mut().and_then(|n| n.value.duration.as_mut()) {
                Some(d) => halve(*d, Dur::millis(250)).is_some_and(|h| {
                    *d = h;
                    true
                }),
                None => false,
            },
            _ => false,
        }),
        ("one round", |st| match st {
            Step::Repeat(r) if r.times.as_ref().is_some_and(|t| t.value > 1) => {
                r.times = Some(At::new(1));
                true
            }
            _ => false,
        }),
        ("no shuffle", |st| match st {
            Step::Replay(r) if r.shuffle.is_some() => {
                r.shuffle = None;
                true
            }
            _ => false,
        }),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::explore::generate::{generate, run_seed, Bounds};
    use crate::scenario::load::parse;
    use crate::scenario::{FaultKind, RedisAction};

    fn sends(steps: &[At<Step>], out: &mut Vec<i64>) {
        for st in steps {
            match &st.value {
                Step::Send(s) => out.push(s.count.value),
                Step::Parallel(inner) => sends(inner, out),
                Step::Repeat(r) => sends(&r.steps, out),
                _ => {}
            }
        }
    }

    /// A pure predicate standing in for "the run fails": some send has at least 7 deliveries
    /// and Redis is stopped somewhere. It tests the reduction algorithm, not GitSpy.
    fn pure_predicate_send_7_and_redis_stop(s: &Scenario) -> Verdict {
        let mut counts = Vec::new();
        sends(&s.steps, &mut counts);
        let stop = s.faults().contains(&FaultKind::Redis(RedisAction::Stop));
        if stop && counts.iter().any(|c| *c >= 7) {
            Verdict::Fails
        } else {
            Verdict::Passes
        }
    }

    const BIG: &str = r#"
name: big
seed: 4
target: { workers: 2 }
steps:
  - send: { count: 40, rate: 20/s, concurrency: 8, duplicates: { copies: 3 } }
  - parallel:
      - send: { count: 30, events: { issues: 2 } }
      - fault: { worker: kill, which: 1, when: { holding: 2 }, within: 10s }
  - fault: { worker: start, which: all }
  - repeat:
      every: 2s
      times: 3
      steps:
        - send: { count: 5 }
        - sleep: 1s
  - fault: { redis: stop }
  - send: { count: 25, expect: any }
  - sleep: 4s
  - fault: { redis: start }
  - redeliver: failed
  - wait: { drained: true, timeout: 60s }
checks:
  - deliveries: { lost: 0 }
"#;

    #[test]
    fn shrinking_against_a_pure_predicate_finds_the_minimal_scenario() {
        let start = parse(BIG).unwrap();
        assert!(validate(&start).is_empty());
        assert_eq!(pure_predicate_send_7_and_redis_stop(&start), Verdict::Fails);
        let out = shrink(&start, pure_predicate_send_7_and_redis_stop);
        assert!(out.complete);
        let s = &out.scenario;
        assert_eq!(pure_predicate_send_7_and_redis_stop(s), Verdict::Fails);
        assert!(validate(s).is_empty(), "{:?}", validate(s));
        // Exactly what the predicate needs: one stop and one send of 7, as plain as can be.
        assert_eq!(size(s), 2, "{s:#?}");
        let mut counts = Vec::new();
        sends(&s.steps, &mut counts);
        assert_eq!(counts, vec![7]);
        let Some(Step::Send(send)) = s
            .steps
            .iter()
            .map(|st| &st.value)
            .find(|st| matches!(st, Step::Send(_)))
        else {
            panic!("no send left");
        };
        assert!(send.rate.is_none() && send.duplicates.is_none() && send.events.is_none());
        assert_eq!(send.concurrency.value, 1);
        assert_eq!(s.target.value.workers.value, 1);
        // Every candidate tried validated, and the kept ones only ever got smaller or simpler.
        assert!(out.attempts.iter().any(|a| !a.failed));
        let kept: Vec<usize> = out
            .attempts
            .iter()
            .filter(|a| a.failed)
            .map(|a| a.steps)
            .collect();
        assert!(kept.windows(2).all(|w| w[1] <= w[0]), "{kept:?}");
        // Halves of the top level come first: the first cut already drops five steps.
        assert_eq!(out.attempts[0].edit, "drop steps[0..5]");
        assert_eq!(out.attempts[0].steps, size(&start) - 9);
    }

    #[test]
    fn shrinking_never_leaves_a_dead_requeue_without_the_lock_that_dead_letters() {
        // A predicate that only looks at the step that failed (as the `steps` check does): a
        // naive shrinker would cut the scenario down to the dead_requeue alone, which fails
        // for a correct build too.
        let start = parse(
            r#"
name: lock
target:
  workers: 2
  env: { GITSPY_STORE_BUSY_TIMEOUT: 300ms, GITSPY_MAX_ATTEMPTS: "2", GITSPY_RETRY_BASE: 200ms }
steps:
  - send: { count: 10 }
  - fault: { store: { lock: 4s } }
  - send: { count: 30, concurrency: 4 }
  - wait: { drained: true, timeout: 60s }
  - dead_requeue: { min: 1 }
  - wait: { drained: true, timeout: 60s }
checks:
  - deliveries: { lost: 0 }
"#,
        )
        .unwrap();
        assert!(sound(&start));
        let out = shrink(&start, |c| {
            let has = |st: &Step| matches!(st, Step::DeadRequeue(d) if d.min == 1);
            if c.steps.iter().any(|st| has(&st.value)) {
                Verdict::Fails
            } else {
                Verdict::Passes
            }
        });
        let kinds: Vec<&str> = out
            .scenario
            .steps
            .iter()
            .map(|st| match &st.value {
                Step::Fault(_) => "lock",
                Step::Send(_) => "send",
                Step::Wait(_) => "wait",
                Step::DeadRequeue(_) => "requeue",
                _ => "other",
            })
            .collect();
        assert_eq!(kinds, ["lock", "send", "wait", "requeue"]);
        assert!(sound(&out.scenario));
        let Step::Fault(f) = &out.scenario.steps[0].value else {
            panic!()
        };
        assert_eq!(
            f.store.map(|l| l.lock),
            Some(Dur::secs(2)),
            "halved once, not below 2 s"
        );
    }

    #[test]
    fn a_stop_from_the_test_keeps_the_last_failing_candidate() {
        let start = parse(BIG).unwrap();
        let mut n = 0;
        let out = shrink(&start, |c| {
            n += 1;
            if n > 3 {
                Verdict::Stop
            } else {
                pure_predicate_send_7_and_redis_stop(c)
            }
        });
        assert!(!out.complete);
        assert_eq!(out.attempts.len(), 4);
        assert_eq!(
            pure_predicate_send_7_and_redis_stop(&out.scenario),
            Verdict::Fails
        );
    }

    #[test]
    fn a_predicate_that_never_fails_leaves_the_scenario_as_it_was() {
        let start = generate(run_seed(5, 0), &Bounds::default());
        let out = shrink(&start, |_| Verdict::Passes);
        assert_eq!(out.scenario, start);
        assert_eq!(out.attempts.len(), candidates(&start).len());
    }

    #[test]
    fn every_candidate_of_generated_scenarios_validates_and_is_smaller_or_simpler() {
        for i in 0..50 {
            let s = generate(run_seed(9, i), &Bounds::default());
            for (edit, c) in candidates(&s) {
                assert!(validate(&c).is_empty(), "{edit}");
                assert!(size(&c) <= size(&s), "{edit}");
                assert_ne!(c, s, "{edit}");
            }
        }
    }
}
