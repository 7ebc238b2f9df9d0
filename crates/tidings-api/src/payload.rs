//! The bytes a notification carries on the stream: exactly the JSON of the SSE
//! `notification` event, so edges write them without decoding or re-encoding.

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::value::RawValue;
use uuid::Uuid;

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

/// `{"id","type","content","data","groupId","createdAt"}`; `data` is the producer's JSON
/// value as given (already validated), `null` when none.
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
