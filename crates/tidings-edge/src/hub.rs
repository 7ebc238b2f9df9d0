//! The node's fan-out: which connections want which member's and topic's live events,
//! and the NATS interest that follows from it. Plain data and locks: no NATS, no HTTP.
//!
//! Interest is per member partition (`<prefix>.live.member.<p>.*`) and per topic. It is
//! taken when the first local connection of a partition or topic registers and dropped
//! after the last one leaves; tabs of one member share it. Delivery into a connection
//! never blocks: each connection has a bounded queue (`delivery.rs`), and a connection
//! whose queue is full is closed as a slow consumer (it resumes by Last-Event-ID).
//! An anonymous connection (public topics only) has no member: it takes no partition
//! interest and counts only against the node's limit.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Waker;

use bytes::Bytes;
use indexmap::IndexMap;
use tidings_bus::SubjectTarget;
use tidings_domain::{MemberId, Topic, UnreadCount};
use tokio::sync::mpsc;

use crate::delivery::{Closed, Delivery, LiveEvent, Step};
use crate::kill_switch::KillSwitch;
use crate::ready::{Ready, StartAt};
use crate::topics::TopicMode;

/// A unit of NATS interest.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Interest {
    Partition(u16),
    Topic(Topic),
}

/// A registered connection: the interest it needs (all of it, not only what is new:
/// a catch-up makes sure each is in place before replaying), and where it starts live
/// at once when the node accounts for that interest (`ready.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Registered {
    pub(crate) interests: Vec<Interest>,
    pub(crate) live_at: Option<StartAt>,
}

/// Why a connection could not register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    NodeFull,
    MemberFull,
}

/// Whose inbox a connection carries, and the live partition it is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Inbox {
    pub(crate) member: MemberId,
    pub(crate) partition: u16,
}

/// One SSE connection, as the hub sees it: who it is for, and its delivery state.
#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) id: u64,
    /// `None` for an anonymous stream of public topics.
    pub(crate) inbox: Option<Inbox>,
    pub(crate) topics: Vec<(Topic, TopicMode)>,
    /// When the subscriber's token expires, Unix seconds.
    pub(crate) expires_at: u64,
    pub(crate) opened: std::time::Instant,
    delivery: Mutex<Delivery>,
    /// Closes the HTTP connection itself (a socket that stopped draining never polls
    /// its response again). Absent when served without the edge's accept loop.
    kill: Option<Arc<KillSwitch>>,
}

impl Conn {
    pub(crate) fn new(
        inbox: Option<Inbox>,
        topics: Vec<(Topic, TopicMode)>,
        expires_at: u64,
        capacity: usize,
        now: u32,
        kill: Option<Arc<KillSwitch>>,
    ) -> Arc<Self> {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Arc::new(Self {
            id: NEXT.fetch_add(1, Ordering::Relaxed),
            inbox,
            topics,
            expires_at,
            opened: std::time::Instant::now(),
            delivery: Mutex::new(Delivery::new(capacity, now)),
            kill,
        })
    }

    /// The member, for logs: `-` for an anonymous stream.
    pub(crate) fn who(&self) -> &str {
        self.inbox.as_ref().map_or("-", |i| i.member.as_str())
    }

    pub(crate) fn delivery(&self) -> MutexGuard<'_, Delivery> {
        self.delivery.lock().expect("invariant: never poisoned")
    }

    /// Ends the stream after what is queued; a slow consumer's socket is closed too.
    pub(crate) fn end(&self, reason: Closed) {
        self.delivery().end(reason);
        if reason == Closed::SlowConsumer {
            self.kill();
        }
    }

    /// Closes the HTTP connection now.
    pub(crate) fn kill(&self) {
        if let Some(kill) = &self.kill {
            kill.fire();
        }
    }

    /// The conflation slot of `topic` on this connection, when it is a `latest` topic.
    pub(crate) fn latest_slot(&self, topic: &Topic) -> Option<u8> {
        self.topics
            .iter()
            .position(|(t, m)| t == topic && *m == TopicMode::Latest)
            .and_then(|i| u8::try_from(i).ok())
    }

    /// Offers a live event; a slow consumer found here is closed. The body's waker,
    /// if it must be woken, goes to `wakers`.
    fn offer(&self, out: &Arc<LiveEvent>, now: u32, wakers: &mut Vec<Waker>) -> Step {
        let slot = match &out.event.target {
            SubjectTarget::Topic(t) => self.latest_slot(t),
            SubjectTarget::Member(_) => None,
        };
        let step = {
            let mut delivery = self.delivery();
            let step = delivery.offer(out, slot, now);
            wakers.extend(delivery.waker_if_ready());
            step
        };
        if step == Step::Overflowed {
            tracing::warn!(
                member = self.who(),
                connection = self.id,
                "slow consumer; closing stream"
            );
            self.kill();
        }
        step
    }
}

/// Connections that must catch up (a live gap, live delivery that may have lost
/// messages), queued for the catch-up module (`catch_up.rs`), which runs a short task
/// for each. A connection is queued only when its phase turns from live to catching
/// up, so it is in the queue at most once at a time: the queue, sized by the node's
/// connection limit, never fills.
#[derive(Debug, Clone)]
pub(crate) struct CatchUpQueue(mpsc::Sender<Arc<Conn>>);

impl CatchUpQueue {
    pub(crate) fn new(capacity: usize) -> (Self, mpsc::Receiver<Arc<Conn>>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (Self(tx), rx)
    }

    pub(crate) fn push(&self, conn: Arc<Conn>) {
        match self.0.try_send(conn) {
            Ok(()) => {}
            // Never silent: a connection left catching up with no task would stall.
            Err(mpsc::error::TrySendError::Full(conn)) => {
                tracing::error!(connection = conn.id, "catch-up queue full; closing the stream");
                conn.end(Closed::Error);
            }
            // Shutting down: the stream ends anyway.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }
}

/// What one live event did on this node.
#[derive(Debug, Default)]
pub(crate) struct Dispatched {
    /// Connections that received its frame.
    pub(crate) delivered: u64,
    /// Connections it reached: delivered (with or without a frame) or held for after
    /// their catch-up.
    pub(crate) reached: u64,
    /// Connections that saw a gap and must catch up (a task per connection).
    pub(crate) catch_up: Vec<Arc<Conn>>,
}

/// The registry. One per edge node.
#[derive(Debug, Default)]
pub(crate) struct Hub {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// A member's tabs on this node: a handful, so a list.
    members: HashMap<MemberId, Vec<Arc<Conn>>>,
    /// A topic's subscribers by connection id: a board may have tens of thousands on
    /// one node, and each leaving must cost O(1) under the lock the live task needs
    /// (a list's `retain` made 10,000 viewers leaving 50 M comparisons). Iteration
    /// stays a walk over contiguous entries.
    topics: HashMap<Topic, IndexMap<u64, Arc<Conn>>>,
    partitions: HashMap<u16, usize>,
    /// Streams of public topics only, without a member.
    anonymous: IndexMap<u64, Arc<Conn>>,
    connections: usize,
    /// What lets a fresh stream start live at once; kept under this lock, so a
    /// stream registering and the live task dispatching or dropping interest see one
    /// order.
    ready: Ready,
}

impl State {
    fn wants(&self, interest: &Interest) -> bool {
        match interest {
            Interest::Partition(p) => self.partitions.contains_key(p),
            Interest::Topic(t) => self.topics.contains_key(t),
        }
    }

    fn unaccount(&mut self, interest: &Interest) {
        match interest {
            Interest::Partition(p) => self.ready.drop_partition(*p),
            Interest::Topic(t) => self.ready.drop_topic(t),
        }
    }

    fn all(&self) -> Vec<Arc<Conn>> {
        self.members
            .values()
            .flatten()
            .chain(self.anonymous.values())
            .cloned()
            .collect()
    }
}

impl Hub {
    /// Adds a connection within the limits: the interest it needs, and, for a fresh
    /// stream (`fresh`: no position of its own to resume from) whose interest the node
    /// accounts for, where it starts live.
    pub(crate) fn register(
        &self,
        conn: &Arc<Conn>,
        fresh: bool,
        max_total: usize,
        max_per_member: usize,
    ) -> Result<Registered, Refused> {
        let mut s = self.state.lock().expect("invariant: never poisoned");
        if s.connections >= max_total {
            return Err(Refused::NodeFull);
        }
        let mut needed = Vec::with_capacity(conn.topics.len() + 1);
        match &conn.inbox {
            Some(inbox) => {
                let tabs = s.members.get(&inbox.member).map_or(0, Vec::len);
                if tabs >= max_per_member {
                    return Err(Refused::MemberFull);
                }
                s.members.entry(inbox.member.clone()).or_default().push(conn.clone());
                *s.partitions.entry(inbox.partition).or_default() += 1;
                needed.push(Interest::Partition(inbox.partition));
            }
            None => {
                s.anonymous.insert(conn.id, conn.clone());
            }
        }
        s.connections += 1;
        for (topic, _) in &conn.topics {
            s.topics.entry(topic.clone()).or_default().insert(conn.id, conn.clone());
            needed.push(Interest::Topic(topic.clone()));
        }
        let live_at = fresh
            .then(|| {
                let partition = conn.inbox.as_ref().map(|i| i.partition);
                let topics = conn.topics.iter().map(|(t, m)| (*m == TopicMode::All, t));
                s.ready.start(partition, topics)
            })
            .flatten();
        Ok(Registered {
            interests: needed,
            live_at,
        })
    }

    /// Removes a connection; returns the interest nobody on this node needs any more.
    pub(crate) fn unregister(&self, conn: &Arc<Conn>) -> Vec<Interest> {
        let mut s = self.state.lock().expect("invariant: never poisoned");
        let mut released = Vec::new();
        match &conn.inbox {
            Some(inbox) => {
                let Some(tabs) = s.members.get_mut(&inbox.member) else {
                    return released;
                };
                let before = tabs.len();
                tabs.retain(|c| c.id != conn.id);
                if tabs.len() == before {
                    return released;
                }
                if tabs.is_empty() {
                    s.members.remove(&inbox.member);
                }
                if let Some(n) = s.partitions.get_mut(&inbox.partition) {
                    *n -= 1;
                    if *n == 0 {
                        s.partitions.remove(&inbox.partition);
                        released.push(Interest::Partition(inbox.partition));
                    }
                }
            }
            None => {
                if s.anonymous.swap_remove(&conn.id).is_none() {
                    return released;
                }
            }
        }
        s.connections -= 1;
        for (topic, _) in &conn.topics {
            if let Some(conns) = s.topics.get_mut(topic) {
                conns.swap_remove(&conn.id);
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
        self.state.lock().expect("invariant: never poisoned").wants(interest)
    }

    /// Whether `interest`'s subscription may go: no local connection needs it. It is
    /// no longer accounted for from here on, in the same lock, so no stream that
    /// registers afterwards relies on it.
    pub(crate) fn release(&self, interest: &Interest) -> bool {
        let mut s = self.state.lock().expect("invariant: never poisoned");
        let unwanted = !s.wants(interest);
        if unwanted {
            s.unaccount(interest);
        }
        unwanted
    }

    /// `interest`'s own subscription is about to go (another one covers it).
    pub(crate) fn unaccount(&self, interest: &Interest) {
        self.state
            .lock()
            .expect("invariant: never poisoned")
            .unaccount(interest);
    }

    /// The subscription to every member partition is about to go.
    pub(crate) fn unaccount_all_members(&self) {
        self.state
            .lock()
            .expect("invariant: never poisoned")
            .ready
            .drop_all_members();
    }

    /// See [`Ready::accounted`].
    pub(crate) fn accounted(
        &self,
        epoch: tidings_domain::StreamEpoch,
        last_seq: u64,
        interests: &[Interest],
        all_members: bool,
    ) {
        let partitions = interests.iter().filter_map(|i| match i {
            Interest::Partition(p) => Some(*p),
            Interest::Topic(_) => None,
        });
        let topics = interests.iter().filter_map(|i| match i {
            Interest::Topic(t) => Some(t),
            Interest::Partition(_) => None,
        });
        let mut s = self.state.lock().expect("invariant: never poisoned");
        s.ready.accounted(epoch, last_seq, partitions, topics, all_members);
    }

    /// No stream starts live at once until the node's position is read again.
    pub(crate) fn void_position(&self) {
        self.state.lock().expect("invariant: never poisoned").ready.void();
    }

    /// The member partitions local connections live in.
    pub(crate) fn partitions(&self) -> Vec<u16> {
        let s = self.state.lock().expect("invariant: never poisoned");
        s.partitions.keys().copied().collect()
    }

    pub(crate) fn partition_count(&self) -> usize {
        self.state.lock().expect("invariant: never poisoned").partitions.len()
    }

    /// Hands a live event to every connection that wants it. Never blocks on a
    /// connection; a full queue ends that connection as a slow consumer. The caller
    /// wakes `wakers` once it has dispatched its whole batch.
    ///
    /// The registry's lock is held only to take the list of connections (a board may
    /// have 10,000 viewers here), never while offering: connects and disconnects on
    /// other threads never wait for a whole topic's dispatch, and a connection whose
    /// own lock is busy holds up this event only. Nothing is lost by offering outside
    /// the lock: a connection that registers after the list was taken reads the stream
    /// after this event was stored (its catch-up replays it), and one that left gets
    /// an offer it ignores.
    pub(crate) fn dispatch(&self, out: &Arc<LiveEvent>, now: u32, wakers: &mut Vec<Waker>) -> Dispatched {
        let conns: Vec<Arc<Conn>> = {
            let mut s = self.state.lock().expect("invariant: never poisoned");
            // A stream registering from here on starts past this event.
            s.ready.passed(out.event.seq);
            match &out.event.target {
                SubjectTarget::Member(m) => s.members.get(m).cloned().unwrap_or_default(),
                SubjectTarget::Topic(t) => s
                    .topics
                    .get(t)
                    .map(|c| c.values().cloned().collect())
                    .unwrap_or_default(),
            }
        };
        let mut dispatched = Dispatched::default();
        for conn in conns {
            match conn.offer(out, now, wakers) {
                Step::Delivered => {
                    dispatched.reached += 1;
                    dispatched.delivered += u64::from(out.frame.is_some());
                }
                Step::Held => dispatched.reached += 1,
                Step::Gap | Step::Late => {
                    dispatched.reached += 1;
                    dispatched.catch_up.push(conn);
                }
                Step::Skipped | Step::Overflowed => {}
            }
        }
        dispatched
    }

    /// Tells every connection of `member` its new unread count (`frame`, showing
    /// `count`; see `Delivery::push_unread`); returns how many connections there were.
    pub(crate) fn unread(&self, member: &MemberId, frame: &Bytes, count: Option<UnreadCount>, now: u32) -> usize {
        let tabs = self.tabs(member);
        for conn in &tabs {
            conn.delivery().push_unread(frame.clone(), count, now);
        }
        tabs.len()
    }

    /// Whether `member` has a connection on this node.
    pub(crate) fn holds(&self, member: &MemberId) -> bool {
        self.state
            .lock()
            .expect("invariant: never poisoned")
            .members
            .contains_key(member)
    }

    /// The connections of each of `members` on this node, with the index of their
    /// member, in `members`' order (taken under one lock, used outside it).
    pub(crate) fn tabs_of(&self, members: &[MemberId]) -> Vec<(usize, Arc<Conn>)> {
        let s = self.state.lock().expect("invariant: never poisoned");
        let mut tabs = Vec::new();
        for (i, member) in members.iter().enumerate() {
            if let Some(conns) = s.members.get(member) {
                tabs.extend(conns.iter().map(|conn| (i, conn.clone())));
            }
        }
        tabs
    }

    /// The member's connections on this node (taken under the lock, used outside it).
    pub(crate) fn tabs(&self, member: &MemberId) -> Vec<Arc<Conn>> {
        let s = self.state.lock().expect("invariant: never poisoned");
        s.members.get(member).cloned().unwrap_or_default()
    }

    /// Asks every connection to replay what live delivery may have missed; returns
    /// those that need a catch-up task started. The node's position is void from
    /// the same moment: a stream registering later starts through a catch-up.
    pub(crate) fn resync_all(&self) -> Vec<Arc<Conn>> {
        let all = {
            let mut s = self.state.lock().expect("invariant: never poisoned");
            s.ready.void();
            s.all()
        };
        all.into_iter().filter(|c| c.delivery().resync()).collect()
    }

    /// Every connection, for drain.
    pub(crate) fn all(&self) -> Vec<Arc<Conn>> {
        self.state.lock().expect("invariant: never poisoned").all()
    }

    pub(crate) fn connections(&self) -> usize {
        self.state.lock().expect("invariant: never poisoned").connections
    }
}

#[cfg(test)]
mod tests {
    use tidings_bus::{BusEvent, EventKind};

    use super::*;
    use crate::cursor::Cursor;

    fn member(s: &str) -> MemberId {
        MemberId::parse(s).unwrap()
    }

    fn topic(s: &str) -> Topic {
        Topic::parse(s).unwrap()
    }

    fn conn(m: &str, partition: u16, topics: Vec<(Topic, TopicMode)>, capacity: usize) -> Arc<Conn> {
        let inbox = Inbox {
            member: member(m),
            partition,
        };
        let conn = Conn::new(Some(inbox), topics, u64::MAX, capacity, 0, None);
        conn.delivery().cursor = Cursor::at(0);
        conn.delivery().settle(0);
        conn
    }

    fn event(seq: u64, target: SubjectTarget, subject: &str) -> Arc<LiveEvent> {
        Arc::new(LiveEvent {
            event: BusEvent {
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
                unread: None,
            },
            frame: Some(Bytes::from(format!("{seq};"))),
        })
    }

    impl Hub {
        fn dispatch_now(&self, out: &Arc<LiveEvent>, now: u32) -> Dispatched {
            let mut wakers = Vec::new();
            let dispatched = self.dispatch(out, now, &mut wakers);
            wakers.into_iter().for_each(Waker::wake);
            dispatched
        }
    }

    fn sent(conn: &Conn) -> String {
        let waker = std::task::Waker::noop();
        let mut all = String::new();
        while let Some(Some(frame)) = conn.delivery().take(waker, 0, |_, _| {}) {
            all.push_str(std::str::from_utf8(&frame).unwrap());
        }
        all
    }

    #[test]
    fn interest_follows_the_first_and_last_connection() {
        let hub = Hub::default();
        let a1 = conn("a", 7, vec![(topic("t"), TopicMode::All)], 8);
        let a2 = conn("a", 7, vec![], 8);
        assert_eq!(
            hub.register(&a1, false, 10, 10).unwrap().interests,
            [Interest::Partition(7), Interest::Topic(topic("t"))]
        );
        hub.register(&a2, false, 10, 10).unwrap();
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

    /// A fresh stream starts live at the node's position only where the node holds
    /// and has accounted for its interest; the position moves with every event handed
    /// out and is void after a possible loss; an interest nobody wants stops counting
    /// in the same step that lets its subscription go.
    #[test]
    fn a_fresh_stream_starts_live_on_accounted_interest_at_the_nodes_position() {
        use tidings_domain::StreamEpoch;
        let hub = Hub::default();
        let epoch = StreamEpoch(3);
        let fresh = |m: &str, p: u16| hub.register(&conn(m, p, vec![], 8), true, 10, 10).unwrap().live_at;
        assert_eq!(fresh("a", 1), None, "nothing accounted for yet");

        hub.accounted(epoch, 40, &[Interest::Partition(1)], false);
        assert_eq!(fresh("b", 1), Some(StartAt { epoch, seq: 40 }));
        assert_eq!(fresh("c", 2), None, "a partition the node does not hold");
        let resuming = conn("d", 1, vec![], 8);
        assert_eq!(
            hub.register(&resuming, false, 10, 10).unwrap().live_at,
            None,
            "a resume replays"
        );
        let board = Conn::new(None, vec![(topic("board"), TopicMode::Latest)], u64::MAX, 8, 0, None);
        hub.accounted(epoch, 40, &[Interest::Topic(topic("board"))], false);
        assert_eq!(
            hub.register(&board, true, 10, 10).unwrap().live_at,
            None,
            "a latest topic reads its newest value"
        );

        hub.dispatch_now(&event(41, SubjectTarget::Member(member("zz")), "m.zz"), 0);
        assert_eq!(fresh("e", 1).map(|at| at.seq), Some(41), "past every event handed out");

        assert!(!hub.release(&Interest::Partition(1)), "connections still want it");
        assert!(fresh("f", 1).is_some());
        hub.resync_all();
        assert_eq!(fresh("g", 1), None, "void after a possible loss");
        hub.accounted(epoch, 45, &[], false);
        assert_eq!(fresh("h", 1).map(|at| at.seq), Some(45), "read again");

        let lonely = Hub::default();
        let only = conn("x", 9, vec![], 8);
        lonely.accounted(epoch, 1, &[Interest::Partition(9)], false);
        lonely.register(&only, true, 10, 10).unwrap();
        lonely.unregister(&only);
        assert!(lonely.release(&Interest::Partition(9)), "nobody wants it");
        let late = conn("y", 9, vec![], 8);
        assert_eq!(
            lonely.register(&late, true, 10, 10).unwrap().live_at,
            None,
            "its subscription is going: take it again"
        );
    }

    #[test]
    fn limits_per_node_and_member() {
        let hub = Hub::default();
        hub.register(&conn("a", 1, vec![], 8), false, 2, 1).unwrap();
        assert_eq!(
            hub.register(&conn("a", 1, vec![], 8), false, 2, 1),
            Err(Refused::MemberFull)
        );
        hub.register(&conn("b", 2, vec![], 8), false, 2, 1).unwrap();
        assert_eq!(
            hub.register(&conn("c", 3, vec![], 8), false, 2, 1),
            Err(Refused::NodeFull)
        );
    }

    #[test]
    fn events_reach_only_their_member_and_topic_subscribers() {
        let hub = Hub::default();
        let a = conn("a", 1, vec![(topic("t"), TopicMode::All)], 8);
        let b = conn("b", 1, vec![], 8);
        hub.register(&a, false, 10, 10).unwrap();
        hub.register(&b, false, 10, 10).unwrap();
        assert_eq!(
            hub.dispatch_now(&event(1, SubjectTarget::Member(member("a")), "m.a"), 0)
                .delivered,
            1
        );
        assert_eq!(
            hub.dispatch_now(&event(2, SubjectTarget::Topic(topic("t")), "t"), 0)
                .delivered,
            1
        );
        assert_eq!(
            hub.dispatch_now(&event(3, SubjectTarget::Member(member("zz")), "m.zz"), 0)
                .delivered,
            0
        );
        assert_eq!(sent(&a), "1;2;");
        assert_eq!(sent(&b), "");
    }

    #[test]
    fn an_anonymous_viewer_gets_its_topics_only_and_counts_against_the_node() {
        let hub = Hub::default();
        let viewer = Conn::new(None, vec![(topic("board"), TopicMode::Latest)], u64::MAX, 8, 0, None);
        viewer.delivery().cursor = Cursor::at(0);
        viewer.delivery().settle(0);
        assert_eq!(
            hub.register(&viewer, false, 2, 1).map(|r| r.interests),
            Ok(vec![Interest::Topic(topic("board"))]),
            "no partition interest without a member"
        );
        hub.register(&conn("a", 1, vec![], 8), false, 2, 1).unwrap();
        assert_eq!(
            hub.register(&conn("b", 2, vec![], 8), false, 2, 1),
            Err(Refused::NodeFull)
        );
        hub.dispatch_now(&event(1, SubjectTarget::Member(member("a")), "m.a"), 0);
        hub.dispatch_now(&event(2, SubjectTarget::Topic(topic("board")), "board"), 0);
        assert_eq!(sent(&viewer), "2;");
        assert_eq!(hub.all().len(), 2, "drain reaches anonymous streams too");
        assert_eq!(hub.unregister(&viewer), vec![Interest::Topic(topic("board"))]);
        assert!(hub.unregister(&viewer).is_empty(), "a second unregister is a no-op");
        assert_eq!(hub.connections(), 1);
    }

    #[test]
    fn viewers_leave_a_big_topic_in_any_order_and_the_rest_still_receive() {
        let hub = Hub::default();
        let viewers: Vec<_> = (0..1000)
            .map(|i| conn(&format!("v{i}"), 1, vec![(topic("board"), TopicMode::All)], 8))
            .collect();
        for v in &viewers {
            hub.register(v, false, 10_000, 1).unwrap();
        }
        for v in viewers.iter().step_by(3) {
            hub.unregister(v);
        }
        let dispatched = hub.dispatch_now(&event(1, SubjectTarget::Topic(topic("board")), "board"), 0);
        assert_eq!(dispatched.delivered, 1000 - 334);
        for (i, v) in viewers.iter().enumerate() {
            let expected = if i % 3 == 0 { "" } else { "1;" };
            assert_eq!(sent(v), expected, "viewer {i}");
        }
        for v in &viewers {
            hub.unregister(v);
        }
        assert!(
            !hub.wants(&Interest::Topic(topic("board"))),
            "the last one out drops the interest"
        );
    }

    #[test]
    fn a_connection_busy_elsewhere_holds_up_neither_connects_nor_disconnects() {
        let hub = Arc::new(Hub::default());
        let busy = conn("a", 1, vec![(topic("board"), TopicMode::All)], 8);
        hub.register(&busy, false, 10, 10).unwrap();
        let held = busy.delivery();
        // The live task offers a board message and waits for the busy connection.
        let dispatching = {
            let hub = hub.clone();
            std::thread::spawn(move || hub.dispatch_now(&event(1, SubjectTarget::Topic(topic("board")), "board"), 0))
        };
        std::thread::sleep(std::time::Duration::from_millis(200));
        let (done, registered) = std::sync::mpsc::channel();
        let joining = {
            let hub = hub.clone();
            std::thread::spawn(move || {
                let newcomer = conn("b", 2, vec![(topic("board"), TopicMode::All)], 8);
                let result = hub
                    .register(&newcomer, false, 10, 10)
                    .map(|_| hub.unregister(&newcomer));
                let _ = done.send(result.is_ok());
            })
        };
        let joined = registered.recv_timeout(std::time::Duration::from_secs(5));
        drop(held);
        joining.join().unwrap();
        assert_eq!(joined, Ok(true), "a connect waited for another connection's lock");
        assert_eq!(dispatching.join().unwrap().delivered, 1);
        assert_eq!(sent(&busy), "1;");
    }

    #[test]
    fn a_full_queue_closes_only_that_connection_and_latest_topics_conflate() {
        let hub = Hub::default();
        let slow = conn("a", 1, vec![(topic("board"), TopicMode::Latest)], 2);
        let fast = conn("a", 1, vec![], 2);
        hub.register(&slow, false, 10, 10).unwrap();
        hub.register(&fast, false, 10, 10).unwrap();
        for seq in 1..=2 {
            hub.dispatch_now(&event(seq, SubjectTarget::Member(member("a")), "m.a"), 0);
        }
        assert_eq!(sent(&fast), "1;2;", "the fast tab drained");
        hub.dispatch_now(&event(3, SubjectTarget::Member(member("a")), "m.a"), 0);
        assert_eq!(
            slow.delivery().ended(),
            Some(Closed::SlowConsumer),
            "the third event overflowed the slow tab"
        );
        assert_eq!(sent(&fast), "3;", "the fast tab is not affected");

        let reader = conn("b", 2, vec![(topic("board"), TopicMode::Latest)], 2);
        hub.register(&reader, false, 10, 10).unwrap();
        for seq in 10..20 {
            hub.dispatch_now(&event(seq, SubjectTarget::Topic(topic("board")), "board"), 0);
        }
        assert_eq!(reader.delivery().ended(), None, "latest topics never overflow");
        assert_eq!(sent(&reader), "19;", "only the newest value is kept");
    }
}
