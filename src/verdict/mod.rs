//! Judgment of a run (SPEC §2.5). The run engine gathers the [`Evidence`] once (ledger, lookups,
//! listing, probe, series, boards, fault log); everything here is a pure function of it: the
//! per-delivery verdict (`classes`, one class per delivery id), the board oracle (`board`), and
//! one function per check kind (`evaluate`, built on the measurement helpers in `checks`).

pub mod accounting;
pub mod board;
pub mod checks;
pub mod classes;
pub mod evaluate;
pub mod evidence;
pub mod ingress;
pub mod promql;

pub use board::{BoardModel, ExpectedBoard, ExpectedCard};
pub use checks::{CheckResult, Measured, Tolerance};
pub use classes::{
    judge, Class, DeliveryState, DeliveryVerdict, Lookup, SendOutcome, Tally, Verdict, VerdictInput,
};
pub use evaluate::evaluate;
pub use evidence::{Evidence, PrefixFold, PromAnswer, ReplayOutcome, ShuffleOutcome};
