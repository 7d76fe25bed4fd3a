//! GitSpy integration tests: real redis-server, real SQLite, real `gitspy` processes, real HTTP.

mod util;

mod ingress;
mod metrics;
mod outage;
mod worker;
mod board;
mod dead;
mod replay;
