//! The per-delivery verdict (SPEC §2.5), Jepsen-style: every delivery id the harness sent, or
//! that the system says it processed, falls in exactly one class, judged from what the sender
//! saw (its attempts' outcomes), what GitSpy's store says (`POST /deliveries/lookup`), what the
//! delivery listing holds (`GET /deliveries`), and the Redis probe (for notes).
//!
//! The inputs are defined here, decoupled from the sender and the HTTP client, so the rules can
//! be tested with hand-built cases. The verdict never reads metrics: metric increments can be
//! lost with a killed process, store rows cannot.
//!
//! Rules, first match wins:
//! 1. `duplicated`: `logged > 1` or `effects > 1` (stricter than Jepsen: a second row is a bug
//!    even if the board converged).
//! 2. `unexpected`: processed but never sent.
//! 3. processed (a log row, an effect, or listed): `recovered` if any attempt got a non-2xx or
//!    no answer (redelivered, or "503 but enqueued anyway"), else `ok`.
//! 4. `failed`: state `failed` (dead-lettered) and not processed.
//! 5. `lost`: got a 2xx at least once (200 duplicate included) and was never processed.
//! 6. `unacknowledged`: never a 2xx, never processed.
//!
//! A poison delivery (sent unfoldable on purpose, `send.poison`) must be dead-lettered: then it
//! is `poisoned`, not `failed`; applied anyway it is `unexpected`; never finished, `lost`.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::observe::RedisProbe;

/// What one send attempt of a delivery got back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "detail")]
pub enum SendOutcome {
    /// An HTTP answer. 2xx means acknowledged: 202 queued/spooled, 200 duplicate.
    Status(u16),
    /// No answer in time: indeterminate, the delivery may or may not have been enqueued.
    Timeout,
    /// Connection refused/reset or any other transport error: indeterminate as well.
    Transport(String),
}

impl SendOutcome {
    /// Whether this attempt was acknowledged (2xx).
    pub fn is_2xx(&self) -> bool {
        matches!(self, SendOutcome::Status(s) if (200..300).contains(s))
    }
}

/// A delivery's state as GitSpy reports it: the one enum of the shared contract.
pub use gitspy_contract::DeliveryState;

/// One entry of `POST /deliveries/lookup`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lookup {
    /// The delivery id.
    pub delivery: String,
    /// Its state.
    pub state: DeliveryState,
    /// Processing attempts counted by the workers.
    #[serde(default)]
    pub attempts: u32,
    /// Rows for this id in the store's event log.
    #[serde(default)]
    pub logged: u32,
    /// `card_history` rows for this id.
    #[serde(default)]
    pub effects: u32,
    /// When it was applied, as GitSpy reports it (kept verbatim for the report).
    #[serde(default)]
    pub applied_at: Option<serde_json::Value>,
    /// The consumer name of the worker that applied it (per-process accounting).
    #[serde(default)]
    pub applied_by: Option<String>,
}

/// A verdict class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    /// Acknowledged on every attempt, processed, logged once, at most one effect.
    Ok,
    /// Got a non-2xx or no answer at least once, processed exactly once in the end.
    Recovered,
    /// Got a 2xx but never processed.
    Lost,
    /// Logged or applied more than once.
    Duplicated,
    /// Processed but never sent.
    Unexpected,
    /// Dead-lettered.
    Failed,
    /// Never a 2xx and never processed.
    Unacknowledged,
    /// A poison delivery (unfoldable on purpose) that was dead-lettered, as it must be.
    Poisoned,
}

impl Class {
    /// Every class, in report order.
    pub const ALL: [Class; 8] = [
        Class::Ok,
        Class::Recovered,
        Class::Lost,
        Class::Duplicated,
        Class::Unexpected,
        Class::Failed,
        Class::Unacknowledged,
        Class::Poisoned,
    ];

    /// The class name as written in reports and scenario files.
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Ok => "ok",
            Class::Recovered => "recovered",
            Class::Lost => "lost",
            Class::Duplicated => "duplicated",
            Class::Unexpected => "unexpected",
            Class::Failed => "failed",
            Class::Unacknowledged => "unacknowledged",
            Class::Poisoned => "poisoned",
        }
    }
}

/// What the verdict reads.
#[derive(Debug, Clone, Copy)]
pub struct VerdictInput<'a> {
    /// Per delivery id, the outcome of each send attempt in send order.
    pub sends: &'a BTreeMap<String, Vec<SendOutcome>>,
    /// The lookup result per id (ids absent here are treated as state `unknown`, nothing
    /// logged, unless the listing holds them).
    pub lookups: &'a BTreeMap<String, Lookup>,
    /// Every id the delivery listing reported as processed.
    pub listed: &'a BTreeSet<String>,
    /// The final Redis probe, if one was taken (used for notes on stuck locks).
    pub probe: Option<&'a RedisProbe>,
    /// Ids sent as poison (`send.poison`): they must end dead-lettered.
    pub poison: &'a BTreeSet<String>,
}

/// The sender's and the store's numbers side by side (SPEC §2.5).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    /// Distinct delivery ids sent.
    pub sent_ids: u64,
    /// Send attempts (duplicates and redeliveries included).
    pub sent: u64,
    /// Attempts answered 2xx other than 200 (202 queued or spooled).
    pub accepted: u64,
    /// Attempts answered 200 (duplicate).
    pub duplicates: u64,
    /// Attempts answered with a non-2xx status.
    pub rejected: u64,
    /// Attempts with no answer (timeout or transport error).
    pub indeterminate: u64,
    /// Distinct ids processed (logged, applied, or listed), sent or not.
    pub processed: u64,
}

/// The verdict of one delivery id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryVerdict {
    /// The delivery id.
    pub id: String,
    /// Its class.
    pub class: Class,
    /// What each send attempt got, in order (empty if never sent).
    pub sends: Vec<SendOutcome>,
    /// The state GitSpy reported.
    pub state: DeliveryState,
    /// Event-log rows.
    pub logged: u32,
    /// Effect rows.
    pub effects: u32,
    /// Whether the delivery listing holds it.
    pub listed: bool,
    /// Why, when the class alone does not say it all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The per-delivery verdict of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// Sender and store numbers.
    pub tally: Tally,
    /// Ids per class; every class is present, zeros included.
    pub counts: BTreeMap<Class, u64>,
    /// Up to the requested number of example ids per class (smallest ids first).
    pub examples: BTreeMap<Class, Vec<String>>,
    /// Every judged id, sorted by id.
    pub deliveries: Vec<DeliveryVerdict>,
}

impl Verdict {
    /// The number of ids in `class`.
    pub fn count(&self, class: Class) -> u64 {
        self.counts.get(&class).copied().unwrap_or(0)
    }
}

/// Judges every delivery id of `input`, keeping up to `max_examples` example ids per class.
pub fn judge(input: &VerdictInput<'_>, max_examples: usize) -> Verdict {
    let mut ids: BTreeSet<&str> = input.sends.keys().map(String::as_str).collect();
    ids.extend(input.listed.iter().map(String::as_str));
    ids.extend(
        input
            .lookups
            .values()
            .filter(|l| l.logged > 0 || l.effects > 0)
            .map(|l| l.delivery.as_str()),
    );

    let mut tally = Tally {
        sent_ids: input.sends.len() as u64,
        ..Tally::default()
    };
    for outcome in input.sends.values().flatten() {
        tally.sent += 1;
        match outcome {
            SendOutcome::Status(200) => tally.duplicates += 1,
            o if o.is_2xx() => tally.accepted += 1,
            SendOutcome::Status(_) => tally.rejected += 1,
            SendOutcome::Timeout | SendOutcome::Transport(_) => tally.indeterminate += 1,
        }
    }

    let stuck: BTreeMap<&str, &str> = input
        .probe
        .map(|p| {
            p.stuck_locks()
                .filter_map(|l| Some((l.delivery.as_str(), l.stuck?.describe())))
                .collect()
        })
        .unwrap_or_default();

    let mut counts: BTreeMap<Class, u64> = Class::ALL.iter().map(|c| (*c, 0)).collect();
    let mut examples: BTreeMap<Class, Vec<String>> =
        Class::ALL.iter().map(|c| (*c, Vec::new())).collect();
    let mut deliveries = Vec::with_capacity(ids.len());
    for id in ids {
        let sends = input.sends.get(id).map_or(&[][..], Vec::as_slice);
        let listed = input.listed.contains(id);
        let lookup = input.lookups.get(id);
        let (class, notes) = classify(sends, lookup, listed);
        let (class, mut notes) = if input.poison.contains(id) {
            as_poison(class, notes)
        } else {
            (class, notes)
        };
        if let Some(reason) = stuck.get(id) {
            notes.push(format!("its lock is stuck ({reason})"));
        }
        let (state, logged, effects) = lookup.map_or((DeliveryState::Unknown, 0, 0), |l| {
            (l.state, l.logged, l.effects)
        });
        if logged > 0 || effects > 0 || listed {
            tally.processed += 1;
        }
        *counts.entry(class).or_insert(0) += 1;
        let ex = examples.entry(class).or_default();
        if ex.len() < max_examples {
            ex.push(id.to_owned());
        }
        deliveries.push(DeliveryVerdict {
            id: id.to_owned(),
            class,
            sends: sends.to_vec(),
            state,
            logged,
            effects,
            listed,
            note: (!notes.is_empty()).then(|| notes.join("; ")),
        });
    }
    Verdict {
        tally,
        counts,
        examples,
        deliveries,
    }
}

/// The class of a poison delivery, from the class [`classify`] gave it: dead-lettered is
/// `poisoned` (as it must be), applied is `unexpected`, anything else keeps its class.
pub fn as_poison(class: Class, mut notes: Vec<String>) -> (Class, Vec<String>) {
    match class {
        Class::Failed => (Class::Poisoned, notes),
        Class::Ok | Class::Recovered => {
            notes.push(
                "a poison delivery (a body no fold can read, sent on purpose) was applied instead of dead-lettered"
                    .to_owned(),
            );
            (Class::Unexpected, notes)
        }
        Class::Lost => {
            notes.push("a poison delivery that was never dead-lettered".to_owned());
            (Class::Lost, notes)
        }
        other => (other, notes),
    }
}

/// The class of one delivery and the notes that explain it.
pub fn classify(
    sends: &[SendOutcome],
    lookup: Option<&Lookup>,
    listed: bool,
) -> (Class, Vec<String>) {
    let mut notes = Vec::new();
    let (state, logged, effects) = lookup.map_or((DeliveryState::Unknown, 0, 0), |l| {
        (l.state, l.logged, l.effects)
    });
    if lookup.is_none() {
        notes.push("no lookup result for this id".to_owned());
    }
    let processed = logged > 0 || effects > 0 || listed;
    if processed && state != DeliveryState::Processed {
        notes.push(format!(
            "the store has it but its state reads {}",
            state_name(state)
        ));
    }
    if processed && lookup.is_some() && logged == 0 {
        notes.push("processed (listed or with an effect) but no event-log row".to_owned());
    }
    if !processed && state == DeliveryState::Processed {
        notes.push("state reads processed but the store has no row for it".to_owned());
    }

    if logged > 1 || effects > 1 {
        notes.push(format!("logged {logged} times, {effects} effects"));
        return (Class::Duplicated, notes);
    }
    let sent = !sends.is_empty();
    if !sent {
        return (Class::Unexpected, notes);
    }
    let any_2xx = sends.iter().any(SendOutcome::is_2xx);
    let any_unacked = sends.iter().any(|o| !o.is_2xx());
    if processed {
        if any_unacked {
            if !any_2xx {
                notes.push("never acknowledged, enqueued anyway".to_owned());
            }
            return (Class::Recovered, notes);
        }
        return (Class::Ok, notes);
    }
    if state == DeliveryState::Failed {
        return (Class::Failed, notes);
    }
    if any_2xx {
        if matches!(
            state,
            DeliveryState::Received | DeliveryState::Processing | DeliveryState::Spooled
        ) {
            notes.push(format!(
                "still {} when the verdict was taken",
                state_name(state)
            ));
        }
        return (Class::Lost, notes);
    }
    (Class::Unacknowledged, notes)
}

fn state_name(s: DeliveryState) -> &'static str {
    s.as_str()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::probe::{LockInfo, StuckReason};
    use SendOutcome::{Status, Timeout, Transport};

    fn lk(id: &str, state: DeliveryState, logged: u32, effects: u32) -> Lookup {
        Lookup {
            delivery: id.to_owned(),
            state,
            attempts: 1,
            logged,
            effects,
            applied_at: None,
            applied_by: None,
        }
    }

    /// One data-driven check: the class of `sends` + lookup + listed.
    fn check(sends: &[SendOutcome], lookup: Option<Lookup>, listed: bool, expect: Class) {
        let (class, notes) = classify(sends, lookup.as_ref(), listed);
        assert_eq!(
            class, expect,
            "sends {sends:?}, lookup {lookup:?}, listed {listed}, notes {notes:?}"
        );
    }

    use DeliveryState::*;

    #[test]
    fn ok_needs_every_attempt_acknowledged_and_one_row() {
        check(
            &[Status(202)],
            Some(lk("a", Processed, 1, 1)),
            true,
            Class::Ok,
        );
        // ping-like: logged, no card touched
        check(
            &[Status(202)],
            Some(lk("a", Processed, 1, 0)),
            true,
            Class::Ok,
        );
        // five copies: one 202, four 200 duplicates
        let copies = [
            Status(202),
            Status(200),
            Status(200),
            Status(200),
            Status(200),
        ];
        check(&copies, Some(lk("a", Processed, 1, 1)), true, Class::Ok);
    }

    #[test]
    fn recovered_after_a_503_and_a_redelivery() {
        check(
            &[Status(503), Status(202)],
            Some(lk("a", Processed, 1, 1)),
            true,
            Class::Recovered,
        );
    }

    #[test]
    fn recovered_when_503_but_enqueued_anyway() {
        let (class, notes) = classify(&[Status(503)], Some(&lk("a", Processed, 1, 1)), true);
        assert_eq!(class, Class::Recovered);
        assert_eq!(notes, ["never acknowledged, enqueued anyway"]);
    }

    #[test]
    fn recovered_after_timeout_then_processed() {
        check(
            &[Timeout],
            Some(lk("a", Processed, 1, 1)),
            true,
            Class::Recovered,
        );
        check(
            &[Transport("connection reset".into()), Status(200)],
            Some(lk("a", Processed, 1, 1)),
            false,
            Class::Recovered,
        );
    }

    #[test]
    fn lost_when_acknowledged_but_never_processed() {
        check(
            &[Status(202)],
            Some(lk("a", Unknown, 0, 0)),
            false,
            Class::Lost,
        );
        let (class, notes) = classify(&[Status(202)], Some(&lk("a", Received, 0, 0)), false);
        assert_eq!(class, Class::Lost);
        assert_eq!(notes, ["still received when the verdict was taken"]);
        // a 200 duplicate answer is an acknowledgement too
        check(
            &[Status(503), Status(200)],
            Some(lk("a", Unknown, 0, 0)),
            false,
            Class::Lost,
        );
        // state claims processed, store has no row: still lost, with a note
        let (class, notes) = classify(&[Status(202)], Some(&lk("a", Processed, 0, 0)), false);
        assert_eq!(class, Class::Lost);
        assert_eq!(
            notes,
            ["state reads processed but the store has no row for it"]
        );
    }

    #[test]
    fn duplicated_by_effects_or_log_rows_takes_precedence() {
        check(
            &[Status(202)],
            Some(lk("a", Processed, 1, 2)),
            true,
            Class::Duplicated,
        );
        check(
            &[Status(202)],
            Some(lk("a", Processed, 2, 1)),
            true,
            Class::Duplicated,
        );
        // even over recovered and unexpected
        check(
            &[Timeout],
            Some(lk("a", Processed, 2, 0)),
            true,
            Class::Duplicated,
        );
        check(&[], Some(lk("a", Processed, 1, 3)), true, Class::Duplicated);
    }

    #[test]
    fn processed_without_a_log_row_is_noted() {
        let (class, notes) = classify(&[Status(202)], Some(&lk("a", Processed, 0, 1)), false);
        assert_eq!(class, Class::Ok);
        assert_eq!(
            notes,
            ["processed (listed or with an effect) but no event-log row"]
        );
    }

    #[test]
    fn unexpected_when_processed_but_never_sent() {
        check(&[], None, true, Class::Unexpected);
        check(
            &[],
            Some(lk("a", Processed, 1, 1)),
            false,
            Class::Unexpected,
        );
    }

    #[test]
    fn failed_when_dead_lettered() {
        check(
            &[Status(202)],
            Some(lk("a", Failed, 0, 0)),
            false,
            Class::Failed,
        );
        check(
            &[Timeout],
            Some(lk("a", Failed, 0, 0)),
            false,
            Class::Failed,
        );
    }

    #[test]
    fn unacknowledged_when_never_2xx_and_never_processed() {
        check(
            &[Status(503)],
            Some(lk("a", Unknown, 0, 0)),
            false,
            Class::Unacknowledged,
        );
        check(&[Timeout, Timeout], None, false, Class::Unacknowledged);
    }

    #[test]
    fn judge_counts_examples_tally_and_notes() {
        let sends: BTreeMap<String, Vec<SendOutcome>> = [
            ("d-ok", vec![Status(202), Status(200)]),
            ("d-rec", vec![Status(503)]),
            ("d-lost1", vec![Status(202)]),
            ("d-lost2", vec![Status(202)]),
            ("d-lost3", vec![Status(202)]),
            ("d-dup", vec![Status(202)]),
            ("d-fail", vec![Status(202)]),
            ("d-unack", vec![Timeout]),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let lookups: BTreeMap<String, Lookup> = [
            lk("d-ok", Processed, 1, 1),
            lk("d-rec", Processed, 1, 1),
            lk("d-lost1", Unknown, 0, 0),
            lk("d-lost2", Processing, 0, 0),
            lk("d-dup", Processed, 1, 2),
            lk("d-fail", Failed, 0, 0),
            lk("d-unack", Unknown, 0, 0),
            lk("x-extra", Processed, 1, 1),
        ]
        .into_iter()
        .map(|l| (l.delivery.clone(), l))
        .collect();
        let listed: BTreeSet<String> = ["d-ok", "d-rec", "d-dup", "x-extra", "x-listed-only"]
            .into_iter()
            .map(str::to_owned)
            .collect();
        let probe = RedisProbe {
            at_ms: 0,
            states: BTreeMap::new(),
            locks: vec![LockInfo {
                key: "events:d-lost2:lock".into(),
                delivery: "d-lost2".into(),
                pttl_ms: -1,
                value: None,
                stuck: Some(StuckReason::NoTtl),
            }],
            stream_exists: true,
            stream_len: 0,
            pending: Some(0),
            dead_len: 1,
        };
        let v = judge(
            &VerdictInput {
                sends: &sends,
                lookups: &lookups,
                listed: &listed,
                probe: Some(&probe),
                poison: &BTreeSet::new(),
            },
            2,
        );
        let counts: Vec<(Class, u64)> = v.counts.iter().map(|(c, n)| (*c, *n)).collect();
        assert_eq!(
            counts,
            [
                (Class::Ok, 1),
                (Class::Recovered, 1),
                (Class::Lost, 3),
                (Class::Duplicated, 1),
                (Class::Unexpected, 2),
                (Class::Failed, 1),
                (Class::Unacknowledged, 1),
                (Class::Poisoned, 0),
            ]
        );
        assert_eq!(v.examples[&Class::Lost], ["d-lost1", "d-lost2"]);
        assert_eq!(v.examples[&Class::Unexpected], ["x-extra", "x-listed-only"]);
        assert_eq!(
            v.tally,
            Tally {
                sent_ids: 8,
                sent: 9,
                accepted: 6,
                duplicates: 1,
                rejected: 1,
                indeterminate: 1,
                processed: 5,
            }
        );
        assert_eq!(v.deliveries.len(), 10);
        let lost2 = v.deliveries.iter().find(|d| d.id == "d-lost2").unwrap();
        assert_eq!(
            lost2.note.as_deref(),
            Some("still processing when the verdict was taken; its lock is stuck (no TTL)")
        );
        let listed_only = v
            .deliveries
            .iter()
            .find(|d| d.id == "x-listed-only")
            .unwrap();
        assert_eq!(listed_only.state, Unknown);
        assert!(listed_only.listed);
        // round trip for run.json
        let back: Verdict = serde_json::from_str(&serde_json::to_string(&v).unwrap()).unwrap();
        assert_eq!(back, v);
    }

    #[test]
    fn lookup_json_as_gitspy_answers_it() {
        let l: Lookup = serde_json::from_str(
            r#"{"delivery":"d1","state":"processed","attempts":2,"logged":1,"effects":1,"applied_at":1764180000123}"#,
        )
        .unwrap();
        assert_eq!(l.state, Processed);
        assert_eq!((l.attempts, l.logged, l.effects), (2, 1, 1));
        let u: Lookup = serde_json::from_str(
            r#"{"delivery":"d2","state":"something-new","attempts":0,"logged":0,"effects":0,"applied_at":null}"#,
        )
        .unwrap();
        assert_eq!(u.state, Unknown);
        assert_eq!(u.applied_at, None);
        let o: SendOutcome = serde_json::from_str(r#"{"kind":"status","detail":503}"#).unwrap();
        assert_eq!(o, Status(503));
    }

    #[test]
    fn poison_dead_lettered_is_poisoned_applied_is_unexpected_unfinished_is_lost() {
        let sends: BTreeMap<String, Vec<SendOutcome>> =
            ["p-dead", "p-applied", "p-stuck", "r-dead"]
                .into_iter()
                .map(|k| (k.to_owned(), vec![Status(202)]))
                .collect();
        let lookups: BTreeMap<String, Lookup> = [
            lk("p-dead", Failed, 0, 0),
            lk("p-applied", Processed, 1, 0),
            lk("p-stuck", Received, 0, 0),
            lk("r-dead", Failed, 0, 0),
        ]
        .into_iter()
        .map(|l| (l.delivery.clone(), l))
        .collect();
        let poison: BTreeSet<String> = ["p-dead", "p-applied", "p-stuck"]
            .into_iter()
            .map(str::to_owned)
            .collect();
        let v = judge(
            &VerdictInput {
                sends: &sends,
                lookups: &lookups,
                listed: &BTreeSet::new(),
                probe: None,
                poison: &poison,
            },
            5,
        );
        assert_eq!(v.examples[&Class::Poisoned], ["p-dead"]);
        assert_eq!(v.examples[&Class::Unexpected], ["p-applied"]);
        assert_eq!(v.examples[&Class::Lost], ["p-stuck"]);
        // A real delivery dead-lettered is still `failed`: poison never hides one.
        assert_eq!(v.examples[&Class::Failed], ["r-dead"]);
        let applied = v.deliveries.iter().find(|d| d.id == "p-applied").unwrap();
        assert!(
            applied.note.as_deref().unwrap_or("").contains("poison"),
            "{applied:?}"
        );
    }
}
