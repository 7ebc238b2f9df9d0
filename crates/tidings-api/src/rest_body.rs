//! The HTTP/JSON API's request and response bodies, and their one conversion to and
//! from the protobuf messages the operations take (`service.rs`): validation, limits
//! and messages stay those of gRPC (`convert.rs`), so a message names a field by its
//! proto name (`member_ids[3]: member id is empty`), whichever transport it came by.
//!
//! - Field names are camelCase, as in the edge's REST and SSE JSON (`groupId`,
//!   `unreadCount`, `nextCursor`); mark-read also takes the edge's `up_to`.
//! - Requests refuse unknown fields (`deny_unknown_fields`): a misspelt `groupID` is a
//!   400, never a silently dropped value.
//! - `data` travels as raw JSON text (`RawValue`), never through `serde_json::Value`: a
//!   number is checked for exactness by `convert.rs` exactly as gRPC's `data_json` is,
//!   and the inbox gives back the bytes Postgres stores, the bytes on the stream.
//! - Plain serde types with no transport in them; the OpenAPI schemas are derived from
//!   them (`utoipa::ToSchema`, `openapi.rs`), so the document cannot describe a field
//!   the handlers do not read or write. Raw JSON (`data`) is described as any JSON
//!   value (`{}`), which is what it is.

use chrono::SecondsFormat;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tidings_proto::v1 as pb;
use utoipa::{IntoParams, ToSchema};

use crate::error::ErrorBody;

/// `POST /v1/notifications`, and each item of a batch.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct SendBody {
    /// 1..=1000 members; duplicates collapse.
    pub(crate) member_ids: Vec<String>,
    /// The notification's type, e.g. `comment.created` (the SSE `notification`'s `type`).
    #[serde(rename = "type")]
    pub(crate) kind: String,
    /// The text a client shows.
    #[serde(default)]
    pub(crate) content: String,
    /// Any JSON value (≤ 16 KiB); `null` or absent is none.
    #[serde(default)]
    #[schema(value_type = Option<serde_json::Value>)]
    pub(crate) data: Option<Box<RawValue>>,
    /// Groups related notifications (a thread) for clients that collapse them.
    #[serde(default)]
    pub(crate) group_id: Option<String>,
    /// In a batch, each item's key; a single Send takes the `Idempotency-Key` header
    /// (or this field, not both).
    #[serde(default)]
    pub(crate) idempotency_key: Option<String>,
}

impl SendBody {
    pub(crate) fn into_request(self) -> pb::SendRequest {
        pb::SendRequest {
            member_ids: self.member_ids,
            r#type: self.kind,
            content: self.content,
            data_json: raw_text(self.data),
            group_id: self.group_id.unwrap_or_default(),
            idempotency_key: self.idempotency_key.unwrap_or_default(),
        }
    }
}

/// `POST /v1/notifications/batch`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct BatchBody {
    /// 1..=1000 Sends, answered in order.
    pub(crate) notifications: Vec<SendBody>,
}

/// A stored Send: one delivery per member, as gRPC's `SendResponse`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SendReply {
    /// One per distinct member, in the order given.
    pub(crate) deliveries: Vec<DeliveryReply>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DeliveryReply {
    pub(crate) member_id: String,
    pub(crate) notification_id: String,
    /// The SSE id it carries; `null` while the outbox relay still has to publish it.
    pub(crate) event_id: Option<String>,
}

impl From<pb::SendResponse> for SendReply {
    fn from(response: pb::SendResponse) -> Self {
        Self {
            deliveries: response
                .deliveries
                .into_iter()
                .map(|d| DeliveryReply {
                    member_id: d.member_id,
                    notification_id: d.notification_id,
                    event_id: non_empty(d.event_id),
                })
                .collect(),
        }
    }
}

/// A batch's answer: one result per item, in order; each is a [`SendReply`] or an
/// [`ErrorBody`].
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct BatchReply {
    pub(crate) results: Vec<BatchResult>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum BatchResult {
    Sent(SendReply),
    Failed(ErrorBody),
}

/// `POST /v1/topics/{topic}/messages`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct PublishBody {
    /// The SSE event name; the topic when absent.
    #[serde(default)]
    pub(crate) event: Option<String>,
    /// Any JSON value (≤ 64 KiB).
    #[schema(value_type = serde_json::Value)]
    pub(crate) data: Box<RawValue>,
}

impl PublishBody {
    pub(crate) fn into_request(self, topic: String) -> pb::PublishRequest {
        pb::PublishRequest {
            topic,
            event: self.event.unwrap_or_default(),
            data_json: self.data.get().to_owned(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PublishReply {
    /// The SSE id the message carries on every stream of the topic.
    pub(crate) event_id: String,
}

/// `GET /v1/members/{member}/notifications?cursor=&limit=&unread_only=`, the edge's
/// query parameters.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// The previous page's `nextCursor`; absent for the first page.
    pub(crate) cursor: Option<String>,
    /// Items per page (default and maximum as gRPC's ListNotifications).
    pub(crate) limit: Option<u32>,
    /// Only unread items (also spelt `unreadOnly`); unread means what the unread count
    /// counts, so never archived ones.
    #[serde(alias = "unreadOnly")]
    pub(crate) unread_only: Option<bool>,
    /// Archived items: `exclude` (the default), `include`, or `only`.
    pub(crate) archived: Option<ArchivedFilter>,
}

/// Which items a list shows by archive state (ListNotifications' `archived`).
#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ArchivedFilter {
    /// Only items not archived: the inbox proper.
    #[default]
    Exclude,
    /// Archived or not.
    Include,
    /// Only archived items.
    Only,
}

impl From<ArchivedFilter> for pb::ArchivedFilter {
    fn from(filter: ArchivedFilter) -> Self {
        match filter {
            ArchivedFilter::Exclude => Self::Exclude,
            ArchivedFilter::Include => Self::Include,
            ArchivedFilter::Only => Self::Only,
        }
    }
}

/// A page of an inbox, newest first: the edge's REST shape.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ListReply {
    pub(crate) notifications: Vec<InboxItemReply>,
    /// Empty on the last page (as on the edge).
    pub(crate) next_cursor: String,
}

/// An inbox item: the SSE `notification` fields plus read state and event id.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct InboxItemReply {
    pub(crate) id: String,
    #[serde(rename = "type")]
    pub(crate) kind: String,
    pub(crate) content: String,
    /// As stored (Postgres' rendering), the same bytes as on the stream.
    #[schema(value_type = Option<serde_json::Value>)]
    pub(crate) data: Option<Box<RawValue>>,
    pub(crate) group_id: Option<String>,
    pub(crate) created_at: Option<String>,
    pub(crate) read_at: Option<String>,
    pub(crate) event_id: Option<String>,
    /// When it was archived; `null` while not archived.
    pub(crate) archived_at: Option<String>,
}

impl From<pb::ListNotificationsResponse> for ListReply {
    fn from(response: pb::ListNotificationsResponse) -> Self {
        Self {
            notifications: response.notifications.into_iter().map(InboxItemReply::from).collect(),
            next_cursor: response.next_cursor,
        }
    }
}

impl From<pb::Notification> for InboxItemReply {
    fn from(n: pb::Notification) -> Self {
        Self {
            id: n.id,
            kind: n.r#type,
            content: n.content,
            // Postgres rendered it, so it is JSON; should it ever not be, `null` beats a 500.
            data: non_empty(n.data_json).and_then(|text| RawValue::from_string(text).ok()),
            group_id: non_empty(n.group_id),
            created_at: n.created_at.and_then(rfc3339),
            read_at: n.read_at.and_then(rfc3339),
            event_id: non_empty(n.event_id),
            archived_at: n.archived_at.and_then(rfc3339),
        }
    }
}

/// `POST /v1/members/{member}/notifications/read`: `ids`, or `upTo` (also spelt
/// `up_to`, as the edge's REST takes it).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct MarkReadBody {
    /// Notification ids to mark read.
    #[serde(default)]
    pub(crate) ids: Vec<String>,
    /// Marks read this notification and every older one (also spelt `up_to`).
    #[serde(default, alias = "up_to")]
    pub(crate) up_to: Option<String>,
}

impl MarkReadBody {
    pub(crate) fn into_request(self, member_id: String) -> pb::MarkReadRequest {
        pb::MarkReadRequest {
            member_id,
            ids: self.ids,
            up_to: self.up_to.unwrap_or_default(),
        }
    }
}

/// `POST /v1/members/{member}/notifications/archive` and `…/delete`: `ids`, or `upTo`
/// (also spelt `up_to`), as mark-read takes them.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct SelectionBody {
    /// Notification ids (at most 1000).
    #[serde(default)]
    pub(crate) ids: Vec<String>,
    /// This notification and every older one (also spelt `up_to`).
    #[serde(default, alias = "up_to")]
    pub(crate) up_to: Option<String>,
}

impl SelectionBody {
    pub(crate) fn into_archive(self, member_id: String) -> pb::ArchiveNotificationsRequest {
        pb::ArchiveNotificationsRequest {
            member_id,
            ids: self.ids,
            up_to: self.up_to.unwrap_or_default(),
        }
    }

    pub(crate) fn into_delete(self, member_id: String) -> pb::DeleteNotificationsRequest {
        pb::DeleteNotificationsRequest {
            member_id,
            ids: self.ids,
            up_to: self.up_to.unwrap_or_default(),
        }
    }
}

/// ArchiveNotifications' answer.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ArchiveReply {
    /// The member's unread notifications after the call.
    pub(crate) unread_count: u64,
    /// How many this call archived (not counting those archived before).
    pub(crate) archived: u64,
}

/// DeleteNotifications' answer.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DeleteReply {
    /// The member's unread notifications after the call.
    pub(crate) unread_count: u64,
    /// How many this call deleted (ids the member does not have are skipped).
    pub(crate) deleted: u64,
}

/// MarkRead's and GetUnreadCount's answer.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct UnreadReply {
    /// The member's unread notifications after the call.
    pub(crate) unread_count: u64,
}

fn raw_text(value: Option<Box<RawValue>>) -> String {
    value.map(|raw| raw.get().to_owned()).unwrap_or_default()
}

fn non_empty(text: String) -> Option<String> {
    (!text.is_empty()).then_some(text)
}

/// Milliseconds and `Z`, as the edge writes times.
fn rfc3339(t: prost_types::Timestamp) -> Option<String> {
    let nanos = u32::try_from(t.nanos).ok()?;
    chrono::DateTime::from_timestamp(t.seconds, nanos).map(|d| d.to_rfc3339_opts(SecondsFormat::Millis, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_send_body_keeps_data_as_sent_and_refuses_unknown_fields() {
        let body: SendBody = serde_json::from_str(
            r#"{"memberIds":["a"],"type":"t","data":{"n":123456789012345678901234567890},"groupId":"g"}"#,
        )
        .unwrap();
        let request = body.into_request();
        assert_eq!(
            request.data_json, r#"{"n":123456789012345678901234567890}"#,
            "not rounded on the way in: convert.rs refuses it by name"
        );
        assert_eq!(request.group_id, "g");
        let null: SendBody = serde_json::from_str(r#"{"memberIds":["a"],"type":"t","data":null}"#).unwrap();
        assert_eq!(null.into_request().data_json, "");

        for bad in [
            r#"{"memberIds":["a"],"type":"t","groupID":"g"}"#,
            r#"{"memberIds":"a","type":"t"}"#,
            r#"{"type":"t"}"#,
        ] {
            assert!(serde_json::from_str::<SendBody>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn mark_read_takes_both_spellings_of_up_to() {
        for body in [r#"{"upTo":"x"}"#, r#"{"up_to":"x"}"#] {
            let body: MarkReadBody = serde_json::from_str(body).unwrap();
            assert_eq!(body.into_request("m".into()).up_to, "x");
        }
        assert!(serde_json::from_str::<MarkReadBody>(r#"{"id":["x"]}"#).is_err());
    }
}
