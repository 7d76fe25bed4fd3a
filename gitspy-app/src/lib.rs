//! GitSpy: a GitHub-webhook pipeline that keeps a Kanban board per repository.
//!
//! HTTP ingress (`http`) verifies and enqueues deliveries in a Redis Stream (`queue`); workers
//! (`worker`) fold them into a board store (`store`) using the pure event model in `github`.
pub mod spool;
