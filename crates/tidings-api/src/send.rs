//! The write path shared by Send and SendStream: commit, then publish inline, then
//! record the sequences. Whatever the inline publish misses stays in the outbox for
//! the relay, so a committed notification is never lost.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tidings_bus::{Bus, Outgoing};
use tidings_domain::{EventId, StreamEpoch};
use tidings_proto::v1 as pb;
use tidings_store::{NewSend, RowState, SendOutcome, Store};
use tokio::sync::Notify;
use tracing::{Instrument as _, Span};
use uuid::Uuid;

use crate::ApiError;
use crate::metrics::ApiMetrics;
use crate::payload::{self, Notification};

/// Stores and publishes sends. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Sender {
    pub(crate) store: Store,
    pub(crate) bus: Bus,
    /// How long the inline publish waits for JetStream's acks before leaving the rest to
    /// the relay.
    pub(crate) publish_timeout: Duration,
    /// Wakes the relay when an inline publish failed, instead of waiting for its poll.
    pub(crate) relay_wake: Arc<Notify>,
    /// Test-only crash point between commit and publish (the `fault-injection` feature).
    pub(crate) crash_after_commit: bool,
    pub(crate) metrics: ApiMetrics,
}

impl Sender {
    /// Outbox entries wait this long before the relay may take them: long enough for
    /// the inline publish to finish first, short enough that a crash delays delivery
    /// by seconds, not minutes.
    pub(crate) fn relay_grace(&self) -> Duration {
        self.publish_timeout * 2
    }

    /// Stores every send in one transaction, publishes the new rows, records their
    /// sequences, and returns one result per send, in order. An error for the whole
    /// batch means nothing was stored.
    ///
    /// `callers[i]` is the span of the call that asked for `sends[i]`: a batch may serve
    /// several calls (group commit), and each call's trace gets its own commit and
    /// publish spans, so one trace still follows each notification to the SSE write.
    pub async fn send(
        &self,
        sends: &[NewSend],
        callers: &[Span],
    ) -> Result<Vec<Result<pb::SendResponse, ApiError>>, ApiError> {
        let written = self.write(sends, callers).await?;
        self.record(&written.published, written.epoch).await;
        Ok(written.responses())
    }

    /// The first two steps of [`Sender::send`]: store, then publish. Once this returns,
    /// the notifications are on their way to the edges; recording their sequences is
    /// bookkeeping the caller does next, alone ([`Sender::record`]) or together with
    /// other batches.
    pub(crate) async fn write(&self, sends: &[NewSend], callers: &[Span]) -> Result<Written, ApiError> {
        debug_assert_eq!(sends.len(), callers.len());
        let traces = Traces::of(callers);
        let commit =
            traces.spans(|parent| tracing::info_span!(parent: parent, "postgres.insert_sends", sends = sends.len()));
        let started = std::time::Instant::now();
        let outcomes = self
            .store
            .insert_sends(sends, self.relay_grace())
            .instrument(commit.first().cloned().unwrap_or_else(Span::none))
            .await;
        self.metrics.stage_stored.observe(started.elapsed().as_secs_f64());
        drop(commit);
        let outcomes = outcomes?;
        if self.crash_after_commit {
            tracing::error!("fault injection: crashing between commit and publish");
            std::process::abort();
        }

        // Publish every fresh row, pipelined, in request order.
        let mut fresh: Vec<Uuid> = Vec::new();
        let mut messages: Vec<Outgoing> = Vec::new();
        let mut message_trace: Vec<usize> = Vec::new();
        for ((send, outcome), trace) in sends.iter().zip(&outcomes).zip(&traces.of_send) {
            let SendOutcome::Stored(rows) = outcome else { continue };
            for row in rows.iter().filter(|r| r.state == RowState::Fresh) {
                fresh.push(row.id);
                message_trace.push(*trace);
                let notification = Notification {
                    id: row.id,
                    member: &row.member_id,
                    kind: send.kind.as_str(),
                    content: &send.content,
                    data: send.data_json.as_deref(),
                    group_id: send.group_id.as_deref(),
                    created_at: send.created_at,
                };
                messages.push(payload::message(
                    self.bus.subjects(),
                    &notification,
                    send.traceparent.clone(),
                ));
            }
        }
        let epoch = self.bus.epoch();
        let mut published: Vec<(Uuid, u64)> = Vec::with_capacity(fresh.len());
        if !messages.is_empty() {
            if self.bus.is_connected() {
                let publish = traces
                    .spans(|parent| tracing::info_span!(parent: parent, "nats.publish", messages = messages.len()));
                // The edge continues each trace from its own publish span.
                let traceparents: Vec<Option<String>> = publish
                    .iter()
                    .map(|span| span.in_scope(tidings_telemetry::propagation::current_traceparent))
                    .collect();
                for (m, trace) in messages.iter_mut().zip(&message_trace) {
                    if let Some(traceparent) = &traceparents[*trace] {
                        m.traceparent = Some(traceparent.clone());
                    }
                }
                let started = std::time::Instant::now();
                let results = self
                    .bus
                    .publish_all(messages, self.publish_timeout)
                    .instrument(publish.first().cloned().unwrap_or_else(Span::none))
                    .await;
                self.metrics.stage_published.observe(started.elapsed().as_secs_f64());
                drop(publish);
                for (id, result) in fresh.iter().zip(results) {
                    match result {
                        Ok(stored) => published.push((*id, stored.seq)),
                        Err(e) => {
                            tracing::debug!(notification = %id, error = %e, "inline publish failed; relay will retry")
                        }
                    }
                }
            }
            self.metrics.stored.inc_by(fresh.len() as u64);
            self.metrics.published_inline.inc_by(published.len() as u64);
            if published.len() < fresh.len() {
                self.metrics.deferred.inc_by((fresh.len() - published.len()) as u64);
                tracing::warn!(
                    pending = fresh.len() - published.len(),
                    "publishing deferred to the outbox relay"
                );
                self.relay_wake.notify_one();
            }
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
    pub(crate) async fn record(&self, published: &[(Uuid, u64)], epoch: StreamEpoch) {
        if published.is_empty() {
            return;
        }
        if let Err(e) = self.store.record_published(published, epoch.0).await {
            tracing::warn!(error = %e, "recording published sequences failed; relay will reconcile");
        }
    }
}

/// A batch stored and published, its sequences not yet recorded.
#[derive(Debug)]
pub(crate) struct Written {
    /// One per send, in order.
    pub(crate) outcomes: Vec<SendOutcome>,
    /// The rows JetStream acknowledged, with their sequences.
    pub(crate) published: Vec<(Uuid, u64)>,
    pub(crate) epoch: StreamEpoch,
}

impl Written {
    /// One answer per send, in order.
    pub(crate) fn responses(self) -> Vec<Result<pb::SendResponse, ApiError>> {
        let epoch = self.epoch;
        let published: HashMap<Uuid, u64> = self.published.into_iter().collect();
        let seq_of = |id: &Uuid| published.get(id).copied();
        self.outcomes
            .into_iter()
            .map(|outcome| match outcome {
                SendOutcome::KeyConflict => Err(ApiError::Conflict(
                    "idempotency_key: already used for a different set of members".into(),
                )),
                SendOutcome::Skipped => Err(ApiError::Skipped),
                SendOutcome::Stored(rows) => Ok(pb::SendResponse {
                    deliveries: rows
                        .into_iter()
                        .map(|row| {
                            let event_id = match row.state {
                                RowState::Fresh => seq_of(&row.id).map(|seq| EventId::new(epoch, seq)),
                                RowState::Published { seq, epoch } => Some(EventId::new(StreamEpoch(epoch), seq)),
                                RowState::Pending => None,
                            };
                            pb::Delivery {
                                member_id: row.member_id.to_string(),
                                notification_id: row.id.to_string(),
                                event_id: event_id.map(|e| e.to_string()).unwrap_or_default(),
                            }
                        })
                        .collect(),
                }),
            })
            .collect()
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
