//! Where a browser is in the stream: what a resume from its Last-Event-ID would start
//! after, and per subject how far it has been served. The gap and late checks of live
//! delivery are questions to it.

use tidings_bus::BusEvent;

/// A connection's position.
#[derive(Debug, Default)]
pub(crate) struct Cursor {
    /// Highest sequence accounted for: delivered with an id (the client's
    /// Last-Event-ID) or without a frame (an unread-count change, which a resume may
    /// replay again to no effect).
    pub(crate) delivered: u64,
    /// The position the connection started from: everything up to it is the client's.
    baseline: u64,
    /// Last sequence delivered per stored subject; subjects not seen use `baseline`.
    /// A connection has one member subject and at most a few topics: a short list.
    by_subject: Vec<(Box<str>, u64)>,
}

impl Cursor {
    pub(crate) fn at(position: u64) -> Self {
        Self {
            delivered: position,
            baseline: position,
            by_subject: Vec::new(),
        }
    }

    /// How far `subject` has been served.
    pub(crate) fn known(&self, subject: &str) -> u64 {
        self.by_subject
            .iter()
            .find(|(s, _)| &**s == subject)
            .map_or(self.baseline, |(_, seq)| *seq)
    }

    /// Records that everything on `subject` up to `seq` is accounted for.
    pub(crate) fn cover(&mut self, subject: &str, seq: u64) {
        match self.by_subject.iter_mut().find(|(s, _)| &**s == subject) {
            Some((_, known)) => *known = (*known).max(seq),
            None => self.by_subject.push((subject.into(), seq)),
        }
    }

    /// Moves past `event`.
    pub(crate) fn advance(&mut self, event: &BusEvent) {
        self.delivered = event.seq;
        self.cover(&event.subject, event.seq);
    }

    /// Whether `event` is at or below the position: already delivered, or late.
    pub(crate) fn behind(&self, event: &BusEvent) -> bool {
        event.seq <= self.delivered
    }

    /// Whether `event`, though behind the position, was never delivered: its own
    /// subject has not reached it, so it arrived after a later event of another
    /// subject went out. A duplicate (replayed, then received live) is at or below its
    /// subject's position.
    pub(crate) fn late(&self, event: &BusEvent) -> bool {
        self.behind(event) && event.seq > self.known(&event.subject)
    }

    /// Whether a message before `event` on its subject never arrived (RePublish's
    /// `Nats-Last-Sequence` is beyond what the subject has been served).
    pub(crate) fn gap(&self, event: &BusEvent) -> bool {
        event
            .previous_on_subject
            .is_some_and(|previous| previous > self.known(&event.subject))
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use tidings_bus::{EventKind, SubjectTarget};
    use tidings_domain::MemberId;

    use super::*;

    fn event(seq: u64, previous: u64, subject: &str) -> BusEvent {
        BusEvent {
            seq,
            previous_on_subject: Some(previous),
            target: SubjectTarget::Member(MemberId::parse("a").unwrap()),
            subject: subject.into(),
            kind: EventKind::Notification,
            payload: Bytes::new(),
            published_at: None,
            traceparent: None,
            unread: None,
        }
    }

    #[test]
    fn subjects_start_at_the_baseline_and_move_on_their_own() {
        let mut c = Cursor::at(10);
        assert_eq!(c.known("m"), 10);
        assert!(!c.gap(&event(11, 10, "m")));
        assert!(c.gap(&event(13, 12, "m")), "12 never arrived");
        c.advance(&event(12, 10, "t"));
        assert_eq!((c.delivered, c.known("t"), c.known("m")), (12, 12, 10));
        assert!(
            c.behind(&event(12, 10, "t")) && !c.late(&event(12, 10, "t")),
            "a duplicate"
        );
        assert!(c.late(&event(11, 10, "m")), "m never reached 11");
        c.cover("m", 11);
        assert!(!c.late(&event(11, 10, "m")));
    }
}
