//! Publishing to the stream: notification and topic messages with the headers every
//! consumer relies on, pipelined so a batch costs one round trip, not one per message.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::HeaderMap;
use async_nats::jetstream::context::{PublishError, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;
use bytes::Bytes;
use futures::future::join_all;

use crate::Bus;

/// Header carrying the publisher's wall clock (Unix nanoseconds) when it handed the
/// message to NATS; edges measure publish → SSE write latency from it.
pub const PUBLISHED_AT: &str = "Tidings-Published-At";
/// Header naming the SSE event a topic message is delivered as.
pub const EVENT: &str = "Tidings-Event";
/// W3C trace context, lower-case: NATS header names are case-sensitive.
pub const TRACEPARENT: &str = "traceparent";

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
        match tokio::time::timeout(deadline, work).await {
            Ok(results) => results,
            Err(_) => (0..count)
                .map(|_| Err(PublishError::new(PublishErrorKind::TimedOut)))
                .collect(),
        }
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
    let message = PublishMessage::build().headers(headers).payload(m.payload);
    match &m.msg_id {
        Some(id) => message.message_id(id),
        None => message,
    }
}
