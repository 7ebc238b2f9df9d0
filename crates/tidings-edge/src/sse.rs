//! Server-Sent Events framing: the only place that knows the wire format.

use std::time::Duration;

use bytes::{BufMut as _, Bytes, BytesMut};

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
