//! `challenge`: a JSON HTTP API for tasks, backed by MySQL.
//!
//! `main.rs` calls [`cli::main`]; tests start the real application through [`startup::Application`].

pub mod attribution;
pub mod build_info;
pub mod cli;
pub mod config;
pub mod db;
pub mod error;
pub mod exemplars;
pub mod health;
pub mod logs;
pub mod otlp;
pub mod outage;
pub mod pool;
pub mod routes;
pub mod server;
pub mod startup;
pub mod store;
pub mod task;
pub mod telemetry;
pub mod timestamp;
pub mod traces;
