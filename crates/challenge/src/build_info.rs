//! What was built: version, git revision and build date, set by the image build (see `build.rs`).

pub struct BuildInfo {
    pub version: &'static str,
    pub git_sha: &'static str,
    pub build_date: &'static str,
}

pub const BUILD: BuildInfo = BuildInfo {
    version: match option_env!("APP_VERSION") {
        Some(v) => v,
        None => env!("CARGO_PKG_VERSION"),
    },
    git_sha: match option_env!("GIT_SHA") {
        Some(v) => v,
        None => "unknown",
    },
    build_date: match option_env!("BUILD_DATE") {
        Some(v) => v,
        None => "unknown",
    },
};
