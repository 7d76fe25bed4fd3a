//! Deliberately broken GitSpy variants, so the chaos harness can prove it catches each bug.
//!
//! Only with the `sabotage` cargo feature (never in a default build): one variant is chosen at run
//! time by `GITSPY_SABOTAGE=<name>` and logged loudly at start; an unknown name is a start-up
//! error listing the valid ones. Without the feature every [`is`] is a constant `false` (the
//! broken branches are compiled out) and a set `GITSPY_SABOTAGE` is refused at start, so a
//! sabotage run can never silently test a correct build.
//!
//! Each variant is one small, realistic source change behind `sabotage::is(Variant::X)` at the
//! place the bug would live; the table in ARCHITECTURE.md says where.

/// The environment variable that picks a variant.
pub const ENV: &str = "GITSPY_SABOTAGE";

/// One broken variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// The worker acknowledges (finishes) before the store commit: a crash in between loses it.
    AckBeforeCommit,
    /// The worker never `XAUTOCLAIM`s dead consumers' entries.
    NeverReclaim,
    /// The delivery lock is set without a TTL: a dead worker's lock is never freed.
    LockWithoutTtl,
    /// The store does not consult `applied_deliveries`: a redelivery is applied again.
    ApplyTwice,
    /// Failures are retried forever, never dead-lettered.
    RetryForever,
    /// After one Redis error the worker stops reading the stream; `/healthz` and metrics stay fine.
    StopAfterRedisError,
    /// The fold takes the last-arriving value instead of the newest `updated_at`.
    FoldArrivalOrder,
    /// The ingress skips its dedupe: copies get 202 and are enqueued.
    EnqueueDuplicates,
    /// One delivery in twenty (by a hash of its id) is marked processed with nothing applied.
    DropOneInTwenty,
    /// `gitspy_jobs_processed_total` is not incremented for `issue_comment`.
    UndercountProcessed,
    /// The spool drain skips the last record of a batch of several (once the ones before it went
    /// through) but advances past it.
    SpoolSkipLast,
    /// The spool drain never moves the spool's last record (an off-by-one `while depth > 1`): it
    /// stays spooled, counted in `gitspy_spool_depth`, until another arrives behind it.
    SpoolStuckLast,
    /// 202 when the enqueue failed, instead of 503 or the spool.
    AcceptOnEnqueueFailure,
    /// The fold keeps the tombstone of whichever snapshot arrived last, so an older event applied
    /// after an `issues.deleted`/`transferred` brings the card back.
    TombstoneByArrival,
    /// Snapshots with the same `updated_at` are settled by arrival (the later one wins) instead of
    /// the value tie-break: the board depends on delivery order within a second.
    TieByArrival,
    /// `gitspy_events_received_total` is not incremented for a spooled delivery (the counter sits
    /// in the queued branch only): an accounting gap while Redis is down.
    UncountedSpooled,
}

impl Variant {
    /// Every variant, in documentation order.
    pub const ALL: [Variant; 16] = [
        Variant::AckBeforeCommit,
        Variant::NeverReclaim,
        Variant::LockWithoutTtl,
        Variant::ApplyTwice,
        Variant::RetryForever,
        Variant::StopAfterRedisError,
        Variant::FoldArrivalOrder,
        Variant::EnqueueDuplicates,
        Variant::DropOneInTwenty,
        Variant::UndercountProcessed,
        Variant::SpoolSkipLast,
        Variant::SpoolStuckLast,
        Variant::AcceptOnEnqueueFailure,
        Variant::TombstoneByArrival,
        Variant::TieByArrival,
        Variant::UncountedSpooled,
    ];

    /// The `GITSPY_SABOTAGE` value.
    pub fn name(self) -> &'static str {
        match self {
            Variant::AckBeforeCommit => "ack-before-commit",
            Variant::NeverReclaim => "never-reclaim",
            Variant::LockWithoutTtl => "lock-without-ttl",
            Variant::ApplyTwice => "apply-twice",
            Variant::RetryForever => "retry-forever",
            Variant::StopAfterRedisError => "stop-after-redis-error",
            Variant::FoldArrivalOrder => "fold-arrival-order",
            Variant::EnqueueDuplicates => "enqueue-duplicates",
            Variant::DropOneInTwenty => "drop-one-in-twenty",
            Variant::UndercountProcessed => "undercount-processed",
            Variant::SpoolSkipLast => "spool-skip-last",
            Variant::SpoolStuckLast => "spool-stuck-last",
            Variant::AcceptOnEnqueueFailure => "accept-on-enqueue-failure",
            Variant::TombstoneByArrival => "tombstone-by-arrival",
            Variant::TieByArrival => "tie-by-arrival",
            Variant::UncountedSpooled => "uncounted-spooled",
        }
    }

    /// Parses a `GITSPY_SABOTAGE` value.
    pub fn parse(s: &str) -> Result<Variant, String> {
        Variant::ALL
            .into_iter()
            .find(|v| v.name() == s.trim())
            .ok_or_else(|| {
                format!(
                    "unknown {ENV} variant `{s}`; valid: {}",
                    Variant::ALL.map(Variant::name).join(", ")
                )
            })
    }
}

/// `drop-one-in-twenty`'s deterministic choice: FNV-1a of the delivery id, modulo 20, is 0.
pub fn dropped(delivery: &str) -> bool {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in delivery.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h.is_multiple_of(20)
}

#[cfg(feature = "sabotage")]
static CHOSEN: std::sync::OnceLock<Option<Variant>> = std::sync::OnceLock::new();

/// Whether variant `v` is active in this process.
#[cfg(feature = "sabotage")]
pub fn is(v: Variant) -> bool {
    CHOSEN.get().copied().flatten() == Some(v)
}

/// Without the feature nothing is ever sabotaged (and the broken branches are dead code).
#[cfg(not(feature = "sabotage"))]
#[inline(always)]
pub const fn is(_v: Variant) -> bool {
    false
}

/// The active variant, if any.
pub fn active() -> Option<Variant> {
    Variant::ALL.into_iter().find(|v| is(*v))
}

/// Reads `GITSPY_SABOTAGE` once at start: logs the chosen variant loudly; an unknown name is an
/// error. Without the feature a non-empty value is refused.
pub fn init_from_env() -> anyhow::Result<()> {
    let value = std::env::var(ENV).unwrap_or_default();
    let value = value.trim();
    if value.is_empty() {
        return Ok(());
    }
    let v = Variant::parse(value).map_err(anyhow::Error::msg)?;
    #[cfg(feature = "sabotage")]
    {
        let _ = CHOSEN.set(Some(v));
        tracing::error!(
            variant = v.name(),
            "!!! {ENV}={}: THIS GITSPY IS DELIBERATELY BROKEN (sabotage build, chaos-harness \
             testing only) !!!",
            v.name()
        );
        Ok(())
    }
    #[cfg(not(feature = "sabotage"))]
    {
        anyhow::bail!(
            "{ENV}={} but this gitspy was built without the `sabotage` feature; build it with \
             `cargo build -p gitspy --features sabotage`",
            v.name()
        )
    }
}

/// Test support: activates a variant in this process (the first call wins).
#[cfg(feature = "sabotage")]
pub fn activate_for_tests(v: Variant) {
    let _ = CHOSEN.set(Some(v));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_list_the_valid_ones() {
        for v in Variant::ALL {
            assert_eq!(Variant::parse(v.name()), Ok(v));
        }
        let e = Variant::parse("ack-after-commit").unwrap_err();
        assert!(
            e.contains("ack-before-commit") && e.contains("spool-skip-last"),
            "{e}"
        );
    }

    #[test]
    fn about_one_in_twenty_is_dropped_deterministically() {
        let n = (0..2000).filter(|i| dropped(&format!("d-{i}"))).count();
        assert!((50..=150).contains(&n), "{n} of 2000");
        assert_eq!(dropped("some-id"), dropped("some-id"));
    }
}
