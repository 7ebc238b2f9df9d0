//! Replay with batch Direct Get (nats-server >= 2.11): stateless requests on
//! `$JS.API.DIRECT.GET.<stream>` that any replica of the stream answers, with no
//! JetStream API call and nothing created on the server. async-nats 0.51 has no typed
//! API for batches, so the requests are raw; every answer is a run of messages closed
//! by a `204 EOB` status (or a lone `404` when nothing matches).
//!
//! One replay is:
//! 1. a probe, `{"multi_last": subjects, "seq": from}`: the newest message of each
//!    subject at or after `from`, and in its EOB `Nats-UpTo-Sequence`, the answering
//!    server's last sequence;
//! 2. per subject that has something new, `{"seq", "batch", "next_by_subj"}` pages
//!    until the newest message the probe saw is in hand (or the limit is exceeded).
//!
//! Why the probe. Direct Get is not read-after-write consistent (ADR-31): a follower
//! of an R3 stream answers from what it has applied, which may trail the leader by a
//! few messages. The caller needs every message up to `at_least` (the stream's last
//! sequence it read after taking live interest). An EOB of a plain batch does not say
//! how far its server is (its `Nats-Last-Sequence` is the last sequence *in the
//! batch*), but the multi-last EOB does: a probe whose `Nats-UpTo-Sequence` is at least
//! `at_least` comes from a server holding every message up to it, so its newest
//! message per subject is the true newest up to that point, and no message on the
//! subject lies between it and `at_least`. Each page is then checked on its own,
//! because another replica may answer it: a server that returned sequence `s` holds
//! everything up to `s`, so a page is complete up to its last message, and a page that
//! ends (nothing pending) before the probe's newest message came from a server that is
//! behind. A server that is behind is asked again after a short pause (a few tens of
//! milliseconds in all), then the caller falls back to a consumer, which reads from
//! the stream leader. A probe that finds nothing at all (`404`) proves nothing about
//! its server, so the stream leader confirms it, one request per subject.
//!
//! Bounds: every request waits at most the bus's request timeout
//! (`TIDINGS_NATS_TIMEOUT`); a request asks for at most the replay's remaining room
//! (limit + 1), [`PAGE`] messages and [`PAGE_BYTES`]; answers travel through one
//! shared reply subscription ([`Replies`]) into a channel sized to what was asked for.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::stream::RawMessageErrorKind;
use async_nats::{HeaderMap, Message};
use bytes::Bytes;
use futures::StreamExt as _;
use serde_json::json;
use tokio::sync::mpsc;

use crate::replay::Replay;
use crate::{Bus, BusEvent, Subjects};

/// Most messages one request asks for, whatever `TIDINGS_REPLAY_LIMIT` says: the
/// shared reply subscription's channel (async-nats' default, 64 Ki messages) holds
/// the answers of an edge's 64 concurrent replays at once (64 × 513), so it never
/// fills.
const PAGE: u64 = 512;
/// Most bytes one request asks for; the server stops a batch there and the next page
/// continues.
const PAGE_BYTES: u64 = 4 << 20;
/// Pauses before asking again when the answering server is behind the wanted position.
const PAUSES: [Duration; 3] = [
    Duration::from_millis(5),
    Duration::from_millis(20),
    Duration::from_millis(50),
];

/// Why a Direct Get replay gave up (the caller then reads through a consumer).
#[derive(Debug, thiserror::Error)]
pub(crate) enum DirectError {
    #[error("the answering server is behind: {0}")]
    Behind(String),
    #[error("a server without batch Direct Get answered")]
    Unsupported,
    #[error("direct get answered {code} {description}")]
    Status { code: u16, description: String },
    #[error("no complete answer within {0:?}")]
    Timeout(Duration),
    #[error("malformed answer: {0}")]
    Malformed(&'static str),
    #[error("{0}")]
    Nats(String),
}

impl Bus {
    /// [`Bus::replay`] by batch Direct Get; see the module docs for the reasoning.
    pub(crate) async fn replay_direct(
        &self,
        subjects: &[String],
        from: u64,
        until: Option<u64>,
        limit: u32,
        at_least: Option<u64>,
    ) -> Result<Replay, DirectError> {
        let from = from.max(1);
        let at_least = match at_least {
            Some(seq) => seq,
            None => self.extent().await.map_err(nats)?.last_seq,
        };
        // Everything in the range up to here is in the answer, and nothing after it:
        // pages read each subject on its own, so messages past a common end would not
        // be a prefix of the stream (see `Bus::replay`).
        let wanted = until.unwrap_or(u64::MAX).min(at_least);
        if wanted < from {
            return Ok(Replay::Events(Vec::new()));
        }
        let mut session = Session::open(self).await?;
        let newest = session.newest(subjects, from, wanted).await?;
        let mut out = Collect {
            until: wanted,
            limit: u64::from(limit),
            events: Vec::new(),
        };
        for (subject, newest) in newest {
            if let Some(pending) = session.read(&subject, from, newest.min(wanted), &mut out).await? {
                return Ok(Replay::TooMany { pending });
            }
        }
        out.events.sort_by_key(|e| e.seq);
        Ok(Replay::Events(out.events))
    }
}

/// The replay's result so far, bounded by its limit.
struct Collect {
    /// The last sequence in the answer.
    until: u64,
    limit: u64,
    events: Vec<BusEvent>,
}

impl Collect {
    /// Takes one stored message; `false` once the replay is over its limit.
    fn take(&mut self, subjects: &Subjects, m: Fetched) -> bool {
        if m.seq > self.until {
            return true;
        }
        self.events
            .extend(BusEvent::from_stored(subjects, m.seq, m.subject, &m.headers, m.payload));
        self.counted() <= self.limit
    }

    fn counted(&self) -> u64 {
        self.events.len() as u64
    }

    /// One past the limit tells "too many".
    fn room(&self) -> u64 {
        (self.limit + 1).saturating_sub(self.counted()).max(1)
    }
}

/// One message of a batch answer.
struct Fetched {
    seq: u64,
    subject: String,
    headers: HeaderMap,
    payload: Bytes,
}

/// A whole answer to one request.
enum Answer {
    /// Messages, then the EOB.
    Batch {
        messages: Vec<Fetched>,
        /// EOB `Nats-Num-Pending`: matching messages after the batch on its server.
        pending: u64,
        /// EOB `Nats-UpTo-Sequence` (multi-last only): the server's last sequence.
        up_to: Option<u64>,
    },
    /// `404`: nothing matches.
    NotFound,
}

/// The requests of one replay.
struct Session<'a> {
    bus: &'a Bus,
    replies: Arc<Replies>,
    api: String,
}

impl<'a> Session<'a> {
    async fn open(bus: &'a Bus) -> Result<Self, DirectError> {
        let client = bus.client.clone();
        let replies = bus
            .replies
            .get_or_try_init(|| Replies::start(client))
            .await
            .map_err(nats)?
            .clone();
        Ok(Self {
            bus,
            replies,
            api: format!("$JS.API.DIRECT.GET.{}", bus.stream_name()),
        })
    }

    /// The newest message of each subject in `[from, ∞)`, as seen by a server that
    /// holds everything up to `wanted`; empty when no subject has one.
    async fn newest(&mut self, subjects: &[String], from: u64, wanted: u64) -> Result<Vec<(String, u64)>, DirectError> {
        let mut pauses = PAUSES.iter();
        loop {
            let probe = json!({ "multi_last": subjects, "seq": from });
            match self.request(&probe, subjects.len() as u64).await? {
                Answer::Batch { messages, up_to, .. } => {
                    let up_to = up_to.ok_or(DirectError::Unsupported)?;
                    if messages.iter().any(|m| m.seq < from || !subjects.contains(&m.subject)) {
                        return Err(DirectError::Malformed("a probe answer outside the request"));
                    }
                    if up_to >= wanted {
                        return Ok(messages.into_iter().map(|m| (m.subject, m.seq)).collect());
                    }
                    let Some(pause) = pauses.next() else {
                        return Err(DirectError::Behind(format!("at {up_to}, wanted {wanted}")));
                    };
                    tokio::time::sleep(*pause).await;
                }
                // Nothing in the range is required: nothing to prove.
                Answer::NotFound if from > wanted => return Ok(Vec::new()),
                Answer::NotFound => return self.confirm_nothing(subjects, from, wanted).await.map(|()| Vec::new()),
            }
        }
    }

    /// A `404` probe is what a server that is behind answers too: asks the stream
    /// leader whether any subject has a message in `[from, wanted]`.
    async fn confirm_nothing(&self, subjects: &[String], from: u64, wanted: u64) -> Result<(), DirectError> {
        let stream = self
            .bus
            .js
            .get_stream_no_info(self.bus.stream_name())
            .await
            .map_err(nats)?;
        for subject in subjects {
            match stream.get_first_raw_message_by_subject(subject, from).await {
                Ok(m) if m.sequence <= wanted => {
                    return Err(DirectError::Behind(format!(
                        "the leader has {} on a subject",
                        m.sequence
                    )));
                }
                Ok(_) => {}
                Err(e) if e.kind() == RawMessageErrorKind::NoMessageFound => {}
                Err(e) => return Err(nats(e)),
            }
        }
        Ok(())
    }

    /// Reads `subject` from `from` into `out` until a message at or past `target` is in
    /// hand, or its server, having no more, covered everything up to `target`;
    /// `Some(pending)` when that is over the limit.
    async fn read(
        &mut self,
        subject: &str,
        from: u64,
        target: u64,
        out: &mut Collect,
    ) -> Result<Option<u64>, DirectError> {
        let mut next = from;
        let mut pauses = PAUSES.iter();
        while next <= target {
            let batch = out.room().min(target - next + 1).min(PAGE);
            let request = json!({ "seq": next, "batch": batch, "next_by_subj": subject, "max_bytes": PAGE_BYTES });
            let (messages, pending) = match self.request(&request, batch).await? {
                Answer::Batch { messages, pending, .. } => (messages, pending),
                Answer::NotFound => (Vec::new(), 0),
            };
            let last = messages.last().map(|m| m.seq);
            let mut messages = messages.into_iter();
            let mut previous = next - 1;
            while let Some(m) = messages.next() {
                if m.subject != subject || m.seq <= previous {
                    return Err(DirectError::Malformed("a message out of order or off the subject"));
                }
                previous = m.seq;
                if !out.take(self.bus.subjects(), m) {
                    return Ok(Some(out.counted() + messages.len() as u64 + pending));
                }
            }
            if let Some(last) = last {
                if last >= target {
                    return Ok(None);
                }
                // A server holding `last` holds everything before it: the page is
                // complete up to there, whoever answers the next one.
                next = last + 1;
            }
            if last.is_none() || pending == 0 {
                // The server has no more on the subject. Enough if it covered
                // everything up to the target; otherwise it has not applied it yet.
                if next > target {
                    return Ok(None);
                }
                let Some(pause) = pauses.next() else {
                    return Err(DirectError::Behind(format!("{subject} ended before {target}")));
                };
                tokio::time::sleep(*pause).await;
            }
        }
        Ok(None)
    }

    /// Sends one request and reads its whole answer (at most `most` messages and the
    /// EOB) within the bus's request timeout.
    async fn request(&mut self, body: &serde_json::Value, most: u64) -> Result<Answer, DirectError> {
        let mut route = self.replies.route(most);
        self.bus
            .client
            .publish_with_reply(self.api.clone(), route.subject.clone(), Bytes::from(body.to_string()))
            .await
            .map_err(nats)?;
        let timeout = self.bus.request_timeout();
        let deadline = tokio::time::Instant::now() + timeout;
        let mut messages = Vec::new();
        loop {
            let message = tokio::time::timeout_at(deadline, route.answers.recv())
                .await
                .map_err(|_| DirectError::Timeout(timeout))?
                .ok_or(DirectError::Malformed("more messages than asked for"))?;
            let Some(status) = message.status else {
                if messages.len() as u64 >= most {
                    return Err(DirectError::Malformed("more messages than asked for"));
                }
                messages.push(fetched(message)?);
                continue;
            };
            return match status.as_u16() {
                204 => {
                    let headers = message.headers.unwrap_or_default();
                    Ok(Answer::Batch {
                        messages,
                        pending: header_u64(&headers, "Nats-Num-Pending").unwrap_or(0),
                        up_to: header_u64(&headers, "Nats-UpTo-Sequence"),
                    })
                }
                404 if messages.is_empty() => Ok(Answer::NotFound),
                code => Err(DirectError::Status {
                    code,
                    description: message.description.unwrap_or_default(),
                }),
            };
        }
    }
}

/// The bus's one reply subscription for Direct Get answers (`<inbox>.*`), shared by
/// all replays, as async-nats shares one for plain requests: a subscription per
/// request would send a SUB and an UNSUB through the whole NATS cluster for every
/// replay of a reconnect storm. A background task routes each answer by its last
/// token to the request's bounded channel; it ends with the client, or as soon as the
/// last clone of the bus (which owns this) is dropped.
#[derive(Debug)]
pub(crate) struct Replies {
    prefix: String,
    next: AtomicU64,
    routes: Mutex<HashMap<u64, mpsc::Sender<Message>>>,
    /// Dropped with this: the routing task sees its receiver close and ends.
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Replies {
    async fn start(client: async_nats::Client) -> Result<Arc<Self>, async_nats::SubscribeError> {
        let inbox = client.new_inbox();
        let mut answers = client.subscribe(format!("{inbox}.*")).await?;
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let replies = Arc::new(Self {
            prefix: format!("{inbox}."),
            next: AtomicU64::new(0),
            routes: Mutex::default(),
            _stop: stop,
        });
        let weak = Arc::downgrade(&replies);
        tokio::spawn(async move {
            loop {
                let message = tokio::select! {
                    _ = &mut stopped => break,
                    message = answers.next() => match message {
                        Some(message) => message,
                        None => break,
                    },
                };
                let Some(replies) = weak.upgrade() else { break };
                replies.deliver(message);
            }
        });
        Ok(replies)
    }

    /// A reply subject for one request whose answer is at most `most` messages and a
    /// closing status.
    fn route(self: &Arc<Self>, most: u64) -> Route {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let capacity = usize::try_from(most).unwrap_or(usize::MAX).saturating_add(1);
        let (tx, answers) = mpsc::channel(capacity);
        self.lock().insert(id, tx);
        Route {
            replies: self.clone(),
            id,
            subject: format!("{}{id}", self.prefix),
            answers,
        }
    }

    /// Never waits: an answer longer than asked for closes its route (the request then
    /// fails), and one nobody waits for any more is dropped.
    fn deliver(&self, message: Message) {
        let Some(id) = message
            .subject
            .as_str()
            .strip_prefix(self.prefix.as_str())
            .and_then(|t| t.parse::<u64>().ok())
        else {
            return;
        };
        let mut routes = self.lock();
        if let Some(tx) = routes.get(&id)
            && tx.try_send(message).is_err()
        {
            routes.remove(&id);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, mpsc::Sender<Message>>> {
        // A panic while holding the lock leaves a plain map behind: still usable.
        self.routes.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// One request's place in [`Replies`]; removed when dropped.
struct Route {
    replies: Arc<Replies>,
    id: u64,
    subject: String,
    answers: mpsc::Receiver<Message>,
}

impl Drop for Route {
    fn drop(&mut self) {
        self.replies.lock().remove(&self.id);
    }
}

/// A message of a batch answer. Batch answers carry `Nats-Num-Pending` on every
/// message; a message without it comes from a server that ignored `batch` (an older
/// server in a mixed cluster).
fn fetched(message: Message) -> Result<Fetched, DirectError> {
    let headers = message
        .headers
        .ok_or(DirectError::Malformed("a message without headers"))?;
    if headers.get_last("Nats-Num-Pending").is_none() {
        return Err(DirectError::Unsupported);
    }
    let seq = header_u64(&headers, "Nats-Sequence").ok_or(DirectError::Malformed("no Nats-Sequence"))?;
    let subject = headers
        .get_last("Nats-Subject")
        .ok_or(DirectError::Malformed("no Nats-Subject"))?
        .as_str()
        .to_owned();
    Ok(Fetched {
        seq,
        subject,
        headers,
        payload: message.payload,
    })
}

fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get_last(name)?.as_str().parse().ok()
}

fn nats(e: impl std::fmt::Display) -> DirectError {
    DirectError::Nats(e.to_string())
}
