//! A lean SSE client for load: one TCP connection, HTTP/1.1 by hand, chunked transfer
//! decoding and the event-stream fields the bench needs (id, event, data), each read
//! stamped with the kernel's receive time as well as the time it returned. Connections
//! are spread over loopback source addresses so tens of thousands fit past the
//! ephemeral-port range of one address; [`Sources`] says which ones a process uses, so
//! several generator processes never compete for the same addresses' ports.

use std::io::IoSliceMut;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::{AsRawFd as _, RawFd};

use anyhow::{Context as _, bail};
use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg, setsockopt, sockopt};
use tokio::io::{AsyncWriteExt as _, Interest};
use tokio::net::{TcpSocket, TcpStream};

/// The most one read takes from the socket.
const READ_SIZE: usize = 16 * 1024;

/// One SSE event.
#[derive(Debug, Clone)]
pub(crate) struct Event {
    pub(crate) id: Option<String>,
    pub(crate) event: String,
    pub(crate) data: String,
    /// When the read that completed it returned, Unix nanoseconds (the clock is read
    /// once per read, not per event): it includes the generator's own queueing.
    pub(crate) received_at: u128,
    /// When the kernel received the newest bytes of that read (`SO_TIMESTAMPNS`), Unix
    /// nanoseconds: the moment the edge's write reached the subscriber, before the
    /// load generator, which shares the machine, got round to reading it. Never
    /// earlier than the event's own arrival.
    pub(crate) arrived_at: u128,
}

/// One SSE event, borrowed from the connection's buffer (no allocation for the usual
/// single `data:` line): what a reader of a million events uses.
#[derive(Debug)]
pub(crate) struct EventRef<'a> {
    pub(crate) id: Option<&'a str>,
    pub(crate) event: &'a str,
    pub(crate) data: std::borrow::Cow<'a, str>,
    /// As [`Event::received_at`].
    pub(crate) received_at: u128,
    /// As [`Event::arrived_at`].
    pub(crate) arrived_at: u128,
}

impl EventRef<'_> {
    pub(crate) fn to_owned(&self) -> Event {
        Event {
            id: self.id.map(str::to_owned),
            event: self.event.to_owned(),
            data: self.data.clone().into_owned(),
            received_at: self.received_at,
            arrived_at: self.arrived_at,
        }
    }
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
    /// When the last read returned, Unix nanoseconds.
    read_at: u128,
    /// The kernel's receive timestamp of the last read, Unix nanoseconds.
    arrived_at: u128,
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
    setsockopt(&stream, sockopt::ReceiveTimestampns, &true).context("enabling receive timestamps")?;
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
        read_at: 0,
        arrived_at: 0,
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
        let (n, arrived_at) = loop {
            self.stream.readable().await?;
            let (stream, raw) = (&self.stream, &mut self.raw);
            match stream.try_io(Interest::READABLE, || read_stamped(stream.as_raw_fd(), raw)) {
                Ok(read) => break read,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e.into()),
            }
        };
        self.read_at = crate::measure::now_nanos();
        self.arrived_at = arrived_at.unwrap_or(self.read_at);
        Ok(n)
    }

    /// The next event; `None` when the server ended the stream.
    pub(crate) async fn next(&mut self) -> anyhow::Result<Option<Event>> {
        Ok(self.next_ref().await?.map(|e| e.to_owned()))
    }

    /// The next event, borrowed until the next call.
    pub(crate) async fn next_ref(&mut self) -> anyhow::Result<Option<EventRef<'_>>> {
        loop {
            let Some(block) = self.next_block().await? else {
                return Ok(None);
            };
            // Blocks without data (comments, heartbeats) dispatch nothing.
            let (read_at, arrived_at) = (self.read_at, self.arrived_at);
            if parse_block(&self.body[block.clone()], read_at, arrived_at).is_some() {
                return Ok(parse_block(&self.body[block], read_at, arrived_at));
            }
        }
    }

    /// The next complete event block (its lines, without the blank line that ends it).
    async fn next_block(&mut self) -> anyhow::Result<Option<std::ops::Range<usize>>> {
        loop {
            if let Some(len) = find(&self.body[self.body_at..], b"\n\n") {
                let block = self.body_at..self.body_at + len;
                self.body_at += len + 2;
                return Ok(Some(block));
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
}

/// The event in one block of lines as the edge frames them (`\n` line ends); `None`
/// when it has no data.
fn parse_block(block: &[u8], received_at: u128, arrived_at: u128) -> Option<EventRef<'_>> {
    let (mut id, mut event, mut data) = (None, None, None::<std::borrow::Cow<'_, str>>);
    for line in block.split(|b| *b == b'\n') {
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
        // The edge sends UTF-8 only; anything else shows up as a bad id or name.
        let text = std::str::from_utf8(value).unwrap_or("\u{fffd}");
        match field {
            b"id" => id = Some(text),
            b"event" => event = Some(text),
            b"data" => {
                data = Some(match data {
                    Some(before) => format!("{before}\n{text}").into(),
                    None => text.into(),
                });
            }
            _ => {}
        }
    }
    Some(EventRef {
        id,
        event: event.unwrap_or("message"),
        data: data?,
        received_at,
        arrived_at,
    })
}

/// One `recvmsg`, appended to `raw`: the bytes read and the kernel's receive timestamp
/// of the newest of them, Unix nanoseconds. Reads land in a buffer per thread, not per
/// connection: tens of thousands of idle connections hold no read buffer.
fn read_stamped(fd: RawFd, raw: &mut Vec<u8>) -> std::io::Result<(usize, Option<u128>)> {
    thread_local! {
        static BUF: std::cell::RefCell<Box<[u8]>> = std::cell::RefCell::new(vec![0; READ_SIZE].into_boxed_slice());
    }
    BUF.with_borrow_mut(|buf| {
        let mut iov = [IoSliceMut::new(buf)];
        let mut space = nix::cmsg_space!(nix::sys::time::TimeSpec);
        let msg = recvmsg::<()>(fd, &mut iov, Some(&mut space), MsgFlags::empty())?;
        let arrived_at = msg.cmsgs()?.find_map(|c| match c {
            ControlMessageOwned::ScmTimestampns(t) => {
                Some(u128::try_from(t.tv_sec()).ok()? * 1_000_000_000 + u128::try_from(t.tv_nsec()).ok()?)
            }
            _ => None,
        });
        let n = msg.bytes;
        raw.extend_from_slice(&buf[..n]);
        Ok((n, arrived_at))
    })
}

/// Drops `buf[..*at]`, the part already consumed.
fn compact(buf: &mut Vec<u8>, at: &mut usize) {
    buf.drain(..*at);
    *at = 0;
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
