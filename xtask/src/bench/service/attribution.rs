//! `--attribution`: what each of the service's own features costs a request. The service built with
//! the cargo feature `attribution` reads `CHALLENGE_ATTRIBUTION_OFF`, a comma list of the features
//! below to switch off (binaries built without the feature ignore the variable). Each variant serves
//! GET one task under the same load as the comparison with the Go peer, and its CPU time per request
//! is set against a reference variant's.

use std::path::PathBuf;

use anyhow::Context as _;
use xshell::{Shell, cmd};

use super::app::QUIET_LOG;
use super::binary::target_dir;
use crate::util;

/// The variable the attribution build reads.
pub const OFF_VARIABLE: &str = "CHALLENGE_ATTRIBUTION_OFF";
/// What the attribution build can switch off, in the order the variants switch them off.
pub const FEATURES: [&str; 4] = ["metrics", "request-id", "tracing", "limits"];

/// Which binary a variant runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Build {
    /// `cargo build --release -p challenge --features attribution`.
    Attribution,
    /// The plain release build, as measured beside the Go peer.
    Normal,
}

/// What a variant is compared with, for its cost per request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reference {
    /// This is the reference row itself.
    Itself,
    /// The attribution build with nothing off.
    NothingOff,
    /// The normal build with request logs off (the comparison's `current`).
    Current,
}

#[derive(Debug, PartialEq, Eq)]
pub struct Variant {
    pub name: String,
    pub build: Build,
    /// `CHALLENGE_ATTRIBUTION_OFF` (attribution build only).
    pub off: Option<String>,
    /// `RUST_LOG`: `None` leaves it unset, so the service's default (`info`: a line per request).
    pub rust_log: Option<&'static str>,
    pub reference: Reference,
}

/// The attribution build with nothing off, each feature off in turn, all off; then the normal build
/// with its request logs on, which costs what a log line costs over the comparison's `current`.
pub fn variants() -> Vec<Variant> {
    let attribution = |name: String, off: &str, reference| Variant {
        name,
        build: Build::Attribution,
        off: Some(off.to_owned()),
        rust_log: Some(QUIET_LOG),
        reference,
    };
    let mut variants = vec![attribution(
        "attribution build, nothing off".into(),
        "",
        Reference::Itself,
    )];
    for feature in FEATURES {
        variants.push(attribution(
            format!("attribution build, `{feature}` off"),
            feature,
            Reference::NothingOff,
        ));
    }
    variants.push(attribution(
        "attribution build, all four off".into(),
        &FEATURES.join(","),
        Reference::NothingOff,
    ));
    variants.push(Variant {
        name: "normal build, request logs on (`RUST_LOG` unset)".into(),
        build: Build::Normal,
        off: None,
        rust_log: None,
        reference: Reference::Current,
    });
    variants
}

/// Builds the service with the feature `attribution` into `target/bench-attribution/target`, so
/// the plain release build stays as it is (and cached).
pub fn build(sh: &Shell) -> anyhow::Result<PathBuf> {
    util::step("building the release binary with the cargo feature `attribution`");
    let target = target_dir().join("bench-attribution/target");
    let _target = sh.push_env("CARGO_TARGET_DIR", &target);
    cmd!(
        sh,
        "cargo build --release -p challenge --features attribution"
    )
    .run()
    .context(
        "--attribution needs the cargo feature `attribution` of crates/challenge (reading \
             CHALLENGE_ATTRIBUTION_OFF); if cargo says the package has no such feature, this \
             revision predates it: run without --attribution",
    )?;
    Ok(target.join("release/challenge"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_off_then_each_feature_then_all_then_the_log_line() {
        let variants = variants();
        let off: Vec<Option<&str>> = variants.iter().map(|v| v.off.as_deref()).collect();
        assert_eq!(
            off,
            [
                Some(""),
                Some("metrics"),
                Some("request-id"),
                Some("tracing"),
                Some("limits"),
                Some("metrics,request-id,tracing,limits"),
                None,
            ]
        );
        assert_eq!(variants[0].reference, Reference::Itself);
        assert!(
            variants[1..6]
                .iter()
                .all(|v| v.reference == Reference::NothingOff && v.build == Build::Attribution)
        );
    }

    #[test]
    fn only_the_log_line_variant_logs_requests_and_it_runs_the_normal_build() {
        let variants = variants();
        let logging: Vec<&Variant> = variants.iter().filter(|v| v.rust_log.is_none()).collect();
        assert_eq!(logging.len(), 1);
        assert_eq!(logging[0].build, Build::Normal);
        assert_eq!(logging[0].reference, Reference::Current);
        assert!(
            variants
                .iter()
                .filter(|v| v.rust_log.is_some())
                .all(|v| v.rust_log == Some("warn"))
        );
    }
}
