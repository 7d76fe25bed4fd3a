//! What a build says about itself, and what a build without the optional features refuses:
//! `FAILPOINTS` and `GITSPY_SABOTAGE` are start-up errors there (a chaos run must never silently
//! test another build than it asked for), and `/debug/failpoints` does not exist.

use std::process::Command;

fn gitspy(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gitspy"));
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("NO_COLOR", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run gitspy")
}

#[test]
fn version_names_the_features_compiled_in() {
    let out = gitspy(&["--version"], &[]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let want = format!(
        "gitspy {} (features: {})",
        env!("CARGO_PKG_VERSION"),
        gitspy::build_info::FEATURES
    );
    assert_eq!(text.trim(), want);
    assert_eq!(
        gitspy::build_info::FEATURES == "none",
        cfg!(not(any(feature = "failpoints", feature = "sabotage")))
    );
}

/// A worker that must refuse to start: exit 2 with `needle` on stderr.
fn assert_refused(env: &[(&str, &str)], needle: &str) {
    let out = gitspy(
        &["worker"],
        &[
            &[
                ("WORKER_METRICS_PORT", "0"),
                ("REDIS_URL", "redis://127.0.0.1:1"),
            ],
            env,
        ]
        .concat(),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(needle), "{err}");
}

#[cfg(not(feature = "failpoints"))]
#[test]
fn without_the_failpoints_feature_failpoints_are_refused_and_the_debug_routes_absent() {
    assert_refused(
        &[("FAILPOINTS", "after-commit=return")],
        "built without failpoints",
    );
    use crate::util::*;
    let redis = Redis::start();
    let sys = Sys::new();
    let server = sys.serve(&redis, &[]);
    let (s, _) = get_text(&server.url("/debug/failpoints"));
    assert_eq!(s, 404);
    let (_, m) = get_text(&server.url("/metrics/prom"));
    assert!(
        m.contains("features=\"none\"} 1") || cfg!(feature = "sabotage"),
        "{m}"
    );
}

#[cfg(feature = "failpoints")]
#[test]
fn an_unknown_failpoint_in_the_environment_is_a_start_up_error() {
    assert_refused(&[("FAILPOINTS", "after-comit=return")], "after-commit");
}

#[cfg(not(feature = "sabotage"))]
#[test]
fn without_the_sabotage_feature_gitspy_sabotage_is_refused() {
    assert_refused(
        &[("GITSPY_SABOTAGE", "apply-twice")],
        "built without the `sabotage` feature",
    );
}

#[cfg(feature = "sabotage")]
#[test]
fn an_unknown_sabotage_variant_is_a_start_up_error_listing_the_valid_ones() {
    assert_refused(&[("GITSPY_SABOTAGE", "apply-thrice")], "apply-twice");
}
