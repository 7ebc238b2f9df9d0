//! The outbox relay: publishes what the inline step missed (NATS down or slow, the
//! process killed between commit and publish). Every api replica runs one; they share
//! the work through `for update skip locked`, and `Nats-Msg-Id` makes a re-publish of
//! something already stored harmless.

use std::time::Duration;

use tidings_bus::Outgoing;
use tidings_domain::MemberId;
use tidings_store::{PendingPublish, StoreError};
use tokio_util::sync::CancellationToken;

use crate::payload::{self, Notification};
use crate::state::ApiState;

/// How far a lease reaches past the longest publish of a round.
const LEASE_MARGIN: Duration = Duration::from_secs(5);

/// How the relay paces itself.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RelaySettings {
    /// How often it looks for due entries when nothing wakes it.
    pub(crate) poll: Duration,
    /// Entries claimed per round.
    pub(crate) batch: u32,
    /// First retry delay after a failed publish; doubles per attempt up to `max_backoff`.
    pub(crate) backoff: Duration,
    pub(crate) max_backoff: Duration,
}

impl Default for RelaySettings {
    fn default() -> Self {
        Self {
            poll: Duration::from_millis(500),
            batch: 500,
            backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
        }
    }
}

/// Runs until `shutdown`. Errors are logged and retried; the loop never ends early.
/// An inline publish that failed wakes it (`ApiState::relay_wake`) before its poll.
pub(crate) async fn run(state: ApiState, settings: RelaySettings, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = state.relay_wake.notified() => {}
            () = tokio::time::sleep(settings.poll) => {}
        }
        // Drain everything due, a batch at a time.
        loop {
            if shutdown.is_cancelled() || !state.bus.is_connected() {
                break;
            }
            match round(&state, &settings).await {
                Ok(claimed) if claimed < settings.batch as usize => break,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "outbox relay round failed");
                    break;
                }
            }
        }
    }
}

/// One round: lease, publish, record. Returns how many entries were leased.
async fn round(state: &ApiState, settings: &RelaySettings) -> Result<usize, StoreError> {
    // Longer than any publish of the round can take: an entry comes due again only
    // when its relay died (or its record failed), and another relay takes it over.
    let lease = state.publish_timeout * 2 + LEASE_MARGIN;
    let entries = state.store.lease_outbox(settings.batch, lease).await?;
    if entries.is_empty() {
        return Ok(0);
    }
    let mut ids = Vec::with_capacity(entries.len());
    let mut messages = Vec::with_capacity(entries.len());
    let mut failed = Vec::new();
    for entry in &entries {
        match message(state, entry) {
            Some(m) => {
                ids.push(entry.id);
                messages.push(m);
            }
            None => {
                // Stored by a version with other rules: never silently dropped; it
                // waits (backed off, counted in the outbox gauges) for an operator.
                tracing::error!(
                    notification = %entry.id,
                    member = %entry.member_id.escape_debug(),
                    "outbox entry cannot be published: its member id is not valid; backing off"
                );
                failed.push(entry.id);
            }
        }
    }
    let results = state.bus.publish_all(messages, state.publish_timeout).await;
    let mut published = Vec::with_capacity(ids.len());
    for (id, result) in ids.into_iter().zip(results) {
        match result {
            Ok(stored) => published.push((id, stored.seq)),
            Err(e) => {
                tracing::debug!(notification = %id, error = %e, "relay publish failed; backing off");
                failed.push(id);
            }
        }
    }
    state.store.outbox_published(&published, state.bus.epoch().0).await?;
    state.metrics.published_relay.inc_by(published.len() as u64);
    state
        .store
        .outbox_retry_later(&failed, settings.backoff, settings.max_backoff)
        .await?;
    if !published.is_empty() {
        tracing::info!(
            published = published.len(),
            failed = failed.len(),
            "outbox relay published"
        );
    }
    Ok(entries.len())
}

/// The entry's message, as the inline publish would have built it; `None` for a member
/// id that no longer parses.
fn message(state: &ApiState, e: &PendingPublish) -> Option<Outgoing> {
    let member = MemberId::parse(&e.member_id).ok()?;
    // The relay's publish continues the trace of the Send that stored the entry.
    let span = tracing::info_span!("outbox.relay_publish", notification = %e.id, attempts = e.attempts);
    tidings_telemetry::propagation::set_remote_parent(&span, e.traceparent.as_deref());
    let traceparent = span
        .in_scope(tidings_telemetry::propagation::current_traceparent)
        .or_else(|| e.traceparent.clone());
    let notification = Notification {
        id: e.id,
        member: &member,
        kind: &e.kind,
        content: &e.content,
        data: e.data.as_deref(),
        group_id: e.group_id.as_deref(),
        created_at: e.created_at,
    };
    Some(payload::message(state.bus.subjects(), &notification, traceparent))
}
