//! Process state that readiness reports: start-up progress and draining.

use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Debug, Default)]
pub struct Health {
    startup_complete: AtomicBool,
    draining: AtomicBool,
}

impl Health {
    pub fn mark_started(&self) {
        self.startup_complete.store(true, Ordering::Release);
    }

    pub fn started(&self) -> bool {
        self.startup_complete.load(Ordering::Acquire)
    }

    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }
}
