//! Publish: a message to a broadcast topic goes straight to JetStream, where edges
//! replay it from; it is in no inbox, so Postgres never sees it and there is no outbox.
//! When NATS is down the call fails with UNAVAILABLE and the producer retries.

use tidings_bus::Outgoing;
use tidings_domain::{EventId, Topic};

use crate::ApiError;
use crate::state::ApiState;

/// A validated Publish: the topic, the SSE event name, and the JSON data.
#[derive(Debug)]
pub(crate) struct TopicMessage {
    pub(crate) topic: Topic,
    pub(crate) event: String,
    pub(crate) data_json: String,
}

impl ApiState {
    /// Publishes `message` and returns the SSE id it carries. No `Nats-Msg-Id`: a topic
    /// message has no id of its own to deduplicate by.
    pub(crate) async fn publish_topic(
        &self,
        message: TopicMessage,
        traceparent: Option<String>,
    ) -> Result<EventId, ApiError> {
        if !self.bus.is_connected() {
            return Err(ApiError::BusUnavailable("not connected".into()));
        }
        let outgoing = Outgoing {
            subject: self.bus.subjects().topic(&message.topic),
            msg_id: None,
            event: Some(message.event),
            traceparent,
            unread: None,
            payload: message.data_json.into(),
        };
        match self.bus.publish_all(vec![outgoing], self.publish_timeout).await.pop() {
            Some(Ok(stored)) => Ok(EventId::new(self.bus.epoch(), stored.seq)),
            Some(Err(e)) => Err(ApiError::BusUnavailable(e.to_string())),
            None => Err(ApiError::Internal(anyhow::anyhow!(
                "invariant broken: publish_all answers every message"
            ))),
        }
    }
}
