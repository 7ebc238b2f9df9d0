//! The write path, the one home of every Send: commit, then publish inline, then record
//! the sequences. Its two batching front-ends are `group_commit.rs` (unary Sends that
//! arrive together) and `send_stream.rs` (one SendStream call); both hand it batches
//! within [`MAX_BATCH_REQUESTS`] and [`MAX_BATCH_ROWS`] and get [`Receipt`]s back, which
//! `convert.rs` turns into protobuf.
//!
//! - Commit before anyone hears of it: rows and outbox entries in one transaction.
//!   An error there is the whole batch's, and nothing was stored.
//! - Publish what the commit wrote, pipelined, in request order. A publish that fails
//!   or outlives `publish_timeout` is not an error: the row stays in the outbox, the
//!   relay is woken, and the answer carries no event id yet. A committed notification
//!   is never lost.
//! - Record the sequences JetStream acknowledged. Bookkeeping: if it fails, the relay
//!   re-publishes, and `Nats-Msg-Id` makes JetStream answer with the same sequence;
//!   so it commits without waiting for the WAL flush (a crash that loses it is a
//!   record that failed).

use std::collections::HashMap;
use std::time::Instant;

use tidings_domain::{EventId, MemberId, StreamEpoch};
use tidings_store::{Held, NewSend, NotificationKey, RowState, SendOutcome, StoredRow};
use tracing::{Instrument as _, Span};
use uuid::Uuid;

use crate::ApiError;
use crate::payload::{self, Notification};
use crate::state::{ApiState, Fault};

/// Most requests one batch (a SendStream's, or a group commit's) commits together,
/// and most rows: one `unnest` insert of 10,000 rows stays in the tens of
/// milliseconds, and the batch's answers wait for all of it.
pub(crate) const MAX_BATCH_REQUESTS: usize = 512;
pub(crate) const MAX_BATCH_ROWS: usize = 10_000;

/// What a stored Send answers: one delivery per member, in request order.
#[derive(Debug)]
pub(crate) struct Receipt {
    pub(crate) deliveries: Vec<Delivery>,
}

#[derive(Debug)]
pub(crate) struct Delivery {
    pub(crate) member: MemberId,
    pub(crate) notification_id: Uuid,
    /// The SSE id the notification carries once published; `None` while the relay
    /// still has to publish it.
    pub(crate) event_id: Option<EventId>,
}

impl ApiState {
    /// Stores every send in one transaction, publishes the new rows, records their
    /// sequences, and returns one result per send, in order. `db` is the calling
    /// worker's connection (`tidings_store::Held`). An error for the whole
    /// batch means nothing was stored.
    ///
    /// `callers[i]` is the span of the call that asked for `sends[i]`: a batch may serve
    /// several calls (group commit), and each call's trace gets its own commit and
    /// publish spans, so one trace still follows each notification to the SSE write.
    pub(crate) async fn send(
        &self,
        db: &mut Held,
        sends: &[NewSend],
        callers: &[Span],
    ) -> Result<Vec<Result<Receipt, ApiError>>, ApiError> {
        let written = self.write(db, sends, callers).await?;
        self.record(db, &written.published, written.epoch).await;
        Ok(written.receipts())
    }

    /// The first two steps of [`ApiState::send`]: commit, then publish. Once this
    /// returns, the notifications are on their way to the edges; recording their
    /// sequences is bookkeeping the caller does next, alone ([`ApiState::record`]) or
    /// together with other batches.
    pub(crate) async fn write(&self, db: &mut Held, sends: &[NewSend], callers: &[Span]) -> Result<Written, ApiError> {
        debug_assert_eq!(sends.len(), callers.len());
        let traces = Traces::of(callers);
        let outcomes = self.commit(db, sends, &traces).await?;
        if self.fault == Fault::CrashAfterCommit {
            tracing::error!("fault injection: crashing between commit and publish");
            std::process::abort();
        }
        let published = self.publish(sends, &outcomes, &traces).await;
        // Read after the publish, which checks it when sequences start over.
        let epoch = self.bus.epoch();
        if self.fault == Fault::CrashAfterPublish && !published.is_empty() {
            tracing::error!("fault injection: crashing between publish and record");
            std::process::abort();
        }
        Ok(Written {
            outcomes,
            published,
            epoch,
        })
    }

    /// Records stream sequences on the rows and clears their outbox entries. Recording
    /// is bookkeeping: if it fails, the relay re-publishes, and the Nats-Msg-Id makes
    /// JetStream answer with the same sequence.
    pub(crate) async fn record(&self, db: &mut Held, published: &[(NotificationKey, u64)], epoch: StreamEpoch) {
        if published.is_empty() {
            return;
        }
        if let Err(e) = db.record_published(published, epoch.0).await {
            tracing::warn!(error = %e, "recording published sequences failed; relay will reconcile");
        }
    }

    /// Rows plus outbox entries, in one transaction.
    async fn commit(
        &self,
        db: &mut Held,
        sends: &[NewSend],
        traces: &Traces<'_>,
    ) -> Result<Vec<SendOutcome>, ApiError> {
        let spans =
            traces.spans(|parent| tracing::info_span!(parent: parent, "postgres.insert_sends", sends = sends.len()));
        let started = Instant::now();
        let outcomes = db
            .insert_sends(sends, self.relay_grace())
            .instrument(first(&spans))
            .await;
        self.metrics.stage_stored.observe(started.elapsed().as_secs_f64());
        Ok(outcomes?)
    }

    /// Publishes every fresh row, pipelined, in request order; returns the ones
    /// JetStream acknowledged, with their sequences. What it misses stays in the outbox,
    /// and the relay is woken for it.
    async fn publish(
        &self,
        sends: &[NewSend],
        outcomes: &[SendOutcome],
        traces: &Traces<'_>,
    ) -> Vec<(NotificationKey, u64)> {
        let fresh = Fresh::of(sends, outcomes, traces);
        if fresh.is_empty() {
            return Vec::new();
        }
        // Publishing while disconnected would only queue and time out.
        let published = if self.bus.is_connected() {
            self.publish_fresh(&fresh, traces).await
        } else {
            Vec::new()
        };
        self.metrics.stored.inc_by(fresh.len() as u64);
        self.metrics.published_inline.inc_by(published.len() as u64);
        if published.len() < fresh.len() {
            let pending = fresh.len() - published.len();
            self.metrics.deferred.inc_by(pending as u64);
            tracing::warn!(pending, "publishing deferred to the outbox relay");
            self.relay_wake.notify_one();
        }
        published
    }

    async fn publish_fresh(&self, fresh: &[Fresh<'_>], traces: &Traces<'_>) -> Vec<(NotificationKey, u64)> {
        let spans = traces.spans(|parent| tracing::info_span!(parent: parent, "nats.publish", messages = fresh.len()));
        // The edge continues each trace from its own publish span.
        let traceparents: Vec<Option<String>> = spans
            .iter()
            .map(|span| span.in_scope(tidings_telemetry::propagation::current_traceparent))
            .collect();
        let messages = fresh
            .iter()
            .map(|f| {
                let traceparent = traceparents[f.trace].clone().or_else(|| f.send.traceparent.clone());
                payload::message(self.bus.subjects(), &f.notification(), traceparent)
            })
            .collect();
        let started = Instant::now();
        let results = self
            .bus
            .publish_all(messages, self.publish_timeout)
            .instrument(first(&spans))
            .await;
        self.metrics.stage_published.observe(started.elapsed().as_secs_f64());
        if self.fault == Fault::LosePublishAcks {
            tracing::error!("fault injection: losing the inline publish's acknowledgements");
            return Vec::new();
        }
        let mut published = Vec::with_capacity(fresh.len());
        for (f, result) in fresh.iter().zip(results) {
            match result {
                Ok(stored) => published.push((f.row.key(), stored.seq)),
                Err(e) => {
                    tracing::debug!(notification = %f.row.id, error = %e, "inline publish failed; relay will retry")
                }
            }
        }
        published
    }
}

/// A batch stored and published, its sequences not yet recorded.
#[derive(Debug)]
pub(crate) struct Written {
    /// One per send, in order.
    pub(crate) outcomes: Vec<SendOutcome>,
    /// The rows JetStream acknowledged, with their sequences.
    pub(crate) published: Vec<(NotificationKey, u64)>,
    pub(crate) epoch: StreamEpoch,
}

impl Written {
    /// One answer per send, in order.
    pub(crate) fn receipts(self) -> Vec<Result<Receipt, ApiError>> {
        let epoch = self.epoch;
        let published: HashMap<Uuid, u64> = self.published.into_iter().map(|(key, seq)| (key.id, seq)).collect();
        let event_id = |row: &StoredRow| match row.state {
            RowState::Fresh => published.get(&row.id).map(|seq| EventId::new(epoch, *seq)),
            RowState::Published { seq, epoch } => Some(EventId::new(StreamEpoch(epoch), seq)),
            RowState::Pending => None,
        };
        self.outcomes
            .into_iter()
            .map(|outcome| match outcome {
                SendOutcome::KeyConflict => Err(ApiError::Conflict(
                    "idempotency_key: already used for a different set of members".into(),
                )),
                SendOutcome::Skipped => Err(ApiError::Skipped),
                SendOutcome::Stored { rows, .. } => Ok(Receipt {
                    deliveries: rows
                        .into_iter()
                        .map(|row| Delivery {
                            event_id: event_id(&row),
                            member: row.member_id,
                            notification_id: row.id,
                        })
                        .collect(),
                }),
            })
            .collect()
    }
}

/// A row this batch wrote, with what its message is built from.
struct Fresh<'a> {
    send: &'a NewSend,
    row: &'a StoredRow,
    /// Postgres' rendering of the send's data, as the insert returned it.
    data: Option<&'a str>,
    /// The row's call, an index into [`Traces::callers`].
    trace: usize,
}

impl<'a> Fresh<'a> {
    /// Every fresh row of the batch, in request order.
    fn of(sends: &'a [NewSend], outcomes: &'a [SendOutcome], traces: &Traces<'_>) -> Vec<Self> {
        let mut fresh = Vec::new();
        for ((send, outcome), &trace) in sends.iter().zip(outcomes).zip(&traces.of_send) {
            let SendOutcome::Stored { rows, data } = outcome else {
                continue;
            };
            for row in rows.iter().filter(|r| r.state == RowState::Fresh) {
                fresh.push(Fresh {
                    send,
                    row,
                    data: data.as_deref(),
                    trace,
                });
            }
        }
        fresh
    }

    fn notification(&self) -> Notification<'a> {
        Notification {
            id: self.row.id,
            member: &self.row.member_id,
            kind: self.send.kind.as_str(),
            content: &self.send.content,
            data: self.data,
            group_id: self.send.group_id.as_deref(),
            created_at: self.send.created_at,
            unread: self.row.unread,
        }
    }
}

/// The distinct calls a batch serves: SendStream's batch is one call, a group commit's
/// is many. Spans are compared by id; disabled spans (no tracing layer) are all one.
struct Traces<'a> {
    /// One span per distinct call, in first-seen order.
    callers: Vec<&'a Span>,
    /// For each send, its index in `callers`.
    of_send: Vec<usize>,
}

impl<'a> Traces<'a> {
    fn of(callers: &'a [Span]) -> Self {
        let mut distinct: Vec<&'a Span> = Vec::new();
        let mut index: HashMap<Option<tracing::Id>, usize> = HashMap::new();
        let of_send = callers
            .iter()
            .map(|span| {
                *index.entry(span.id()).or_insert_with(|| {
                    distinct.push(span);
                    distinct.len() - 1
                })
            })
            .collect();
        Self {
            callers: distinct,
            of_send,
        }
    }

    /// One child span per call, alive until dropped: a shared step timed in every trace.
    fn spans(&self, child: impl Fn(&Span) -> Span) -> Vec<Span> {
        self.callers.iter().map(|parent| child(parent)).collect()
    }
}

/// The span a shared step runs in: the first call's (every call has its own copy).
fn first(spans: &[Span]) -> Span {
    spans.first().cloned().unwrap_or_else(Span::none)
}
