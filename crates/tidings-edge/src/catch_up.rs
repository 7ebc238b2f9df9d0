//! One stream's catch-up, as a short task: announce, replay what the browser missed,
//! and hand over to live delivery; later, heal a live gap or replay after NATS lost
//! messages. Once live, a connection has no task at all: the live task delivers into
//! its queue (`delivery.rs`) and its response body sends it.
//!
//! The hand-over from replay to live has no gap and no duplicate: the connection is
//! registered with the hub (live events wait in its `pending` list) and the node's NATS
//! interest is confirmed *before* the stream is read, so every message is either in
//! the replay, pending, or both; events at or below the last delivered sequence are
//! dropped as duplicates. On the live path every member and `all`-topic event is checked
//! against the previous sequence on its subject (RePublish's `Nats-Last-Sequence`): a
//! missing predecessor is fetched from the stream before delivery, or, when it would
//! come out of order, the client gets `reset`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tidings_bus::{BusEvent, EventKind, Replay, ReplayError, ReplayRange};
use tidings_domain::{EventId, LastEventId, StreamEpoch};
use tokio::sync::mpsc;

use crate::cursor::Cursor;
use crate::delivery::{Closed, Next, Step};
use crate::hub::{CatchUpQueue, Conn, Interest};
use crate::live::{PROPAGATION, traced};
use crate::queue::Path;
use crate::ready::StartAt;
use crate::sse;
use crate::state::EdgeState;
use crate::topics::TopicMode;

/// Runs a catch-up task for each connection queued by the live task (a gap, a
/// possible loss), on the node's stream tracker, until the queue closes at shutdown.
#[derive(Debug)]
pub(crate) struct CatchUps {
    queue: mpsc::Receiver<Arc<Conn>>,
}

impl CatchUps {
    /// The queue the live task fills (bounded by the node's connection limit, see
    /// [`CatchUpQueue`]) and its consumer.
    pub(crate) fn new(max_connections: usize) -> (CatchUpQueue, Self) {
        let (tx, queue) = CatchUpQueue::new(max_connections);
        (tx, Self { queue })
    }

    pub(crate) async fn run(mut self, state: Arc<EdgeState>) {
        loop {
            let conn = tokio::select! {
                () = state.lifecycle.shutdown.cancelled() => return,
                conn = self.queue.recv() => match conn {
                    Some(conn) => conn,
                    None => return,
                },
            };
            state.lifecycle.streams.spawn(catch_up(state.clone(), conn));
        }
    }
}

/// How long a catch-up retries a read of the stream that fails for a passing reason
/// before it closes the stream: longer than a stream leader election (a few seconds)
/// and a NATS reconnect, far shorter than the client would wait on its own.
const RETRY_READS_FOR: Duration = Duration::from_secs(20);
const FIRST_RETRY: Duration = Duration::from_millis(100);
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(2);

/// How often a catch-up waiting for room in a full queue looks again.
const ROOM_POLL: Duration = Duration::from_millis(5);

/// Opens a registered stream: takes live interest (`interests`, what the hub said it
/// needs), announces, replays, goes live.
pub(crate) async fn open(state: Arc<EdgeState>, conn: Arc<Conn>, resume: LastEventId, interests: Vec<Interest>) {
    if let Err(closed) = start(&state, &conn, &resume, interests).await {
        conn.end(closed);
    }
}

/// Starts a fresh stream at the node's position (`ready.rs`: the node holds and has
/// accounted for its interest): announces it and hands over to live delivery at once,
/// with no read of the stream and no task — unless a live event already waiting needs
/// a catch-up (a gap), which then runs as after any gap.
pub(crate) fn start_live(state: &Arc<EdgeState>, conn: Arc<Conn>, at: StartAt) {
    state.metrics.started_live.inc();
    let now = state.clock.now();
    let connected = sse::connected(
        &id_of(at.epoch, at.seq),
        conn.id,
        conn.inbox.as_ref().map(|i| (i.member.as_str(), i.partition)),
        &state.node,
        false,
    );
    let (next, delivered) = {
        let mut delivery = conn.delivery();
        delivery.cursor = Cursor::at(at.seq);
        delivery.push_control(connected, None, now);
        delivery.settle(now)
    };
    state.metrics.delivered_live.inc_by(delivered as u64);
    if let Some(inbox) = &conn.inbox {
        state.unread.refresh(inbox.member.clone());
    }
    if !matches!(next, Next::Live | Next::Ended(_)) {
        state.lifecycle.streams.spawn(catch_up(state.clone(), conn));
    }
}

/// Catches a live connection up after a gap or a NATS reconnect, then hands it back to
/// live delivery.
async fn catch_up(state: Arc<EdgeState>, conn: Arc<Conn>) {
    if let Err(closed) = settle(&state, &conn).await {
        conn.end(closed);
    }
}

async fn start(state: &EdgeState, conn: &Conn, resume: &LastEventId, interests: Vec<Interest>) -> Result<(), Closed> {
    let taken = match state.live.ensure(interests).await {
        Ok(taken) => taken,
        Err(e) => {
            // NATS is down or partitioned: nothing is lost, so no `reset`. The stream
            // closes, and the browser resumes by Last-Event-ID after its `retry:`.
            tracing::warn!(error = %e, "cannot take live interest; closing the stream");
            return Err(Closed::Error);
        }
    };
    let extent = state.extents.read().await.map_err(|e| {
        tracing::warn!(error = %e, "cannot read the stream");
        Closed::Error
    })?;
    let epoch = extent.epoch;

    // Where to start, or why the history cannot be replayed.
    let (start, reset) = match resume {
        LastEventId::Fresh => (extent.last_seq, None),
        LastEventId::Malformed => (extent.last_seq, Some("malformed_id")),
        LastEventId::From(id) if id.epoch != epoch => (extent.last_seq, Some("other_incarnation")),
        LastEventId::From(id) if id.seq > extent.last_seq => (extent.last_seq, Some("unknown_position")),
        LastEventId::From(id) if id.seq + 1 < extent.first_seq => (extent.last_seq, Some("history_trimmed")),
        LastEventId::From(id) => (id.seq, None),
    };
    let id = id_of(epoch, start);
    conn.delivery().cursor = Cursor::at(start);
    let resumed = matches!(resume, LastEventId::From(_)) && reset.is_none();
    let connected = sse::connected(
        &id,
        conn.id,
        conn.inbox.as_ref().map(|i| (i.member.as_str(), i.partition)),
        &state.node,
        resumed,
    );
    write(state, conn, connected).await?;
    if let Some(reason) = reset {
        state.metrics.resets.with_label_values(&[reason]).inc();
        write(state, conn, sse::reset(Some(&id), reason)).await?;
    }
    // Catch up: replay after the start (a resume), and the newest value of each
    // `latest` topic.
    let from = resumed.then_some(start + 1);
    let replayed = replay(state, conn, from, extent.last_seq).await?;
    if resumed && let Some(missed) = replayed {
        // The replay is written: clients can tell "caught up, n missed" from live.
        write(state, conn, sse::resumed(missed)).await?;
    }
    if let Some(inbox) = &conn.inbox {
        state.unread.refresh(inbox.member.clone());
    }
    settle(state, conn).await?;
    if let Some(at) = taken.recently {
        // Live now; once the new interest has surely reached every server of the
        // cluster, replay what may have slipped between (see `live::PROPAGATION`).
        tokio::select! {
            () = tokio::time::sleep_until(at + PROPAGATION) => {}
            () = state.lifecycle.shutdown.cancelled() => return Ok(()),
        }
        if conn.delivery().resync() {
            settle(state, conn).await?;
        }
    }
    Ok(())
}

/// Hands pending live events over until the connection is live, healing gaps and
/// replaying after losses on the way.
async fn settle(state: &EdgeState, conn: &Conn) -> Result<(), Closed> {
    loop {
        let (next, delivered) = conn.delivery().settle(state.clock.now());
        state.metrics.delivered_live.inc_by(delivered as u64);
        match next {
            Next::Live => return Ok(()),
            Next::Ended(closed) => return Err(closed),
            // Rare paths, boxed: every stream's catch-up task is as large as its
            // largest await, and reading the stream nests deep futures.
            Next::Resync { from } => {
                // Up to the stream's end as read now, with the newest value of each
                // `latest` topic up to there (lost live like anything else); later
                // ones come live. With the end known the replay goes through the
                // node's resumes, so a whole node resyncing at once (a NATS reconnect)
                // is read in one pass like a reconnect storm.
                let end = match state.extents.read().await {
                    Ok(extent) => extent.last_seq,
                    Err(e) => retry(state, conn, "extent", e, || state.extents.read()).await?.last_seq,
                };
                Box::pin(replay(state, conn, Some(from), end)).await?;
            }
            Next::Heal {
                subject,
                known,
                previous,
                before,
            } => Box::pin(heal(state, conn, subject, known, previous, before)).await?,
            Next::Wait => wait_for_room(state, conn).await?,
            Next::Reset(reason) => {
                tracing::error!(
                    member = conn.who(),
                    reason,
                    "a live event arrived out of order; resetting"
                );
                reset_to_now(state, conn, reason).await?;
            }
        }
    }
}

/// Replays everything after `from` on the connection's replayed subjects up to `until`
/// (the stream's end as read after live interest was in place; bounded), plus the
/// newest message of each `latest` topic; delivers it in sequence order. Returns how
/// many events it delivered after the connection's position, or `None` when it reset
/// the connection instead (more missed than the bound).
async fn replay(state: &EdgeState, conn: &Conn, from: Option<u64>, until: u64) -> Result<Option<u64>, Closed> {
    let mut events: Vec<BusEvent> = Vec::new();
    if let Some(from) = from {
        let read = Read::Missed { from, until };
        let replayed = match read.once(state, conn).await {
            Ok(replayed) => replayed,
            Err(e) => Box::pin(retry(state, conn, read.name(), e, || read.once(state, conn))).await?,
        };
        match replayed {
            Replay::Events(replayed) => {
                state.metrics.replay_size.observe(replayed.len() as f64);
                events.extend(replayed);
            }
            Replay::TooMany { pending } => {
                tracing::info!(member = conn.who(), pending, "replay over the bound; resetting");
                return reset_to_now(state, conn, "too_many_missed").await.map(|()| None);
            }
        }
    }
    for (topic, mode) in &conn.topics {
        if *mode != TopicMode::Latest {
            continue;
        }
        match Box::pin(state.bus.latest(topic)).await {
            // A resumed client already has anything at or below its position, and
            // anything after `until` comes live: delivered here with its id, it would
            // move the position past live events still pending.
            Ok(Some(event)) if from.is_none_or(|f| event.seq >= f) && event.seq <= until => {
                events.push(event);
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(topic = %topic, error = %e, "reading the newest topic value failed"),
        }
    }
    events.sort_by_key(|e| e.seq);
    let mut delivered = 0;
    for event in &events {
        if event.seq <= conn.delivery().cursor.delivered {
            // The current value of a `latest` topic, older than where this client
            // starts: sent without an id, so its Last-Event-ID does not go back.
            if let EventKind::Topic(name) = &event.kind {
                write(state, conn, sse::event(None, name, &event.payload)).await?;
            }
            continue;
        }
        if deliver_replayed(state, conn, event).await? {
            delivered += 1;
        }
    }
    Ok(Some(delivered))
}

/// Delivers one replayed event (waiting for room in the queue first); true when it
/// became a frame on the stream.
async fn deliver_replayed(state: &EdgeState, conn: &Conn, event: &BusEvent) -> Result<bool, Closed> {
    wait_for_room(state, conn).await?;
    let frame = sse::frame_of(event, state.bus.epoch());
    let deliver = || {
        conn.delivery()
            .deliver(event, frame.as_ref(), None, Path::Replay, false, state.clock.now())
    };
    let step = traced(event, "replay", deliver);
    match step {
        Step::Delivered if frame.is_some() => {
            state.metrics.delivered_replay.inc();
            Ok(true)
        }
        Step::Overflowed => Err(Closed::SlowConsumer),
        _ => Ok(false),
    }
}

/// The live copy of something on `subject` after `known` never arrived: fetch it from
/// the stream and deliver it first, or reset when it would arrive out of order.
/// Fetches what a live gap on `subject` missed: `(known, before)`, which must hold
/// `previous`, the live event's predecessor on the subject. Without it (trimmed by the
/// stream's limits, or deleted), what the connection missed is gone: `reset`, never a
/// silent hole.
async fn heal(
    state: &EdgeState,
    conn: &Conn,
    subject: String,
    known: u64,
    previous: u64,
    before: u64,
) -> Result<(), Closed> {
    tracing::info!(subject = %subject, known, previous, seq = before, "live gap; fetching the missed messages");
    let read = Read::Gap {
        subject: &subject,
        known,
        before,
    };
    let fetched = match read.once(state, conn).await {
        Ok(fetched) => fetched,
        Err(e) => retry(state, conn, read.name(), e, || read.once(state, conn)).await?,
    };
    let delivered = conn.delivery().cursor.delivered;
    match fetched {
        Replay::Events(missed)
            if missed.iter().all(|m| m.seq > delivered) && missed.iter().any(|m| m.seq == previous) =>
        {
            for m in &missed {
                deliver_replayed(state, conn, m).await?;
            }
            conn.delivery().cursor.cover(&subject, before - 1);
            Ok(())
        }
        _ => reset_to_now(state, conn, "live_gap").await,
    }
}

/// A read of the stream a catch-up makes, which [`retry`] can make again.
#[derive(Debug)]
enum Read<'a> {
    /// What the connection missed after `from` on its replayed subjects, up to
    /// `until` (read through the node's resumes, together with others).
    Missed { from: u64, until: u64 },
    /// The messages of `subject` strictly between `known` and `before`: a live gap.
    Gap { subject: &'a str, known: u64, before: u64 },
}

impl Read<'_> {
    fn name(&self) -> &'static str {
        match self {
            Self::Missed { .. } => "replay",
            Self::Gap { .. } => "gap fetch",
        }
    }

    async fn once(&self, state: &EdgeState, conn: &Conn) -> Result<Replay, ReplayError> {
        #[cfg(feature = "fault-injection")]
        if state
            .fail_reads
            .fetch_update(
                std::sync::atomic::Ordering::Relaxed,
                std::sync::atomic::Ordering::Relaxed,
                |n| n.checked_sub(1),
            )
            .is_ok()
        {
            return Err(ReplayError::TimedOut("reading the stream (fault injection)"));
        }
        match *self {
            Self::Missed { from, until } => {
                let subjects = replayed_subjects(state, conn);
                if subjects.is_empty() {
                    return Ok(Replay::Events(Vec::new()));
                }
                state.resumes.replay(subjects, from, until).await
            }
            Self::Gap { subject, known, before } => {
                let _permit = state.replays.acquire().await.map_err(|_| ReplayError::Stopped)?;
                let range = ReplayRange::between(subject.to_owned(), known, before);
                Box::pin(state.bus.replay(range, state.limits.replay_limit)).await
            }
        }
    }
}

/// Retries a read of the stream (`again`) that failed for a reason that passes — no
/// stream leader yet, a timeout, a NATS reconnect — with backoff, for at most
/// [`RETRY_READS_FOR`], while the stream stays open (heartbeats keep it so; live events
/// wait, bounded by the queue). A failure is never a `reset`: history that is really
/// gone is answered as such by a read that succeeds. Past the bound the stream closes
/// and the browser resumes by Last-Event-ID after its `retry:`.
async fn retry<T, F, Fut>(
    state: &EdgeState,
    conn: &Conn,
    what: &str,
    first: ReplayError,
    mut again: F,
) -> Result<T, Closed>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ReplayError>>,
{
    let deadline = tokio::time::Instant::now() + RETRY_READS_FOR;
    let mut pause = FIRST_RETRY;
    let mut error = first;
    loop {
        if matches!(error, ReplayError::Stopped) {
            return Err(Closed::Error);
        }
        if tokio::time::Instant::now() + pause > deadline {
            tracing::warn!(member = conn.who(), error = %error, what, "reading the stream keeps failing; closing the stream");
            return Err(Closed::Error);
        }
        tracing::info!(member = conn.who(), error = %error, what, retry_in = ?pause, "reading the stream failed; retrying");
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = state.lifecycle.shutdown.cancelled() => return Err(Closed::Drain),
        }
        if let Some(closed) = conn.delivery().ended() {
            return Err(closed);
        }
        match again().await {
            Ok(answer) => return Ok(answer),
            Err(e) => error = e,
        }
        pause = (pause * 2).min(MAX_RETRY_PAUSE);
    }
}

/// Tells the client its history is incomplete and goes on from the stream's end. When
/// the stream cannot be read either, the stream ends instead: the browser resumes
/// later from what it has, which a reset at an unknown position could not promise.
async fn reset_to_now(state: &EdgeState, conn: &Conn, reason: &str) -> Result<(), Closed> {
    let last = state.extents.read().await.map_err(|e| {
        tracing::warn!(error = %e, reason, "cannot read the stream to reset; closing");
        Closed::Error
    })?;
    let now = {
        let mut delivery = conn.delivery();
        let now = last.last_seq.max(delivery.cursor.delivered);
        delivery.cursor = Cursor::at(now);
        now
    };
    state.metrics.resets.with_label_values(&[reason]).inc();
    write(state, conn, sse::reset(Some(&id_of(last.epoch, now)), reason)).await
}

/// Queues a control frame once there is room.
async fn write(state: &EdgeState, conn: &Conn, frame: Bytes) -> Result<(), Closed> {
    wait_for_room(state, conn).await?;
    conn.delivery().push_control(frame, None, state.clock.now());
    Ok(())
}

/// A catch-up writes at the socket's pace: it waits while the queue is full (the body
/// woken, as replayed frames are queued without a wake), and a queue that does not
/// drain within the write timeout is a slow consumer.
async fn wait_for_room(state: &EdgeState, conn: &Conn) -> Result<(), Closed> {
    let deadline = tokio::time::Instant::now() + state.limits.write_timeout;
    loop {
        {
            let mut delivery = conn.delivery();
            if let Some(closed) = delivery.ended() {
                return Err(closed);
            }
            if delivery.has_room() {
                return Ok(());
            }
            delivery.wake();
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Closed::SlowConsumer);
        }
        tokio::time::sleep(ROOM_POLL).await;
    }
}

/// The stored subjects a resume replays: the member's and every `all` topic's. May be
/// empty (an anonymous stream of `latest` topics): then nothing is read, since a
/// read without a subject filter would be a read of every member's history.
fn replayed_subjects(state: &EdgeState, conn: &Conn) -> Vec<String> {
    let subjects = state.bus.subjects();
    conn.inbox
        .iter()
        .map(|inbox| subjects.member(&inbox.member))
        .chain(
            conn.topics
                .iter()
                .filter(|(_, m)| *m == TopicMode::All)
                .map(|(t, _)| subjects.topic(t)),
        )
        .collect()
}

fn id_of(epoch: StreamEpoch, seq: u64) -> String {
    EventId::new(epoch, seq).to_string()
}
