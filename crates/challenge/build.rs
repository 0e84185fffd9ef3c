//! Rebuild when the build metadata the image build passes in changes (see `src/build_info.rs`).
fn main() {
    println!("cargo:rerun-if-changed=migrations");
    for var in ["APP_VERSION", "GIT_SHA", "BUILD_DATE"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
}
