//! What lets a new stream start live at once, without a catch-up: the interest the
//! node holds *and has accounted for*, and the node's position in the stream.
//!
//! A stream with no `Last-Event-ID` starts at a position, its `connected` id, and is
//! owed every event after it. The catch-up path (`catch_up.rs`) gets that position by
//! taking the stream's live interest and then reading the stream's extent: two round
//! trips and a task per stream. When the node already holds the interest, the
//! position can come from the node instead:
//!
//! - the *position* is the highest of (a) every sequence the live task has handed to
//!   the hub and (b) the stream's last sequence as read after each accounted interest
//!   was in place (see [`Ready::accounted`]);
//! - an event stored *before* an interest was in place has a sequence at or below (b):
//!   it is history for any stream starting at the position;
//! - an event stored *after* reaches the node live: either before the stream
//!   registered, then its sequence is at or below (a) — history again — or after, then
//!   the hub offers it to the stream;
//! - live delivery that may have lost messages (`Hub::resync_all`) replays every
//!   registered stream and makes the position void until it is read again, so a stream
//!   starting afterwards never relies on a position taken before the loss;
//! - an interest is dropped from here under the hub's lock *before* its subscription
//!   goes, and only when no connection wants it, so a stream that finds its interest
//!   here keeps it.
//!
//! `latest` topics always take the catch-up path: their newest value is a read.
//! Everything here is read and written under the hub's lock (`hub.rs`).

use std::collections::HashSet;

use tidings_domain::{StreamEpoch, Topic};

/// Where a stream starting now may start: its incarnation and sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StartAt {
    pub(crate) epoch: StreamEpoch,
    pub(crate) seq: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Ready {
    /// The stream's incarnation and the node's position in it; `None` until the
    /// first read after start-up, and again after a loss or a new incarnation.
    at: Option<StartAt>,
    partitions: HashSet<u16>,
    /// The subscription to every member partition is accounted for.
    all_members: bool,
    topics: HashSet<Topic>,
}

impl Ready {
    /// Where a stream needing `partition` (if it has a member) and `topics` may start
    /// live, if the node accounts for all of it.
    pub(crate) fn start<'a>(
        &self,
        partition: Option<u16>,
        topics: impl IntoIterator<Item = (bool, &'a Topic)>,
    ) -> Option<StartAt> {
        let at = self.at?;
        let member = partition.is_none_or(|p| self.all_members || self.partitions.contains(&p));
        let topics = topics.into_iter().all(|(all, t)| all && self.topics.contains(t));
        (member && topics).then_some(at)
    }

    /// A live event handed to the hub: the position moves past it.
    pub(crate) fn passed(&mut self, seq: u64) {
        if let Some(at) = &mut self.at {
            at.seq = at.seq.max(seq);
        }
    }

    /// The stream's last sequence as read (in incarnation `epoch`) after the
    /// subscriptions to `partitions` and `topics` (and, with `all_members`, to every
    /// partition) were in place and able to receive: they are accounted for, and the
    /// position is valid again.
    pub(crate) fn accounted<'a>(
        &mut self,
        epoch: StreamEpoch,
        last_seq: u64,
        partitions: impl IntoIterator<Item = u16>,
        topics: impl IntoIterator<Item = &'a Topic>,
        all_members: bool,
    ) {
        self.at = Some(match self.at {
            Some(at) if at.epoch == epoch => StartAt {
                epoch,
                seq: at.seq.max(last_seq),
            },
            _ => StartAt { epoch, seq: last_seq },
        });
        self.partitions.extend(partitions);
        self.topics.extend(topics.into_iter().cloned());
        self.all_members |= all_members;
    }

    /// The node may have missed live messages, or the stream is another incarnation:
    /// no stream starts from here until the position is read again.
    pub(crate) fn void(&mut self) {
        self.at = None;
    }

    #[cfg(test)]
    fn is_void(&self) -> bool {
        self.at.is_none()
    }

    /// The partition's own subscription is about to go.
    pub(crate) fn drop_partition(&mut self, partition: u16) {
        self.partitions.remove(&partition);
    }

    /// The topic's subscription is about to go.
    pub(crate) fn drop_topic(&mut self, topic: &Topic) {
        self.topics.remove(topic);
    }

    /// The subscription to every partition is about to go.
    pub(crate) fn drop_all_members(&mut self) {
        self.all_members = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(s: &str) -> Topic {
        Topic::parse(s).unwrap()
    }

    const E: StreamEpoch = StreamEpoch(7);

    #[test]
    fn a_stream_starts_live_only_on_accounted_interest_and_a_valid_position() {
        let mut ready = Ready::default();
        let t = topic("t");
        assert_eq!(ready.start(Some(1), []), None, "nothing read yet");

        ready.accounted(E, 10, [1], [&t], false);
        let at = StartAt { epoch: E, seq: 10 };
        assert_eq!(ready.start(Some(1), [(true, &t)]), Some(at));
        assert_eq!(ready.start(None, [(true, &t)]), Some(at), "anonymous, topics only");
        assert_eq!(ready.start(Some(2), []), None, "another partition");
        assert_eq!(
            ready.start(Some(1), [(false, &t)]),
            None,
            "a latest topic reads its value"
        );
        assert_eq!(ready.start(Some(1), [(true, &topic("u"))]), None, "another topic");
        ready.drop_topic(&t);
        assert_eq!(ready.start(None, [(true, &t)]), None, "its subscription goes");

        ready.passed(15);
        ready.passed(12);
        assert_eq!(ready.start(Some(1), []).map(|a| a.seq), Some(15), "the highest passed");
        ready.accounted(E, 13, [2], [], false);
        assert_eq!(ready.start(Some(2), []).map(|a| a.seq), Some(15), "never backwards");

        ready.drop_partition(1);
        assert_eq!(ready.start(Some(1), []), None, "its subscription goes");
        ready.accounted(E, 15, [], [], true);
        assert!(ready.start(Some(1), []).is_some(), "every partition");
        ready.drop_all_members();
        assert_eq!(ready.start(Some(1), []), None);

        ready.void();
        assert_eq!(ready.start(Some(2), []), None, "a loss voids the position");
        ready.passed(20);
        assert!(ready.is_void(), "passing events does not make it valid");
        ready.accounted(StreamEpoch(8), 3, [], [], false);
        assert_eq!(
            ready.start(Some(2), []),
            Some(StartAt {
                epoch: StreamEpoch(8),
                seq: 3
            }),
            "a new incarnation starts over"
        );
    }
}
