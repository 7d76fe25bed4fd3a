//! gitspy-chaos: a chaos-testing harness for webhook pipelines. It starts (or attaches to) a
//! GitSpy system, breaks it on purpose as a scenario file says, and judges from what it measured
//! whether anything was lost or duplicated.
//!
//! `main.rs` only parses arguments and maps errors to exit codes; everything else is here so
//! tests and other front ends can call it.

pub mod cli;
pub mod scenario;
