//! Where the integration tests find their MySQL-compatible server: `TEST_DATABASE_URL` when set (CI
//! starts MariaDB from Debian's packages and sets it), else a throwaway container of the database image.

use std::io::Read;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::Context;
use xshell::{Shell, cmd};

use crate::{airgap, util};

/// How long a fresh container may take to initialise its data directory and listen.
const START_TIMEOUT: Duration = Duration::from_secs(180);

/// A server the tests may create databases on; dropping it removes the container started for it.
pub struct TestDatabase {
    url: String,
    container: Option<String>,
}

impl TestDatabase {
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Some(name) = &self.container {
            let removed = std::process::Command::new("docker")
                .args(["rm", "-f", "-v", name])
                .output();
            if !removed.is_ok_and(|out| out.status.success()) {
                eprintln!(
                    "warning: could not remove the test database container {name} (`docker rm -f {name}`)"
                );
            }
        }
    }
}

pub fn provide(sh: &Shell) -> anyhow::Result<TestDatabase> {
    match std::env::var("TEST_DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => Ok(TestDatabase { url, container: None }),
        _ => throwaway(sh).context(
            "TEST_DATABASE_URL is not set, and starting a throwaway database container failed; either fix \
             the error above or point the tests at a MySQL 8 / MariaDB 10.11 server whose user may create \
             databases, e.g. export TEST_DATABASE_URL=mysql://root:secret@127.0.0.1:3306",
        ),
    }
}

/// A container of the database image on a Docker-chosen free port of 127.0.0.1, with a random root
/// password, ready once the server sends its handshake.
fn throwaway(sh: &Shell) -> anyhow::Result<TestDatabase> {
    let image = airgap::ensure_images(sh)?;
    let name = format!(
        "infra-challenge-testdb-{}-{:08x}",
        std::process::id(),
        random_u32()
    );
    let password = format!("{:08x}{:08x}", random_u32(), random_u32());
    util::step(&format!("throwaway test database: {image} as {name}"));
    let root_password = format!("MYSQL_ROOT_PASSWORD={password}");
    cmd!(
        sh,
        "docker run -d --rm --name {name} -p 127.0.0.1::3306 -e {root_password} {image}"
    )
    .quiet()
    .ignore_stdout()
    .run()?;
    // From here on the guard removes the container, whatever happens next.
    let mut db = TestDatabase {
        url: String::new(),
        container: Some(name.clone()),
    };
    let mapping = cmd!(sh, "docker port {name} 3306/tcp").quiet().read()?;
    let port: u16 = mapping
        .lines()
        .find_map(|line| line.strip_prefix("127.0.0.1:"))
        .and_then(|port| port.trim().parse().ok())
        .with_context(|| format!("unexpected `docker port` output: {mapping:?}"))?;
    wait_for_handshake(port, START_TIMEOUT).with_context(|| {
        let logs = cmd!(sh, "docker logs --tail 20 {name}")
            .quiet()
            .ignore_status()
            .read_stderr();
        format!(
            "the database container {name} did not accept connections; its log:\n{}",
            logs.unwrap_or_default()
        )
    })?;
    db.url = format!("mysql://root:{password}@127.0.0.1:{port}");
    Ok(db)
}

/// Waits until the server on `port` sends a MySQL protocol 10 handshake. Docker's port proxy accepts
/// connections before the server listens (and while the entrypoint's initialisation server runs without
/// TCP), so an accepted connection alone proves nothing.
fn wait_for_handshake(port: u16, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let mut header = [0u8; 5];
        let greeted = TcpStream::connect(("127.0.0.1", port)).and_then(|mut stream| {
            stream.set_read_timeout(Some(Duration::from_secs(2)))?;
            stream.read_exact(&mut header)
        });
        // 3 bytes length, 1 byte sequence, then the protocol version.
        if greeted.is_ok() && header[4] == 10 {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "no MySQL handshake on 127.0.0.1:{port} within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Random bits for unique names and passwords, from the standard library's randomly keyed hasher.
fn random_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
    );
    hasher.finish() as u32
}
