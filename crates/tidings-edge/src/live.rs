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

/// How long a new subscription may take to be confirmed before the connection that
/// needs it is refused (NATS down or partitioned).
const FLUSH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

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
#[derive(Default)]
struct Subscriptions {
    streams: futures::stream::SelectAll<futures::stream::BoxStream<'static, async_nats::Message>>,
    /// Dropping an interest cancels its stream, which then ends (and unsubscribes).
    held: std::collections::HashMap<Interest, CancellationToken>,
}

impl Subscriptions {
    fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    fn len(&self) -> usize {
        self.held.len()
    }

    fn contains_key(&self, interest: &Interest) -> bool {
        self.held.contains_key(interest)
    }

    fn insert(&mut self, interest: Interest, subscriber: async_nats::Subscriber) {
        let cancel = CancellationToken::new();
        let ends = cancel.clone().cancelled_owned();
        self.streams.push(subscriber.take_until(ends).boxed());
        self.held.insert(interest, cancel);
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
            Some(command) = commands.recv() => match command {
                Command::Ensure(interests, reply) => {
                    let _ = reply.send(ensure(bus, hub, &mut subscriptions, interests).await);
                    metrics.interests.set(subscriptions.len() as i64);
                }
                Command::Release(interests) => {
                    for interest in interests {
                        if !hub.wants(&interest) {
                            subscriptions.remove(&interest);
                        }
                    }
                    metrics.interests.set(subscriptions.len() as i64);
                }
            },
            Ok(()) = losses.changed() => {
                tracing::info!("live delivery may have missed messages; connections replay");
                for conn in hub.resync_all() {
                    let _ = node.catch_ups.send(conn);
                }
            }
            Some(first) = subscriptions.streams.next(), if !subscriptions.is_empty() => {
                // Everything already waiting, however much: a batch cut short could
                // leave a lower sequence waiting in one subscription while a higher one
                // from another goes out. tokio's cooperative budget would cut it short
                // too, hence `unconstrained`. The subscriptions' own channels (bounded
                // by async-nats) bound the batch.
                let mut batch = vec![first];
                tokio::task::unconstrained(async {
                    while let Some(Some(message)) = subscriptions.streams.next().now_or_never() {
                        batch.push(message);
                    }
                })
                .await;
                metrics.live_received.inc_by(batch.len() as u64);
                let mut events: Vec<BusEvent> = batch
                    .into_iter()
                    .filter_map(|m| BusEvent::from_live(bus.subjects(), m.headers.as_ref(), m.payload))
                    .collect();
                events.sort_by_key(|e| e.seq);
                let mut wakers = Vec::new();
                for event in events {
                    if drop_next.load(Ordering::Relaxed) > 0 {
                        drop_next.fetch_sub(1, Ordering::Relaxed);
                        tracing::warn!(seq = event.seq, "fault injection: dropping a live message");
                        continue;
                    }
                    dispatch(&node, event, &mut wakers);
                }
                wakers.into_iter().for_each(std::task::Waker::wake);
            }
        }
    }
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
    bus: &Bus,
    hub: &Hub,
    subscriptions: &mut Subscriptions,
    interests: Vec<Interest>,
) -> Result<(), String> {
    let mut added = false;
    let wanted: HashSet<Interest> = interests.into_iter().collect();
    for interest in wanted {
        if subscriptions.contains_key(&interest) || !hub.wants(&interest) {
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
        // The server has processed our SUBs once it answers the flush's PING.
        tokio::time::timeout(FLUSH_TIMEOUT, bus.client().flush())
            .await
            .map_err(|_| "nats did not confirm the subscription in time".to_owned())?
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}
