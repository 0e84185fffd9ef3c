//! One module per subcommand family; each entry point takes its parsed arguments and the context.

pub mod build;
pub mod deploy;
pub mod diff;
pub mod down;
pub mod interactive;
pub mod render;
pub mod rollback;
pub mod status;
