//! Host checks of `doctor` that do not depend on the Compose project.

use std::path::Path;
use std::time::Duration;

use crate::platform::Check;
use crate::process::Cmd;

pub fn disk_check() -> Check {
    let name = "disk space";
    let root = Cmd::new("docker")
        .args(["info", "--format", "{{.DockerRootDir}}"])
        .checked(Duration::from_secs(20))
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|dir| Path::new(dir).is_dir())
        .unwrap_or_else(|| "/".to_string());
    let available_kib = Cmd::new("df")
        .args(["-Pk", &root])
        .checked(Duration::from_secs(10))
        .ok()
        .and_then(|text| {
            text.lines()
                .nth(1)?
                .split_whitespace()
                .nth(3)?
                .parse::<u64>()
                .ok()
        });
    // An image build needs about 2 GiB (builder layers and the target directory).
    const NEEDED_KIB: u64 = 2 * 1024 * 1024;
    match available_kib {
        Some(kib) if kib >= NEEDED_KIB => Check::pass(
            name,
            format!("{:.1} GiB free at {root}", kib as f64 / 1048576.0),
        ),
        Some(kib) => Check::fail(
            name,
            format!("only {:.1} GiB free at {root}", kib as f64 / 1048576.0),
            "free space: `docker image prune` removes dangling images, `docker builder prune` the build cache",
        ),
        None => Check::fail(
            name,
            format!("cannot read the free space of {root}"),
            "check that `df` is installed (coreutils)",
        ),
    }
}
