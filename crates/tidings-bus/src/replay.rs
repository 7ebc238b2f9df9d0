//! Reading the stream back by sequence: what a reconnecting browser missed, and the
//! newest message of a `latest` topic.
//!
//! A replay takes one of two paths. On nats-server 2.11 and later it reads with batch
//! Direct Get (`direct.rs`): stateless requests any replica answers, no JetStream API
//! call, nothing created on the server. On 2.10, or when Direct Get fails or cannot
//! prove it saw enough of the stream, it creates an ordered consumer, reads, and
//! deletes it. Both return the same events, decoded the same way.

use std::sync::atomic::{AtomicU64, Ordering};

use async_nats::jetstream::consumer::pull::OrderedConfig;
use async_nats::jetstream::consumer::{Consumer, DeliverPolicy};
use futures::StreamExt as _;
use tidings_domain::{StreamEpoch, Topic};

use crate::{Bus, BusEvent};

/// The stream's extent right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamExtent {
    /// Oldest sequence still held (retention moves it forward).
    pub first_seq: u64,
    /// Newest sequence stored.
    pub last_seq: u64,
    /// The incarnation these sequences belong to.
    pub epoch: StreamEpoch,
}

/// What a replay reads: every message on `subjects` from `from` on, up to `until` when
/// given, complete up to `complete_to` (see [`Bus::replay`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayRange {
    /// Stored subjects (a member's, its `all` topics').
    pub subjects: Vec<String>,
    /// First sequence wanted.
    pub from: u64,
    /// Last sequence wanted, when bounded.
    pub until: Option<u64>,
    /// Every message up to this sequence is in the answer, and none after it; `None`:
    /// the answer is a prefix of the stream holding everything committed before the
    /// call.
    pub complete_to: Option<u64>,
}

impl ReplayRange {
    /// A resume: everything after the client's position, complete up to `last_seq`,
    /// the stream's last sequence as read after the connection's live interest was
    /// taken (whatever comes later arrives live).
    pub fn resume(subjects: Vec<String>, from: u64, last_seq: u64) -> Self {
        Self {
            subjects,
            from,
            until: None,
            complete_to: Some(last_seq),
        }
    }

    /// Everything from `from` on, as far as the stream goes now (a resync after live
    /// delivery may have lost messages).
    pub fn from(subjects: Vec<String>, from: u64) -> Self {
        Self {
            subjects,
            from,
            until: None,
            complete_to: None,
        }
    }

    /// The messages of one subject strictly between `known` and `before`: a live gap.
    pub fn between(subject: String, known: u64, before: u64) -> Self {
        Self {
            subjects: vec![subject],
            from: known + 1,
            until: Some(before - 1),
            complete_to: Some(before - 1),
        }
    }
}

/// The result of a bounded replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replay {
    /// Every message on the subjects after the start, in sequence order.
    Events(Vec<BusEvent>),
    /// More than the bound: the caller resets instead.
    TooMany { pending: u64 },
}

/// Why reading the stream back could not be completed. None of these says the history
/// is gone (that is [`Replay::TooMany`] or a position outside [`StreamExtent`]): each
/// is a failure to read it now.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ReplayError {
    /// The stream did not answer within the request timeout.
    #[error("replay failed: timed out {0}")]
    TimedOut(&'static str),
    /// A JetStream request failed: no connection, no stream leader, a server error.
    #[error("replay failed: {0}")]
    Unavailable(String),
    /// What was asked for is more than the caller allowed (bytes of a range read).
    #[error("replay failed: {0}")]
    TooLarge(String),
    /// The reader is shutting down.
    #[error("replay failed: shutting down")]
    Stopped,
}

/// How replays were served since the bus connected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayCounts {
    /// Answered by batch Direct Get.
    pub direct: u64,
    /// Read through an ordered consumer (a 2.10 server, or a fallback).
    pub consumer: u64,
    /// Direct Get attempts that gave up and fell back to a consumer.
    pub fallbacks: u64,
    /// Passes of [`Bus::read_range`] (a reconnect storm's resumes) and the
    /// messages they read.
    pub scans: u64,
    pub scanned_messages: u64,
}

#[derive(Debug, Default)]
pub(crate) struct ReplayCounters {
    direct: AtomicU64,
    consumer: AtomicU64,
    fallbacks: AtomicU64,
    scans: AtomicU64,
    scanned_messages: AtomicU64,
}

impl ReplayCounters {
    pub(crate) fn get(&self) -> ReplayCounts {
        ReplayCounts {
            direct: self.direct.load(Ordering::Relaxed),
            consumer: self.consumer.load(Ordering::Relaxed),
            fallbacks: self.fallbacks.load(Ordering::Relaxed),
            scans: self.scans.load(Ordering::Relaxed),
            scanned_messages: self.scanned_messages.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn count_scan(&self, messages: u64) {
        self.scans.fetch_add(1, Ordering::Relaxed);
        self.scanned_messages.fetch_add(messages, Ordering::Relaxed);
    }
}

impl Bus {
    /// The stream's first and last sequence, from the stream leader: one STREAM.INFO
    /// request (`get_stream` keeps the info it fetched). Notes the stream's incarnation
    /// ([`Bus::incarnations`]).
    pub async fn extent(&self) -> Result<StreamExtent, ReplayError> {
        let stream = self.js.get_stream(self.stream_name()).await.map_err(err)?;
        let info = stream.cached_info();
        Ok(StreamExtent {
            first_seq: info.state.first_sequence,
            last_seq: info.state.last_sequence,
            epoch: self.note_incarnation(info),
        })
    }

    /// Every message of `range` — on its subjects, with a sequence of at least `from`
    /// and at most `until` (when given) — in sequence order, or [`Replay::TooMany`] when
    /// that is more than `limit`. Subject delete markers are skipped.
    ///
    /// Consistency: every message with a sequence up to `complete_to` is included, and
    /// none after it. A caller that took the stream's last sequence after it started
    /// receiving live messages passes that sequence: whatever comes later it receives
    /// live, and a replayed message past it could jump the caller's position over live
    /// messages of other subjects still on their way. With `None` the answer is a
    /// prefix of the stream: it holds every message committed before the call.
    ///
    /// Batch Direct Get answers when the server has it (>= 2.11), see `direct.rs`;
    /// otherwise, and whenever Direct Get fails or cannot prove its answer complete, an
    /// ordered consumer: ephemeral, in-memory, consistent with the stream leader, and
    /// deleted after use.
    pub async fn replay(&self, range: ReplayRange, limit: u32) -> Result<Replay, ReplayError> {
        let ReplayRange {
            subjects,
            from,
            until,
            complete_to: at_least,
        } = range;
        if subjects.is_empty() {
            return Ok(Replay::Events(Vec::new()));
        }
        let until = match (until, at_least) {
            (Some(u), Some(a)) => Some(u.min(a)),
            (u, a) => u.or(a),
        };
        if self.direct_get() {
            match self.replay_direct(&subjects, from, until, limit, at_least).await {
                Ok(replay) => {
                    self.replays.direct.fetch_add(1, Ordering::Relaxed);
                    return Ok(replay);
                }
                Err(e) => {
                    self.replays.fallbacks.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(error = %e, from, "direct get replay gave up; replaying through a consumer");
                }
            }
        }
        self.replays.consumer.fetch_add(1, Ordering::Relaxed);
        self.replay_consumer(subjects, from, until, limit).await
    }

    /// The 2.10 path and the fallback: an ordered consumer over `subjects`.
    async fn replay_consumer(
        &self,
        subjects: Vec<String>,
        from: u64,
        until: Option<u64>,
        limit: u32,
    ) -> Result<Replay, ReplayError> {
        self.with_consumer(subjects, from, async |consumer| {
            Self::read_replay(consumer, until, limit, self).await
        })
        .await
    }

    /// Runs `read` over a short-lived ordered consumer of `subjects` (every subject
    /// when empty) starting at `from`, then deletes it: an ephemeral consumer lingers
    /// on the server until its inactivity threshold, and the server caps consumers
    /// per stream, so a reconnect storm must not leave thousands behind. Best effort:
    /// the server reaps it anyway.
    pub(crate) async fn with_consumer<T>(
        &self,
        subjects: Vec<String>,
        from: u64,
        read: impl AsyncFnOnce(Consumer<OrderedConfig>) -> Result<T, ReplayError>,
    ) -> Result<T, ReplayError> {
        let start = DeliverPolicy::ByStartSequence {
            start_sequence: from.max(1),
        };
        self.with_consumer_at(subjects, start, read).await
    }

    /// [`Bus::with_consumer`] from any start (a sequence, a time).
    pub(crate) async fn with_consumer_at<T>(
        &self,
        subjects: Vec<String>,
        deliver_policy: DeliverPolicy,
        read: impl AsyncFnOnce(Consumer<OrderedConfig>) -> Result<T, ReplayError>,
    ) -> Result<T, ReplayError> {
        let stream = self.js.get_stream_no_info(self.stream_name()).await.map_err(err)?;
        let consumer = stream
            .create_consumer(OrderedConfig {
                filter_subjects: subjects,
                deliver_policy,
                ..Default::default()
            })
            .await
            .map_err(err)?;
        let name = consumer.cached_info().name.clone();
        let result = read(consumer).await;
        let _ = stream.delete_consumer(&name).await;
        result
    }

    async fn read_replay(
        consumer: Consumer<OrderedConfig>,
        until: Option<u64>,
        limit: u32,
        bus: &Bus,
    ) -> Result<Replay, ReplayError> {
        let pending = consumer.cached_info().num_pending;
        if pending == 0 {
            return Ok(Replay::Events(Vec::new()));
        }
        // Pending counts everything after `from`; with an upper bound only part of it
        // matters, so the bound is checked on what is actually collected.
        if until.is_none() && pending > u64::from(limit) {
            return Ok(Replay::TooMany { pending });
        }
        let mut messages = consumer.messages().await.map_err(err)?;
        let mut out = Vec::new();
        while let Some(message) = tokio::time::timeout(std::time::Duration::from_secs(10), messages.next())
            .await
            .map_err(|_| ReplayError::TimedOut("reading the stream"))?
        {
            let message = message.map_err(err)?;
            let info = message.info().map_err(err)?;
            let (seq, left) = (info.stream_sequence, info.pending);
            if until.is_some_and(|u| seq > u) {
                break;
            }
            let headers = message.headers.clone().unwrap_or_default();
            if let Some(event) = BusEvent::from_stored(
                bus.subjects(),
                seq,
                message.subject.to_string(),
                &headers,
                message.payload.clone(),
            ) {
                out.push(event);
            }
            if out.len() > limit as usize {
                return Ok(Replay::TooMany {
                    pending: out.len() as u64 + left,
                });
            }
            if left == 0 || until.is_some_and(|u| seq >= u) {
                break;
            }
        }
        Ok(Replay::Events(out))
    }

    /// The newest message of a topic, if it has one.
    pub async fn latest(&self, topic: &Topic) -> Result<Option<BusEvent>, ReplayError> {
        let subject = self.subjects().topic(topic);
        let stream = self.js.get_stream_no_info(self.stream_name()).await.map_err(err)?;
        match stream.get_last_raw_message_by_subject(&subject).await {
            Ok(m) => Ok(BusEvent::from_stored(
                self.subjects(),
                m.sequence,
                m.subject.to_string(),
                &m.headers,
                m.payload,
            )),
            Err(e)
                if matches!(
                    e.kind(),
                    async_nats::jetstream::stream::LastRawMessageErrorKind::NoMessageFound
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(err(e)),
        }
    }
}

pub(crate) fn err(e: impl std::fmt::Display) -> ReplayError {
    ReplayError::Unavailable(e.to_string())
}
