//! GitSpy integration tests: real redis-server, real SQLite, real `gitspy` processes, real HTTP.

mod util;

mod board;
mod dataloss;
mod dead;
mod fold;
mod ingress;
mod metrics;
mod outage;
mod replay;
mod router;
mod spool;
mod worker;
