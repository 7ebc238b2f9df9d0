//! The live task's side of `ready.rs`: which new subscriptions still wait to be
//! accounted for, and when the node's position must be read again.
//!
//! A subscription counts once the stream's extent has been read *after* it could
//! receive: at once on a single server (the read goes over the same connection, after
//! the subscription), and [`PROPAGATION`] later on a cluster, where the stream
//! leader's server learns of new interest a little later. Until then the streams
//! relying on it start through a catch-up, as before.

use tokio::time::{Duration, Instant};

use tidings_bus::INTEREST_PROPAGATION as PROPAGATION;

use crate::hub::Interest;

/// How soon a failed read is tried again.
const RETRY: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
pub(crate) struct Accounting {
    /// New subscriptions, and from when a read counts for them.
    pending: Vec<(Interest, Instant)>,
    /// The subscription to every partition, likewise.
    all_members: Option<Instant>,
    /// The position is void (a loss, a new incarnation): read it again from then on.
    reread: Option<Instant>,
}

/// What a read of the extent, sent now, accounts for.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Due {
    pub(crate) interests: Vec<Interest>,
    pub(crate) all_members: bool,
}

impl Accounting {
    /// `interest` was just subscribed and confirmed (on a NATS cluster or not).
    pub(crate) fn subscribed(&mut self, interest: Interest, clustered: bool) {
        self.pending.retain(|(i, _)| *i != interest);
        self.pending.push((interest, from_now(clustered)));
    }

    /// The subscription to every partition was just taken and confirmed.
    pub(crate) fn subscribed_all_members(&mut self, clustered: bool) {
        self.all_members = Some(from_now(clustered));
    }

    /// The node's position was voided: read it again once live delivery is back.
    pub(crate) fn voided(&mut self, clustered: bool) {
        self.reread = Some(from_now(clustered));
    }

    /// When the next read is due, if one is.
    pub(crate) fn next_at(&self) -> Option<Instant> {
        let pending = self.pending.iter().map(|(_, at)| *at);
        pending.chain(self.all_members).chain(self.reread).min()
    }

    /// Whether a read sent now is due: it accounts for what has waited long enough.
    pub(crate) fn due(&self) -> bool {
        self.next_at().is_some_and(|at| at <= Instant::now())
    }

    /// Takes what a read sent now accounts for.
    pub(crate) fn take_due(&mut self) -> Due {
        let now = Instant::now();
        let mut due = Due::default();
        self.pending.retain(|(interest, at)| {
            let ripe = *at <= now;
            if ripe {
                due.interests.push(interest.clone());
            }
            !ripe
        });
        if self.all_members.is_some_and(|at| at <= now) {
            self.all_members = None;
            due.all_members = true;
        }
        if self.reread.is_some_and(|at| at <= now) {
            self.reread = None;
        }
        due
    }

    /// A read failed: what it would have accounted for waits for the next, soon.
    pub(crate) fn failed(&mut self, due: Due) {
        let at = Instant::now() + RETRY;
        self.pending.extend(due.interests.into_iter().map(|i| (i, at)));
        if due.all_members {
            self.all_members = Some(at);
        }
        self.reread = Some(at);
    }

    /// `interest`'s subscription went before it was accounted for.
    pub(crate) fn forget(&mut self, interest: &Interest) {
        self.pending.retain(|(i, _)| i != interest);
    }

    pub(crate) fn forget_all_members(&mut self) {
        self.all_members = None;
    }
}

fn from_now(clustered: bool) -> Instant {
    let now = Instant::now();
    if clustered { now + PROPAGATION } else { now }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_subscription_counts_after_a_read_sent_once_it_receives() {
        let mut single = Accounting::default();
        assert!(!single.due());
        single.subscribed(Interest::Partition(1), false);
        assert!(single.due(), "a single server: the next read counts");
        let due = single.take_due();
        assert_eq!(due.interests, [Interest::Partition(1)]);
        assert!(!single.due());

        let mut cluster = Accounting::default();
        cluster.subscribed(Interest::Partition(2), true);
        cluster.subscribed_all_members(true);
        assert!(!cluster.due(), "the leader may not know of it yet");
        assert_eq!(cluster.take_due(), Due::default());
        tokio::time::advance(PROPAGATION).await;
        let due = cluster.take_due();
        assert_eq!((due.interests.len(), due.all_members), (1, true));

        cluster.voided(true);
        tokio::time::advance(PROPAGATION).await;
        assert!(cluster.due());
        let due = cluster.take_due();
        cluster.failed(due);
        assert!(!cluster.due(), "a failed read is retried later");
        tokio::time::advance(RETRY).await;
        assert!(cluster.due());

        cluster.subscribed(Interest::Partition(3), true);
        cluster.forget(&Interest::Partition(3));
        tokio::time::advance(PROPAGATION).await;
        assert!(cluster.take_due().interests.is_empty(), "released before it counted");
    }
}
