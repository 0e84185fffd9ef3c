//! The Go peer (bench/go-peer/main.go): what the service is measured against, built with Debian's
//! Go and MySQL driver packages, installed here when missing.

use std::path::PathBuf;

use xshell::{Shell, cmd};

use super::binary::target_dir;
use crate::{setup, util};

/// The peer's source, relative to the repository root.
pub const SOURCE: &str = "bench/go-peer/main.go";
/// Where Debian's golang-* -dev packages put their sources: the GOPATH of the build.
const GOPATH: &str = "/usr/share/gocode";

/// The built peer and what built it, for the report (`bench/go-peer/main.go`, go1.19.8).
pub struct Peer {
    pub path: PathBuf,
    pub description: String,
}

/// Installs Go and the driver when missing, then builds the peer into `target/bench-go-peer/`
/// (its build cache there too) in GOPATH mode, so nothing is downloaded.
pub fn build(sh: &Shell) -> anyhow::Result<Peer> {
    setup::ensure_packages(sh, &[&setup::GOLANG, &setup::GO_MYSQL_DRIVER])?;
    util::step("building the Go peer (bench/go-peer, Debian's Go and MySQL driver)");
    let home = target_dir().join("bench-go-peer");
    let binary = home.join("go-peer");
    let source = util::project_root().join(SOURCE);
    let _modules = sh.push_env("GO111MODULE", "off");
    let _path = sh.push_env("GOPATH", GOPATH);
    let _cache = sh.push_env("GOCACHE", home.join("cache"));
    // "go version go1.19.8 linux/amd64"
    let version = cmd!(sh, "go version").read()?;
    let version = version
        .split_whitespace()
        .nth(2)
        .unwrap_or("go (version unknown)");
    cmd!(sh, "go build -o {binary} {source}").run()?;
    Ok(Peer {
        path: binary,
        description: format!("`{SOURCE}` built with {version}"),
    })
}
