//! One SSE connection's life, owned by one task: announce, catch up, go live, and end
//! on disconnect, slow reading, token expiry or drain.
//!
//! The catch-up is the hand-over from replay to live, with no gap and no duplicate: the
//! connection is registered with the hub (its inbox buffers live events) and the node's
//! NATS interest is confirmed *before* the stream is read, so every message is either in
//! the replay, in the inbox, or both; events at or below the last delivered sequence are
//! dropped as duplicates. On the live path every member and `all`-topic event is checked
//! against the previous sequence on its subject (RePublish's `Nats-Last-Sequence`): a
//! missing predecessor is fetched from the stream before delivery, or, when it would
//! come out of order, the client gets `reset`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use rand::Rng as _;
use serde_json::json;
use tidings_bus::{BusEvent, EventKind, Replay, SubjectTarget};
use tidings_domain::{EventId, Topic};
use tokio::sync::mpsc;
use tracing::Instrument as _;

use crate::auth::Subscriber;
use crate::hub::Conn;
use crate::sse;
use crate::state::EdgeState;
use crate::topics::TopicMode;

/// Where a connecting client says it left off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Resume {
    Fresh,
    From(EventId),
    Malformed,
}

impl Resume {
    pub(crate) fn parse(raw: Option<&str>) -> Self {
        match raw.map(str::trim) {
            None | Some("") => Self::Fresh,
            Some(s) => EventId::parse(s).map_or(Self::Malformed, Self::From),
        }
    }
}

/// Why a stream ended, for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Closed {
    ClientGone,
    SlowConsumer,
    TokenExpired,
    Drain,
    Error,
}

impl Closed {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::ClientGone => "client_gone",
            Self::SlowConsumer => "slow_consumer",
            Self::TokenExpired => "token_expired",
            Self::Drain => "drain",
            Self::Error => "error",
        }
    }
}

/// Everything one connection task needs.
pub(crate) struct Session {
    pub(crate) state: Arc<EdgeState>,
    pub(crate) conn: Arc<Conn>,
    pub(crate) subscriber: Subscriber,
    pub(crate) resume: Resume,
    pub(crate) out: mpsc::Sender<Bytes>,
}

/// Per-connection delivery state.
struct Cursor {
    /// Highest sequence delivered with an id: the client's Last-Event-ID.
    delivered: u64,
    /// Last sequence delivered per stored subject; subjects not seen yet use `baseline`.
    by_subject: HashMap<String, u64>,
    /// The position the connection started from: everything up to it is the client's.
    baseline: u64,
}

impl Session {
    pub(crate) async fn run(self) -> Closed {
        let opened = std::time::Instant::now();
        let metrics = &self.state.metrics;
        metrics.opened.inc();
        metrics.connections.inc();
        let closed = self.serve().await;
        let released = self.state.hub.unregister(&self.conn);
        self.state.live.release(released);
        metrics.connections.dec();
        metrics.closed.with_label_values(&[closed.label()]).inc();
        tracing::info!(
            connection = self.conn.id,
            member = %self.conn.member,
            reason = closed.label(),
            duration_ms = opened.elapsed().as_millis() as u64,
            "stream closed"
        );
        closed
    }

    async fn serve(&self) -> Closed {
        let state = &self.state;
        if let Err(closed) = self.write(sse::retry(state.retry)).await {
            return closed;
        }
        let interests = self.interests();
        if let Err(e) = state.live.ensure(interests).await {
            tracing::warn!(error = %e, "cannot take live interest");
            let _ = self.write(reset_frame(None, "unavailable")).await;
            return Closed::Error;
        }
        let extent = match state.bus.extent().await {
            Ok(extent) => extent,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the stream");
                return Closed::Error;
            }
        };
        let epoch = state.bus.epoch();
        let now_id = |seq| EventId::new(epoch, seq).to_string();

        // Where to start, or why the history cannot be replayed.
        let (start, reset) = match &self.resume {
            Resume::Fresh => (extent.last_seq, None),
            Resume::Malformed => (extent.last_seq, Some("malformed_id")),
            Resume::From(id) if id.epoch != epoch => (extent.last_seq, Some("other_incarnation")),
            Resume::From(id) if id.seq > extent.last_seq => (extent.last_seq, Some("unknown_position")),
            Resume::From(id) if id.seq + 1 < extent.first_seq => (extent.last_seq, Some("history_trimmed")),
            Resume::From(id) => (id.seq, None),
        };
        let connected = json!({
            "connectionId": self.conn.id,
            "memberId": self.conn.member.as_str(),
            "node": state.node,
            "resumed": matches!(self.resume, Resume::From(_)) && reset.is_none(),
        });
        let frame = sse::event(Some(&now_id(start)), "connected", connected.to_string().as_bytes());
        if let Err(closed) = self.write(frame).await {
            return closed;
        }
        let mut cursor = Cursor {
            delivered: start,
            by_subject: HashMap::new(),
            baseline: start,
        };
        if let Some(reason) = reset {
            state.metrics.resets.with_label_values(&[reason]).inc();
            if let Err(closed) = self.write(reset_frame(Some(&now_id(start)), reason)).await {
                return closed;
            }
        }
        // Catch up: replay after the start (a resume), and the newest value of each
        // `latest` topic.
        let from = if matches!(self.resume, Resume::From(_)) && reset.is_none() {
            Some(start + 1)
        } else {
            None
        };
        if let Err(closed) = self.catch_up(&mut cursor, from, Some(extent.last_seq), true).await {
            return closed;
        }
        state.unread.refresh(self.conn.member.clone());
        self.live(cursor).await
    }

    /// Replays everything after `from` on the connection's replayed subjects (bounded),
    /// plus, when `latest`, the newest message of each `latest` topic; delivers it in
    /// sequence order.
    async fn catch_up(
        &self,
        cursor: &mut Cursor,
        from: Option<u64>,
        at_least: Option<u64>,
        latest: bool,
    ) -> Result<(), Closed> {
        let state = &self.state;
        let mut events: Vec<BusEvent> = Vec::new();
        if let Some(from) = from {
            let _permit = state.replays.acquire().await.map_err(|_| Closed::Error)?;
            match state
                .bus
                .replay(self.replayed_subjects(), from, None, state.replay_limit, at_least)
                .await
            {
                Ok(Replay::Events(replayed)) => {
                    state.metrics.replay_size.observe(replayed.len() as f64);
                    events.extend(replayed);
                }
                Ok(Replay::TooMany { pending }) => {
                    tracing::info!(member = %self.conn.member, pending, "replay over the bound; resetting");
                    return self.reset_to_now(cursor, "too_many_missed").await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "replay failed; resetting");
                    return self.reset_to_now(cursor, "replay_unavailable").await;
                }
            }
        }
        if latest {
            for (topic, mode) in &self.conn.topics {
                if *mode != TopicMode::Latest {
                    continue;
                }
                match state.bus.latest(topic).await {
                    // A resumed client already has anything at or below its position.
                    Ok(Some(event)) if from.is_none_or(|f| event.seq >= f) => events.push(event),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(topic = %topic, error = %e, "reading the newest topic value failed"),
                }
            }
        }
        events.sort_by_key(|e| e.seq);
        for event in events {
            if event.seq <= cursor.delivered {
                // The current value of a `latest` topic, older than where this client
                // starts: sent without an id, so its Last-Event-ID does not go back.
                if let EventKind::Topic(name) = &event.kind {
                    self.write(sse::event(None, name, &event.payload)).await?;
                }
                continue;
            }
            self.deliver(cursor, &event, true).await?;
        }
        Ok(())
    }

    async fn reset_to_now(&self, cursor: &mut Cursor, reason: &str) -> Result<(), Closed> {
        let now = self
            .state
            .bus
            .extent()
            .await
            .map(|e| e.last_seq)
            .unwrap_or(cursor.delivered)
            .max(cursor.delivered);
        *cursor = Cursor {
            delivered: now,
            by_subject: HashMap::new(),
            baseline: now,
        };
        let id = EventId::new(self.state.bus.epoch(), now).to_string();
        self.write(reset_frame(Some(&id), reason)).await
    }

    async fn live(&self, mut cursor: Cursor) -> Closed {
        let state = &self.state;
        let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + state.heartbeat, state.heartbeat);
        let expires = self.subscriber.expires_at;
        let until = |at: SystemTime| at.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO);
        let reauth_at = tokio::time::sleep(until(expires.checked_sub(state.reauth_before).unwrap_or(expires)));
        let expiry = tokio::time::sleep(until(expires));
        tokio::pin!(reauth_at, expiry);
        let mut reauth_sent = false;
        let drain = state.drain.clone();
        loop {
            tokio::select! {
                () = self.conn.ready.notified() => {
                    let inbox = self.conn.take();
                    if inbox.slow {
                        tracing::warn!(member = %self.conn.member, connection = self.conn.id, "slow consumer; closing stream");
                        return Closed::SlowConsumer;
                    }
                    if inbox.resync {
                        let from = cursor.delivered + 1;
                        if let Err(closed) = self.catch_up(&mut cursor, Some(from), None, false).await {
                            return closed;
                        }
                    }
                    let mut events: Vec<Arc<BusEvent>> = inbox.queue.into_iter().chain(inbox.latest).collect();
                    events.sort_by_key(|e| e.seq);
                    for event in events {
                        if let Err(closed) = self.deliver(&mut cursor, &event, false).await {
                            return closed;
                        }
                    }
                    if let Some(count) = inbox.unread {
                        let frame = sse::event(None, "unread", json!({ "unreadCount": count }).to_string().as_bytes());
                        if let Err(closed) = self.write(frame).await {
                            return closed;
                        }
                    }
                }
                _ = heartbeat.tick() => {
                    if let Err(closed) = self.write(sse::heartbeat()).await {
                        return closed;
                    }
                }
                () = &mut reauth_at, if !reauth_sent => {
                    reauth_sent = true;
                    let secs = expires.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs();
                    let frame = sse::event(None, "reauth", json!({ "expiresAt": secs }).to_string().as_bytes());
                    if let Err(closed) = self.write(frame).await {
                        return closed;
                    }
                }
                () = &mut expiry => return Closed::TokenExpired,
                () = drain.cancelled() => return self.drain().await,
                () = self.out.closed() => return Closed::ClientGone,
                () = self.conn.overflowed.cancelled() => {
                    tracing::warn!(member = %self.conn.member, connection = self.conn.id, "slow consumer; closing stream");
                    return Closed::SlowConsumer;
                }
            }
        }
    }

    /// Spread over the drain window: wait a random share of it, tell the browser to
    /// come back after a randomized `retry:` (to another node), then end.
    async fn drain(&self) -> Closed {
        let window = self.state.drain_window;
        let (delay, retry) = {
            let mut rng = rand::rng();
            (
                window.mul_f64(rng.random_range(0.0..0.8)),
                Duration::from_millis(rng.random_range(500..3000)),
            )
        };
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = self.out.closed() => return Closed::ClientGone,
            () = self.state.shutdown.cancelled() => {}
        }
        let _ = self.write(sse::retry(retry)).await;
        Closed::Drain
    }

    /// Delivers one event if it is new, healing a gap on its subject first.
    async fn deliver(&self, cursor: &mut Cursor, event: &BusEvent, replayed: bool) -> Result<(), Closed> {
        if event.seq <= cursor.delivered {
            return Ok(());
        }
        let latest_topic = matches!(&event.target, SubjectTarget::Topic(t) if self.mode(t) == Some(TopicMode::Latest));
        if !replayed && !latest_topic {
            let known = cursor
                .by_subject
                .get(&event.subject)
                .copied()
                .unwrap_or(cursor.baseline);
            if let Some(previous) = event.previous_on_subject
                && previous > known
            {
                self.heal(cursor, event, known).await?;
            }
        }
        let id = EventId::new(self.state.bus.epoch(), event.seq).to_string();
        let frame = match &event.kind {
            EventKind::Notification => Some(sse::event(Some(&id), "notification", &event.payload)),
            EventKind::Topic(name) => Some(sse::event(Some(&id), name, &event.payload)),
            // The count travels in its own `unread` event, fetched fresh; the change
            // itself only moves the cursor.
            EventKind::UnreadChanged => None,
        };
        if let Some(frame) = frame {
            match (&event.kind, &event.traceparent) {
                // Notifications continue the trace of their Send; topic fan-out (one
                // message to many connections) is not traced per connection.
                (EventKind::Notification, Some(traceparent)) => {
                    let span = tracing::info_span!(
                        "sse.deliver",
                        otel.kind = "consumer",
                        path = if replayed { "replay" } else { "live" },
                        seq = event.seq,
                    );
                    tidings_telemetry::propagation::set_remote_parent(&span, Some(traceparent));
                    self.write(frame).instrument(span).await?;
                }
                _ => self.write(frame).await?,
            }
            let m = &self.state.metrics;
            if replayed {
                m.delivered_replay.inc()
            } else {
                m.delivered_live.inc()
            }
            if let Some(published_at) = event.published_at {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_nanos();
                let seconds = now.saturating_sub(published_at) as f64 / 1e9;
                if replayed {
                    m.latency_replay.observe(seconds)
                } else {
                    m.latency_live.observe(seconds)
                }
            }
        }
        cursor.delivered = event.seq;
        cursor.by_subject.insert(event.subject.clone(), event.seq);
        // A replayed change is covered by the refresh that follows every catch-up.
        if !replayed && matches!(event.kind, EventKind::Notification | EventKind::UnreadChanged) {
            self.state.unread.refresh(self.conn.member.clone());
        }
        Ok(())
    }

    /// The live copy of something on `event`'s subject after `known` never arrived:
    /// fetch it from the stream and deliver it first, or reset when it would arrive
    /// out of order.
    async fn heal(&self, cursor: &mut Cursor, event: &BusEvent, known: u64) -> Result<(), Closed> {
        tracing::info!(subject = %event.subject, known, seq = event.seq, "live gap; fetching the missed messages");
        let _permit = self.state.replays.acquire().await.map_err(|_| Closed::Error)?;
        let fetched = self
            .state
            .bus
            .replay(
                vec![event.subject.clone()],
                known + 1,
                Some(event.seq - 1),
                self.state.replay_limit,
                Some(event.seq - 1),
            )
            .await;
        match fetched {
            Ok(Replay::Events(missed)) if missed.iter().all(|m| m.seq > cursor.delivered) => {
                for m in &missed {
                    Box::pin(self.deliver(cursor, m, true)).await?;
                }
                Ok(())
            }
            _ => self.reset_to_now(cursor, "live_gap").await,
        }
    }

    fn mode(&self, topic: &Topic) -> Option<TopicMode> {
        self.conn.topics.iter().find(|(t, _)| t == topic).map(|(_, m)| *m)
    }

    fn interests(&self) -> Vec<crate::hub::Interest> {
        std::iter::once(crate::hub::Interest::Partition(self.conn.partition))
            .chain(
                self.conn
                    .topics
                    .iter()
                    .map(|(t, _)| crate::hub::Interest::Topic(t.clone())),
            )
            .collect()
    }

    /// The stored subjects a resume replays: the member's and every `all` topic's.
    fn replayed_subjects(&self) -> Vec<String> {
        let subjects = self.state.bus.subjects();
        std::iter::once(subjects.member(&self.conn.member))
            .chain(
                self.conn
                    .topics
                    .iter()
                    .filter(|(_, m)| *m == TopicMode::All)
                    .map(|(t, _)| subjects.topic(t)),
            )
            .collect()
    }

    /// Writes a frame. A client that does not take it within the write timeout, or
    /// whose inbox overflows meanwhile, is a slow consumer.
    async fn write(&self, frame: Bytes) -> Result<(), Closed> {
        tokio::select! {
            sent = tokio::time::timeout(self.state.write_timeout, self.out.send(frame)) => match sent {
                Ok(Ok(())) => Ok(()),
                Ok(Err(_)) => Err(Closed::ClientGone),
                Err(_) => Err(Closed::SlowConsumer),
            },
            () = self.conn.overflowed.cancelled() => Err(Closed::SlowConsumer),
        }
    }
}

fn reset_frame(id: Option<&str>, reason: &str) -> Bytes {
    let body = json!({ "reason": reason, "action": "reload the inbox; live events continue" });
    sse::event(id, "reset", body.to_string().as_bytes())
}

#[cfg(test)]
mod tests {
    use tidings_domain::StreamEpoch;

    use super::*;

    #[test]
    fn resume_positions() {
        assert_eq!(Resume::parse(None), Resume::Fresh);
        assert_eq!(Resume::parse(Some(" ")), Resume::Fresh);
        assert_eq!(
            Resume::parse(Some("ab-12")),
            Resume::From(EventId::new(StreamEpoch(0xab), 12))
        );
        for forged in ["12", "ab-01", "<script>", "ab-1; drop table", "ab-99999999999999999999"] {
            assert_eq!(Resume::parse(Some(forged)), Resume::Malformed, "{forged}");
        }
    }
}
