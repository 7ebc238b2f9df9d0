//! Messages read back from the stream, live (re-published) or replayed, decoded once.

use async_nats::HeaderMap;
use async_nats::header::{NATS_LAST_SEQUENCE, NATS_SEQUENCE, NATS_SUBJECT};
use bytes::Bytes;

use tidings_domain::UnreadCount;

use crate::publish::{EVENT, PUBLISHED_AT, TRACEPARENT, UNREAD};
use crate::{SubjectTarget, Subjects};

/// What an event is, from its subject and `Tidings-Event` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    /// An inbox item for a member (payload: the SSE `notification` data).
    Notification,
    /// A member's unread count changed (MarkRead); edges refresh it.
    UnreadChanged,
    /// A topic message, delivered as this SSE event name.
    Topic(String),
}

/// Header value marking a member message as an unread-count change; also the SSE
/// event that carries a member's unread count.
pub const UNREAD_EVENT: &str = "unread";

/// The SSE event names Tidings itself sends (the edge's `sse.rs` writes them), which a
/// topic may therefore not publish under; `message` is EventSource's default name, which
/// a page's `onmessage` would take for an unnamed event.
pub const RESERVED_EVENT_NAMES: [&str; 7] = [
    "notification",
    UNREAD_EVENT,
    "reset",
    "reauth",
    "connected",
    "resumed",
    "message",
];

/// One stored message of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusEvent {
    /// Stream sequence: with the stream epoch, the SSE id. 0 (never a stream
    /// sequence) for an unread announcement, which is not stored
    /// ([`Bus::announce_unread`](crate::Bus::announce_unread)).
    pub seq: u64,
    /// Live only: the sequence of the previous message stored on the same subject
    /// (RePublish's `Nats-Last-Sequence`), 0 when none. How edges detect a gap.
    pub previous_on_subject: Option<u64>,
    pub target: SubjectTarget,
    /// The stored subject.
    pub subject: String,
    pub kind: EventKind,
    pub payload: Bytes,
    /// Publisher's clock at publish, Unix nanoseconds.
    pub published_at: Option<u128>,
    pub traceparent: Option<String>,
    /// The member's unread count with this change (the `Tidings-Unread` header), when
    /// the publisher carried it.
    pub unread: Option<UnreadCount>,
}

impl BusEvent {
    /// Decodes a message of a live subject (`subject`, as received): a re-published
    /// stored message, or an unread announcement. `None` for anything that is not one
    /// of ours (foreign subject, missing headers, subject delete markers).
    pub(crate) fn from_live(
        subjects: &Subjects,
        subject: &str,
        headers: Option<&HeaderMap>,
        payload: Bytes,
    ) -> Option<Self> {
        let headers = headers?;
        let Some(seq) = header_u64(headers, NATS_SEQUENCE.as_ref()) else {
            return Self::announcement(subjects, subject, headers, payload);
        };
        let previous = header_u64(headers, NATS_LAST_SEQUENCE.as_ref()).unwrap_or(0);
        let subject = headers.get_last(NATS_SUBJECT)?.as_str().to_owned();
        Self::decode(subjects, seq, Some(previous), subject, headers, payload)
    }

    /// An unread announcement: published straight to a member's live subject, so it
    /// is in no history, no replay and no per-subject limit.
    fn announcement(subjects: &Subjects, subject: &str, headers: &HeaderMap, payload: Bytes) -> Option<Self> {
        if headers.get_last(EVENT)?.as_str() != UNREAD_EVENT {
            return None;
        }
        let stored = subjects.stored_of_live(subject)?;
        let target @ SubjectTarget::Member(_) = subjects.parse_stored(&stored)? else {
            return None;
        };
        Some(Self {
            seq: 0,
            previous_on_subject: None,
            target,
            subject: stored,
            kind: EventKind::UnreadChanged,
            payload,
            published_at: headers.get_last(PUBLISHED_AT).and_then(|v| v.as_str().parse().ok()),
            traceparent: None,
            unread: unread_of(headers),
        })
    }

    /// Whether this is an unread announcement rather than a stored message.
    pub fn is_announcement(&self) -> bool {
        self.seq == 0
    }

    /// Decodes a message read from the stream by sequence (replay, Direct Get).
    pub fn from_stored(
        subjects: &Subjects,
        seq: u64,
        subject: String,
        headers: &HeaderMap,
        payload: Bytes,
    ) -> Option<Self> {
        Self::decode(subjects, seq, None, subject, headers, payload)
    }

    fn decode(
        subjects: &Subjects,
        seq: u64,
        previous_on_subject: Option<u64>,
        subject: String,
        headers: &HeaderMap,
        payload: Bytes,
    ) -> Option<Self> {
        if headers.get("Nats-Marker-Reason").is_some() {
            return None;
        }
        let target = subjects.parse_stored(&subject)?;
        let event = headers.get_last(EVENT).map(|v| v.as_str().to_owned());
        let kind = match (&target, event) {
            (SubjectTarget::Member(_), None) => EventKind::Notification,
            (SubjectTarget::Member(_), Some(e)) if e == UNREAD_EVENT => EventKind::UnreadChanged,
            (SubjectTarget::Member(_), Some(_)) => return None,
            (SubjectTarget::Topic(t), None) => EventKind::Topic(t.as_str().to_owned()),
            (SubjectTarget::Topic(_), Some(e)) => EventKind::Topic(e),
        };
        Some(Self {
            seq,
            previous_on_subject,
            target,
            subject,
            kind,
            payload,
            published_at: headers.get_last(PUBLISHED_AT).and_then(|v| v.as_str().parse().ok()),
            traceparent: headers.get_last(TRACEPARENT).map(|v| v.as_str().to_owned()),
            unread: unread_of(headers),
        })
    }
}

fn unread_of(headers: &HeaderMap) -> Option<UnreadCount> {
    UnreadCount::parse(headers.get_last(UNREAD)?.as_str())
}

fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get_last(name)?.as_str().parse().ok()
}
