//! One connection's bounded queue of frames for the socket: conflation slots for
//! frames a newer one replaces, gathering queued frames into one write, and the coarse
//! timestamps the sweep reads to find stalled sockets and quiet streams.

use std::collections::VecDeque;
use std::task::Waker;

use bytes::{Bytes, BytesMut};

/// Most bytes one body frame gathers from queued frames.
const MAX_GATHER: usize = 32 * 1024;

/// The conflation slot of `unread` frames.
pub(crate) const UNREAD_SLOT: u8 = u8::MAX;

/// Which delivery latency a frame counts towards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Path {
    Live,
    Replay,
    /// Control frames: connected, reset, unread, heartbeats.
    Control,
}

/// A frame waiting for the socket.
#[derive(Debug)]
pub(crate) struct Queued {
    pub(crate) frame: Bytes,
    pub(crate) path: Path,
    /// Publisher's clock, Unix nanoseconds; 0 when unknown.
    pub(crate) published_at: u64,
    /// Frames that a newer one replaces while still queued (a `latest` topic, the
    /// unread count): at most one of each is ever queued.
    pub(crate) slot: Option<u8>,
}

/// The frames, the body's waker, and when the queue last moved. Holds no memory while
/// empty once trimmed.
#[derive(Debug)]
pub(crate) struct Queue {
    frames: VecDeque<Queued>,
    capacity: usize,
    waker: Option<Waker>,
    /// Coarse clock (seconds, see `Clock`) when the queue last made progress.
    progress_at: u32,
    /// Coarse clock when a frame was last queued: heartbeats go to quiet streams.
    queued_at: u32,
}

impl Queue {
    pub(crate) fn new(capacity: usize, now: u32) -> Self {
        Self {
            frames: VecDeque::new(),
            capacity: capacity.max(1),
            waker: None,
            progress_at: now,
            queued_at: now,
        }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    pub(crate) fn has_room(&self) -> bool {
        self.frames.len() < self.capacity
    }

    pub(crate) fn clear(&mut self) {
        self.frames.clear();
    }

    /// Queues a frame, replacing a queued one of the same slot.
    pub(crate) fn push(&mut self, queued: Queued, now: u32) {
        if let Some(slot) = queued.slot {
            self.frames.retain(|q| q.slot != Some(slot));
        }
        if self.frames.is_empty() {
            self.progress_at = now;
        }
        self.frames.push_back(queued);
        self.queued_at = now;
    }

    /// Wakes the body if it waits for frames.
    pub(crate) fn wake(&mut self) {
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }

    /// The body's waker, when it waits and there is something for it: the live task
    /// wakes each connection once per batch of messages, so the body takes them all
    /// in one write instead of one write per message.
    pub(crate) fn waker_if_ready(&mut self) -> Option<Waker> {
        if self.frames.is_empty() {
            None
        } else {
            self.waker.take()
        }
    }

    /// The next frame for the socket, several queued frames gathered into one; `None`
    /// (keeping `waker`) when there is nothing.
    pub(crate) fn take(&mut self, waker: &Waker, now: u32, mut seen: impl FnMut(Path, u64)) -> Option<Bytes> {
        let Some(first) = self.frames.pop_front() else {
            if !self.waker.as_ref().is_some_and(|w| w.will_wake(waker)) {
                self.waker = Some(waker.clone());
            }
            return None;
        };
        self.progress_at = now;
        seen(first.path, first.published_at);
        if self.frames.is_empty() || first.frame.len() >= MAX_GATHER {
            return Some(first.frame);
        }
        let mut gathered = BytesMut::with_capacity(MAX_GATHER.min(first.frame.len() * (self.frames.len() + 1)));
        gathered.extend_from_slice(&first.frame);
        while let Some(next) = self.frames.front() {
            if gathered.len() + next.frame.len() > MAX_GATHER {
                break;
            }
            let next = self.frames.pop_front().expect("invariant: front exists");
            seen(next.path, next.published_at);
            gathered.extend_from_slice(&next.frame);
        }
        Some(gathered.freeze())
    }

    /// Seconds since the queue last made progress (or, when empty, since it emptied).
    pub(crate) fn still_for(&self, now: u32) -> u32 {
        now.saturating_sub(self.progress_at)
    }

    /// Whether nothing was queued for `quiet` seconds.
    pub(crate) fn quiet(&self, now: u32, quiet: u32) -> bool {
        self.frames.is_empty() && now.saturating_sub(self.queued_at) >= quiet
    }

    /// Gives back the queue's memory once it is empty: an idle stream holds none.
    pub(crate) fn trim(&mut self) {
        if self.frames.is_empty() && self.frames.capacity() > 0 {
            self.frames = VecDeque::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::task::Wake;

    use super::*;

    struct Nop;
    impl Wake for Nop {
        fn wake(self: Arc<Self>) {}
    }

    fn control(text: &'static str, slot: Option<u8>) -> Queued {
        Queued {
            frame: Bytes::from_static(text.as_bytes()),
            path: Path::Control,
            published_at: 0,
            slot,
        }
    }

    #[test]
    fn a_slot_keeps_only_its_newest_frame_and_takes_gather() {
        let waker = Arc::new(Nop).into();
        let mut q = Queue::new(8, 0);
        q.push(control("a;", None), 0);
        q.push(control("u1;", Some(UNREAD_SLOT)), 0);
        q.push(control("b;", None), 0);
        q.push(control("u2;", Some(UNREAD_SLOT)), 0);
        let mut paths = 0;
        assert_eq!(q.take(&waker, 0, |_, _| paths += 1).as_deref(), Some(&b"a;b;u2;"[..]));
        assert_eq!(paths, 3);
        assert_eq!(q.take(&waker, 0, |_, _| {}), None);
    }

    #[test]
    fn the_clock_tells_still_and_quiet_queues() {
        let mut q = Queue::new(8, 0);
        assert!(q.quiet(15, 15));
        q.push(control("a;", None), 20);
        assert!(!q.quiet(21, 15));
        assert_eq!(q.still_for(30), 10);
    }
}
