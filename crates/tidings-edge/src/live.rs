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
use std::time::Duration;

use futures::{FutureExt as _, StreamExt as _};
use tidings_bus::{Bus, BusError, BusEvent, EventKind, LiveSubscription, LiveTarget, SubjectTarget};
use tidings_domain::{MemberId, UnreadCount};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::accounting::Accounting;
use crate::clock::Clock;
use crate::delivery::LiveEvent;
use crate::hub::{CatchUpQueue, Hub, Interest};
use crate::metrics::EdgeMetrics;
use crate::unread::Unread;

/// Most commands handled together (the command channel holds 1,024).
const MAX_COMMANDS_TOGETHER: usize = 1024;

/// Handle to the live task.
#[derive(Debug, Clone)]
pub(crate) struct Live {
    commands: mpsc::Sender<Command>,
    /// Cancelled when the live task stopped (a panic) while the node was not shutting
    /// down: nothing is delivered any more, so the node drains and exits (`app.rs`).
    stopped: CancellationToken,
    /// Notified when a release could not be queued (the command channel was full):
    /// the live task then sweeps everything it holds against what the hub wants.
    lost_release: Arc<tokio::sync::Notify>,

    /// Test hook: how many upcoming live messages to drop as if NATS lost them.
    #[cfg(feature = "fault-injection")]
    pub(crate) drop_next: Arc<std::sync::atomic::AtomicU64>,
    /// Test hook: the next release is lost as on a full command channel.
    #[cfg(feature = "fault-injection")]
    pub(crate) lose_next_release: Arc<std::sync::atomic::AtomicBool>,
    /// Test hook: see [`LiveDeps::fail_next_confirm`].
    #[cfg(feature = "fault-injection")]
    pub(crate) fail_next_confirm: Arc<std::sync::atomic::AtomicBool>,
    /// Test hooks: see [`LiveDeps::blind_for_ms`].
    #[cfg(feature = "fault-injection")]
    pub(crate) blind_for_ms: Arc<std::sync::atomic::AtomicU64>,
    #[cfg(feature = "fault-injection")]
    pub(crate) blinded: Arc<std::sync::atomic::AtomicU64>,
}

#[derive(Debug)]
enum Command {
    /// Subscribe to whichever of these the hub still wants and the node lacks; answer
    /// once the server has the subscriptions (an error when NATS cannot take them in
    /// time: down or partitioned).
    Ensure(Vec<Interest>, oneshot::Sender<Result<Taken, Arc<BusError>>>),
    /// Drop whichever of these the hub no longer wants.
    Release(Vec<Interest>),
    /// Test hook: the task panics, as a bug in it would.
    #[cfg(feature = "fault-injection")]
    Crash,
}

impl Live {
    pub(crate) fn spawn(node: LiveDeps, shutdown: CancellationToken, tracker: &tokio_util::task::TaskTracker) -> Self {
        let (commands, rx) = mpsc::channel(1024);
        #[cfg(feature = "fault-injection")]
        let drop_next = node.drop_next.clone();
        #[cfg(feature = "fault-injection")]
        let fail_next_confirm = node.fail_next_confirm.clone();
        #[cfg(feature = "fault-injection")]
        let (blind_for_ms, blinded) = (node.blind_for_ms.clone(), node.blinded.clone());
        let stopped = CancellationToken::new();
        let lost_release = Arc::new(tokio::sync::Notify::new());
        let task = std::panic::AssertUnwindSafe(run(node, rx, lost_release.clone(), shutdown.clone())).catch_unwind();
        let supervisor = stopped.clone();
        tracker.spawn(async move {
            let outcome = task.await;
            if !shutdown.is_cancelled() {
                let why = match &outcome {
                    Err(panic) => panic
                        .downcast_ref::<&str>()
                        .map(|s| (*s).to_owned())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "a panic".into()),
                    Ok(()) => "it returned".into(),
                };
                tracing::error!(
                    why,
                    "the live task stopped: this edge delivers nothing any more; draining it"
                );
                supervisor.cancel();
            }
        });
        Self {
            commands,
            stopped,
            lost_release,
            #[cfg(feature = "fault-injection")]
            drop_next,
            #[cfg(feature = "fault-injection")]
            lose_next_release: Arc::default(),
            #[cfg(feature = "fault-injection")]
            fail_next_confirm,
            #[cfg(feature = "fault-injection")]
            blind_for_ms,
            #[cfg(feature = "fault-injection")]
            blinded,
        }
    }

    /// Returns once every interest is subscribed on the server, so that anything
    /// published from now on reaches this node live — from the server it is connected
    /// to; see [`Taken`] for the rest of a cluster.
    pub(crate) async fn ensure(&self, interests: Vec<Interest>) -> Result<Taken, LiveError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Ensure(interests, tx))
            .await
            .map_err(|_| LiveError::Stopped)?;
        rx.await.map_err(|_| LiveError::Stopped)?.map_err(LiveError::Bus)
    }

    /// Cancelled once the live task has stopped outside a shutdown.
    pub(crate) fn stopped(&self) -> &CancellationToken {
        &self.stopped
    }

    /// Test hook: makes the live task panic.
    #[cfg(feature = "fault-injection")]
    pub(crate) fn crash(&self) {
        let _ = self.commands.try_send(Command::Crash);
    }

    pub(crate) fn release(&self, interests: Vec<Interest>) {
        if interests.is_empty() {
            return;
        }
        #[cfg(feature = "fault-injection")]
        if self.lose_next_release.swap(false, std::sync::atomic::Ordering::Relaxed) {
            self.lost_release.notify_one();
            return;
        }
        // Never block a closing connection. A release that finds the channel full is
        // not lost: the live task sweeps everything it holds instead.
        if self.commands.try_send(Command::Release(interests)).is_err() {
            self.lost_release.notify_one();
        }
    }
}

/// How long after taking new interest a connection replays once more, on a NATS
/// cluster: a message the stream leader stored before its server learned of the
/// interest is neither in the first replay nor live
/// ([`tidings_bus::INTEREST_PROPAGATION`] says why). On a single server there is no
/// such window, and no second replay.
pub(crate) const PROPAGATION: Duration = tidings_bus::INTEREST_PROPAGATION;

/// What [`Live::ensure`] tells a connection about its interest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Taken {
    /// When the newest subscription it relies on was taken, if within
    /// [`PROPAGATION`]: the connection replays once more after that.
    pub(crate) recently: Option<tokio::time::Instant>,
}

/// Why live interest could not be taken.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LiveError {
    #[error(transparent)]
    Bus(Arc<BusError>),
    #[error("the live task has stopped")]
    Stopped,
}

/// What the live task works with.
#[derive(Debug)]
pub(crate) struct LiveDeps {
    pub(crate) bus: Bus,
    pub(crate) hub: Arc<Hub>,
    pub(crate) metrics: EdgeMetrics,
    pub(crate) unread: Unread,
    pub(crate) clock: Arc<Clock>,
    /// Connections that must catch up (a live gap, a NATS reconnect).
    pub(crate) catch_ups: CatchUpQueue,
    /// Test hook: how many upcoming live messages to drop as if NATS lost them.
    #[cfg(feature = "fault-injection")]
    pub(crate) drop_next: Arc<std::sync::atomic::AtomicU64>,
    /// Test hook: the next confirmation of new subscriptions fails as if NATS timed out.
    #[cfg(feature = "fault-injection")]
    pub(crate) fail_next_confirm: Arc<std::sync::atomic::AtomicBool>,
    /// Test hook: live messages of an interest subscribed less than this many
    /// milliseconds ago are dropped, as when the stream leader's server has not
    /// learned of the interest yet; the count of those dropped.
    #[cfg(feature = "fault-injection")]
    pub(crate) blind_for_ms: Arc<std::sync::atomic::AtomicU64>,
    #[cfg(feature = "fault-injection")]
    pub(crate) blinded: Arc<std::sync::atomic::AtomicU64>,
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
struct Subscriptions {
    streams: futures::stream::SelectAll<futures::stream::BoxStream<'static, BusEvent>>,
    /// Dropping an interest cancels its stream, which then ends (and unsubscribes).
    held: std::collections::HashMap<Interest, CancellationToken>,
    /// The subscription to every member partition, when held.
    all_members: Option<CancellationToken>,
    /// What their messages' sequences say about the stream.
    sequences: Sequences,
    /// When interests were subscribed, while that is recent ([`PROPAGATION`]); the
    /// subscription to every partition under [`Interest::Partition`]s' own key `None`.
    added: std::collections::HashMap<Option<Interest>, tokio::time::Instant>,
    /// When `added` last dropped its old entries.
    pruned_at: tokio::time::Instant,
    /// Subscriptions sent but not confirmed (the confirmation failed): the next
    /// confirmation covers them too.
    unconfirmed: Vec<Interest>,
    /// What the hub may not count on yet (`ready.rs`).
    accounting: Accounting,
}

/// The share of member partitions (numerator, denominator) from which the node takes
/// one subscription to all of them.
const ALL_MEMBERS_AT: (usize, usize) = (3, 4);
/// The share below which it goes back to partitions one by one (lower than
/// [`ALL_MEMBERS_AT`], so a node near the line does not switch back and forth).
const PARTITIONS_AGAIN_BELOW: (usize, usize) = (1, 2);

impl Subscriptions {
    fn new(sequences: Sequences) -> Self {
        Self {
            streams: futures::stream::SelectAll::new(),
            held: std::collections::HashMap::new(),
            all_members: None,
            sequences,
            added: std::collections::HashMap::new(),
            pruned_at: tokio::time::Instant::now(),
            unconfirmed: Vec::new(),
            accounting: Accounting::default(),
        }
    }

    /// Records that `interest` (`None`: every partition) was just subscribed.
    fn added(&mut self, interest: Option<Interest>) {
        let now = tokio::time::Instant::now();
        // Old entries go once per window, not at every insert: a node taking its
        // partitions one by one (a reconnect storm after a restart) would otherwise
        // walk the whole map a thousand times over. `taken` ignores old entries.
        if now.duration_since(self.pruned_at) >= PROPAGATION {
            self.added.retain(|_, at| now.duration_since(*at) < PROPAGATION);
            self.pruned_at = now;
        }
        self.added.insert(interest, now);
    }

    /// When the newest subscription serving `interests` was taken, if that is recent.
    fn taken(&self, interests: &[Interest]) -> Taken {
        let now = tokio::time::Instant::now();
        let recent = |key: &Option<Interest>| {
            self.added
                .get(key)
                .copied()
                .filter(|at| now.duration_since(*at) < PROPAGATION)
        };
        let newest = interests
            .iter()
            .filter_map(|i| {
                let own = recent(&Some(i.clone()));
                let all = matches!(i, Interest::Partition(_)).then(|| recent(&None)).flatten();
                own.max(all)
            })
            .max();
        Taken { recently: newest }
    }

    fn is_empty(&self) -> bool {
        self.held.is_empty() && self.all_members.is_none()
    }

    fn len(&self) -> usize {
        self.held.len() + usize::from(self.all_members.is_some())
    }

    /// Sets the gauges of what the node holds: its subscriptions, and the member
    /// partitions (of `total`) whose messages reach it.
    fn report(&self, metrics: &EdgeMetrics, total: u16) {
        metrics.interests.set(self.len() as i64);
        let partitions = match self.all_members {
            Some(_) => usize::from(total),
            None => self.held.keys().filter(|i| matches!(i, Interest::Partition(_))).count(),
        };
        metrics.live_partitions.set(partitions as i64);
    }

    /// Whether messages for `interest` reach this node.
    fn covers(&self, interest: &Interest) -> bool {
        match interest {
            Interest::Partition(_) if self.all_members.is_some() => true,
            _ => self.held.contains_key(interest),
        }
    }

    fn push(&mut self, subscriber: LiveSubscription) -> CancellationToken {
        let cancel = CancellationToken::new();
        let ends = cancel.clone().cancelled_owned();
        self.streams.push(subscriber.take_until(ends).boxed());
        cancel
    }

    fn insert(&mut self, interest: Interest, subscriber: LiveSubscription) {
        self.added(Some(interest.clone()));
        let cancel = self.push(subscriber);
        if let Some(replaced) = self.held.insert(interest, cancel) {
            replaced.cancel();
        }
    }

    /// Drops `interest`'s subscription; the hub must no longer count on it
    /// ([`Hub::release`], [`Hub::unaccount`]).
    fn remove(&mut self, interest: &Interest) {
        self.accounting.forget(interest);
        if let Some(cancel) = self.held.remove(interest) {
            cancel.cancel();
        }
    }

    /// The server has every subscription sent so far: the new ones may be counted on
    /// once a read of the stream's extent follows (`accounting.rs`).
    fn confirmed(&mut self, added: Vec<Interest>, clustered: bool) {
        let earlier = std::mem::take(&mut self.unconfirmed);
        for interest in earlier.into_iter().chain(added) {
            if self.held.contains_key(&interest) {
                self.accounting.subscribed(interest, clustered);
            }
        }
    }
}

async fn run(
    node: LiveDeps,
    mut commands: mpsc::Receiver<Command>,
    lost_release: Arc<tokio::sync::Notify>,
    shutdown: CancellationToken,
) {
    let LiveDeps { bus, hub, metrics, .. } = &node;
    let mut subscriptions = Subscriptions::new(Sequences::new(bus.incarnations()));
    let mut losses = bus.losses();
    loop {
        let next_account = subscriptions.accounting.next_at();
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
                            wanted.extend(interests.iter().cloned());
                            replies.push((interests, reply));
                        }
                        Command::Release(interests) => released.extend(interests),
                        #[cfg(feature = "fault-injection")]
                        Command::Crash => panic!("fault injection: the live task crashes"),
                    }
                    if replies.len() + released.len() < MAX_COMMANDS_TOGETHER {
                        next = commands.try_recv().ok();
                    }
                }
                // Both consult the hub as it is now, so their order does not matter.
                for interest in released {
                    if hub.release(&interest) {
                        subscriptions.remove(&interest);
                    }
                }
                if let Err(e) = partitions_again(&node, &mut subscriptions).await {
                    // The subscription to every partition stays; the next release tries
                    // again.
                    tracing::warn!(error = %e, "could not go back to partition subscriptions");
                }
                if !replies.is_empty() {
                    let result = ensure(&node, &mut subscriptions, wanted).await.map_err(Arc::new);
                    for (interests, reply) in replies {
                        let taken = |()| match bus.clustered() {
                            true => subscriptions.taken(&interests),
                            false => Taken { recently: None },
                        };
                        let _ = reply.send(result.clone().map(taken));
                    }
                }
                subscriptions.report(metrics, bus.subjects().partitions());
                account(&node, &mut subscriptions).await;
                // Commands come first (`biased`), and a connect storm keeps them coming:
                // live messages already here go out after every batch of them, so a
                // storm never starves delivery (nor fills the subscriptions' channels
                // until NATS drops messages as a slow consumer).
                if !subscriptions.is_empty() {
                    dispatch_waiting(&node, &mut subscriptions, Vec::new()).await;
                }
            }
            () = lost_release.notified() => {
                let stale: Vec<Interest> = subscriptions.held.keys().filter(|i| hub.release(i)).cloned().collect();
                tracing::debug!(stale = stale.len(), "a release was lost; swept what is held");
                for interest in &stale {
                    subscriptions.remove(interest);
                }
                if let Err(e) = partitions_again(&node, &mut subscriptions).await {
                    tracing::warn!(error = %e, "could not go back to partition subscriptions");
                }
                subscriptions.report(metrics, bus.subjects().partitions());
            }
            Ok(()) = losses.changed() => {
                tracing::info!("live delivery may have missed messages; connections replay");
                for conn in hub.resync_all() {
                    node.catch_ups.push(conn);
                }
                subscriptions.accounting.voided(bus.clustered());
            }
            Ok(()) = subscriptions.sequences.incarnations.changed() => {
                subscriptions.sequences.replaced(&node);
                subscriptions.accounting.voided(bus.clustered());
            }
            () = sleep_until(next_account), if next_account.is_some() => account(&node, &mut subscriptions).await,
            Some(first) = subscriptions.streams.next(), if !subscriptions.is_empty() => {
                dispatch_waiting(&node, &mut subscriptions, vec![first]).await;
            }
        }
    }
}

/// Dispatches `batch` and everything already waiting, however much: a batch cut short
/// could leave a lower sequence waiting in one subscription while a higher one from
/// another goes out. tokio's cooperative budget would cut it short too, hence
/// `unconstrained`. The subscriptions' own channels (bounded by async-nats) bound the
/// batch.
async fn dispatch_waiting(node: &LiveDeps, subscriptions: &mut Subscriptions, mut events: Vec<BusEvent>) {
    tokio::task::unconstrained(async {
        while let Some(Some(event)) = subscriptions.streams.next().now_or_never() {
            events.push(event);
        }
    })
    .await;
    if events.is_empty() {
        return;
    }
    node.metrics.live_received.inc_by(events.len() as u64);
    events.sort_by_key(|e| e.seq);
    let sequences = &mut subscriptions.sequences;
    if sequences.went_back(&events) {
        // Maybe a stream created anew: ask before delivering its sequences as the old
        // one's. On a new incarnation every stream resets, and these events are in the
        // history each resumes from.
        if let Err(e) = node.bus.extent().await {
            tracing::debug!(error = %e, "checking the stream's incarnation failed");
        }
        if sequences.incarnations.has_changed().unwrap_or(false) {
            sequences.replaced(node);
            subscriptions.accounting.voided(node.bus.clustered());
            return;
        }
    }
    let mut wakers = Vec::new();
    for event in events {
        #[cfg(feature = "fault-injection")]
        if fault_injection_drops(node, &subscriptions.added, &event) {
            continue;
        }
        dispatch(node, event, &mut wakers);
    }
    wakers.into_iter().for_each(std::task::Waker::wake);
}

/// What the live task knows of the stream's sequences: the highest it has delivered,
/// and the incarnation it has dealt with.
struct Sequences {
    incarnations: tokio::sync::watch::Receiver<tidings_domain::StreamEpoch>,
    highest: u64,
    /// When live sequences last went backwards and the stream was asked about it.
    checked: Option<tokio::time::Instant>,
}

/// Live sequences going backwards ask the stream at most this often: across
/// subscriptions they may, a little, without anything being wrong.
const RECHECK_AFTER: Duration = Duration::from_secs(1);

impl Sequences {
    fn new(incarnations: tokio::sync::watch::Receiver<tidings_domain::StreamEpoch>) -> Self {
        Self {
            incarnations,
            highest: 0,
            checked: None,
        }
    }

    /// Records a batch (sorted by sequence); true when it went below what was seen
    /// before and the stream was not asked about that recently.
    fn went_back(&mut self, events: &[BusEvent]) -> bool {
        let Some(lowest) = events.iter().map(|e| e.seq).find(|seq| *seq > 0) else {
            return false;
        };
        let highest = events.last().map_or(0, |e| e.seq);
        let back = lowest < self.highest;
        self.highest = self.highest.max(highest);
        if !back || self.checked.is_some_and(|at| at.elapsed() < RECHECK_AFTER) {
            return false;
        }
        self.checked = Some(tokio::time::Instant::now());
        true
    }

    /// The stream is another incarnation now: every open stream resets to its start.
    fn replaced(&mut self, node: &LiveDeps) {
        let epoch = *self.incarnations.borrow_and_update();
        self.highest = 0;
        let reset = crate::incarnation::replaced(&node.hub, epoch, node.clock.now());
        tracing::warn!(
            streams = reset,
            epoch = epoch.0,
            "the stream was created anew; every stream resets"
        );
    }
}

/// Test hook: whether to drop `event` as if NATS had lost it.
#[cfg(feature = "fault-injection")]
fn fault_injection_drops(
    node: &LiveDeps,
    added: &std::collections::HashMap<Option<Interest>, tokio::time::Instant>,
    event: &BusEvent,
) -> bool {
    use std::sync::atomic::Ordering;
    let dropping = node
        .drop_next
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
        .is_ok();
    if dropping {
        tracing::warn!(seq = event.seq, "fault injection: dropping a live message");
        return true;
    }
    let blind_for = Duration::from_millis(node.blind_for_ms.load(Ordering::Relaxed));
    let interest = match &event.target {
        SubjectTarget::Member(m) => Interest::Partition(node.bus.subjects().partition_of(m)),
        SubjectTarget::Topic(t) => Interest::Topic(t.clone()),
    };
    let is_partition = matches!(interest, Interest::Partition(_));
    let fresh = |at: &tokio::time::Instant| at.elapsed() < blind_for;
    let blind = added.get(&Some(interest)).is_some_and(fresh) || (is_partition && added.get(&None).is_some_and(fresh));
    if blind {
        node.blinded.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            seq = event.seq,
            "fault injection: the interest is too new; dropping a live message"
        );
    }
    blind
}

/// Hands one live event to the hub, shared by all its connections.
fn dispatch(node: &LiveDeps, event: BusEvent, wakers: &mut Vec<std::task::Waker>) {
    if event.is_announcement() {
        // An unread change, in no history: no connection's position moves.
        if let SubjectTarget::Member(member) = &event.target
            && node.hub.holds(member)
        {
            show_unread(node, member, event.unread);
        }
        return;
    }
    let frame = crate::sse::frame_of(&event, node.bus.epoch());
    let out = Arc::new(LiveEvent { event, frame });
    let event = &out.event;
    let dispatched = traced(event, "live", || node.hub.dispatch(&out, node.clock.now(), wakers));
    node.metrics.delivered_live.inc_by(dispatched.delivered);
    for conn in dispatched.catch_up {
        node.catch_ups.push(conn);
    }
    if let (EventKind::Notification | EventKind::UnreadChanged, SubjectTarget::Member(member)) =
        (&event.kind, &event.target)
        && dispatched.reached > 0
    {
        show_unread(node, member, event.unread);
    }
}

/// The member's count after a change: the one the message carried, shown at once, or,
/// for a message without one, a fetch.
fn show_unread(node: &LiveDeps, member: &MemberId, carried: Option<UnreadCount>) {
    match carried {
        Some(count) => {
            let shown = crate::unread::carried(&node.hub, member, count, node.clock.now());
            node.metrics.unread_carried.inc_by(shown as u64);
        }
        None => node.unread.refresh(member.clone()),
    }
}

async fn ensure(node: &LiveDeps, subscriptions: &mut Subscriptions, interests: Vec<Interest>) -> Result<(), BusError> {
    let (bus, hub) = (&node.bus, &node.hub);
    all_members(node, subscriptions).await?;
    let mut added = Vec::new();
    let wanted: HashSet<Interest> = interests.into_iter().collect();
    for interest in wanted {
        if subscriptions.covers(&interest) || !hub.wants(&interest) {
            continue;
        }
        let target = match &interest {
            Interest::Partition(p) => LiveTarget::Partition(*p),
            Interest::Topic(t) => LiveTarget::Topic(t),
        };
        let subscriber = bus.subscribe_live(target).await?;
        subscriptions.insert(interest.clone(), subscriber);
        added.push(interest);
    }
    // Enough for a connection's hand-over: what its catch-up asks the stream next
    // goes over the same NATS connection, after these SUBs (see `Bus::flush`).
    if !added.is_empty() {
        if let Err(e) = bus.flush().await {
            subscriptions.unconfirmed.extend(added);
            return Err(e);
        }
        subscriptions.confirmed(added, bus.clustered());
    }
    Ok(())
}

/// Takes one subscription to every member partition once the node needs most of them
/// ([`ALL_MEMBERS_AT`]), then drops the partitions' own. Nothing is lost in the switch:
/// the new subscription is confirmed ([`Bus::barrier`]) before the old ones go, so every message the
/// server routed to the old ones alone is already in them, and what they hold is
/// dispatched first (a message that arrives both ways is delivered once: a connection
/// skips what it has).
async fn all_members(node: &LiveDeps, subscriptions: &mut Subscriptions) -> Result<(), BusError> {
    let total = usize::from(node.bus.subjects().partitions());
    let (num, den) = ALL_MEMBERS_AT;
    if subscriptions.all_members.is_some() || node.hub.partition_count() * den < total * num {
        return Ok(());
    }
    let subscriber = node.bus.subscribe_live(LiveTarget::AllMembers).await?;
    let cancel = subscriptions.push(subscriber);
    subscriptions.all_members = Some(cancel);
    subscriptions.added(None);
    if let Err(e) = confirm(node).await {
        // Unconfirmed: back to the partitions' own subscriptions, or every message
        // would keep coming twice (the switch never runs again while this one is held).
        if let Some(all) = subscriptions.all_members.take() {
            all.cancel();
        }
        return Err(e);
    }
    subscriptions.accounting.subscribed_all_members(node.bus.clustered());
    dispatch_waiting(node, subscriptions, Vec::new()).await;
    let partitions: Vec<Interest> = subscriptions
        .held
        .keys()
        .filter(|i| matches!(i, Interest::Partition(_)))
        .cloned()
        .collect();
    for interest in &partitions {
        node.hub.unaccount(interest);
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
async fn partitions_again(node: &LiveDeps, subscriptions: &mut Subscriptions) -> Result<(), BusError> {
    let total = usize::from(node.bus.subjects().partitions());
    let (num, den) = PARTITIONS_AGAIN_BELOW;
    if subscriptions.all_members.is_none() || node.hub.partition_count() * den >= total * num {
        return Ok(());
    }
    let needed = node.hub.partitions();
    let taken = async {
        for p in &needed {
            let subscriber = node.bus.subscribe_live(LiveTarget::Partition(*p)).await?;
            subscriptions.insert(Interest::Partition(*p), subscriber);
        }
        confirm(node).await
    };
    if let Err(e) = taken.await {
        // Unconfirmed: the subscription to every partition stays, alone, and the next
        // release tries again.
        for p in &needed {
            subscriptions.remove(&Interest::Partition(*p));
        }
        return Err(e);
    }
    let partitions = needed.iter().map(|p| Interest::Partition(*p)).collect();
    subscriptions.confirmed(partitions, node.bus.clustered());
    dispatch_waiting(node, subscriptions, Vec::new()).await;
    node.hub.unaccount_all_members();
    subscriptions.accounting.forget_all_members();
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

/// Reads the stream's extent when a read is due (`accounting.rs`), so the hub may
/// count on the subscriptions it follows and on the node's position (`ready.rs`). The
/// live task dispatches nothing meanwhile: every event handed to the hub before the
/// read was stored before it, so the extent read covers it.
async fn account(node: &LiveDeps, subscriptions: &mut Subscriptions) {
    if !subscriptions.accounting.due() {
        return;
    }
    let due = subscriptions.accounting.take_due();
    match node.bus.extent().await {
        // Only in the incarnation this task has dealt with; a new one ends every
        // stream first (`Sequences::replaced`), then is read again.
        Ok(extent) if extent.epoch == *subscriptions.sequences.incarnations.borrow() => {
            let interests: Vec<Interest> = due
                .interests
                .into_iter()
                .filter(|i| subscriptions.held.contains_key(i))
                .collect();
            let all_members = due.all_members && subscriptions.all_members.is_some();
            node.hub
                .accounted(extent.epoch, extent.last_seq, &interests, all_members);
        }
        Ok(_) => subscriptions.accounting.failed(due),
        Err(e) => {
            tracing::debug!(error = %e, "reading the stream's extent failed; streams start through a catch-up");
            subscriptions.accounting.failed(due);
        }
    }
}

/// A `select!` branch's timer that may be off (`None` never fires).
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Waits until the server has every subscription this node sent ([`Bus::barrier`]).
async fn confirm(node: &LiveDeps) -> Result<(), BusError> {
    #[cfg(feature = "fault-injection")]
    if node.fail_next_confirm.swap(false, std::sync::atomic::Ordering::Relaxed) {
        tracing::warn!("fault injection: failing a subscription confirmation");
        return Err(BusError::TimedOut("confirm the subscription"));
    }
    node.bus.barrier().await
}

/// Runs `deliver` in an `sse.deliver` span that continues the trace of the event's
/// Send: notifications only (topic fan-out, one message to many connections, is not
/// traced). `path` says whether it went out live or replayed.
pub(crate) fn traced<T>(event: &BusEvent, path: &'static str, deliver: impl FnOnce() -> T) -> T {
    match (&event.kind, &event.traceparent) {
        (EventKind::Notification, Some(traceparent)) => {
            let span = tracing::info_span!("sse.deliver", otel.kind = "consumer", path, seq = event.seq);
            tidings_telemetry::propagation::set_remote_parent(&span, Some(traceparent));
            span.in_scope(deliver)
        }
        _ => deliver(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subscriptions() -> Subscriptions {
        let (_, incarnations) = tokio::sync::watch::channel(tidings_domain::StreamEpoch(1));
        Subscriptions::new(Sequences::new(incarnations))
    }

    /// A connection relying on a subscription taken within [`PROPAGATION`] is told so
    /// (it replays once more after it); one taken earlier, or another interest's, does
    /// not count; the subscription to every partition counts for each partition.
    #[tokio::test]
    async fn a_connection_learns_when_its_interest_is_fresh() {
        let mut subs = subscriptions();
        let (p1, p2) = (Interest::Partition(1), Interest::Partition(2));
        subs.added(Some(p1.clone()));
        assert!(subs.taken(std::slice::from_ref(&p1)).recently.is_some());
        assert_eq!(subs.taken(std::slice::from_ref(&p2)).recently, None, "not its interest");

        tokio::time::sleep(PROPAGATION).await;
        assert_eq!(subs.taken(std::slice::from_ref(&p1)).recently, None, "long enough ago");

        subs.added(None);
        assert!(
            subs.taken(&[p2, p1]).recently.is_some(),
            "the subscription to every partition"
        );
        assert_eq!(subs.added.len(), 1, "old entries are dropped");
    }
}
