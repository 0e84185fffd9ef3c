//! Schemathesis against the real service: `challenge serve --migrate --seed` on a fresh database of
//! the test server, then a bounded property-based run of every operation of the service's own
//! `/openapi.json`, so the document and the server cannot disagree unnoticed.
//!
//! The run uses every phase (the document's examples, boundary values, random fuzzing, and stateful
//! sequences whose links schemathesis infers from `Location` headers: create, then read, update,
//! delete), both positive data (the server must accept it) and negative data (it must refuse it), and
//! every check. Two of the checks have nothing to act on here: `ignored_auth` and
//! `object_level_authorization` test security schemes, and the API declares none (it has no
//! authentication).

use std::fs;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context;
use xshell::{Shell, cmd};

use crate::service::{Output, Service};
use crate::testdb::{DbServer, ScratchDatabase};
use crate::{pytools, util};

/// Test cases per operation in each generating phase: every documented response is reached, and
/// the step stays around half a minute.
const MAX_EXAMPLES: &str = "100";
/// A single request slower than this is an error (the API's own budget is 2 s per call).
const REQUEST_TIMEOUT_SECS: &str = "10";
/// Migrating and seeding an empty database takes about a second.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Where the service's log of the last run is kept, to explain a failure.
const WORK_DIR: &str = ".xtask/schemathesis";

pub fn run(sh: &Shell, database_url: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    let st = pytools::tool(sh, "st")?;
    util::require_program(
        "mariadb",
        "it creates the database the service runs on (Debian: apt-get install mariadb-client)",
    )?;
    util::step("cargo build -p challenge (the service schemathesis tests)");
    cmd!(sh, "cargo build -p challenge").run()?;
    let binary = util::project_root().join("target/debug/challenge");

    let server = DbServer::parse(database_url)?;
    let database = ScratchDatabase::create(
        &server,
        format!("xtask_schemathesis_{}", std::process::id()),
    )?;
    let work = util::project_root().join(WORK_DIR);
    fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let log = work.join("service.log");
    let mut serve = Command::new(&binary);
    serve
        .args(["serve", "--migrate", "--seed"])
        .env("LOG_FORMAT", "text");
    server.configure(&mut serve, &database.name);
    let service = Service::start(serve, Output::File(log.clone()), READY_TIMEOUT)?;
    let port = service.port();

    let version = cmd!(sh, "{st} --version").quiet().read()?;
    util::step(&format!(
        "{version}: all phases and checks, positive and negative data, {MAX_EXAMPLES} examples per operation"
    ));
    let schema = format!("http://127.0.0.1:{port}/openapi.json");
    // Examples are not kept between runs (`--generation-database none`): each run starts from the
    // seed it prints, which is what reproduces a failure. Hypothesis and schemathesis still cache
    // data in the working directory (`.hypothesis/`, `.schemathesis/`): ours, not the repository.
    let _cwd = sh.push_dir(&work);
    let outcome = cmd!(
        sh,
        "{st} run {schema} --phases examples,coverage,fuzzing,stateful --mode all --checks all
            --max-examples {MAX_EXAMPLES} --request-timeout {REQUEST_TIMEOUT_SECS}
            --generation-database none"
    )
    .run();
    drop(service);
    drop(database);
    outcome.with_context(|| {
        format!(
            "schemathesis found requests and responses that disagree with the OpenAPI document (failures \
             above). Fix the server or the document, never the check. To reproduce, run the service \
             (`challenge serve --migrate --seed`) and `{} run http://127.0.0.1:8000/openapi.json --mode all \
             --checks all --seed <the Seed printed above>`; the service's log of this run is {}",
            st.display(),
            log.display()
        )
    })?;
    eprintln!("schemathesis step passed in {:.0?}", started.elapsed());
    Ok(())
}
