//! A target profile: the contract as data. The harness reads every name it needs from a
//! [`Profile`]; GitSpy's is [`Profile::default`], built from the constants of this crate. Every
//! section and field has a default, so a profile file states only what differs, e.g. (YAML):
//!
//! ```yaml
//! name: acme-hooks
//! redis: { stream: "acme:inbox", group: "acme-workers", state_key: "acme:{id}:st" }
//! metrics: { jobs_processed: "acme_done_total" }
//! ```

use serde::{Deserialize, Serialize};

use crate::{endpoints, env, keys, metrics, DeliveryState};

/// Everything the harness needs to know about the names of a system of GitSpy's shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Profile {
    /// Name of the system, shown in reports.
    pub name: String,
    /// Redis stream, group and per-delivery key patterns.
    pub redis: RedisLayout,
    /// Metric names on the metrics endpoint.
    pub metrics: MetricNames,
    /// The system's wire names of the delivery states in its state keys.
    pub states: StateNames,
    /// Environment variables the harness sets when it manages the system.
    pub env: EnvNames,
    /// HTTP paths.
    pub endpoints: EndpointPaths,
}

impl Default for Profile {
    fn default() -> Self {
        Profile {
            name: "gitspy".to_owned(),
            redis: RedisLayout::default(),
            metrics: MetricNames::default(),
            states: StateNames::default(),
            env: EnvNames::default(),
            endpoints: EndpointPaths::default(),
        }
    }
}

/// Redis layout; per-delivery keys are patterns with one `{id}` ([`keys::fill`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisLayout {
    pub stream: String,
    pub dead_stream: String,
    pub group: String,
    pub state_key: String,
    pub lock_key: String,
    pub attempts_key: String,
    pub error_key: String,
}

impl Default for RedisLayout {
    fn default() -> Self {
        RedisLayout {
            stream: keys::STREAM.to_owned(),
            dead_stream: keys::DEAD_STREAM.to_owned(),
            group: keys::GROUP.to_owned(),
            state_key: keys::STATE.to_owned(),
            lock_key: keys::LOCK.to_owned(),
            attempts_key: keys::ATTEMPTS.to_owned(),
            error_key: keys::ERROR.to_owned(),
        }
    }
}

impl RedisLayout {
    /// Every per-delivery key pattern has exactly one `{id}`; the problems otherwise.
    pub fn problems(&self) -> Vec<String> {
        [
            ("state_key", &self.state_key),
            ("lock_key", &self.lock_key),
            ("attempts_key", &self.attempts_key),
            ("error_key", &self.error_key),
        ]
        .into_iter()
        .filter(|(_, p)| p.matches(keys::ID).count() != 1)
        .map(|(field, p)| {
            format!(
                "redis.{field} `{p}` must contain `{}` exactly once",
                keys::ID
            )
        })
        .collect()
    }
}

macro_rules! names {
    ($(#[$doc:meta])* $ty:ident { $($field:ident = $value:expr),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct $ty {
            $(#[doc = concat!("Default `", stringify!($value), "`.")] pub $field: String,)*
        }

        impl Default for $ty {
            fn default() -> Self {
                $ty { $($field: $value.to_owned(),)* }
            }
        }
    };
}

names!(
    /// Metric names, one per role the harness reads.
    MetricNames {
        events_received = metrics::EVENTS_RECEIVED,
        events_duplicate = metrics::EVENTS_DUPLICATE,
        events_rejected = metrics::EVENTS_REJECTED,
        jobs_processed = metrics::JOBS_PROCESSED,
        jobs_failed = metrics::JOBS_FAILED,
        jobs_retried = metrics::JOBS_RETRIED,
        jobs_duplicate = metrics::JOBS_DUPLICATE,
        job_duration = metrics::JOB_DURATION,
        queue_waiting = metrics::QUEUE_WAITING,
        queue_active = metrics::QUEUE_ACTIVE,
        queue_dead = metrics::QUEUE_DEAD,
        queue_delayed = metrics::QUEUE_DELAYED,
        spool_depth = metrics::SPOOL_DEPTH,
        redis_up = metrics::REDIS_UP,
        redis_data_loss = metrics::REDIS_DATA_LOSS,
        process_start = metrics::PROCESS_START,
    }
);

impl MetricNames {
    /// `(the system's name, GitSpy's name)` for every role; histogram names are base names.
    pub fn pairs(&self) -> [(&str, &'static str); 16] {
        [
            (&self.events_received, metrics::EVENTS_RECEIVED),
            (&self.events_duplicate, metrics::EVENTS_DUPLICATE),
            (&self.events_rejected, metrics::EVENTS_REJECTED),
            (&self.jobs_processed, metrics::JOBS_PROCESSED),
            (&self.jobs_failed, metrics::JOBS_FAILED),
            (&self.jobs_retried, metrics::JOBS_RETRIED),
            (&self.jobs_duplicate, metrics::JOBS_DUPLICATE),
            (&self.job_duration, metrics::JOB_DURATION),
            (&self.queue_waiting, metrics::QUEUE_WAITING),
            (&self.queue_active, metrics::QUEUE_ACTIVE),
            (&self.queue_dead, metrics::QUEUE_DEAD),
            (&self.queue_delayed, metrics::QUEUE_DELAYED),
            (&self.spool_depth, metrics::SPOOL_DEPTH),
            (&self.redis_up, metrics::REDIS_UP),
            (&self.redis_data_loss, metrics::REDIS_DATA_LOSS),
            (&self.process_start, metrics::PROCESS_START),
        ]
    }

    /// The contract's (GitSpy's) name of a sample the system exposes as `name`, histogram
    /// suffixes (`_bucket`, `_sum`, `_count`) kept; `None` when no role has that name.
    pub fn canonical(&self, name: &str) -> Option<String> {
        for (theirs, ours) in self.pairs() {
            if name == theirs {
                return Some(ours.to_owned());
            }
            if ours == metrics::JOB_DURATION {
                for suffix in ["_bucket", "_sum", "_count"] {
                    if name.strip_suffix(suffix) == Some(theirs) {
                        return Some(format!("{ours}{suffix}"));
                    }
                }
            }
        }
        None
    }
}

names!(
    /// The system's wire names of the delivery states (values of its state keys).
    StateNames {
        received = DeliveryState::Received.as_str(),
        processing = DeliveryState::Processing.as_str(),
        processed = DeliveryState::Processed.as_str(),
        failed = DeliveryState::Failed.as_str(),
    }
);

impl StateNames {
    /// The contract's state of a wire value of the system.
    pub fn state_of(&self, wire: &str) -> DeliveryState {
        [
            (&self.received, DeliveryState::Received),
            (&self.processing, DeliveryState::Processing),
            (&self.processed, DeliveryState::Processed),
            (&self.failed, DeliveryState::Failed),
        ]
        .into_iter()
        .find(|(name, _)| name.as_str() == wire)
        .map_or(DeliveryState::Unknown, |(_, st)| st)
    }
}

names!(
    /// Environment variable names of the managed system's settings.
    EnvNames {
        redis_url = env::REDIS_URL,
        db = env::DB,
        listen = env::LISTEN,
        admin_addr = env::ADMIN_ADDR,
        webhook_secret = env::WEBHOOK_SECRET,
        redis_timeout = env::REDIS_TIMEOUT,
        on_redis_down = env::ON_REDIS_DOWN,
        spool_dir = env::SPOOL_DIR,
        lock_ttl = env::LOCK_TTL,
        claim_idle = env::CLAIM_IDLE,
        block = env::BLOCK,
        worker_metrics_port = env::WORKER_METRICS_PORT,
        test_disable_dedupe = env::TEST_DISABLE_DEDUPE,
    }
);

names!(
    /// HTTP paths of the system.
    EndpointPaths {
        webhooks = endpoints::WEBHOOKS,
        healthz = endpoints::HEALTHZ,
        readyz = endpoints::READYZ,
        metrics = endpoints::METRICS,
        boards = endpoints::BOARDS,
        deliveries = endpoints::DELIVERIES,
        lookup = endpoints::LOOKUP,
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partial_profile_keeps_gitspy_defaults_for_the_rest() {
        let p: Profile = serde_json::from_str(
            r#"{"name":"acme","redis":{"state_key":"acme:{id}:st"},"metrics":{"job_duration":"acme_ms"}}"#,
        )
        .unwrap();
        assert_eq!(p.name, "acme");
        assert_eq!(p.redis.state_key, "acme:{id}:st");
        assert_eq!(p.redis.stream, keys::STREAM);
        assert_eq!(
            p.metrics.canonical("acme_ms_bucket").as_deref(),
            Some("gitspy_job_duration_ms_bucket")
        );
        assert_eq!(
            p.metrics.canonical(metrics::JOBS_PROCESSED).as_deref(),
            Some(metrics::JOBS_PROCESSED)
        );
        assert_eq!(p.metrics.canonical("gitspy_job_duration_ms_sum"), None);
        assert!(serde_json::from_str::<Profile>(r#"{"redis":{"stream_key":"x"}}"#).is_err());
        assert!(Profile::default().redis.problems().is_empty());
        let bad = RedisLayout {
            lock_key: "locks".into(),
            ..RedisLayout::default()
        };
        assert_eq!(bad.problems().len(), 1);
    }

    #[test]
    fn state_names_map_to_the_contract() {
        let s = StateNames {
            processed: "done".into(),
            ..StateNames::default()
        };
        assert_eq!(s.state_of("done"), DeliveryState::Processed);
        assert_eq!(s.state_of("processed"), DeliveryState::Unknown);
        assert_eq!(s.state_of("received"), DeliveryState::Received);
    }
}
