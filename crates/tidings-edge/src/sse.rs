//! Server-Sent Events framing: the only place that knows the wire format.

use std::time::Duration;

use bytes::{BufMut as _, Bytes, BytesMut};
use tidings_bus::{BusEvent, EventKind};
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
    }
}
