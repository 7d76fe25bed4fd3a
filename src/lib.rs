//! The gitspy-chaos library: everything the `gitspy-chaos` binary does, so tests can call it.

pub mod report;
