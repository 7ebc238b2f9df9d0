//! Server-Sent Events framing: the only place that knows the wire format, and the one
//! place that writes Tidings' own events (`connected`, `resumed`, `reset`, `reauth`, `unread`),
//! whose names the api keeps topics from using (`tidings_bus::RESERVED_EVENT_NAMES`).

use std::time::Duration;

use bytes::{BufMut as _, Bytes, BytesMut};
use serde_json::json;
use tidings_bus::{BusEvent, EventKind, UNREAD_EVENT};
use tidings_domain::{EventId, StreamEpoch};

/// One event: optional `id:`, `event:`, and the data split into `data:` lines (a line
/// break inside the data would otherwise end the field).
pub(crate) fn event(id: Option<&str>, name: &str, data: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(data.len() + name.len() + 48);
    if let Some(id) = id {
        out.put_slice(b"id: ");
        out.put_slice(id.as_bytes());
        out.put_u8(b'\n');
    }
    out.put_slice(b"event: ");
    out.put_slice(name.as_bytes());
    out.put_u8(b'\n');
    for line in data.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        out.put_slice(b"data: ");
        out.put_slice(line);
        out.put_u8(b'\n');
    }
    out.put_u8(b'\n');
    out.freeze()
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

/// The first event of every stream: who it is for (`null` for an anonymous stream of
/// public topics), where, and whether it resumes. Its id is the stream position the
/// connection starts from.
pub(crate) fn connected(id: &str, connection: u64, member: Option<&str>, node: &str, resumed: bool) -> Bytes {
    let body = json!({
        "connectionId": connection,
        "memberId": member,
        "node": node,
        "resumed": resumed,
    });
    event(Some(id), "connected", body.to_string().as_bytes())
}

/// The replay of a resumed stream is written: `missed` events came from history,
/// everything after is live.
pub(crate) fn resumed(missed: u64) -> Bytes {
    event(None, "resumed", json!({ "missed": missed }).to_string().as_bytes())
}

/// History the client asked for cannot be delivered (`reason` says why): reload the
/// inbox. With an id, the client's position moves to it.
pub(crate) fn reset(id: Option<&str>, reason: &str) -> Bytes {
    let body = json!({ "reason": reason, "action": "reload the inbox; live events continue" });
    event(id, "reset", body.to_string().as_bytes())
}

/// The token expires at `expires_at` (Unix seconds): fetch a new one; the stream ends
/// then and the browser resumes by Last-Event-ID.
pub(crate) fn reauth(expires_at: u64) -> Bytes {
    event(
        None,
        "reauth",
        json!({ "expiresAt": expires_at }).to_string().as_bytes(),
    )
}

/// The member's unread count, without an id (a count is not a stream position).
pub(crate) fn unread(count: u64) -> Bytes {
    event(
        None,
        UNREAD_EVENT,
        json!({ "unreadCount": count }).to_string().as_bytes(),
    )
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
    }

    #[test]
    fn every_event_tidings_sends_is_reserved_from_topics() {
        let ours = [
            connected("a-1", 1, Some("m"), "edge", false),
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
