//! Integration tests of gitspy-chaos, all in one test binary (as ripgrep does): shared helpers in
//! `util.rs`, one module per command or concern.

mod alerts;
mod attach;
mod attach_run;
mod docker_backend;
mod engine;
mod explore;
mod faults;
mod netproxy;
mod observability;
mod postgres_store;
mod probe_redis;
mod process_backend;
mod profile;
mod prometheus;
mod report;
mod sender;
mod util;
mod validate;
mod verdict_live;
