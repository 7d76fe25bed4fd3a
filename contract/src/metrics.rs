//! Every metric name GitSpy exports on `/metrics/prom` (SPEC §1.4 as amended). GitSpy's
//! `metrics.rs` renders these; the harness reads them through [`crate::MetricNames`].

/// Server: deliveries accepted (queued or spooled), label `event_type`.
pub const EVENTS_RECEIVED: &str = "gitspy_events_received_total";
/// Server: duplicate deliveries answered 200, label `event_type`.
pub const EVENTS_DUPLICATE: &str = "gitspy_events_duplicate_total";
/// Server: rejected deliveries, label `reason`.
pub const EVENTS_REJECTED: &str = "gitspy_events_rejected_total";
/// Worker: deliveries this worker's own store transactions applied (or logged), once finished in
/// Redis. A delivery an earlier attempt had already committed counts as a duplicate instead.
pub const JOBS_PROCESSED: &str = "gitspy_jobs_processed_total";
/// Worker: deliveries dead-lettered.
pub const JOBS_FAILED: &str = "gitspy_jobs_failed_total";
/// Worker: retries scheduled.
pub const JOBS_RETRIED: &str = "gitspy_jobs_retried_total";
/// Worker: entries skipped as already done: marked processed in Redis, or found in the store's
/// applied deliveries (committed by an earlier attempt, e.g. a worker that crashed or froze
/// between its commit and its acknowledgement).
pub const JOBS_DUPLICATE: &str = "gitspy_jobs_duplicate_total";
/// Worker: histogram of job durations in milliseconds (base name, without `_bucket`).
pub const JOB_DURATION: &str = "gitspy_job_duration_ms";
/// Gauge: entries not yet delivered to a consumer (absent while Redis is down).
pub const QUEUE_WAITING: &str = "gitspy_queue_waiting";
/// Gauge: entries pending (delivered, not acknowledged).
pub const QUEUE_ACTIVE: &str = "gitspy_queue_active";
/// Gauge: dead-lettered entries.
pub const QUEUE_DEAD: &str = "gitspy_queue_dead";
/// Server gauge: records in the local spool.
pub const SPOOL_DEPTH: &str = "gitspy_spool_depth";
/// Server counter: torn spool records dropped at start-up.
pub const SPOOL_TORN: &str = "gitspy_spool_torn_records_total";
/// Gauge: 1 while the process reaches Redis.
pub const REDIS_UP: &str = "gitspy_redis_up";
/// Counter: times a process found Redis had lost its data.
pub const REDIS_DATA_LOSS: &str = "gitspy_redis_data_loss_total";
/// Gauge: unix seconds the process started; a new value means a restart.
pub const PROCESS_START: &str = "process_start_time_seconds";
/// Per worker process: entries it holds that wait out a retry backoff. They are still pending in
/// Redis, so they are a subset of `gitspy_queue_active`; sum it over the workers.
pub const QUEUE_DELAYED: &str = "gitspy_queue_delayed";
/// Always 1, labelled with the version and the optional features compiled in.
pub const BUILD_INFO: &str = "gitspy_build_info";
