//! Judgment of a run (SPEC §2.5): the per-delivery verdict (`classes`, one class per delivery
//! id, from the sender's ledger and the store) and the checks (`checks`, each a measured value
//! against a threshold). Nothing here does I/O: the run loop gathers the inputs, this decides.

pub mod checks;
pub mod classes;

pub use checks::{CheckResult, Measured, Tolerance};
pub use classes::{
    judge, Class, DeliveryState, DeliveryVerdict, Lookup, SendOutcome, Tally, Verdict, VerdictInput,
};
