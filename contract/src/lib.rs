//! The contract between GitSpy (`gitspy-app`) and the chaos harness (`gitspy-chaos`): everything
//! both sides must agree on, defined once.
//!
//! - [`keys`]: Redis stream, group and per-delivery key patterns;
//! - [`metrics`]: the metric names of `/metrics/prom`;
//! - [`DeliveryState`]: the delivery states of the lookup API and the `…:state` keys;
//! - [`env`]: the environment variables the harness sets when it manages GitSpy;
//! - [`endpoints`]: the HTTP paths;
//! - [`pg`]: how both crates start a throwaway local PostgreSQL server (binaries, command lines);
//! - [`Profile`]: all of the above as *data* (serde), so the harness can drive another system of
//!   the same shape; [`Profile::default`] is GitSpy's, built from the constants here.
//!
//! GitSpy uses the constants directly; the harness reads a [`Profile`]. The one grammar for
//! durations, rates and sizes of both crates and both command lines is [`units`].

pub mod endpoints;
pub mod env;
pub mod keys;
pub mod metrics;
pub mod pg;
mod profile;
mod state;
pub mod units;

pub use profile::{EndpointPaths, EnvNames, MetricNames, Profile, RedisLayout, StateNames};
pub use state::DeliveryState;
