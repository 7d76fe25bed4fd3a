//! gitspy-chaos: a chaos-testing harness for webhook pipelines. It starts (or attaches to) GitSpy,
//! breaks it on purpose, floods it with signed deliveries, observes it, and judges every delivery id.

pub mod cli;
pub mod explore;
pub mod fault;
pub mod load;
pub mod netproxy;
pub mod observe;
pub mod report;
pub mod run;
pub mod scenario;
pub mod system;
pub mod verdict;
