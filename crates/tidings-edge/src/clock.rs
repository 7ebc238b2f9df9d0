//! The node's coarse clock.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

/// Seconds since the node started, advanced by the sweep once a second (`sweep.rs`):
/// cheap enough to read on every delivery, and precise enough for what it times
/// (heartbeats, stalled sockets, reauth).
#[derive(Debug)]
pub(crate) struct Clock {
    started: Instant,
    seconds: AtomicU32,
}

impl Default for Clock {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            seconds: AtomicU32::new(0),
        }
    }
}

impl Clock {
    pub(crate) fn now(&self) -> u32 {
        self.seconds.load(Ordering::Relaxed)
    }

    /// Moves the clock to the time elapsed since start; returns it.
    pub(crate) fn advance(&self) -> u32 {
        let now = u32::try_from(self.started.elapsed().as_secs()).unwrap_or(u32::MAX);
        self.seconds.store(now, Ordering::Relaxed);
        now
    }
}
