//! SIGINT (Ctrl-C) and SIGTERM (a CI abort) while an operation changes an environment.
//!
//! Once [`Stop::watch_signals`] has run, the first signal only sets a flag: every wait of a release
//! checks it (through [`crate::report::Step::interrupted`]) and stops, so the procedure can record
//! what it had applied, release the environment's lock and say what state it leaves. A second
//! signal ends the process at once with the shell's usual code (130 for SIGINT, 143 for SIGTERM); a
//! lock it held is then released by the kernel (Compose) or expires (Kubernetes).

use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use signal_hook::consts::{SIGINT, SIGTERM};

use crate::error::{Error, Result};

/// A request to stop the operation in progress: set by a signal, or by a test.
#[derive(Clone, Debug, Default)]
pub struct Stop(Arc<AtomicBool>);

impl Stop {
    /// The process's own: the one the signals set.
    pub fn process() -> Self {
        static PROCESS: OnceLock<Stop> = OnceLock::new();
        PROCESS.get_or_init(Stop::default).clone()
    }

    /// Turns SIGINT and SIGTERM into a request to stop (idempotent per process).
    pub fn watch_signals(&self) -> Result<()> {
        static WATCHING: OnceLock<()> = OnceLock::new();
        if WATCHING.get().is_some() {
            return Ok(());
        }
        for (signal, code) in [(SIGINT, 130), (SIGTERM, 143)] {
            // Registered first, so it sees the flag as it was before this signal: set means second.
            signal_hook::flag::register_conditional_shutdown(signal, code, Arc::clone(&self.0))
                .and_then(|_| signal_hook::flag::register(signal, Arc::clone(&self.0)))
                .map_err(|e| Error::Other(format!("cannot watch for signal {signal}: {e}")))?;
        }
        let _ = WATCHING.set(());
        Ok(())
    }

    /// Whether the operation was asked to stop.
    pub fn requested(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// Asks the operation to stop, as a signal does (the tests' signal).
    #[cfg(test)]
    pub fn request(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stop_is_seen_by_every_clone_and_by_no_other_stop() {
        let stop = Stop::default();
        let seen_by = stop.clone();
        let other = Stop::default();
        assert!(!seen_by.requested());
        stop.request();
        assert!(seen_by.requested());
        assert!(!other.requested());
    }
}
