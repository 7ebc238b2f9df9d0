//! Server-Sent Events framing: the only place that knows the wire format, and the one
//! place that writes Tidings' own events (`connected`, `resumed`, `reset`, `reauth`, `unread`),
//! whose names the api keeps topics from using (`tidings_bus::RESERVED_EVENT_NAMES`).
//! Each of those events' data is a typed struct here, so the OpenAPI document
//! (`openapi.rs`) derives its schema from what is written.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use serde::Serialize;
use tidings_bus::{BusEvent, EventKind, UNREAD_EVENT};
use tidings_domain::{EventId, StreamEpoch};
use utoipa::ToSchema;

/// The events of `GET /v1/stream`, for the OpenAPI document (`openapi.rs`): each
/// event's name, when it comes, and its data's schema under `components/schemas`. A
/// test checks that every schema named here is in the document.
pub(crate) const EVENTS: &str = "The stream, as `text/event-stream`. Each event's `data` is one JSON value, \
described by a schema of `components/schemas`:

- `connected` (with an id: the position the stream starts from): the first event of every stream; \
data `SseConnected`.
- `resumed` (no id): the replay of a resumed stream is written, everything after is live; data `SseResumed`.
- `notification` (with an id): a notification for the member; data `SseNotification`.
- `unread` (no id): the member's unread count changed (also sent on connect); data `SseUnread`.
- `reset` (with or without an id): the history asked for cannot be delivered, reload the inbox; data `SseReset`.
- `reauth` (no id): the token expires soon, fetch a new one; the stream ends at expiry and resumes by \
Last-Event-ID; data `SseReauth`.
- any other name (with an id): a message published to a joined topic, named by its publisher's `event` \
(the topic when none; never one of the names above, nor `message`, EventSource's default); \
data `SseTopicMessage`, the producer's JSON as published.

A `retry:` field comes first and `: heartbeat` comments keep the connection open.";

/// One event: optional `id:`, `event:`, and the data split into `data:` lines (a line
/// break inside the data would otherwise end the field).
pub(crate) fn event(id: Option<&str>, name: &str, data: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(data.len() + name.len() + 48);
    put_head(&mut out, id, name);
    for line in data.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        out.put_slice(b"data: ");
        out.put_slice(line);
        out.put_u8(b'\n');
    }
    out.put_u8(b'\n');
    out.freeze()
}

/// An event's `id:` (if any) and `event:` lines.
fn put_head(out: &mut impl BufMut, id: Option<&str>, name: &str) {
    if let Some(id) = id {
        out.put_slice(b"id: ");
        out.put_slice(id.as_bytes());
        out.put_u8(b'\n');
    }
    out.put_slice(b"event: ");
    out.put_slice(name.as_bytes());
    out.put_u8(b'\n');
}

/// The frame of a stored event, with its id; `None` for an unread-count change, which
/// only moves the cursor (the count travels in its own `unread` event, fetched fresh).
pub(crate) fn frame_of(stored: &BusEvent, epoch: StreamEpoch) -> Option<Bytes> {
    let name = match &stored.kind {
        EventKind::Notification => "notification",
        EventKind::Topic(name) => name,
        EventKind::UnreadChanged => return None,
    };
    let id = EventId::new(epoch, stored.seq).to_string();
    Some(event(Some(&id), name, &stored.payload))
}

/// The data of `connected`, the first event of every stream: who it is for, where,
/// and whether it resumes. Its id is the stream position the connection starts from.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = SseConnected)]
pub(crate) struct Connected<'a> {
    /// This node's id for the connection.
    pub(crate) connection_id: u64,
    /// The member, `null` for an anonymous stream of public topics.
    #[schema(value_type = Option<String>)]
    pub(crate) member_id: Option<&'a str>,
    /// The edge node serving the stream.
    #[schema(value_type = String)]
    pub(crate) node: &'a str,
    /// Whether the stream resumes from a Last-Event-ID.
    pub(crate) resumed: bool,
    /// The member's routing key (its live partition, in decimal; absent on an
    /// anonymous stream): send it back as `?affinity=` on the next connect, so a load
    /// balancer hashing on it routes the member to the edge that holds its partition.
    /// Opaque to clients.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "as_decimal_string")]
    #[schema(value_type = Option<String>, example = "517")]
    pub(crate) affinity: Option<u16>,
}

/// A partition as the affinity key spells it: a decimal string (written without
/// allocating).
fn as_decimal_string<S: serde::Serializer>(partition: &Option<u16>, s: S) -> Result<S::Ok, S::Error> {
    match partition {
        Some(p) => s.collect_str(p),
        None => s.serialize_none(),
    }
}

/// The data of `resumed`: the replay of a resumed stream is written; everything after
/// is live.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = SseResumed)]
pub(crate) struct Resumed {
    /// Events that came from history.
    pub(crate) missed: u64,
}

/// The data of `reset`: history the client asked for cannot be delivered; reload the
/// inbox. With an id, the client's position moves to it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = SseReset)]
pub(crate) struct Reset<'a> {
    /// What the client should do.
    #[schema(value_type = String, example = "reload the inbox; live events continue")]
    pub(crate) action: &'a str,
    /// Why, e.g. the Last-Event-ID is older than the stream's history.
    #[schema(value_type = String)]
    pub(crate) reason: &'a str,
}

/// The data of `reauth`: the token expires; fetch a new one. The stream ends then and
/// the browser resumes by Last-Event-ID.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = SseReauth)]
pub(crate) struct Reauth {
    /// When the token expires, Unix seconds.
    pub(crate) expires_at: u64,
}

/// The data of `unread`: the member's unread count (sent without an id: a count is not
/// a stream position).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = SseUnread)]
pub(crate) struct Unread {
    pub(crate) unread_count: u64,
}

/// One of Tidings' own events, its data as JSON, written straight into the frame: no
/// buffer in between, and no search for line breaks, since compact JSON has none (a
/// string's are escaped). A test checks it against [`event`].
fn ours(id: Option<&str>, name: &str, data: &impl Serialize) -> Bytes {
    // A `Vec`, not a `BytesMut`: serde_json writes it in many small pieces, and a
    // `Vec`'s writes cost a fraction of a `BytesMut`'s through `bytes::buf::Writer`.
    let mut out = Vec::with_capacity(id.map_or(0, str::len) + name.len() + 128);
    put_head(&mut out, id, name);
    out.extend_from_slice(b"data: ");
    // These structs hold strings and numbers only: serializing cannot fail.
    let _ = serde_json::to_writer(&mut out, data);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

/// The first event of every stream (see [`Connected`]); `member` with its partition.
pub(crate) fn connected(id: &str, connection: u64, member: Option<(&str, u16)>, node: &str, resumed: bool) -> Bytes {
    let data = Connected {
        connection_id: connection,
        member_id: member.map(|(m, _)| m),
        node,
        resumed,
        affinity: member.map(|(_, p)| p),
    };
    ours(Some(id), "connected", &data)
}

/// The replay of a resumed stream is written: `missed` events came from history.
pub(crate) fn resumed(missed: u64) -> Bytes {
    ours(None, "resumed", &Resumed { missed })
}

/// History the client asked for cannot be delivered (`reason` says why).
pub(crate) fn reset(id: Option<&str>, reason: &str) -> Bytes {
    let data = Reset {
        action: "reload the inbox; live events continue",
        reason,
    };
    ours(id, "reset", &data)
}

/// The token expires at `expires_at` (Unix seconds).
pub(crate) fn reauth(expires_at: u64) -> Bytes {
    ours(None, "reauth", &Reauth { expires_at })
}

/// The member's unread count.
pub(crate) fn unread(count: u64) -> Bytes {
    ours(None, UNREAD_EVENT, &Unread { unread_count: count })
}

/// `retry:` tells the browser how long to wait before reconnecting.
pub(crate) fn retry(after: Duration) -> Bytes {
    Bytes::from(format!("retry: {}\n\n", after.as_millis()))
}

/// A comment line: keeps proxies and the browser from timing the stream out.
pub(crate) fn heartbeat() -> Bytes {
    Bytes::from_static(b": heartbeat\n\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_events_are_framed_as_any_event_is() {
        let member = "m\nwith \"quotes\", \u{2028} and ünïcode";
        let ours = [
            connected("a-1", 7, Some((member, 517)), "node\r\n1", false),
            connected("a-2", 8, None, "n", true),
            unread(42),
            resumed(3),
            reset(None, "line\nbreak"),
            reauth(1_800_000_000),
        ];
        let data = [
            serde_json::json!({"connectionId": 7, "memberId": member, "node": "node\r\n1", "resumed": false, "affinity": "517"}),
            serde_json::json!({"connectionId": 8, "memberId": null, "node": "n", "resumed": true}),
            serde_json::json!({"unreadCount": 42}),
            serde_json::json!({"missed": 3}),
            serde_json::json!({"action": "reload the inbox; live events continue", "reason": "line\nbreak"}),
            serde_json::json!({"expiresAt": 1_800_000_000_u64}),
        ];
        let heads = [
            (Some("a-1"), "connected"),
            (Some("a-2"), "connected"),
            (None, "unread"),
            (None, "resumed"),
            (None, "reset"),
            (None, "reauth"),
        ];
        for ((frame, data), (id, name)) in ours.iter().zip(&data).zip(heads) {
            let text = std::str::from_utf8(frame).expect("utf-8");
            let json = text.split_once("data: ").expect("a data line").1;
            let json = json.strip_suffix("\n\n").expect("the event's end");
            assert!(!json.contains(['\n', '\r']), "one data line: {text:?}");
            assert_eq!(&serde_json::from_str::<serde_json::Value>(json).expect("json"), data);
            assert_eq!(frame, &event(id, name, json.as_bytes()));
        }
    }

    #[test]
    fn frames() {
        assert_eq!(
            &event(Some("a-1"), "notification", b"{}")[..],
            b"id: a-1\nevent: notification\ndata: {}\n\n"
        );
        assert_eq!(
            &event(None, "unread", b"x\ny\r\nz")[..],
            b"event: unread\ndata: x\ndata: y\ndata: z\n\n"
        );
        assert_eq!(&retry(Duration::from_millis(2500))[..], b"retry: 2500\n\n");
        assert_eq!(&unread(3)[..], b"event: unread\ndata: {\"unreadCount\":3}\n\n");
        assert_eq!(
            &connected("a-1", 2, Some(("m", 517)), "edge", false)[..],
            &b"id: a-1\nevent: connected\ndata: {\"connectionId\":2,\"memberId\":\"m\",\"node\":\"edge\",\"resumed\":false,\"affinity\":\"517\"}\n\n"[..]
        );
        // An anonymous stream has no member, so no key.
        assert_eq!(
            &connected("a-1", 3, None, "edge", true)[..],
            &b"id: a-1\nevent: connected\ndata: {\"connectionId\":3,\"memberId\":null,\"node\":\"edge\",\"resumed\":true}\n\n"[..]
        );
    }

    #[test]
    fn every_event_tidings_sends_is_reserved_from_topics() {
        let ours = [
            connected("a-1", 1, Some(("m", 7)), "edge", false),
            reset(None, "why"),
            reauth(1),
            unread(0),
            resumed(0),
        ];
        for frame in ours {
            let text = std::str::from_utf8(&frame).unwrap();
            let name = text
                .lines()
                .find_map(|l| l.strip_prefix("event: "))
                .expect("a named event");
            assert!(tidings_bus::RESERVED_EVENT_NAMES.contains(&name), "{name}");
        }
        assert!(tidings_bus::RESERVED_EVENT_NAMES.contains(&"notification"));
    }
}
