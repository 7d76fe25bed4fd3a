//! The target profile: the names of the system under test (Redis key patterns, metric names,
//! delivery states, env names, endpoints) read as data. GitSpy's is the default, built from the
//! shared contract crate ([`gitspy_contract`]); another system of the same shape is described
//! by a YAML file named by `target.profile` in a scenario or `run --profile`. Every field has
//! GitSpy's value as default, so a file states only what differs:
//!
//! ```yaml
//! name: acme-hooks
//! redis:
//!   stream: "acme:inbox"
//!   group: "acme-workers"
//!   state_key: "acme:{id}:st"     # one {id} per per-delivery key pattern
//!   lock_key: "acme:{id}:lk"
//! metrics:
//!   jobs_processed: acme_done_total
//! states:
//!   processed: done
//! ```

use std::path::Path;

use anyhow::Context as _;

pub use gitspy_contract::Profile;

/// Reads and checks a profile file (YAML; unknown fields are errors).
pub fn load_profile(path: &Path) -> anyhow::Result<Profile> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the target profile {}", path.display()))?;
    let profile: Profile = serde_saphyr::from_str(&text)
        .map_err(|e| anyhow::anyhow!("target profile {}: {e}", path.display()))?;
    let problems = profile.redis.problems();
    if !problems.is_empty() {
        anyhow::bail!(
            "target profile {}: {}\nhint: write the delivery id as {{id}}, e.g. \"events:{{id}}:state\"",
            path.display(),
            problems.join("; ")
        );
    }
    Ok(profile)
}

/// The profile of a run: `--profile` wins over the scenario's `target.profile` (relative to the
/// scenario file); neither means GitSpy's.
pub fn resolve_profile(
    cli: Option<&Path>,
    scenario_file: &Path,
    scenario_profile: Option<&str>,
) -> anyhow::Result<Profile> {
    match (cli, scenario_profile) {
        (Some(p), _) => load_profile(p),
        (None, Some(rel)) => {
            let base = scenario_file.parent().unwrap_or(Path::new("."));
            load_profile(&base.join(rel))
        }
        (None, None) => Ok(Profile::default()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_overrides_only_what_it_names_and_bad_files_say_why() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("acme.yaml");
        std::fs::write(
            &good,
            "name: acme\nredis:\n  state_key: \"acme:{id}:st\"\nmetrics:\n  jobs_processed: acme_done_total\n",
        )
        .unwrap();
        let p = load_profile(&good).unwrap();
        assert_eq!(p.name, "acme");
        assert_eq!(p.redis.state_key, "acme:{id}:st");
        assert_eq!(p.redis.lock_key, gitspy_contract::keys::LOCK);
        assert_eq!(p.metrics.jobs_processed, "acme_done_total");

        let typo = dir.path().join("typo.yaml");
        std::fs::write(&typo, "redis:\n  stream_name: x\n").unwrap();
        let e = format!("{:#}", load_profile(&typo).unwrap_err());
        assert!(e.contains("stream_name"), "{e}");

        let no_id = dir.path().join("noid.yaml");
        std::fs::write(&no_id, "redis:\n  lock_key: locks\n").unwrap();
        let e = format!("{:#}", load_profile(&no_id).unwrap_err());
        assert!(e.contains("redis.lock_key") && e.contains("{id}"), "{e}");

        let rel = resolve_profile(None, &dir.path().join("s.yaml"), Some("acme.yaml")).unwrap();
        assert_eq!(rel, p);
        assert_eq!(
            resolve_profile(None, &good, None).unwrap(),
            Profile::default()
        );
        assert!(resolve_profile(Some(&dir.path().join("missing.yaml")), &good, None).is_err());
    }
}
