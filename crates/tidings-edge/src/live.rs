//! The NATS side of the hub: one task per node owns every live subscription (a member
//! partition or a topic), takes and drops them as the hub's interest changes, and hands
//! each live message to the hub in stream order. Each message is decoded and framed
//! once; every connection it goes to queues the same bytes.
//!
//! Ordering: the stream leader re-publishes in sequence order over this node's single
//! NATS connection, and async-nats pushes each message into its subscription's channel
//! in that order. Whenever this task receives a message it also takes every message
//! already waiting in the other subscriptions — all those with a lower sequence are
//! there by then — and dispatches the batch sorted by sequence. Connections therefore
//! see their member's and topics' events in one increasing sequence, which is what
//! makes a single `Last-Event-ID` a correct resume point. Were an event ever to come
//! after a later one, the connection gets a `reset` (`Step::Late`), never a silent skip.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::{FutureExt as _, StreamExt as _};
use tidings_bus::{Bus, BusEvent, EventKind, SubjectTarget};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::delivery::{Outgoing, traced};
use crate::hub::{Conn, Hub, Interest};
use crate::metrics::EdgeMetrics;
use crate::sweep::Clock;
use crate::unread::Unread;

/// How long a new subscription may take to reach the server (or be confirmed) before
/// the connection that needs it is refused (NATS down or partitioned).
const CONFIRM_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Most commands handled together (the command channel holds 1,024).
const MAX_COMMANDS_TOGETHER: usize = 1024;

/// Handle to the live task.
#[derive(Debug, Clone)]
pub(crate) struct Live {
    commands: mpsc::Sender<Command>,

    /// Test hook: how many upcoming live messages to drop as if NATS lost them.
    #[cfg(feature = "fault-injection")]
    pub(crate) drop_next: Arc<AtomicU64>,
}

#[derive(Debug)]
enum Command {
    /// Subscribe to whichever of these the hub still wants and the node lacks; answer
    /// once the server has the subscriptions.
    Ensure(Vec<Interest>, oneshot::Sender<Result<(), String>>),
    /// Drop whichever of these the hub no longer wants.
    Release(Vec<Interest>),
}

impl Live {
    pub(crate) fn spawn(node: Node, shutdown: CancellationToken, tracker: &tokio_util::task::TaskTracker) -> Self {
        let (commands, rx) = mpsc::channel(1024);
        let drop_next = Arc::new(AtomicU64::new(0));
        tracker.spawn(run(node, rx, drop_next.clone(), shutdown));
        #[cfg(not(feature = "fault-injection"))]
        let _ = drop_next;
        Self {
            commands,
            #[cfg(feature = "fault-injection")]
            drop_next,
        }
    }

    /// Returns once every interest is subscribed on the server, so that anything
    /// published from now on reaches this node live.
    pub(crate) async fn ensure(&self, interests: Vec<Interest>) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Ensure(interests, tx))
            .await
            .map_err(|_| "live task stopped".to_owned())?;
        rx.await.map_err(|_| "live task stopped".to_owned())?
    }

    pub(crate) fn release(&self, interests: Vec<Interest>) {
        if !interests.is_empty() {
            // Never block a closing connection; a lost release only delays the UNSUB
            // until the next one.
            let _ = self.commands.try_send(Command::Release(interests));
        }
    }
}

/// What the live task works with.
#[derive(Debug)]
pub(crate) struct Node {
    pub(crate) bus: Bus,
    pub(crate) hub: Arc<Hub>,
    pub(crate) metrics: EdgeMetrics,
    pub(crate) unread: Unread,
    pub(crate) clock: Arc<Clock>,
    /// Connections that must catch up (a live gap, a NATS reconnect); each is in this
    /// channel at most once at a time (its phase says so), so it is bounded by the
    /// number of connections.
    pub(crate) catch_ups: mpsc::UnboundedSender<Arc<Conn>>,
}

/// The node's live subscriptions, polled as one stream. Only subscriptions that have
/// something are polled (a `SelectAll` is woken per subscription), so a message costs
/// the same whether the node holds one partition or all of them. Ordering holds as
/// before: async-nats fills (and wakes) each subscription in arrival order before the
/// live task looks, so every message already waiting is among the woken streams.
///
/// Member partitions are held one by one until the node's connections live in
/// [`ALL_MEMBERS_AT`] of them; from then on one subscription to every partition
/// replaces them (the messages of the few partitions nobody here needs reach the hub
/// and find no connection), until fewer than [`PARTITIONS_AGAIN_BELOW`] are needed.
/// An edge behind a load balancer that hashes by member holds its share of partitions
/// one by one; an edge that sees every member (round-robin balancing) holds one
/// subscription, not 1,024 (each async-nats subscription allocates a ~6 KB channel
/// block: ~6 MB per node, ~0.34 KiB per connection at 18,000).
#[derive(Default)]
struct Subscriptions {
    streams: futures::stream::SelectAll<futures::stream::BoxStream<'static, async_nats::Message>>,
    /// Dropping an interest cancels its stream, which then ends (and unsubscribes).
    held: std::collections::HashMap<Interest, CancellationToken>,
    /// The subscription to every member partition, when held.
    all_members: Option<CancellationToken>,
}

/// The share of member partitions (numerator, denominator) from which the node takes
/// one subscription to all of them.
const ALL_MEMBERS_AT: (usize, usize) = (3, 4);
/// The share below which it goes back to partitions one by one (lower than
/// [`ALL_MEMBERS_AT`], so a node near the line does not switch back and forth).
const PARTITIONS_AGAIN_BELOW: (usize, usize) = (1, 2);

impl Subscriptions {
    fn is_empty(&self) -> bool {
        self.held.is_empty() && self.all_members.is_none()
    }

    fn len(&self) -> usize {
        self.held.len() + usize::from(self.all_members.is_some())
    }

    /// Whether messages for `interest` reach this node.
    fn covers(&self, interest: &Interest) -> bool {
        match interest {
            Interest::Partition(_) if self.all_members.is_some() => true,
            _ => self.held.contains_key(interest),
        }
    }

    fn push(&mut self, subscriber: async_nats::Subscriber) -> CancellationToken {
        let cancel = CancellationToken::new();
        let ends = cancel.clone().cancelled_owned();
        self.streams.push(subscriber.take_until(ends).boxed());
        cancel
    }

    fn insert(&mut self, interest: Interest, subscriber: async_nats::Subscriber) {
        let cancel = self.push(subscriber);
        if let Some(replaced) = self.held.insert(interest, cancel) {
            replaced.cancel();
        }
    }

    fn remove(&mut self, interest: &Interest) {
        if let Some(cancel) = self.held.remove(interest) {
            cancel.cancel();
        }
    }
}

async fn run(
    node: Node,
    mut commands: mpsc::Receiver<Command>,
    drop_next: Arc<AtomicU64>,
    shutdown: CancellationToken,
) {
    let Node { bus, hub, metrics, .. } = &node;
    let mut subscriptions = Subscriptions::default();
    let mut losses = bus.losses();
    loop {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => return,
            Some(command) = commands.recv() => {
                // Commands waiting together are handled together: one confirming round
                // trip for whatever they subscribe (a reconnect storm sends thousands).
                let (mut wanted, mut replies, mut released) = (Vec::new(), Vec::new(), Vec::new());
                let mut next = Some(command);
                while let Some(command) = next.take() {
                    match command {
                        Command::Ensure(interests, reply) => {
                            wanted.extend(interests);
                            replies.push(reply);
                        }
                        Command::Release(interests) => released.extend(interests),
                    }
                    if replies.len() + released.len() < MAX_COMMANDS_TOGETHER {
                        next = commands.try_recv().ok();
                    }
                }
                // Both consult the hub as it is now, so their order does not matter.
                for interest in released {
                    if !hub.wants(&interest) {
                        subscriptions.remove(&interest);
                    }
                }
                if let Err(e) = partitions_again(&node, &mut subscriptions, &drop_next).await {
                    // The subscription to every partition stays; the next release tries
                    // again.
                    tracing::warn!(error = %e, "could not go back to partition subscriptions");
                }
                if !replies.is_empty() {
                    let result = ensure(&node, &mut subscriptions, wanted, &drop_next).await;
                    for reply in replies {
                        let _ = reply.send(result.clone());
                    }
                }
                metrics.interests.set(subscriptions.len() as i64);
            }
            Ok(()) = losses.changed() => {
                tracing::info!("live delivery may have missed messages; connections replay");
                for conn in hub.resync_all() {
                    let _ = node.catch_ups.send(conn);
                }
            }
            Some(first) = subscriptions.streams.next(), if !subscriptions.is_empty() => {
                dispatch_waiting(&node, &mut subscriptions, vec![first], &drop_next).await;
            }
        }
    }
}

/// Dispatches `batch` and everything already waiting, however much: a batch cut short
/// could leave a lower sequence waiting in one subscription while a higher one from
/// another goes out. tokio's cooperative budget would cut it short too, hence
/// `unconstrained`. The subscriptions' own channels (bounded by async-nats) bound the
/// batch.
async fn dispatch_waiting(
    node: &Node,
    subscriptions: &mut Subscriptions,
    mut batch: Vec<async_nats::Message>,
    drop_next: &AtomicU64,
) {
    tokio::task::unconstrained(async {
        while let Some(Some(message)) = subscriptions.streams.next().now_or_never() {
            batch.push(message);
        }
    })
    .await;
    if batch.is_empty() {
        return;
    }
    node.metrics.live_received.inc_by(batch.len() as u64);
    let subjects = node.bus.subjects();
    let mut events: Vec<BusEvent> = batch
        .into_iter()
        .filter_map(|m| BusEvent::from_live(subjects, m.headers.as_ref(), m.payload))
        .collect();
    events.sort_by_key(|e| e.seq);
    let mut wakers = Vec::new();
    for event in events {
        if drop_next.load(Ordering::Relaxed) > 0 {
            drop_next.fetch_sub(1, Ordering::Relaxed);
            tracing::warn!(seq = event.seq, "fault injection: dropping a live message");
            continue;
        }
        dispatch(node, event, &mut wakers);
    }
    wakers.into_iter().for_each(std::task::Waker::wake);
}

/// Hands one live event to the hub, shared by all its connections.
fn dispatch(node: &Node, event: BusEvent, wakers: &mut Vec<std::task::Waker>) {
    let frame = crate::sse::frame_of(&event, node.bus.epoch());
    let out = Arc::new(Outgoing { event, frame });
    let event = &out.event;
    let dispatched = traced(event, "live", || node.hub.dispatch(&out, node.clock.now(), wakers));
    node.metrics.delivered_live.inc_by(dispatched.delivered);
    for conn in dispatched.catch_up {
        let _ = node.catch_ups.send(conn);
    }
    if let (EventKind::Notification | EventKind::UnreadChanged, SubjectTarget::Member(member)) =
        (&event.kind, &event.target)
        && dispatched.reached > 0
    {
        node.unread.refresh(member.clone());
    }
}

async fn ensure(
    node: &Node,
    subscriptions: &mut Subscriptions,
    interests: Vec<Interest>,
    drop_next: &AtomicU64,
) -> Result<(), String> {
    let (bus, hub) = (&node.bus, &node.hub);
    all_members(node, subscriptions, drop_next).await?;
    let mut added = false;
    let wanted: HashSet<Interest> = interests.into_iter().collect();
    for interest in wanted {
        if subscriptions.covers(&interest) || !hub.wants(&interest) {
            continue;
        }
        let subject = match &interest {
            Interest::Partition(p) => bus.subjects().live_partition(*p),
            Interest::Topic(t) => bus.subjects().live_topic(t),
        };
        let subscriber = bus.client().subscribe(subject).await.map_err(|e| e.to_string())?;
        subscriptions.insert(interest, subscriber);
        added = true;
    }
    if added {
        flush(bus).await?;
    }
    Ok(())
}

/// Writes our SUBs to the server. That is enough for a connection's hand-over: what
/// its catch-up asks the stream next goes over the same NATS connection, and the
/// server handles one connection's operations in order, so the SUBs take effect
/// before the replay reads the stream. (Dropping subscriptions needs more:
/// [`confirm`].)
async fn flush(bus: &Bus) -> Result<(), String> {
    tokio::time::timeout(CONFIRM_TIMEOUT, bus.client().flush())
        .await
        .map_err(|_| "nats did not take the subscription in time".to_owned())?
        .map_err(|e| e.to_string())
}

/// Waits until the server has processed our SUBs and everything it sent us before
/// them has reached the subscriptions, so older subscriptions can go without losing
/// what was on its way to them. async-nats' `flush` only writes our buffer to the
/// socket, so this is a request nobody answers: the server replies "no responders"
/// once it has processed everything we sent before it, and that reply follows every
/// message it routed to us earlier (one connection, in order).
async fn confirm(bus: &Bus) -> Result<(), String> {
    use async_nats::RequestErrorKind;
    let client = bus.client();
    match tokio::time::timeout(CONFIRM_TIMEOUT, client.request(client.new_inbox(), bytes::Bytes::new())).await {
        Err(_) => Err("nats did not confirm the subscription in time".to_owned()),
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) if e.kind() == RequestErrorKind::NoResponders => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
    }
}

/// Takes one subscription to every member partition once the node needs most of them
/// ([`ALL_MEMBERS_AT`]), then drops the partitions' own. Nothing is lost in the switch:
/// the new subscription is confirmed before the old ones go, so every message the
/// server routed to the old ones alone is already in them, and what they hold is
/// dispatched first (a message that arrives both ways is delivered once: a connection
/// skips what it has).
async fn all_members(node: &Node, subscriptions: &mut Subscriptions, drop_next: &AtomicU64) -> Result<(), String> {
    let total = usize::from(node.bus.subjects().partitions());
    let (num, den) = ALL_MEMBERS_AT;
    if subscriptions.all_members.is_some() || node.hub.partition_count() * den < total * num {
        return Ok(());
    }
    let subject = node.bus.subjects().live_members();
    let subscriber = node.bus.client().subscribe(subject).await.map_err(|e| e.to_string())?;
    let cancel = subscriptions.push(subscriber);
    subscriptions.all_members = Some(cancel);
    confirm(&node.bus).await?;
    dispatch_waiting(node, subscriptions, Vec::new(), drop_next).await;
    let partitions: Vec<Interest> = subscriptions
        .held
        .keys()
        .filter(|i| matches!(i, Interest::Partition(_)))
        .cloned()
        .collect();
    for interest in &partitions {
        subscriptions.remove(interest);
    }
    tracing::info!(
        partitions = node.hub.partition_count(),
        of = total,
        "one subscription to every member partition"
    );
    Ok(())
}

/// The way back: below [`PARTITIONS_AGAIN_BELOW`], subscribes the partitions the node
/// still needs, and drops the subscription to all of them once they are confirmed and
/// what it holds is dispatched.
async fn partitions_again(node: &Node, subscriptions: &mut Subscriptions, drop_next: &AtomicU64) -> Result<(), String> {
    let total = usize::from(node.bus.subjects().partitions());
    let (num, den) = PARTITIONS_AGAIN_BELOW;
    if subscriptions.all_members.is_none() || node.hub.partition_count() * den >= total * num {
        return Ok(());
    }
    let needed = node.hub.partitions();
    for p in &needed {
        // Held already when an earlier attempt stopped half-way.
        if subscriptions.held.contains_key(&Interest::Partition(*p)) {
            continue;
        }
        let subject = node.bus.subjects().live_partition(*p);
        let subscriber = node.bus.client().subscribe(subject).await.map_err(|e| e.to_string())?;
        subscriptions.insert(Interest::Partition(*p), subscriber);
    }
    confirm(&node.bus).await?;
    dispatch_waiting(node, subscriptions, Vec::new(), drop_next).await;
    if let Some(all) = subscriptions.all_members.take() {
        all.cancel();
    }
    tracing::info!(
        partitions = needed.len(),
        of = total,
        "member partitions subscribed one by one again"
    );
    Ok(())
}
