//! Integration tests: one binary, each test with its own database and a real server on a random port.
//! They need a MySQL-compatible server: `TEST_DATABASE_URL` (see `cargo xtask test`).

mod cli;
mod connections;
mod credentials;
mod helpers;
mod hostile;
mod logs;
mod migrations;
mod operations;
mod outage;
mod raw_http;
mod shutdown;
mod strict;
mod tasks;
mod traces;
mod version;
