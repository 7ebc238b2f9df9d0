//! Closing one HTTP connection from outside its task.

use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Context;

use futures::task::AtomicWaker;

/// Closes one HTTP connection from outside its task: a slow reader whose socket no
/// longer drains never polls its response again, so ending the stream is not enough.
/// The connection's task (`app.rs`) checks it on every poll and ends when it fires.
#[derive(Debug, Default)]
pub(crate) struct KillSwitch {
    fired: AtomicBool,
    waker: AtomicWaker,
}

impl KillSwitch {
    pub(crate) fn fire(&self) {
        self.fired.store(true, Ordering::Release);
        self.waker.wake();
    }

    /// Whether the switch has fired; if not, `cx` is woken when it does.
    pub(crate) fn fired(&self, cx: &Context<'_>) -> bool {
        self.waker.register(cx.waker());
        self.fired.load(Ordering::Acquire)
    }
}
