//! Observation of the system under test (SPEC §2.4): Prometheus scrapes of the server and the
//! workers, kept as time series per target, reset-aware counter arithmetic over those series, and
//! a Redis probe that counts delivery states and finds stuck locks.
//!
//! Everything here is a library for the run loop: it measures and never decides pass/fail (that
//! is `verdict`). The pure parts (parsing, series, counters) are separate from the two I/O edges
//! (`prom::scrape` over HTTP and `probe::probe` over Redis) so they can be tested on synthetic
//! input. `prometheus` is a client of a Prometheus server's HTTP API for the `promql` checks.
//! `timeline` bins the run's exact send and apply times into per-second series.

pub mod counters;
pub mod logs;
pub mod probe;
pub mod prom;
pub mod prometheus;
pub mod series;
pub mod timeline;

pub use counters::{CounterIncrease, HistogramWindow, Interval};
pub use probe::{LockInfo, ProbeConfig, RedisProbe, StuckReason};
pub use prom::{Sample, Scrape};
pub use series::{Series, TargetSel, Window};
