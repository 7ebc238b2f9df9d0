//! A Server-Sent Events client for tests: real HTTP/1.1 over TCP (hyper's client), and
//! the event-stream format parsed here line by line as a browser's EventSource does.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt as _;
use hyper_util::rt::TokioIo;
use tokio::sync::mpsc;

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `id:` of this event, if it carried one.
    pub id: Option<String>,
    /// `event:`, or `message` when absent.
    pub event: String,
    pub data: String,
}

impl SseEvent {
    /// The stream sequence in the event's id; panics without a valid one.
    pub fn seq(&self) -> u64 {
        let id = self
            .id
            .as_deref()
            .unwrap_or_else(|| panic!("event {} has no id", self.event));
        tidings_domain::EventId::parse(id)
            .unwrap_or_else(|e| panic!("event {} has a malformed id {id}: {e}", self.event))
            .seq
    }

    /// The data parsed as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.data)
            .unwrap_or_else(|e| panic!("event {} data is not JSON ({e}): {}", self.event, self.data))
    }
}

/// A refused stream: the status and body the server answered with.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: String,
}

/// Why [`try_connect`] got no stream.
#[derive(Debug, Clone)]
pub enum ConnectError {
    /// The server answered, with another status than 200.
    Refused(Refusal),
    /// No answer: nothing listens, the connection broke, or the request failed.
    Failed(String),
}

/// What [`SseStream::next_or_closed`] saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    Event(SseEvent),
    /// The server ended the stream, or the connection broke.
    Closed,
    /// Nothing within the wait; the stream is still open.
    Quiet,
}

/// An open stream.
#[derive(Debug)]
pub struct SseStream {
    pub headers: http::HeaderMap,
    events: mpsc::Receiver<SseEvent>,
    /// The browser's view: the last `id:` seen, and the last `retry:`.
    pub last_event_id: Option<String>,
    pub retry: Option<u64>,
    retry_rx: tokio::sync::watch::Receiver<Option<u64>>,
    /// Counts comment lines (heartbeats).
    comments: tokio::sync::watch::Receiver<u64>,
    task: tokio::task::JoinHandle<()>,
}

/// Opens `GET path` on `addr` with the given headers.
pub async fn connect(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Result<SseStream, Refusal> {
    let raw: Vec<(&str, &[u8])> = headers.iter().map(|(name, value)| (*name, value.as_bytes())).collect();
    connect_raw(addr, path, &raw).await
}

/// [`connect`] with header values as bytes, for values HTTP allows but that are not
/// text: `obs-text` (bytes 0x80–0xFF), as a client or proxy may send.
pub async fn connect_raw(addr: SocketAddr, path: &str, headers: &[(&str, &[u8])]) -> Result<SseStream, Refusal> {
    let sender = handshake(addr).await;
    match open(sender, addr, path, headers).await {
        Ok(stream) => Ok(stream),
        Err(ConnectError::Refused(refusal)) => Err(refusal),
        Err(ConnectError::Failed(e)) => panic!("GET {path}: {e}"),
    }
}

/// [`connect`] for a client that meets faults, as a browser does: a server that is
/// gone or a connection that breaks is an error to handle (reconnect), not a panic.
pub async fn try_connect(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Result<SseStream, ConnectError> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| ConnectError::Failed(format!("connecting to {addr}: {e}")))?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| ConnectError::Failed(format!("HTTP handshake with {addr}: {e}")))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let raw: Vec<(&str, &[u8])> = headers.iter().map(|(name, value)| (*name, value.as_bytes())).collect();
    open(sender, addr, path, &raw).await
}

/// Sends the stream request on an established connection and starts reading events.
async fn open(
    mut sender: hyper::client::conn::http1::SendRequest<http_body_util::Empty<Bytes>>,
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &[u8])],
) -> Result<SseStream, ConnectError> {
    let mut request = http::Request::get(path)
        .header("host", addr.to_string())
        .header("accept", "text/event-stream");
    for (name, value) in headers {
        let value = http::HeaderValue::from_bytes(value)
            .unwrap_or_else(|e| panic!("header {name}: {e}: HTTP cannot carry {value:?}"));
        request = request.header(*name, value);
    }
    let request = request
        .body(http_body_util::Empty::<Bytes>::new())
        .expect("invariant: a valid request");
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| ConnectError::Failed(e.to_string()))?;
    let (parts, mut body) = response.into_parts();
    if parts.status != http::StatusCode::OK {
        let bytes = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        return Err(ConnectError::Refused(Refusal {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }));
    }
    let (tx, events) = mpsc::channel(100_000);
    let (retry_tx, retry_rx) = tokio::sync::watch::channel(None);
    let (comments_tx, comments) = tokio::sync::watch::channel(0u64);
    let task = tokio::spawn(async move {
        let _sender = sender;
        let mut parser = Parser::default();
        while let Some(Ok(frame)) = body.frame().await {
            let Ok(data) = frame.into_data() else { continue };
            for out in parser.feed(&data) {
                match out {
                    Parsed::Event(e) => {
                        if tx.send(e).await.is_err() {
                            return;
                        }
                    }
                    Parsed::Retry(ms) => {
                        let _ = retry_tx.send(Some(ms));
                    }
                    Parsed::Comment => comments_tx.send_modify(|n| *n += 1),
                }
            }
        }
    });
    Ok(SseStream {
        headers: parts.headers,
        events,
        last_event_id: None,
        retry: None,
        retry_rx,
        comments,
        task,
    })
}

impl SseStream {
    /// The next event within `wait`, or `None` when the stream ended or nothing came.
    pub async fn next_within(&mut self, wait: Duration) -> Option<SseEvent> {
        let event = tokio::time::timeout(wait, self.events.recv()).await.ok().flatten()?;
        if let Some(id) = &event.id {
            self.last_event_id = Some(id.clone());
        }
        self.retry = *self.retry_rx.borrow();
        Some(event)
    }

    /// The next event, waiting at most the kit's patience; panics if none comes.
    pub async fn next(&mut self) -> SseEvent {
        self.next_within(crate::patience())
            .await
            .unwrap_or_else(|| panic!("no event within {:?}", crate::patience()))
    }

    /// Skips events until one named `event` arrives.
    pub async fn next_named(&mut self, event: &str) -> SseEvent {
        loop {
            let e = self.next().await;
            if e.event == event {
                return e;
            }
        }
    }

    /// Waits for the server to end the stream; returns the events that came first.
    pub async fn until_closed(&mut self, wait: Duration) -> Option<Vec<SseEvent>> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut seen = Vec::new();
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(e)) => {
                    if let Some(id) = &e.id {
                        self.last_event_id = Some(id.clone());
                    }
                    seen.push(e);
                }
                Ok(None) => {
                    self.retry = *self.retry_rx.borrow();
                    return Some(seen);
                }
                Err(_) => return None,
            }
        }
    }

    /// The next event within `wait`, telling a closed stream from a quiet one (what a
    /// client that reconnects must know).
    pub async fn next_or_closed(&mut self, wait: Duration) -> Next {
        let next = match tokio::time::timeout(wait, self.events.recv()).await {
            Err(_) => Next::Quiet,
            Ok(None) => Next::Closed,
            Ok(Some(event)) => {
                if let Some(id) = &event.id {
                    self.last_event_id = Some(id.clone());
                }
                Next::Event(event)
            }
        };
        self.retry = *self.retry_rx.borrow();
        next
    }

    /// Heartbeat comments received so far.
    pub fn comments(&self) -> u64 {
        *self.comments.borrow()
    }

    /// Closes the connection as a browser tab would.
    pub fn close(self) {
        self.task.abort();
    }
}

impl Drop for SseStream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Debug)]
enum Parsed {
    Event(SseEvent),
    Retry(u64),
    Comment,
}

/// The event-stream grammar of the HTML standard.
#[derive(Debug, Default)]
struct Parser {
    line: Vec<u8>,
    id: Option<String>,
    event: Option<String>,
    data: Vec<String>,
}

impl Parser {
    fn feed(&mut self, bytes: &[u8]) -> Vec<Parsed> {
        let mut out = Vec::new();
        for &b in bytes {
            if b != b'\n' {
                self.line.push(b);
                continue;
            }
            let mut line = std::mem::take(&mut self.line);
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let line = String::from_utf8_lossy(&line).into_owned();
            if line.is_empty() {
                if !self.data.is_empty() {
                    out.push(Parsed::Event(SseEvent {
                        id: self.id.take(),
                        event: self.event.take().unwrap_or_else(|| "message".into()),
                        data: std::mem::take(&mut self.data).join("\n"),
                    }));
                }
                self.id = None;
                self.event = None;
                continue;
            }
            if line.starts_with(':') {
                out.push(Parsed::Comment);
                continue;
            }
            let (field, value) = match line.split_once(':') {
                Some((f, v)) => (f.to_owned(), v.strip_prefix(' ').unwrap_or(v).to_owned()),
                None => (line.clone(), String::new()),
            };
            match field.as_str() {
                "id" => self.id = Some(value),
                "event" => self.event = Some(value),
                "data" => self.data.push(value),
                "retry" => {
                    if let Ok(ms) = value.parse() {
                        out.push(Parsed::Retry(ms));
                    }
                }
                _ => {}
            }
        }
        out
    }
}

/// A plain HTTP request for REST endpoints: returns status and body.
pub async fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<String>,
) -> (u16, String) {
    let mut sender = handshake(addr).await;
    let mut request = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if body.is_some() {
        request = request.header("content-type", "application/json");
    }
    let request = request
        .body(http_body_util::Full::new(Bytes::from(body.unwrap_or_default())))
        .expect("invariant: a valid request");
    let response = sender
        .send_request(request)
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let status = response.status().as_u16();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

/// An HTTP/1.1 connection to `addr`, its driver running in the background.
async fn handshake<B>(addr: SocketAddr) -> hyper::client::conn::http1::SendRequest<B>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("connecting to {addr}: {e}"));
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap_or_else(|e| panic!("HTTP handshake with {addr}: {e}"));
    tokio::spawn(async move {
        let _ = connection.await;
    });
    sender
}
