//! The environment variables of `gitspy serve` / `gitspy worker` that the harness sets when it
//! manages GitSpy (GitSpy's `config.rs` declares each flag's env twin with these names).

pub const REDIS_URL: &str = "REDIS_URL";
pub const DB: &str = "GITSPY_DB";
pub const LISTEN: &str = "GITSPY_LISTEN";
pub const WEBHOOK_SECRET: &str = "GITHUB_WEBHOOK_SECRET";
pub const REDIS_TIMEOUT: &str = "GITSPY_REDIS_TIMEOUT";
pub const ON_REDIS_DOWN: &str = "GITSPY_ON_REDIS_DOWN";
pub const SPOOL_DIR: &str = "GITSPY_SPOOL_DIR";
pub const LOCK_TTL: &str = "GITSPY_LOCK_TTL";
/// GitSpy's own default of [`LOCK_TTL`] (in force when a process is started without it).
pub const LOCK_TTL_DEFAULT: &str = "30s";
/// GitSpy's own default of [`REDIS_TIMEOUT`].
pub const REDIS_TIMEOUT_DEFAULT: &str = "1s";
pub const CLAIM_IDLE: &str = "GITSPY_CLAIM_IDLE";
pub const BLOCK: &str = "GITSPY_BLOCK";
pub const WORKER_METRICS_PORT: &str = "WORKER_METRICS_PORT";
/// Test only: duplicate checks off, so the harness can prove it detects duplicates.
pub const TEST_DISABLE_DEDUPE: &str = "GITSPY_TEST_DISABLE_DEDUPE";
