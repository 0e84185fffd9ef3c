//! Integration tests: one binary, each test with its own database and a real server on a random port.
//! They need a MySQL-compatible server: `TEST_DATABASE_URL` (see `cargo xtask test`).

mod cli;
mod helpers;
mod hostile;
mod migrations;
mod operations;
mod outage;
mod shutdown;
mod strict;
mod tasks;
