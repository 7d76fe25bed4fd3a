//! GitSpy integration tests: real redis-server, real SQLite, real PostgreSQL, real `gitspy`
//! processes, real HTTP.

mod util;

mod board;
mod build;
mod dataloss;
mod dead;
#[cfg(feature = "failpoints")]
mod failpoints;
mod fold;
mod ingress;
mod metrics;
mod outage;
mod pg_system;
mod replay;
mod router;
#[cfg(feature = "sabotage")]
mod sabotage;
mod spool;
mod store;
mod worker;
