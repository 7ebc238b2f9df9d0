//! The message a notification travels in: its subject, `Nats-Msg-Id`, trace context and
//! payload, built by [`message`] alone, for the inline publish (`send.rs`) and the relay
//! (`relay.rs`) alike. The payload is exactly the JSON of the SSE `notification` event,
//! so edges write it without decoding or re-encoding.
//!
//! A notification's `data` is Postgres' rendering of the producer's JSON (`jsonb` read
//! back as text), never the producer's own text: the relay and ListNotifications can
//! only read that rendering, and the inline publish is handed the same text by the
//! insert, so a browser gets the same bytes whichever path delivered the notification.

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::value::RawValue;
use tidings_bus::{Outgoing, Subjects};
use tidings_domain::{MemberId, UnreadCount};
use uuid::Uuid;

/// One stored notification row, as both publishing paths see it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Notification<'a> {
    pub(crate) id: Uuid,
    pub(crate) member: &'a MemberId,
    pub(crate) kind: &'a str,
    pub(crate) content: &'a str,
    /// Postgres' rendering of the data (see the module doc).
    pub(crate) data: Option<&'a str>,
    pub(crate) group_id: Option<&'a str>,
    pub(crate) created_at: DateTime<Utc>,
    /// The member's unread count with this notification, when the publisher knows it
    /// (the inline publish, from the insert; not the relay).
    pub(crate) unread: Option<UnreadCount>,
}

/// The message that publishes `n` to its member's subject. `Nats-Msg-Id` is the
/// notification id, so a relay re-publish of something already stored is a duplicate
/// JetStream drops.
pub(crate) fn message(subjects: &Subjects, n: &Notification<'_>, traceparent: Option<String>) -> Outgoing {
    Outgoing {
        subject: subjects.member(n.member),
        msg_id: Some(n.id.to_string()),
        event: None,
        traceparent,
        unread: n.unread,
        payload: notification(n.id, n.kind, n.content, n.data, n.group_id, n.created_at),
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct InboxEvent<'a> {
    id: Uuid,
    #[serde(rename = "type")]
    kind: &'a str,
    content: &'a str,
    data: Option<&'a RawValue>,
    group_id: Option<&'a str>,
    created_at: String,
}

/// `{"id","type","content","data","groupId","createdAt"}`; `data` is the JSON text given,
/// byte for byte (already validated), `null` when none. Public for the benchmark, which
/// publishes notification-shaped messages without the api.
pub fn notification(
    id: Uuid,
    kind: &str,
    content: &str,
    data_json: Option<&str>,
    group_id: Option<&str>,
    created_at: DateTime<Utc>,
) -> Bytes {
    let data = data_json.and_then(|d| serde_json::from_str::<&RawValue>(d).ok());
    let event = InboxEvent {
        id,
        kind,
        content,
        data,
        group_id,
        created_at: created_at.to_rfc3339_opts(SecondsFormat::Millis, true),
    };
    Bytes::from(serde_json::to_vec(&event).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_payload_is_the_inbox_item() {
        let id = Uuid::now_v7();
        let at = DateTime::parse_from_rfc3339("2026-11-22T01:02:03.456Z")
            .unwrap()
            .with_timezone(&Utc);
        let bytes = notification(id, "comment.created", "hi \"you\"", Some(r#"{"n":1}"#), Some("g"), at);
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"id": id.to_string(), "type": "comment.created", "content": "hi \"you\"",
                               "data": {"n": 1}, "groupId": "g", "createdAt": "2026-11-22T01:02:03.456Z"})
        );
        let none = notification(id, "t", "", None, None, at);
        let v: serde_json::Value = serde_json::from_slice(&none).unwrap();
        assert_eq!((v["data"].is_null(), v["groupId"].is_null()), (true, true));
    }
}
