//! Publishing to the stream: notification and topic messages with the headers every
//! consumer relies on, pipelined so a batch costs one round trip, not one per message.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::HeaderMap;
use async_nats::jetstream::context::{PublishError, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;
use bytes::Bytes;
use futures::future::join_all;

use tidings_domain::{MemberId, UnreadCount};

use crate::{Bus, BusError};

/// Header carrying the publisher's wall clock (Unix nanoseconds) when it handed the
/// message to NATS; edges measure publish → SSE write latency from it.
pub const PUBLISHED_AT: &str = "Tidings-Published-At";
/// Header naming the SSE event a topic message is delivered as.
pub const EVENT: &str = "Tidings-Event";
/// W3C trace context, lower-case: NATS header names are case-sensitive.
pub const TRACEPARENT: &str = "traceparent";
/// The member's unread count just after the message's change, `<count>;<version>`
/// ([`UnreadCount`]): on a notification the api published inline and on an unread
/// announcement. Optional: without it (the relay's publishes, an older api's) edges
/// fetch the count.
pub const UNREAD: &str = "Tidings-Unread";

/// One message to store in the stream.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// A stored subject from [`crate::Subjects`].
    pub subject: String,
    /// `Nats-Msg-Id`: JetStream drops a repeat inside the duplicate window, which makes
    /// retries (outbox relay, SendStream replays) harmless.
    pub msg_id: Option<String>,
    /// The SSE event name for topic messages; notifications are always `notification`.
    pub event: Option<String>,
    pub traceparent: Option<String>,
    /// The member's unread count with this notification (the [`UNREAD`] header).
    pub unread: Option<UnreadCount>,
    /// Exactly the bytes an SSE `data:` carries.
    pub payload: Bytes,
}

/// Where JetStream stored a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    pub seq: u64,
    /// It was already stored (same `Nats-Msg-Id` inside the duplicate window); `seq` is
    /// the original's.
    pub duplicate: bool,
}

impl Bus {
    /// Publishes `messages` pipelined and waits for every acknowledgement, at most
    /// `deadline` overall. Results are in input order; a message whose ack did not come
    /// in time is an error and may or may not be stored (its `msg_id` makes a retry safe).
    /// Acknowledged sequences lower than earlier ones make it read the stream's
    /// incarnation ([`Bus::epoch`]) before it returns.
    pub async fn publish_all(&self, messages: Vec<Outgoing>, deadline: Duration) -> Vec<Result<Stored, PublishError>> {
        let count = messages.len();
        let work = async {
            let mut pending = Vec::with_capacity(messages.len());
            for m in messages {
                pending.push(self.js.send_publish(m.subject.clone(), build(m)).await);
            }
            join_all(pending.into_iter().map(|sent| async move {
                let ack = sent?.await?;
                Ok(Stored {
                    seq: ack.sequence,
                    duplicate: ack.duplicate,
                })
            }))
            .await
        };
        let results = match tokio::time::timeout(deadline, work).await {
            Ok(results) => results,
            Err(_) => (0..count)
                .map(|_| Err(PublishError::new(PublishErrorKind::TimedOut)))
                .collect(),
        };
        // A duplicate answers with the original's sequence: no step back.
        let acked = results
            .iter()
            .filter_map(|r| r.as_ref().ok())
            .filter(|s| !s.duplicate)
            .map(|s| s.seq);
        if self.acks.went_back(acked) {
            // Maybe the stream was created anew: learn its incarnation before anyone
            // mints an id from these sequences.
            if let Err(e) = self.extent().await {
                tracing::debug!(error = %e, "checking the stream's incarnation failed");
            }
        }
        results
    }

    /// Tells the edges holding `member` that its unread count is now `unread` (in the
    /// payload for older edges, and with its version in the [`UNREAD`] header):
    /// a core NATS message on the member's live subject, not stored. Stored, every
    /// MarkRead would take a place in the member's history — count against the replay
    /// limit of a client that was away, and push its notifications out of a stream
    /// that keeps a bounded number per subject. Edges re-read the count on every
    /// connect anyway, so one lost announcement costs a stale badge until then.
    pub async fn announce_unread(&self, member: &MemberId, unread: UnreadCount) -> Result<(), BusError> {
        let mut headers = HeaderMap::new();
        headers.insert(EVENT, crate::UNREAD_EVENT);
        headers.insert(UNREAD, unread.to_string().as_str());
        let payload = serde_json::json!({ "unreadCount": unread.count }).to_string();
        self.client
            .publish_with_headers(self.subjects().live_member(member), headers, payload.into())
            .await
            .map_err(|e| BusError::failed("announce an unread count", e))
    }

    /// Whether the client is connected to a server right now. Publishing while
    /// disconnected would only queue and time out, so callers leave such work to the
    /// outbox relay instead.
    pub fn is_connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }
}

fn build(m: Outgoing) -> PublishMessage {
    let mut headers = HeaderMap::new();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    headers.insert(PUBLISHED_AT, now.to_string().as_str());
    if let Some(event) = &m.event {
        headers.insert(EVENT, event.as_str());
    }
    if let Some(tp) = &m.traceparent {
        headers.insert(TRACEPARENT, tp.as_str());
    }
    if let Some(unread) = &m.unread {
        headers.insert(UNREAD, unread.to_string().as_str());
    }
    let message = PublishMessage::build().headers(headers).payload(m.payload);
    match &m.msg_id {
        Some(id) => message.message_id(id),
        None => message,
    }
}

/// The highest sequence this process had acknowledged, to notice sequences starting
/// over (a stream created anew). Acknowledgements of concurrent publishes may be seen
/// slightly out of order, so a step back asks the stream at most once a second.
#[derive(Debug, Default)]
pub(crate) struct Acks(std::sync::Mutex<(u64, Option<std::time::Instant>)>);

impl Acks {
    fn went_back(&self, acked: impl Iterator<Item = u64>) -> bool {
        let mut state = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (highest, checked) = &mut *state;
        let (mut lowest, mut batch_highest) = (u64::MAX, 0);
        for seq in acked {
            lowest = lowest.min(seq);
            batch_highest = batch_highest.max(seq);
        }
        let back = lowest < *highest;
        *highest = (*highest).max(batch_highest);
        if !back || checked.is_some_and(|at| at.elapsed() < Duration::from_secs(1)) {
            return false;
        }
        *checked = Some(std::time::Instant::now());
        // From here on, sequences of the stream as it is now.
        *highest = batch_highest;
        true
    }
}
