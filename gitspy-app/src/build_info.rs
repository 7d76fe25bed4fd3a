//! What this binary was built with: `gitspy --version` prints it (`gitspy 0.1.0 (features:
//! failpoints, sabotage)` or `(features: none)`) and every process exports it as
//! `gitspy_build_info{version="…",features="…"} 1`, so a harness can tell a failpoints or sabotage
//! build from a default one before it relies on either.

/// The crate version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

macro_rules! with_features {
    ($features:literal) => {
        /// The optional features compiled in, comma-separated, or `none`.
        pub const FEATURES: &str = $features;
        /// `--version`'s text after the program name.
        pub const LONG_VERSION: &str =
            concat!(env!("CARGO_PKG_VERSION"), " (features: ", $features, ")");
    };
}

#[cfg(all(feature = "failpoints", feature = "sabotage"))]
with_features!("failpoints, sabotage");
#[cfg(all(feature = "failpoints", not(feature = "sabotage")))]
with_features!("failpoints");
#[cfg(all(not(feature = "failpoints"), feature = "sabotage"))]
with_features!("sabotage");
#[cfg(all(not(feature = "failpoints"), not(feature = "sabotage")))]
with_features!("none");

#[cfg(test)]
mod tests {
    #[test]
    fn version_line_names_the_features() {
        assert!(super::LONG_VERSION.starts_with(super::VERSION));
        assert!(super::LONG_VERSION.ends_with(&format!("(features: {})", super::FEATURES)));
        assert_eq!(
            super::FEATURES.contains("failpoints"),
            cfg!(feature = "failpoints")
        );
    }
}
