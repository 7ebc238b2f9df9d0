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
use tidings_domain::Topic;

use crate::{Bus, BusEvent};

/// The stream's extent right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamExtent {
    /// Oldest sequence still held (retention moves it forward).
    pub first_seq: u64,
    /// Newest sequence stored.
    pub last_seq: u64,
}

/// The result of a bounded replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replay {
    /// Every message on the subjects after the start, in sequence order.
    Events(Vec<BusEvent>),
    /// More than the bound: the caller resets instead.
    TooMany { pending: u64 },
}

/// A replay that could not be completed.
#[derive(Debug, thiserror::Error)]
#[error("replay failed: {0}")]
pub struct ReplayError(String);

impl ReplayError {
    pub fn new(reason: impl Into<String>) -> Self {
        Self(reason.into())
    }
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
    /// request (`get_stream` keeps the info it fetched).
    pub async fn extent(&self) -> Result<StreamExtent, ReplayError> {
        let stream = self.jetstream().get_stream(self.stream_name()).await.map_err(err)?;
        let state = &stream.cached_info().state;
        Ok(StreamExtent {
            first_seq: state.first_sequence,
            last_seq: state.last_sequence,
        })
    }

    /// Every message on `subjects` with a sequence of at least `from` and at most
    /// `until` (when given), in sequence order, or [`Replay::TooMany`] when that is more
    /// than `limit`. Subject delete markers are skipped.
    ///
    /// Consistency: every message with a sequence up to `at_least` is included, and
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
    pub async fn replay(
        &self,
        subjects: Vec<String>,
        from: u64,
        until: Option<u64>,
        limit: u32,
        at_least: Option<u64>,
    ) -> Result<Replay, ReplayError> {
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
        let stream = self
            .jetstream()
            .get_stream_no_info(self.stream_name())
            .await
            .map_err(err)?;
        let consumer = stream
            .create_consumer(OrderedConfig {
                filter_subjects: subjects,
                deliver_policy: DeliverPolicy::ByStartSequence {
                    start_sequence: from.max(1),
                },
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
            .map_err(|_| ReplayError("timed out reading the stream".into()))?
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
        let stream = self
            .jetstream()
            .get_stream_no_info(self.stream_name())
            .await
            .map_err(err)?;
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
    ReplayError(e.to_string())
}
