//! The one seam between protobuf messages and the api's own types: validation of every
//! request field, with the limits of the public contract, and the responses' shapes.
//! Past this file (and the handlers in `service.rs`) the api speaks `NewSend`,
//! `Receipt`, `Page` and `ApiError`, not protobuf.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use tidings_domain::{EventId, MemberId, NotificationType, StreamEpoch, Topic, compact_json, json_holds_nul};
use tidings_proto::v1 as pb;
use tidings_store::{Archived, InboxItem, NewSend, Selection};
use uuid::Uuid;

use crate::ApiError;
use crate::auth::Producer;
use crate::inbox::Page;
use crate::send::Receipt;
use crate::topic::TopicMessage;

pub(crate) const MAX_MEMBERS: usize = 1000;
pub(crate) const MAX_CONTENT_BYTES: usize = 4 * 1024;
pub(crate) const MAX_DATA_BYTES: usize = 16 * 1024;
pub(crate) const MAX_TOPIC_DATA_BYTES: usize = 64 * 1024;
pub(crate) const MAX_GROUP_ID_BYTES: usize = 256;
pub(crate) const MAX_IDEMPOTENCY_KEY_BYTES: usize = 256;
pub(crate) const MAX_MARK_READ_IDS: usize = 1000;
pub(crate) const MAX_UNREAD_MEMBERS: usize = 500;
pub(crate) const DEFAULT_PAGE: u32 = 50;
pub(crate) const MAX_PAGE: u32 = 200;

pub(crate) fn send_request(
    req: pb::SendRequest,
    producer: &Producer,
    traceparent: Option<String>,
) -> Result<NewSend, ApiError> {
    if req.member_ids.is_empty() {
        return Err(ApiError::invalid("member_ids", "at least one member is required"));
    }
    if req.member_ids.len() > MAX_MEMBERS {
        return Err(ApiError::TooLarge(format!(
            "member_ids: {} members given; at most {MAX_MEMBERS} per request",
            req.member_ids.len()
        )));
    }
    let mut members: Vec<MemberId> = Vec::with_capacity(req.member_ids.len());
    for (i, raw) in req.member_ids.iter().enumerate() {
        let member = MemberId::parse(raw).map_err(|e| ApiError::invalid(&format!("member_ids[{i}]"), e))?;
        // Duplicates collapse: each member gets the notification once, in first-seen order.
        if !members.contains(&member) {
            members.push(member);
        }
    }
    let kind = NotificationType::parse(&req.r#type).map_err(|e| ApiError::invalid("type", e))?;
    if req.content.len() > MAX_CONTENT_BYTES {
        return Err(too_large("content", req.content.len(), MAX_CONTENT_BYTES));
    }
    if req.content.contains('\0') {
        return Err(ApiError::invalid("content", NUL));
    }
    let data_json = json_field("data_json", req.data_json, MAX_DATA_BYTES)?;
    if let Some(data) = &data_json
        && json_holds_nul(data)
    {
        return Err(ApiError::invalid("data_json", format!("{NUL} (\\u0000 in a string)")));
    }
    let group_id = optional_text("group_id", req.group_id, MAX_GROUP_ID_BYTES)?;
    let idempotency_key = optional_text("idempotency_key", req.idempotency_key, MAX_IDEMPOTENCY_KEY_BYTES)?;
    Ok(NewSend {
        producer: producer.0.clone(),
        idempotency_key,
        kind,
        content: req.content,
        data_json,
        group_id,
        members,
        traceparent,
        created_at: Utc::now(),
    })
}

pub(crate) fn publish_request(req: pb::PublishRequest) -> Result<TopicMessage, ApiError> {
    let topic = Topic::parse(&req.topic).map_err(|e| ApiError::invalid("topic", e))?;
    let event = if req.event.is_empty() {
        topic.as_str().to_owned()
    } else {
        Topic::parse(&req.event)
            .map_err(|e| ApiError::invalid("event", e))?
            .as_str()
            .to_owned()
    };
    if tidings_bus::RESERVED_EVENT_NAMES.contains(&event.as_str()) {
        return Err(ApiError::invalid(
            "event",
            format!("{event:?} is reserved for Tidings' own events"),
        ));
    }
    let data_json = json_field("data_json", req.data_json, MAX_TOPIC_DATA_BYTES)?
        .ok_or_else(|| ApiError::invalid("data_json", "a JSON value is required"))?;
    Ok(TopicMessage {
        topic,
        event,
        data_json,
    })
}

pub(crate) fn member(field: &str, raw: &str) -> Result<MemberId, ApiError> {
    MemberId::parse(raw).map_err(|e| ApiError::invalid(field, e))
}

/// The members of a GetUnreadCount: `member_id`, or up to [`MAX_UNREAD_MEMBERS`] in
/// `member_ids`; `true` when the answer goes in `unread_counts`.
pub(crate) fn unread_members(req: &pb::GetUnreadCountRequest) -> Result<(Vec<MemberId>, bool), ApiError> {
    if req.member_ids.is_empty() {
        return Ok((vec![member("member_id", &req.member_id)?], false));
    }
    if !req.member_id.is_empty() {
        return Err(ApiError::invalid("member_id", "set member_id or member_ids, not both"));
    }
    if req.member_ids.len() > MAX_UNREAD_MEMBERS {
        return Err(ApiError::TooLarge(format!(
            "member_ids: {} members given; at most {MAX_UNREAD_MEMBERS} per request",
            req.member_ids.len()
        )));
    }
    let members = req
        .member_ids
        .iter()
        .enumerate()
        .map(|(i, raw)| member(&format!("member_ids[{i}]"), raw))
        .collect::<Result<_, _>>()?;
    Ok((members, true))
}

pub(crate) fn page_limit(limit: u32) -> Result<u32, ApiError> {
    match limit {
        0 => Ok(DEFAULT_PAGE),
        1..=MAX_PAGE => Ok(limit),
        _ => Err(ApiError::invalid("limit", format!("at most {MAX_PAGE}"))),
    }
}

/// Cursors are the last id of the previous page, base64url-encoded: opaque to clients,
/// and checked here so a forged one is an error, not a query.
fn encode_cursor(id: Uuid) -> String {
    URL_SAFE_NO_PAD.encode(id.as_bytes())
}

pub(crate) fn decode_cursor(cursor: &str) -> Result<Option<Uuid>, ApiError> {
    if cursor.is_empty() {
        return Ok(None);
    }
    let bad = || ApiError::invalid("cursor", "not a cursor returned by ListNotifications");
    if cursor.len() != 22 {
        return Err(bad());
    }
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| bad())?;
    Uuid::from_slice(&bytes).map(Some).map_err(|_| bad())
}

pub(crate) fn notification_id(field: &str, raw: &str) -> Result<Uuid, ApiError> {
    Uuid::try_parse(raw).map_err(|_| ApiError::invalid(field, format!("{raw:?} is not a notification id")))
}

pub(crate) fn mark_read(req: &pb::MarkReadRequest) -> Result<Selection, ApiError> {
    selection(&req.ids, &req.up_to)
}

/// The notifications a MarkRead, ArchiveNotifications or DeleteNotifications names:
/// `ids` (at most [`MAX_MARK_READ_IDS`]) or `up_to`, exactly one of them.
pub(crate) fn selection(ids: &[String], up_to: &str) -> Result<Selection, ApiError> {
    match (ids.is_empty(), up_to.is_empty()) {
        (false, true) => {
            if ids.len() > MAX_MARK_READ_IDS {
                return Err(ApiError::TooLarge(format!(
                    "ids: at most {MAX_MARK_READ_IDS} per request"
                )));
            }
            let ids = ids
                .iter()
                .enumerate()
                .map(|(i, raw)| notification_id(&format!("ids[{i}]"), raw))
                .collect::<Result<_, _>>()?;
            Ok(Selection::Ids(ids))
        }
        (true, false) => Ok(Selection::UpTo(notification_id("up_to", up_to)?)),
        (true, true) => Err(ApiError::invalid("ids", "give either ids or up_to")),
        (false, false) => Err(ApiError::invalid("ids", "give either ids or up_to, not both")),
    }
}

/// ListNotifications' `archived`; a number no version of the contract defines is an
/// error, not a silent default.
pub(crate) fn archived_filter(raw: i32) -> Result<Archived, ApiError> {
    match pb::ArchivedFilter::try_from(raw) {
        Ok(pb::ArchivedFilter::Unspecified | pb::ArchivedFilter::Exclude) => Ok(Archived::Exclude),
        Ok(pb::ArchivedFilter::Include) => Ok(Archived::Include),
        Ok(pb::ArchivedFilter::Only) => Ok(Archived::Only),
        Err(_) => Err(ApiError::invalid("archived", format!("{raw} is not an ArchivedFilter"))),
    }
}

pub(crate) fn send_response(receipt: Receipt) -> pb::SendResponse {
    pb::SendResponse {
        deliveries: receipt
            .deliveries
            .into_iter()
            .map(|d| pb::Delivery {
                member_id: d.member.to_string(),
                notification_id: d.notification_id.to_string(),
                event_id: d.event_id.map(|e| e.to_string()).unwrap_or_default(),
            })
            .collect(),
    }
}

pub(crate) fn list_response(page: Page) -> pb::ListNotificationsResponse {
    pb::ListNotificationsResponse {
        notifications: page.items.into_iter().map(notification).collect(),
        next_cursor: page.next.map(encode_cursor).unwrap_or_default(),
    }
}

fn notification(item: InboxItem) -> pb::Notification {
    let event_id = match (item.stream_seq, item.stream_epoch) {
        (Some(seq), Some(epoch)) => EventId::new(StreamEpoch(epoch.unsigned_abs()), seq.unsigned_abs()).to_string(),
        _ => String::new(),
    };
    pb::Notification {
        id: item.id.to_string(),
        member_id: item.member_id,
        r#type: item.kind,
        content: item.content,
        data_json: item.data.unwrap_or_default(),
        group_id: item.group_id.unwrap_or_default(),
        created_at: Some(timestamp(item.created_at)),
        read_at: item.read_at.map(timestamp),
        event_id,
        archived_at: item.archived_at.map(timestamp),
    }
}

fn timestamp(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

fn too_large(field: &str, len: usize, max: usize) -> ApiError {
    ApiError::TooLarge(format!("{field}: {len} bytes; at most {max} bytes"))
}

fn optional_text(field: &str, value: String, max: usize) -> Result<Option<String>, ApiError> {
    if value.len() > max {
        return Err(too_large(field, value.len(), max));
    }
    if value.chars().any(char::is_control) {
        return Err(ApiError::invalid(field, "must not contain control characters"));
    }
    Ok((!value.is_empty()).then_some(value))
}

/// Why a U+0000 is refused in what a Send stores: Postgres `text` and `jsonb` cannot
/// hold it, and the statement that met one would fail for every Send written with it
/// (a group commit or SendStream batch: other producers' requests too).
const NUL: &str = "must not contain NUL (U+0000): Postgres cannot store it";

/// An optional JSON value: empty means none; otherwise it must parse, keep every number
/// exactly, and is re-written compactly: a topic's data travels as is, inside every SSE
/// event. A Send's data is stored as `jsonb`, and what travels is Postgres' rendering of
/// it (`payload.rs`).
fn json_field(field: &str, value: String, max: usize) -> Result<Option<String>, ApiError> {
    if value.len() > max {
        return Err(too_large(field, value.len(), max));
    }
    compact_json(&value).map_err(|e| ApiError::invalid(field, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn producer() -> Producer {
        Producer("p".into())
    }

    fn req() -> pb::SendRequest {
        pb::SendRequest {
            member_ids: vec!["a".into()],
            r#type: "comment.created".into(),
            content: "hi".into(),
            ..Default::default()
        }
    }

    fn err(r: pb::SendRequest) -> (tonic::Code, String) {
        let status = tonic::Status::from(send_request(r, &producer(), None).unwrap_err());
        (status.code(), status.message().to_owned())
    }

    #[test]
    fn nul_in_stored_text_is_refused_by_field() {
        let (code, message) = err(pb::SendRequest {
            content: "a\0b".into(),
            ..req()
        });
        assert_eq!(code, tonic::Code::InvalidArgument);
        assert!(message.starts_with("content: "), "{message}");
        for data in [r#"{"a":"x\u0000"}"#, r#"{"k\u0000":1}"#, r#"["\\\u0000"]"#] {
            let (code, message) = err(pb::SendRequest {
                data_json: data.into(),
                ..req()
            });
            assert_eq!(code, tonic::Code::InvalidArgument, "{data}");
            assert!(message.starts_with("data_json: "), "{message}");
        }
        // The text `\u0000` (an escaped backslash, then `u0000`) is not NUL.
        let ok = send_request(
            pb::SendRequest {
                data_json: r#"{"a":"\\u0000"}"#.into(),
                ..req()
            },
            &producer(),
            None,
        );
        assert!(ok.is_ok());
        assert!(!json_holds_nul(r#"{"u0000":"\\u0000"}"#));
    }

    #[test]
    fn unread_counts_take_one_member_or_a_bounded_list() {
        let req = |member_id: &str, member_ids: Vec<String>| pb::GetUnreadCountRequest {
            member_id: member_id.into(),
            member_ids,
        };
        let (one, many) = unread_members(&req("a", vec![])).unwrap();
        assert_eq!((one.len(), many), (1, false));
        let (list, many) = unread_members(&req("", vec!["a".into(), "b".into()])).unwrap();
        assert_eq!((list.len(), many), (2, true));
        let code = |r| tonic::Status::from(unread_members(&r).unwrap_err()).code();
        assert_eq!(code(req("", vec![])), tonic::Code::InvalidArgument);
        assert_eq!(code(req("a", vec!["b".into()])), tonic::Code::InvalidArgument);
        assert_eq!(code(req("", vec!["a".into(); 501])), tonic::Code::ResourceExhausted);
        let bad = tonic::Status::from(unread_members(&req("", vec!["a".into(), String::new()])).unwrap_err());
        assert!(bad.message().contains("member_ids[1]"), "{}", bad.message());
    }

    #[test]
    fn every_send_rule_names_its_field() {
        use tonic::Code::{InvalidArgument, ResourceExhausted};
        let cases: Vec<(pb::SendRequest, tonic::Code, &str)> = vec![
            (
                pb::SendRequest {
                    member_ids: vec![],
                    ..req()
                },
                InvalidArgument,
                "member_ids",
            ),
            (
                pb::SendRequest {
                    member_ids: vec!["ok".into(), "".into()],
                    ..req()
                },
                InvalidArgument,
                "member_ids[1]",
            ),
            (
                pb::SendRequest {
                    member_ids: vec!["a\0b".into()],
                    ..req()
                },
                InvalidArgument,
                "member_ids[0]",
            ),
            (
                pb::SendRequest {
                    member_ids: vec!["x".repeat(257)],
                    ..req()
                },
                InvalidArgument,
                "member_ids[0]",
            ),
            (
                pb::SendRequest {
                    member_ids: vec!["m".into(); 1001],
                    ..req()
                },
                ResourceExhausted,
                "member_ids",
            ),
            (
                pb::SendRequest {
                    r#type: "".into(),
                    ..req()
                },
                InvalidArgument,
                "type",
            ),
            (
                pb::SendRequest {
                    r#type: "has space".into(),
                    ..req()
                },
                InvalidArgument,
                "type",
            ),
            (
                pb::SendRequest {
                    content: "x".repeat(4097),
                    ..req()
                },
                ResourceExhausted,
                "content",
            ),
            (
                pb::SendRequest {
                    data_json: "{nope".into(),
                    ..req()
                },
                InvalidArgument,
                "data_json",
            ),
            (
                pb::SendRequest {
                    data_json: format!("\"{}\"", "x".repeat(16 * 1024)),
                    ..req()
                },
                ResourceExhausted,
                "data_json",
            ),
            (
                pb::SendRequest {
                    group_id: "g".repeat(257),
                    ..req()
                },
                ResourceExhausted,
                "group_id",
            ),
            (
                pb::SendRequest {
                    idempotency_key: "k\n".into(),
                    ..req()
                },
                InvalidArgument,
                "idempotency_key",
            ),
        ];
        for (r, code, field) in cases {
            let (got, message) = err(r);
            assert_eq!(got, code, "{field}: {message}");
            assert!(message.starts_with(field), "{message:?} should start with {field}");
        }
    }

    #[test]
    fn a_valid_send_is_normalised() {
        let r = pb::SendRequest {
            member_ids: vec!["b".into(), "a".into(), "b".into(), "a.*>".into()],
            data_json: r#" { "n" : 1 } "#.into(),
            ..req()
        };
        let s = send_request(r, &producer(), None).unwrap();
        assert_eq!(
            s.members.iter().map(MemberId::as_str).collect::<Vec<_>>(),
            ["b", "a", "a.*>"]
        );
        assert_eq!(s.data_json.as_deref(), Some(r#"{"n":1}"#));
        assert_eq!((s.group_id, s.idempotency_key), (None, None));
    }

    #[test]
    fn publish_rules() {
        let p = |topic: &str, event: &str, data: &str| {
            publish_request(pb::PublishRequest {
                topic: topic.into(),
                event: event.into(),
                data_json: data.into(),
            })
        };
        assert_eq!(p("ranking", "", "[1,2]").unwrap().event, "ranking");
        assert_eq!(p("ranking", "update", "{}").unwrap().event, "update");
        for (topic, event, data) in [
            ("a.b", "", "1"),
            ("r", "notification", "1"),
            ("r", "re set", "1"),
            ("r", "", ""),
            ("r", "", "{"),
        ] {
            assert!(p(topic, event, data).is_err(), "{topic} {event} {data}");
        }
        let big = format!("\"{}\"", "x".repeat(64 * 1024));
        assert!(matches!(p("r", "", &big), Err(ApiError::TooLarge(_))));
    }

    #[test]
    fn cursors_round_trip_and_forgeries_fail() {
        let id = Uuid::now_v7();
        assert_eq!(decode_cursor(&encode_cursor(id)).unwrap(), Some(id));
        assert_eq!(decode_cursor("").unwrap(), None);
        for bad in ["x", "not-a-cursor-at-all-!!", &"A".repeat(23), "' or 1=1 --"] {
            assert!(decode_cursor(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn mark_read_needs_exactly_one_selection() {
        let id = Uuid::now_v7().to_string();
        let r = |ids: Vec<String>, up_to: &str| pb::MarkReadRequest {
            member_id: "m".into(),
            ids,
            up_to: up_to.into(),
        };
        assert!(matches!(mark_read(&r(vec![id.clone()], "")), Ok(Selection::Ids(_))));
        assert!(matches!(mark_read(&r(vec![], &id)), Ok(Selection::UpTo(_))));
        assert!(mark_read(&r(vec![], "")).is_err());
        assert!(mark_read(&r(vec![id.clone()], &id)).is_err());
        assert!(mark_read(&r(vec!["nope".into()], "")).is_err());
        assert!(matches!(mark_read(&r(vec![id; 1001], "")), Err(ApiError::TooLarge(_))));
    }

    #[test]
    fn archived_filters_default_to_exclude_and_refuse_unknown_numbers() {
        assert_eq!(archived_filter(0).unwrap(), Archived::Exclude);
        assert_eq!(archived_filter(1).unwrap(), Archived::Exclude);
        assert_eq!(archived_filter(2).unwrap(), Archived::Include);
        assert_eq!(archived_filter(3).unwrap(), Archived::Only);
        assert!(archived_filter(4).is_err());
        assert!(archived_filter(-1).is_err());
    }
}
