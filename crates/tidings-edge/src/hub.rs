//! The node's fan-out: which connections want which member's and topic's live events,
//! and the NATS interest that follows from it. Plain data and locks: no NATS, no HTTP.
//!
//! Interest is per member partition (`<prefix>.live.member.<p>.*`) and per topic. It is
//! taken when the first local connection of a partition or topic registers and dropped
//! after the last one leaves; tabs of one member share it. Delivery into a connection
//! never blocks: each connection has a bounded inbox, and a connection whose inbox is
//! full is marked slow and closed by its own task (it resumes by Last-Event-ID).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tidings_bus::{BusEvent, SubjectTarget};
use tidings_domain::{MemberId, Topic};
use tokio::sync::Notify;

use crate::topics::TopicMode;

/// A unit of NATS interest.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Interest {
    Partition(u16),
    Topic(Topic),
}

/// Why a connection could not register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    NodeFull,
    MemberFull,
}

/// One SSE connection, as the hub sees it.
#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) id: u64,
    pub(crate) member: MemberId,
    pub(crate) partition: u16,
    pub(crate) topics: Vec<(Topic, TopicMode)>,
    inbox: Mutex<Inbox>,
    /// Woken whenever the inbox gains something.
    pub(crate) ready: Notify,
    /// Cancelled when the inbox overflows, so a task blocked writing to a slow socket
    /// stops at once instead of at its write timeout.
    pub(crate) overflowed: tokio_util::sync::CancellationToken,
}

/// What the hub hands a connection, in the order it arrived.
#[derive(Debug)]
pub(crate) struct Inbox {
    capacity: usize,
    /// Member events and `all`-topic events, in stream order.
    pub(crate) queue: VecDeque<Arc<BusEvent>>,
    /// The newest undelivered event of each `latest` topic: a newer one replaces it.
    pub(crate) latest: Vec<Arc<BusEvent>>,
    /// The inbox overflowed: the connection must close.
    pub(crate) slow: bool,
    /// Live delivery may have lost messages (NATS reconnected): replay before going on.
    pub(crate) resync: bool,
    /// The member's unread count changed to this.
    pub(crate) unread: Option<u64>,
}

impl Conn {
    pub(crate) fn new(member: MemberId, partition: u16, topics: Vec<(Topic, TopicMode)>, capacity: usize) -> Arc<Self> {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Arc::new(Self {
            id: NEXT.fetch_add(1, Ordering::Relaxed),
            member,
            partition,
            topics,
            inbox: Mutex::new(Inbox {
                capacity,
                queue: VecDeque::new(),
                latest: Vec::new(),
                slow: false,
                resync: false,
                unread: None,
            }),
            ready: Notify::new(),
            overflowed: tokio_util::sync::CancellationToken::new(),
        })
    }

    /// Takes everything queued so far.
    pub(crate) fn take(&self) -> Inbox {
        let mut inbox = self.inbox.lock().expect("invariant: never poisoned");
        Inbox {
            capacity: inbox.capacity,
            queue: std::mem::take(&mut inbox.queue),
            latest: std::mem::take(&mut inbox.latest),
            slow: std::mem::take(&mut inbox.slow),
            resync: std::mem::take(&mut inbox.resync),
            unread: inbox.unread.take(),
        }
    }

    fn mode_of(&self, topic: &Topic) -> Option<TopicMode> {
        self.topics.iter().find(|(t, _)| t == topic).map(|(_, m)| *m)
    }

    fn push(&self, event: &Arc<BusEvent>, mode: Option<TopicMode>) {
        let mut inbox = self.inbox.lock().expect("invariant: never poisoned");
        if inbox.slow {
            return;
        }
        if mode == Some(TopicMode::Latest) {
            match inbox.latest.iter_mut().find(|e| e.subject == event.subject) {
                Some(slot) => *slot = event.clone(),
                None => inbox.latest.push(event.clone()),
            }
        } else if inbox.queue.len() >= inbox.capacity {
            inbox.slow = true;
            inbox.queue.clear();
            self.overflowed.cancel();
        } else {
            inbox.queue.push_back(event.clone());
        }
        drop(inbox);
        self.ready.notify_one();
    }

    fn flag(&self, set: impl FnOnce(&mut Inbox)) {
        set(&mut self.inbox.lock().expect("invariant: never poisoned"));
        self.ready.notify_one();
    }
}

/// The registry. One per edge node.
#[derive(Debug, Default)]
pub(crate) struct Hub {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    members: HashMap<MemberId, Vec<Arc<Conn>>>,
    topics: HashMap<Topic, Vec<Arc<Conn>>>,
    partitions: HashMap<u16, usize>,
    connections: usize,
}

impl Hub {
    /// Adds a connection within the limits; returns the interest it needs (all of it,
    /// not only what is new: the caller makes sure each is in place before replaying).
    pub(crate) fn register(
        &self,
        conn: &Arc<Conn>,
        max_total: usize,
        max_per_member: usize,
    ) -> Result<Vec<Interest>, Refused> {
        let mut s = self.state.lock().expect("invariant: never poisoned");
        if s.connections >= max_total {
            return Err(Refused::NodeFull);
        }
        let tabs = s.members.get(&conn.member).map_or(0, Vec::len);
        if tabs >= max_per_member {
            return Err(Refused::MemberFull);
        }
        s.connections += 1;
        s.members.entry(conn.member.clone()).or_default().push(conn.clone());
        *s.partitions.entry(conn.partition).or_default() += 1;
        let mut needed = vec![Interest::Partition(conn.partition)];
        for (topic, _) in &conn.topics {
            s.topics.entry(topic.clone()).or_default().push(conn.clone());
            needed.push(Interest::Topic(topic.clone()));
        }
        Ok(needed)
    }

    /// Removes a connection; returns the interest nobody on this node needs any more.
    pub(crate) fn unregister(&self, conn: &Arc<Conn>) -> Vec<Interest> {
        let mut s = self.state.lock().expect("invariant: never poisoned");
        let mut released = Vec::new();
        let Some(tabs) = s.members.get_mut(&conn.member) else {
            return released;
        };
        let before = tabs.len();
        tabs.retain(|c| c.id != conn.id);
        if tabs.len() == before {
            return released;
        }
        if tabs.is_empty() {
            s.members.remove(&conn.member);
        }
        s.connections -= 1;
        if let Some(n) = s.partitions.get_mut(&conn.partition) {
            *n -= 1;
            if *n == 0 {
                s.partitions.remove(&conn.partition);
                released.push(Interest::Partition(conn.partition));
            }
        }
        for (topic, _) in &conn.topics {
            if let Some(conns) = s.topics.get_mut(topic) {
                conns.retain(|c| c.id != conn.id);
                if conns.is_empty() {
                    s.topics.remove(topic);
                    released.push(Interest::Topic(topic.clone()));
                }
            }
        }
        released
    }

    /// Whether any local connection still needs `interest`.
    pub(crate) fn wants(&self, interest: &Interest) -> bool {
        let s = self.state.lock().expect("invariant: never poisoned");
        match interest {
            Interest::Partition(p) => s.partitions.contains_key(p),
            Interest::Topic(t) => s.topics.contains_key(t),
        }
    }

    /// Hands a live event to every connection that wants it. Never blocks on a
    /// connection; a full inbox marks that connection slow.
    pub(crate) fn dispatch(&self, event: Arc<BusEvent>) -> usize {
        let s = self.state.lock().expect("invariant: never poisoned");
        let targets: &[Arc<Conn>] = match &event.target {
            SubjectTarget::Member(m) => s.members.get(m).map_or(&[], Vec::as_slice),
            SubjectTarget::Topic(t) => s.topics.get(t).map_or(&[], Vec::as_slice),
        };
        for conn in targets {
            let mode = match &event.target {
                SubjectTarget::Topic(t) => conn.mode_of(t),
                SubjectTarget::Member(_) => None,
            };
            conn.push(&event, mode);
        }
        targets.len()
    }

    /// Tells every connection of `member` its new unread count.
    pub(crate) fn unread(&self, member: &MemberId, count: u64) {
        let s = self.state.lock().expect("invariant: never poisoned");
        for conn in s.members.get(member).into_iter().flatten() {
            conn.flag(|inbox| inbox.unread = Some(count));
        }
    }

    /// Asks every connection to replay what live delivery may have missed.
    pub(crate) fn resync_all(&self) {
        for conn in self.all() {
            conn.flag(|inbox| inbox.resync = true);
        }
    }

    /// Every connection, for drain.
    pub(crate) fn all(&self) -> Vec<Arc<Conn>> {
        let s = self.state.lock().expect("invariant: never poisoned");
        s.members.values().flatten().cloned().collect()
    }

    pub(crate) fn connections(&self) -> usize {
        self.state.lock().expect("invariant: never poisoned").connections
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use tidings_bus::EventKind;

    use super::*;

    fn member(s: &str) -> MemberId {
        MemberId::parse(s).unwrap()
    }

    fn topic(s: &str) -> Topic {
        Topic::parse(s).unwrap()
    }

    fn event(seq: u64, target: SubjectTarget, subject: &str) -> Arc<BusEvent> {
        Arc::new(BusEvent {
            seq,
            previous_on_subject: Some(0),
            kind: match &target {
                SubjectTarget::Member(_) => EventKind::Notification,
                SubjectTarget::Topic(t) => EventKind::Topic(t.to_string()),
            },
            target,
            subject: subject.into(),
            payload: Bytes::new(),
            published_at: None,
            traceparent: None,
        })
    }

    #[test]
    fn interest_follows_the_first_and_last_connection() {
        let hub = Hub::default();
        let a1 = Conn::new(member("a"), 7, vec![(topic("t"), TopicMode::All)], 8);
        let a2 = Conn::new(member("a"), 7, vec![], 8);
        assert_eq!(
            hub.register(&a1, 10, 10).unwrap(),
            [Interest::Partition(7), Interest::Topic(topic("t"))]
        );
        hub.register(&a2, 10, 10).unwrap();
        assert!(hub.wants(&Interest::Partition(7)));
        assert_eq!(
            hub.unregister(&a1),
            [Interest::Topic(topic("t"))],
            "a2 still needs the partition"
        );
        assert!(hub.unregister(&a1).is_empty(), "unregistering twice is harmless");
        assert_eq!(hub.unregister(&a2), [Interest::Partition(7)]);
        assert!(!hub.wants(&Interest::Partition(7)));
        assert_eq!(hub.connections(), 0);
        assert!(!hub.wants(&Interest::Topic(topic("t"))));
    }

    #[test]
    fn limits_per_node_and_member() {
        let hub = Hub::default();
        hub.register(&Conn::new(member("a"), 1, vec![], 8), 2, 1).unwrap();
        assert_eq!(
            hub.register(&Conn::new(member("a"), 1, vec![], 8), 2, 1),
            Err(Refused::MemberFull)
        );
        hub.register(&Conn::new(member("b"), 2, vec![], 8), 2, 1).unwrap();
        assert_eq!(
            hub.register(&Conn::new(member("c"), 3, vec![], 8), 2, 1),
            Err(Refused::NodeFull)
        );
    }

    #[test]
    fn events_reach_only_their_member_and_topic_subscribers() {
        let hub = Hub::default();
        let a = Conn::new(member("a"), 1, vec![(topic("t"), TopicMode::All)], 8);
        let b = Conn::new(member("b"), 1, vec![], 8);
        hub.register(&a, 10, 10).unwrap();
        hub.register(&b, 10, 10).unwrap();
        assert_eq!(hub.dispatch(event(1, SubjectTarget::Member(member("a")), "m.a")), 1);
        assert_eq!(hub.dispatch(event(2, SubjectTarget::Topic(topic("t")), "t")), 1);
        assert_eq!(hub.dispatch(event(3, SubjectTarget::Member(member("zz")), "m.zz")), 0);
        assert_eq!(a.take().queue.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2]);
        assert!(b.take().queue.is_empty());
    }

    #[test]
    fn a_full_inbox_marks_the_connection_slow_and_latest_topics_conflate() {
        let hub = Hub::default();
        let slow = Conn::new(member("a"), 1, vec![(topic("board"), TopicMode::Latest)], 2);
        let fast = Conn::new(member("a"), 1, vec![], 2);
        hub.register(&slow, 10, 10).unwrap();
        hub.register(&fast, 10, 10).unwrap();
        for seq in 1..=2 {
            hub.dispatch(event(seq, SubjectTarget::Member(member("a")), "m.a"));
        }
        assert_eq!(fast.take().queue.len(), 2, "the fast tab drained");
        hub.dispatch(event(3, SubjectTarget::Member(member("a")), "m.a"));
        let inbox = slow.take();
        assert!(inbox.slow, "the third event overflowed the slow tab");
        assert_eq!(fast.take().queue.len(), 1, "the fast tab is not affected");

        let reader = Conn::new(member("b"), 2, vec![(topic("board"), TopicMode::Latest)], 2);
        hub.register(&reader, 10, 10).unwrap();
        for seq in 10..20 {
            hub.dispatch(event(seq, SubjectTarget::Topic(topic("board")), "board"));
        }
        let inbox = reader.take();
        assert!(!inbox.slow, "latest topics never overflow");
        assert_eq!(
            inbox.latest.iter().map(|e| e.seq).collect::<Vec<_>>(),
            [19],
            "only the newest value is kept"
        );
    }
}
