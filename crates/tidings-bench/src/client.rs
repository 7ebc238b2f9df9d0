//! A lean SSE client for load: one TCP connection, HTTP/1.1 by hand, chunked transfer
//! decoding and the event-stream fields the bench needs (id, event, data). Connections
//! are spread over loopback source addresses so tens of thousands fit past the
//! ephemeral-port range of one address; [`Sources`] says which ones a process uses, so
//! several generator processes never compete for the same addresses' ports.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use anyhow::{Context as _, bail};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};

/// One SSE event.
#[derive(Debug, Clone)]
pub(crate) struct Event {
    pub(crate) id: Option<String>,
    pub(crate) event: String,
    pub(crate) data: String,
}

pub(crate) struct SseConn {
    stream: TcpStream,
    /// Bytes read from the socket; `raw[raw_at..]` is not decoded yet.
    raw: Vec<u8>,
    raw_at: usize,
    /// Decoded chunk payload; `body[body_at..]` is not parsed yet.
    body: Vec<u8>,
    body_at: usize,
    /// Bytes still due in the current chunk.
    chunk_left: usize,
    id: Option<String>,
    event: Option<String>,
    data: Option<String>,
}

/// A block of loopback source addresses, 127.0.0.`first` .. 127.0.0.`first + count - 1`.
/// Each address has its own ephemeral ports (about 28,000 with Linux's default range),
/// so 200 addresses hold far more connections than one process may open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sources {
    pub(crate) first: u8,
    pub(crate) count: u8,
}

impl Sources {
    /// 127.0.0.2 .. 127.0.0.201: everything one generator process uses by default.
    pub(crate) const ALL: Self = Self { first: 2, count: 200 };

    /// The `part`-th of `parts` disjoint, near-equal blocks of these addresses; `None`
    /// when there are more parts than addresses.
    pub(crate) fn split(self, part: usize, parts: usize) -> Option<Self> {
        let total = usize::from(self.count);
        if parts == 0 || parts > total || part >= parts {
            return None;
        }
        let (lo, hi) = (total * part / parts, total * (part + 1) / parts);
        Some(Self {
            first: self.first + lo as u8,
            count: (hi - lo) as u8,
        })
    }

    /// The address for the `i`-th connection: round-robin over the block.
    pub(crate) fn ip(self, i: usize) -> Ipv4Addr {
        Ipv4Addr::new(127, 0, 0, self.first + (i % usize::from(self.count.max(1))) as u8)
    }
}

/// Opens `GET /v1/stream?access_token=…{query}` from the loopback address `source`.
pub(crate) async fn open(
    edge: SocketAddr,
    source: Ipv4Addr,
    token: &str,
    query: &str,
    last_event_id: Option<&str>,
) -> anyhow::Result<SseConn> {
    let socket = TcpSocket::new_v4()?;
    socket
        .bind(SocketAddrV4::new(source, 0).into())
        .context("binding a loopback source address")?;
    let mut stream = socket
        .connect(edge)
        .await
        .with_context(|| format!("connecting to {edge}"))?;
    let resume = last_event_id
        .map(|id| format!("Last-Event-ID: {id}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "GET /v1/stream?access_token={token}{query} HTTP/1.1\r\nHost: edge\r\nAccept: text/event-stream\r\n{resume}\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut conn = SseConn {
        stream,
        raw: Vec::with_capacity(1024),
        raw_at: 0,
        body: Vec::new(),
        body_at: 0,
        chunk_left: 0,
        id: None,
        event: None,
        data: None,
    };
    // Response head.
    loop {
        if let Some(end) = find(&conn.raw, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&conn.raw[..end]).into_owned();
            if !head.starts_with("HTTP/1.1 200") {
                bail!("stream refused: {}", head.lines().next().unwrap_or_default());
            }
            conn.raw_at = end + 4;
            return Ok(conn);
        }
        if conn.fill().await? == 0 {
            bail!("connection closed before the response head");
        }
    }
}

impl SseConn {
    /// Reads what the socket has. Decoded bytes are dropped first, so each byte is
    /// moved at most once more however the reads split the stream.
    async fn fill(&mut self) -> anyhow::Result<usize> {
        compact(&mut self.raw, &mut self.raw_at);
        let mut buf = [0u8; 16 * 1024];
        let n = self.stream.read(&mut buf).await?;
        self.raw.extend_from_slice(&buf[..n]);
        Ok(n)
    }

    /// The next event; `None` when the server ended the stream.
    pub(crate) async fn next(&mut self) -> anyhow::Result<Option<Event>> {
        loop {
            if let Some(event) = self.parse_event() {
                return Ok(Some(event));
            }
            if !self.dechunk()? && self.fill().await? == 0 {
                return Ok(None);
            }
        }
    }

    /// Moves chunk payload from `raw` to `body`; whether anything moved.
    fn dechunk(&mut self) -> anyhow::Result<bool> {
        compact(&mut self.body, &mut self.body_at);
        let mut moved = false;
        loop {
            let raw = &self.raw[self.raw_at..];
            if self.chunk_left > 0 {
                let take = self.chunk_left.min(raw.len());
                if take == 0 {
                    return Ok(moved);
                }
                self.body.extend_from_slice(&raw[..take]);
                self.raw_at += take;
                self.chunk_left -= take;
                moved = true;
                continue;
            }
            // A chunk header, preceded by the previous chunk's CRLF.
            let skip = if raw.starts_with(b"\r\n") { 2 } else { 0 };
            let Some(end) = find(&raw[skip..], b"\r\n") else {
                return Ok(moved);
            };
            let size = std::str::from_utf8(&raw[skip..skip + end])
                .ok()
                .and_then(|s| usize::from_str_radix(s.trim(), 16).ok());
            let Some(size) = size else { bail!("bad chunk header") };
            self.raw_at += skip + end + 2;
            if size == 0 {
                return Ok(moved);
            }
            self.chunk_left = size;
        }
    }

    fn parse_event(&mut self) -> Option<Event> {
        while let Some(len) = self.body[self.body_at..].iter().position(|b| *b == b'\n') {
            let line = &self.body[self.body_at..self.body_at + len];
            self.body_at += len + 1;
            if line.is_empty() {
                let Some(data) = self.data.take() else {
                    self.id = None;
                    self.event = None;
                    continue;
                };
                return Some(Event {
                    id: self.id.take(),
                    event: self.event.take().unwrap_or_else(|| "message".into()),
                    data,
                });
            }
            if line.starts_with(b":") {
                continue;
            }
            let (field, value) = match line.iter().position(|b| *b == b':') {
                Some(colon) => {
                    let value = &line[colon + 1..];
                    (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
                }
                None => (line, &[][..]),
            };
            let value = String::from_utf8_lossy(value);
            match field {
                b"id" => self.id = Some(value.into_owned()),
                b"event" => self.event = Some(value.into_owned()),
                b"data" => match &mut self.data {
                    Some(data) => {
                        data.push('\n');
                        data.push_str(&value);
                    }
                    None => self.data = Some(value.into_owned()),
                },
                _ => {}
            }
        }
        None
    }
}

/// Drops `buf[..*at]`, the part already consumed.
fn compact(buf: &mut Vec<u8>, at: &mut usize) {
    buf.drain(..*at);
    *at = 0;
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
