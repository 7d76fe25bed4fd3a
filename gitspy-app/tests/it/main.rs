//! GitSpy integration tests: real redis-server, real SQLite, real `gitspy` processes, real HTTP.

mod util;

mod dataloss;
mod ingress;
mod metrics;
mod outage;
mod spool;
mod worker;
