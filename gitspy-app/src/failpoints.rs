//! Crash points (tikv/fail-rs) at the windows where a crash hurts most, for the chaos harness.
//!
//! Compiled out unless the `failpoints` cargo feature is on: without it [`crate::failpoint!`]
//! expands to nothing, the `fail` crate is not even a dependency, and the `/debug/failpoints`
//! routes do not exist (404).
//!
//! | name | process | window |
//! |---|---|---|
//! | `after-lock` | worker | lock taken, state not yet `processing` |
//! | `after-commit` | worker | store transaction committed, entry not yet acknowledged |
//! | `after-ack` | worker | `XACK` done, `XDEL` not yet (the finish is split in two while armed) |
//! | `after-enqueue` | server | enqueue script succeeded, HTTP answer not yet sent |
//! | `spool-append` | server | spool record written, not yet fsynced or acknowledged |
//! | `spool-drain` | server | spooled record `XADD`ed to Redis, spool head not yet advanced |
//!
//! Arming: the `FAILPOINTS` environment variable at start (`name=actions;name=actions`, the
//! fail-rs format), or at run time `PUT /debug/failpoints/{name}` with the actions as the body
//! (`2*off->return` fires on the third hit), `DELETE /debug/failpoints/{name}`, and
//! `GET /debug/failpoints` to list. When a point fires (action `return`) the process writes
//! `failpoint <name> fired` to stderr and aborts (SIGABRT, no destructor, no flush) — a crash.
//! Other fail-rs actions (`sleep(ms)`, `panic`, `pause`, `print`) behave as fail-rs documents.

/// Every failpoint name, in the order of the table above.
pub const NAMES: [&str; 6] = [
    AFTER_LOCK,
    AFTER_COMMIT,
    AFTER_ACK,
    AFTER_ENQUEUE,
    SPOOL_APPEND,
    SPOOL_DRAIN,
];
pub const AFTER_LOCK: &str = "after-lock";
pub const AFTER_COMMIT: &str = "after-commit";
pub const AFTER_ACK: &str = "after-ack";
pub const AFTER_ENQUEUE: &str = "after-enqueue";
pub const SPOOL_APPEND: &str = "spool-append";
pub const SPOOL_DRAIN: &str = "spool-drain";

/// The environment variable read at start (the fail-rs name).
pub const ENV: &str = "FAILPOINTS";

/// Crashes here when the named failpoint fires. Expands to nothing without the `failpoints`
/// feature.
#[macro_export]
macro_rules! failpoint {
    ($name:expr) => {{
        #[cfg(feature = "failpoints")]
        $crate::failpoints::eval($name);
    }};
}

/// Why arming a failpoint was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FailpointError {
    #[error("unknown failpoint `{0}`; valid: {list}", list = NAMES.join(", "))]
    Unknown(String),
    #[error("invalid actions for failpoint `{name}`: {reason}")]
    Actions { name: String, reason: String },
    #[error("{ENV} entry `{0}` is not `name=actions`")]
    Syntax(String),
}

/// Checks a failpoint name.
pub fn check_name(name: &str) -> Result<(), FailpointError> {
    if NAMES.contains(&name) {
        Ok(())
    } else {
        Err(FailpointError::Unknown(name.to_owned()))
    }
}

/// Splits a `FAILPOINTS` value into `(name, actions)` pairs, checking every name.
pub fn parse_env(value: &str) -> Result<Vec<(String, String)>, FailpointError> {
    let mut out = Vec::new();
    for part in value.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, actions) = part
            .split_once('=')
            .ok_or_else(|| FailpointError::Syntax(part.to_owned()))?;
        let name = name.trim();
        check_name(name)?;
        out.push((name.to_owned(), actions.trim().to_owned()));
    }
    Ok(out)
}

#[cfg(feature = "failpoints")]
mod enabled {
    use super::*;

    /// Evaluates a failpoint: `return` aborts the process after saying which point fired.
    pub fn eval(name: &str) {
        if fail::eval(name, |_| ()).is_some() {
            use std::io::Write as _;
            let mut err = std::io::stderr().lock();
            let _ = writeln!(err, "failpoint {name} fired");
            let _ = err.flush();
            std::process::abort();
        }
    }

    /// Arms `name` with fail-rs `actions` (replacing what it had).
    pub fn configure(name: &str, actions: &str) -> Result<(), FailpointError> {
        check_name(name)?;
        fail::cfg(name, actions.trim()).map_err(|reason| FailpointError::Actions {
            name: name.to_owned(),
            reason,
        })
    }

    /// Disarms `name`.
    pub fn remove(name: &str) -> Result<(), FailpointError> {
        check_name(name)?;
        fail::remove(name);
        Ok(())
    }

    /// Every armed failpoint with its actions, by name.
    pub fn list() -> Vec<(String, String)> {
        let mut l = fail::list();
        l.sort();
        l
    }

    /// Whether `name` has actions configured (the worker splits its finish only then).
    pub fn armed(name: &str) -> bool {
        fail::list().iter().any(|(n, a)| n == name && !a.is_empty())
    }

    /// Arms what `FAILPOINTS` names; an unknown name or bad action is a start-up error.
    pub fn init_from_env() -> anyhow::Result<()> {
        let Ok(value) = std::env::var(ENV) else {
            return Ok(());
        };
        for (name, actions) in parse_env(&value)? {
            configure(&name, &actions)?;
            tracing::warn!(failpoint = %name, %actions, "failpoint armed from {ENV}");
        }
        Ok(())
    }
}

#[cfg(feature = "failpoints")]
pub use enabled::*;

/// Without the feature nothing is ever armed.
#[cfg(not(feature = "failpoints"))]
pub fn armed(_name: &str) -> bool {
    false
}

/// Without the feature `FAILPOINTS` cannot do anything: refuse it, so a crash-point scenario run
/// against a default build fails loudly instead of passing without a single crash.
#[cfg(not(feature = "failpoints"))]
pub fn init_from_env() -> anyhow::Result<()> {
    match std::env::var(ENV) {
        Ok(v) if !v.trim().is_empty() => anyhow::bail!(
            "{ENV} is set but this gitspy was built without failpoints; build it with \
             `cargo build -p gitspy --features failpoints`"
        ),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_syntax_and_names_are_checked() {
        assert_eq!(
            parse_env("after-commit=2*off->return; after-ack=return").unwrap(),
            vec![
                ("after-commit".to_owned(), "2*off->return".to_owned()),
                ("after-ack".to_owned(), "return".to_owned())
            ]
        );
        let e = parse_env("after-comit=return").unwrap_err().to_string();
        assert!(
            e.contains("after-comit") && e.contains("after-commit"),
            "{e}"
        );
        assert!(parse_env("after-commit").is_err());
        assert!(parse_env("").unwrap().is_empty());
    }
}
