//! Where the integration tests find their MySQL-compatible server.

use xshell::Shell;

/// A server the tests may create databases on; dropping it releases what was started for it.
pub struct TestDatabase {
    url: String,
}

impl TestDatabase {
    pub fn url(&self) -> &str {
        &self.url
    }
}

/// `TEST_DATABASE_URL` when set (CI starts MariaDB from Debian's packages and sets it).
pub fn provide(_sh: &Shell) -> anyhow::Result<TestDatabase> {
    match std::env::var("TEST_DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => Ok(TestDatabase { url }),
        _ => anyhow::bail!(
            "TEST_DATABASE_URL is not set: the integration tests need a MySQL 8 or MariaDB 10.11 server \
             whose user may create databases, e.g.\n  \
             export TEST_DATABASE_URL=mysql://root:secret@127.0.0.1:3306\n\
             (`.ci/run` shows how to start MariaDB from Debian's packages)"
        ),
    }
}
