//! One connection's delivery state machine, behind the connection's lock: whether live
//! events go straight to its queue (`queue.rs`) or wait while the connection catches
//! up, what the browser has been sent (its cursor, `cursor.rs`), and the hand-over
//! from replay to live (`settle`). Everything here is synchronous and allocation-free
//! while idle: the live task delivers into it directly, one shared frame per event,
//! without a task or a timer per connection; the catch-up task (`catch_up.rs`) drives
//! the hand-over and does the IO it asks for.

use std::sync::Arc;
use std::task::Waker;

use bytes::Bytes;
use tidings_bus::BusEvent;
use tidings_domain::UnreadCount;

use crate::cursor::Cursor;
use crate::queue::{Path, Queue, Queued, UNREAD_SLOT};

/// A live event as the live task hands it out: decoded once, framed once, shared by
/// every connection it goes to.
#[derive(Debug)]
pub(crate) struct LiveEvent {
    pub(crate) event: BusEvent,
    /// The SSE frame, `None` for events that only move the cursor.
    pub(crate) frame: Option<Bytes>,
}

/// Why a stream ended, for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Closed {
    ClientGone,
    SlowConsumer,
    TokenExpired,
    Drain,
    /// The stream was deleted and created again (`incarnation.rs`).
    StreamReplaced,
    Error,
}

impl Closed {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::ClientGone => "client_gone",
            Self::SlowConsumer => "slow_consumer",
            Self::TokenExpired => "token_expired",
            Self::Drain => "drain",
            Self::StreamReplaced => "stream_replaced",
            Self::Error => "error",
        }
    }
}

/// Whether live events are delivered as they come.
#[derive(Debug)]
pub(crate) enum Phase {
    /// Replaying or healing a gap: live events wait here in stream order (bounded by
    /// the queue capacity) until the catch-up hands over.
    CatchingUp {
        pending: Vec<(Arc<LiveEvent>, Option<u8>)>,
        /// Live delivery may have lost messages: replay before going on.
        resync: bool,
        /// A live event came after a later one was delivered: it can no longer go
        /// out in order, so the client is told to reload (`reset`).
        late: bool,
    },
    Live,
}

/// What became of one event offered to a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    Delivered,
    /// Already delivered, or the connection has ended.
    Skipped,
    /// Held while the connection catches up.
    Held,
    /// A message before it on its subject never arrived: the connection must catch
    /// up; the event now waits in `pending`.
    Gap,
    /// A live event at or below the connection's position that its own subject has
    /// not reached: it arrived after a later event of another subject was delivered.
    /// Live delivery keeps the stream's order, so this is a defect, reported as a
    /// `reset` rather than dropped as a duplicate.
    Late,
    /// The queue overflowed: the connection has ended as a slow consumer.
    Overflowed,
}

/// What the catch-up task must do next (see [`Delivery::settle`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Next {
    /// Everything pending is delivered; the connection is live.
    Live,
    /// Fetch `subject` from `known + 1` to `before - 1` and deliver it first; the
    /// fetch must hold `previous` (the live event's predecessor on the subject), or
    /// what it missed is gone and the client gets a `reset`.
    Heal {
        subject: String,
        known: u64,
        previous: u64,
        before: u64,
    },
    /// Replay everything from this sequence on.
    Resync {
        from: u64,
    },
    /// The queue is full and live events wait: let the socket drain first.
    Wait,
    /// Tell the client to reload (a [`Step::Late`] event), then go on from now.
    Reset(&'static str),
    Ended(Closed),
}

#[derive(Debug)]
pub(crate) struct Delivery {
    queue: Queue,
    pub(crate) phase: Phase,
    pub(crate) cursor: Cursor,
    ended: Option<Closed>,
    pub(crate) reauth_sent: bool,
    /// The newest unread count that arrived while catching up: it follows the
    /// `connected` event and the replay, never precedes them.
    unread: Option<Bytes>,
    /// The version of the newest unread count queued for this stream: a count carried
    /// or fetched with a version no higher is older news, and dropped.
    unread_version: Option<u64>,
}

impl Delivery {
    pub(crate) fn new(capacity: usize, now: u32) -> Self {
        Self {
            queue: Queue::new(capacity, now),
            phase: Phase::CatchingUp {
                pending: Vec::new(),
                resync: false,
                late: false,
            },
            cursor: Cursor::default(),
            ended: None,
            reauth_sent: false,
            unread: None,
            unread_version: None,
        }
    }

    pub(crate) fn ended(&self) -> Option<Closed> {
        self.ended
    }

    pub(crate) fn has_room(&self) -> bool {
        self.queue.has_room()
    }

    /// Ends the stream: the body sends what is queued, then finishes. The first
    /// reason wins. A slow consumer's queue is freed at once: its socket is closed
    /// too, so nothing queued would ever be sent.
    pub(crate) fn end(&mut self, reason: Closed) {
        if reason == Closed::SlowConsumer {
            self.queue.clear();
        }
        if self.ended.is_none() {
            self.ended = Some(reason);
            if let Phase::CatchingUp { pending, .. } = &mut self.phase {
                pending.clear();
            }
            self.wake();
        }
    }

    fn overflow(&mut self) {
        self.end(Closed::SlowConsumer);
    }

    /// Queues a control frame (never refused for room: there are few of them, and a
    /// conflated one replaces its predecessor).
    pub(crate) fn push_control(&mut self, frame: Bytes, slot: Option<u8>, now: u32) {
        if self.ended.is_none() {
            self.queue.push(
                Queued {
                    frame,
                    path: Path::Control,
                    published_at: 0,
                    slot,
                },
                now,
            );
            self.wake();
        }
    }

    /// Queues the member's new unread count, replacing one still queued; while
    /// catching up it waits for the hand-over to live. `frame` shows `count`; a count
    /// with its version goes only if it supersedes every one queued before, so counts
    /// arriving out of order (a notification's and a MarkRead's take different paths; a
    /// fetch answers late) never show an older count after a newer one. `None` (an
    /// older api's count, without a version) always goes.
    pub(crate) fn push_unread(&mut self, frame: Bytes, count: Option<UnreadCount>, now: u32) {
        if let Some(count) = count {
            if !count.supersedes(self.unread_version) {
                return;
            }
            self.unread_version = Some(count.version);
        }
        match self.phase {
            Phase::Live => self.push_control(frame, Some(UNREAD_SLOT), now),
            Phase::CatchingUp { .. } => self.unread = Some(frame),
        }
    }

    /// Wakes the body if it waits for frames.
    pub(crate) fn wake(&mut self) {
        self.queue.wake();
    }

    /// The body's waker when there is something for it (see [`Queue::waker_if_ready`]).
    pub(crate) fn waker_if_ready(&mut self) -> Option<Waker> {
        self.queue.waker_if_ready()
    }

    /// A live event from the live task. `slot` is the event's `latest`-topic slot on
    /// this connection, if it is one.
    pub(crate) fn offer(&mut self, out: &Arc<LiveEvent>, slot: Option<u8>, now: u32) -> Step {
        if self.ended.is_some() {
            return Step::Skipped;
        }
        match &mut self.phase {
            Phase::CatchingUp { pending, resync, .. } => {
                if let Some(slot) = slot {
                    pending.retain(|(_, s)| *s != Some(slot));
                } else if *resync {
                    // The replay to come reads it from the stream.
                    return Step::Held;
                } else if pending.len() >= self.queue.capacity() {
                    // Still catching up (a reconnect storm queues resumes): the
                    // client is not slow, and everything held is in the stream. Drop
                    // it and replay after the catch-up instead of closing the stream;
                    // only the `latest` slots stay (one value per topic).
                    pending.retain(|(_, s)| s.is_some());
                    *resync = true;
                    return Step::Held;
                }
                pending.push((out.clone(), slot));
                Step::Held
            }
            Phase::Live => match self.deliver(&out.event, out.frame.as_ref(), slot, Path::Live, true, now) {
                Step::Gap => {
                    self.phase = Phase::CatchingUp {
                        pending: vec![(out.clone(), slot)],
                        resync: false,
                        late: false,
                    };
                    Step::Gap
                }
                // The catch-up task sends the reset.
                Step::Late => {
                    self.phase = Phase::CatchingUp {
                        pending: Vec::new(),
                        resync: false,
                        late: true,
                    };
                    Step::Late
                }
                step => step,
            },
        }
    }

    /// Delivers `event` if it is new (the caller wakes the body). With `check_gap`
    /// (live events), a missing predecessor on the event's subject is reported instead.
    pub(crate) fn deliver(
        &mut self,
        event: &BusEvent,
        frame: Option<&Bytes>,
        slot: Option<u8>,
        path: Path,
        check_gap: bool,
        now: u32,
    ) -> Step {
        if self.ended.is_some() {
            return Step::Skipped;
        }
        // `latest` topics conflate: a skipped value is expected, not a gap.
        let in_order = check_gap && slot.is_none();
        if self.cursor.behind(event) {
            return if in_order && self.cursor.late(event) {
                Step::Late
            } else {
                Step::Skipped
            };
        }
        if in_order && self.cursor.gap(event) {
            return Step::Gap;
        }
        if let Some(frame) = frame {
            if path == Path::Live && slot.is_none() && !self.queue.has_room() {
                self.overflow();
                return Step::Overflowed;
            }
            let published_at = event.published_at.map_or(0, |ns| u64::try_from(ns).unwrap_or(0));
            self.queue.push(
                Queued {
                    frame: frame.clone(),
                    path,
                    published_at,
                    slot,
                },
                now,
            );
        }
        self.cursor.advance(event);
        Step::Delivered
    }

    /// Moves pending live events into the queue, in order, until one needs a catch-up
    /// first; goes live when none is left. Called by the catch-up task, which does
    /// what the answer says and calls again.
    pub(crate) fn settle(&mut self, now: u32) -> (Next, usize) {
        if let Some(closed) = self.ended {
            return (Next::Ended(closed), 0);
        }
        let Phase::CatchingUp { pending, resync, late } = &mut self.phase else {
            return (Next::Live, 0);
        };
        if std::mem::take(late) {
            return (Next::Reset("live_out_of_order"), 0);
        }
        if std::mem::take(resync) {
            return (
                Next::Resync {
                    from: self.cursor.delivered + 1,
                },
                0,
            );
        }
        let mut delivered = 0;
        let mut held = std::mem::take(pending).into_iter();
        while let Some((out, slot)) = held.next() {
            if out.frame.is_some() && slot.is_none() && !self.has_room() {
                // Live events may not overflow a queue the replay filled: wait for
                // the socket to take some first.
                if let Phase::CatchingUp { pending, .. } = &mut self.phase {
                    *pending = std::iter::once((out, slot)).chain(held).collect();
                }
                self.wake();
                return (Next::Wait, delivered);
            }
            match self.deliver(&out.event, out.frame.as_ref(), slot, Path::Live, true, now) {
                Step::Gap => {
                    let known = self.cursor.known(&out.event.subject);
                    let next = Next::Heal {
                        subject: out.event.subject.clone(),
                        known,
                        previous: out.event.previous_on_subject.unwrap_or(known),
                        before: out.event.seq,
                    };
                    if let Phase::CatchingUp { pending, .. } = &mut self.phase {
                        *pending = std::iter::once((out, slot)).chain(held).collect();
                    }
                    self.wake();
                    return (next, delivered);
                }
                Step::Delivered if out.frame.is_some() => delivered += 1,
                Step::Overflowed => return (Next::Ended(Closed::SlowConsumer), delivered),
                Step::Late => {
                    if let Phase::CatchingUp { pending, .. } = &mut self.phase {
                        *pending = held.collect();
                    }
                    return (Next::Reset("live_out_of_order"), delivered);
                }
                _ => {}
            }
        }
        self.phase = Phase::Live;
        if let Some(unread) = self.unread.take() {
            self.push_control(unread, Some(UNREAD_SLOT), now);
        }
        self.wake();
        (Next::Live, delivered)
    }

    /// Whether live events wait for a catch-up (replay, gap, resync).
    pub(crate) fn catching_up(&self) -> bool {
        matches!(self.phase, Phase::CatchingUp { .. })
    }

    /// Live delivery may have lost messages: replay before going on.
    /// Returns whether the caller must start a catch-up task.
    pub(crate) fn resync(&mut self) -> bool {
        if self.ended.is_some() {
            return false;
        }
        match &mut self.phase {
            Phase::CatchingUp { resync, .. } => {
                *resync = true;
                false
            }
            Phase::Live => {
                self.phase = Phase::CatchingUp {
                    pending: Vec::new(),
                    resync: true,
                    late: false,
                };
                true
            }
        }
    }

    /// The body's side: the next frame for the socket (several queued frames gathered
    /// into one), `Some(None)` once the stream has ended and everything is sent, or
    /// `None` (after keeping the waker) when there is nothing yet.
    pub(crate) fn take(&mut self, waker: &Waker, now: u32, seen: impl FnMut(Path, u64)) -> Option<Option<Bytes>> {
        if self.ended.is_some() && self.queue.is_empty() {
            return Some(None);
        }
        self.queue.take(waker, now, seen).map(Some)
    }

    /// Whether the socket is not draining: frames (or the end) have waited `stall`
    /// seconds without progress.
    pub(crate) fn stalled(&self, now: u32, stall: u32) -> bool {
        (!self.queue.is_empty() || self.ended.is_some()) && self.queue.still_for(now) >= stall
    }

    /// Whether nothing was queued for `quiet` seconds.
    pub(crate) fn quiet(&self, now: u32, quiet: u32) -> bool {
        self.queue.quiet(now, quiet)
    }

    /// Gives back the queue's memory once it is empty: an idle stream holds none.
    pub(crate) fn trim(&mut self) {
        self.queue.trim();
    }
}

#[cfg(test)]
mod tests {
    use std::task::Wake;

    use tidings_bus::{EventKind, SubjectTarget};
    use tidings_domain::MemberId;

    use super::*;

    struct Count(std::sync::atomic::AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    fn out(seq: u64, previous: u64, subject: &str) -> Arc<LiveEvent> {
        Arc::new(LiveEvent {
            event: BusEvent {
                seq,
                previous_on_subject: Some(previous),
                target: SubjectTarget::Member(MemberId::parse("a").unwrap()),
                subject: subject.into(),
                kind: EventKind::Notification,
                payload: Bytes::new(),
                published_at: None,
                traceparent: None,
                unread: None,
            },
            frame: Some(Bytes::from(format!("{seq};"))),
        })
    }

    fn drain(d: &mut Delivery) -> String {
        let waker = Arc::new(Count(0.into())).into();
        let mut all = String::new();
        while let Some(Some(frame)) = d.take(&waker, 0, |_, _| {}) {
            all.push_str(std::str::from_utf8(&frame).unwrap());
        }
        all
    }

    fn live(capacity: usize, at: u64) -> Delivery {
        let mut d = Delivery::new(capacity, 0);
        d.cursor = Cursor::at(at);
        assert_eq!(d.settle(0).0, Next::Live);
        d
    }

    #[test]
    fn live_events_are_queued_once_in_order_and_gathered() {
        let mut d = live(8, 0);
        assert_eq!(d.offer(&out(1, 0, "m"), None, 0), Step::Delivered);
        assert_eq!(d.offer(&out(2, 1, "m"), None, 0), Step::Delivered);
        assert_eq!(d.offer(&out(2, 1, "m"), None, 0), Step::Skipped, "a duplicate");
        assert_eq!(drain(&mut d), "1;2;", "two frames in one write");
        assert_eq!(d.cursor.delivered, 2);
    }

    #[test]
    fn a_gap_holds_the_event_until_the_catch_up_heals_it() {
        let mut d = live(8, 10);
        assert_eq!(d.offer(&out(13, 12, "m"), None, 0), Step::Gap, "12 never arrived");
        assert_eq!(d.offer(&out(14, 13, "m"), None, 0), Step::Held);
        assert_eq!(
            d.settle(0).0,
            Next::Heal {
                subject: "m".into(),
                known: 10,
                previous: 12,
                before: 13
            }
        );
        // The catch-up fetched 11 and 12.
        for seq in [11, 12] {
            d.deliver(
                &out(seq, seq - 1, "m").event,
                Some(&Bytes::from(format!("{seq};"))),
                None,
                Path::Replay,
                false,
                0,
            );
        }
        assert_eq!(d.settle(0), (Next::Live, 2));
        assert_eq!(drain(&mut d), "11;12;13;14;");
    }

    #[test]
    fn an_event_behind_its_subject_is_late_not_a_duplicate() {
        let mut d = live(8, 10);
        assert_eq!(d.offer(&out(12, 10, "t"), None, 0), Step::Delivered);
        assert_eq!(d.offer(&out(11, 10, "m"), None, 0), Step::Late, "m never reached 11");
        assert_eq!(d.offer(&out(12, 10, "t"), None, 0), Step::Held, "waits for the reset");
        assert_eq!(d.settle(0).0, Next::Reset("live_out_of_order"));
        // After the reset the connection goes on from the stream's end.
        d.cursor = Cursor::at(12);
        assert_eq!(d.settle(0), (Next::Live, 0), "12 is a duplicate now");
    }

    #[test]
    fn live_events_wait_for_room_after_a_replay_filled_the_queue() {
        let mut d = Delivery::new(2, 0);
        d.cursor = Cursor::at(0);
        assert_eq!(d.offer(&out(3, 2, "m"), None, 0), Step::Held);
        for seq in [1, 2] {
            let replayed = out(seq, seq - 1, "m");
            let step = d.deliver(&replayed.event, replayed.frame.as_ref(), None, Path::Replay, false, 0);
            assert_eq!(step, Step::Delivered);
        }
        assert_eq!(d.settle(0), (Next::Wait, 0), "not an overflow");
        assert_eq!(d.ended(), None);
        assert_eq!(drain(&mut d), "1;2;");
        assert_eq!(d.settle(0), (Next::Live, 1));
        assert_eq!(drain(&mut d), "3;");
    }

    #[test]
    fn a_stream_still_catching_up_is_not_a_slow_consumer_it_replays_what_it_could_not_hold() {
        let mut d = Delivery::new(2, 0);
        d.cursor = Cursor::at(10);
        for seq in 11..=20 {
            assert_eq!(d.offer(&out(seq, seq - 1, "m"), None, 0), Step::Held, "{seq}");
        }
        assert_eq!(d.ended(), None, "not closed");
        // What was held is dropped and read back from the stream after the cursor.
        assert_eq!(d.settle(0), (Next::Resync { from: 11 }, 0));
    }

    #[test]
    fn overflow_ends_the_stream_and_frees_the_queue() {
        let mut d = live(2, 0);
        d.offer(&out(1, 0, "m"), None, 0);
        d.offer(&out(2, 1, "m"), None, 0);
        assert_eq!(d.offer(&out(3, 2, "m"), None, 0), Step::Overflowed);
        assert_eq!(d.ended(), Some(Closed::SlowConsumer));
        assert_eq!(drain(&mut d), "", "nothing more is sent");
    }

    #[test]
    fn conflated_slots_keep_only_the_newest_frame() {
        let mut d = live(2, 0);
        for seq in 1..=5 {
            assert_eq!(d.offer(&out(seq, seq - 1, "t"), Some(0), 0), Step::Delivered);
        }
        d.push_unread(Bytes::from_static(b"u1;"), None, 0);
        d.push_unread(Bytes::from_static(b"u2;"), None, 0);
        assert_eq!(drain(&mut d), "5;u2;");
    }

    #[test]
    fn an_unread_count_older_than_one_queued_before_is_dropped() {
        let at = |version| Some(UnreadCount { count: 0, version });
        let mut d = live(8, 0);
        d.push_unread(Bytes::from_static(b"u3;"), at(3), 0);
        assert_eq!(drain(&mut d), "u3;");
        d.push_unread(Bytes::from_static(b"u2;"), at(2), 0);
        d.push_unread(Bytes::from_static(b"u3;"), at(3), 0);
        assert_eq!(drain(&mut d), "", "older, or the same again");
        d.push_unread(Bytes::from_static(b"u5;"), at(5), 0);
        d.push_unread(Bytes::from_static(b"u4;"), at(4), 0);
        assert_eq!(drain(&mut d), "u5;");
        d.push_unread(Bytes::from_static(b"u?;"), None, 0);
        assert_eq!(drain(&mut d), "u?;", "a count without a version always goes");
        d.push_unread(Bytes::from_static(b"u4;"), at(4), 0);
        assert_eq!(drain(&mut d), "", "and leaves the newest version as it was");
    }

    #[test]
    fn an_unread_count_waits_for_the_hand_over_to_live() {
        let mut d = Delivery::new(8, 0);
        d.push_unread(Bytes::from_static(b"u1;"), None, 0);
        d.push_control(Bytes::from_static(b"connected;"), None, 0);
        assert_eq!(d.settle(0).0, Next::Live);
        assert_eq!(drain(&mut d), "connected;u1;");
    }

    #[test]
    fn stalls_and_quiet_streams_follow_the_coarse_clock() {
        let mut d = live(8, 0);
        assert!(d.quiet(15, 15));
        assert!(!d.stalled(15, 10), "an empty queue never stalls");
        d.offer(&out(1, 0, "m"), None, 20);
        assert!(!d.quiet(21, 15));
        assert!(!d.stalled(25, 10));
        assert!(d.stalled(30, 10));
    }
}
