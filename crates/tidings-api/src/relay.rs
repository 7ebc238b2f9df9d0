//! The outbox relay: publishes what the inline step missed (NATS down or slow, the
//! process killed between commit and publish). Every api replica runs one; they share
//! the work through `for update skip locked`, and `Nats-Msg-Id` makes a re-publish of
//! something already stored harmless.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use tidings_bus::Outgoing;
use tidings_domain::MemberId;
use tidings_store::{NotificationKey, PendingPublish, StoreError};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

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
///
/// Publishes that fail (no stream leader during an election, a slow server) are backed
/// off per entry, up to `max_backoff`. So that an election does not cost each entry
/// its whole backoff, the relay asks the stream at every poll while any are backed
/// off: once the stream answers (it has a leader), they are all due at once.
pub(crate) async fn run(state: ApiState, settings: RelaySettings, shutdown: CancellationToken) {
    let mut backing_off = false;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = state.relay_wake.notified() => {}
            () = tokio::time::sleep(settings.poll) => {}
        }
        if backing_off && state.bus.is_connected() && state.bus.extent().await.is_ok() {
            backing_off = false;
            match state.store.outbox_due_now().await {
                Ok(0) => {}
                Ok(entries) => tracing::info!(
                    entries,
                    "the stream answers again; backed-off outbox entries are due now"
                ),
                Err(e) => tracing::warn!(error = %e, "could not make backed-off outbox entries due"),
            }
        }
        // Drain everything due, a batch at a time.
        loop {
            if shutdown.is_cancelled() || !state.bus.is_connected() {
                break;
            }
            match round(&state, &settings).await {
                Ok(done) => {
                    backing_off |= done.failed > 0;
                    if done.claimed < settings.batch as usize {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "outbox relay round failed");
                    break;
                }
            }
        }
    }
}

/// What one round did.
#[derive(Debug, Clone, Copy)]
struct Round {
    /// Entries leased.
    claimed: usize,
    /// Entries backed off after a failed publish or lookup (not the unbuildable,
    /// which no answering stream helps).
    failed: usize,
}

/// One round: lease, publish, record.
async fn round(state: &ApiState, settings: &RelaySettings) -> Result<Round, StoreError> {
    // Longer than any publish of the round can take: an entry comes due again only
    // when its relay died (or its record failed), and another relay takes it over.
    let lease = state.publish_timeout * 2 + LEASE_MARGIN;
    let entries = state.store.lease_outbox(settings.batch, lease).await?;
    if entries.is_empty() {
        return Ok(Round { claimed: 0, failed: 0 });
    }
    let looked = stored_long_ago(state, &entries).await;
    let mut failed = looked.unknown;
    // Looking took time: an entry that was young when the round began may be past
    // half the window now. It waits for the next round, which looks for it.
    let stale_now = chrono::Utc::now() - state.bus.duplicate_window() / 2;
    let turned_stale: Vec<Uuid> = entries
        .iter()
        .filter(|e| e.created_at < stale_now && !looked.checked.contains(&e.id))
        .map(|e| e.id)
        .collect();
    let already = looked.found;
    let mut unbuildable = 0;
    let mut ids = Vec::with_capacity(entries.len());
    let mut messages = Vec::with_capacity(entries.len());
    for entry in &entries {
        if already.contains_key(&entry.id) || failed.contains(&entry.id) || turned_stale.contains(&entry.id) {
            continue;
        }
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
                unbuildable += 1;
            }
        }
    }
    let results = state.bus.publish_all(messages, state.publish_timeout).await;
    let mut published: Vec<(Uuid, u64)> = already.into_iter().collect();
    for (id, result) in ids.into_iter().zip(results) {
        match result {
            Ok(stored) => published.push((id, stored.seq)),
            Err(e) => {
                tracing::debug!(notification = %id, error = %e, "relay publish failed; backing off");
                failed.push(id);
            }
        }
    }
    let keys: HashMap<Uuid, NotificationKey> = entries.iter().map(|e| (e.id, e.key())).collect();
    let key = |id: &Uuid| keys.get(id).cloned();
    let published: Vec<(NotificationKey, u64)> = published
        .iter()
        .filter_map(|(id, seq)| Some((key(id)?, *seq)))
        .collect();
    state.store.outbox_published(&published, state.bus.epoch().0).await?;
    state.metrics.published_relay.inc_by(published.len() as u64);
    let failed: Vec<NotificationKey> = failed.iter().filter_map(key).collect();
    state
        .store
        .outbox_retry_later(&failed, settings.backoff, settings.max_backoff)
        .await?;
    let turned_stale: Vec<NotificationKey> = turned_stale.iter().filter_map(key).collect();
    state
        .store
        .outbox_retry_later(&turned_stale, Duration::ZERO, Duration::ZERO)
        .await?;
    if !published.is_empty() {
        tracing::info!(
            published = published.len(),
            failed = failed.len(),
            "outbox relay published"
        );
    }
    Ok(Round {
        claimed: entries.len(),
        failed: failed.len() - unbuildable,
    })
}

/// Entries older than half the stream's duplicate window may be in the stream already
/// (published before, the acknowledgement or the record lost) where JetStream no
/// longer knows their `Nats-Msg-Id`: publishing them again would store a second copy,
/// which browsers would receive twice. Looks for them in the stream (each member's
/// subject since the oldest such entry was committed, less [`CLOCK_SLACK`]).
async fn stored_long_ago(state: &ApiState, entries: &[PendingPublish]) -> Looked {
    let stale_before = chrono::Utc::now() - state.bus.duplicate_window() / 2;
    let mut by_subject: HashMap<String, Vec<&PendingPublish>> = HashMap::new();
    for entry in entries.iter().filter(|e| e.created_at < stale_before) {
        if let Ok(member) = MemberId::parse(&entry.member_id) {
            by_subject
                .entry(state.bus.subjects().member(&member))
                .or_default()
                .push(entry);
        }
    }
    let mut looked = Looked::default();
    for (subject, stale) in by_subject {
        let ids: HashSet<String> = stale.iter().map(|e| e.id.to_string()).collect();
        let since = stale.iter().map(|e| e.created_at).min().unwrap_or(stale_before) - CLOCK_SLACK;
        match state.bus.find_stored(&subject, since, &ids).await {
            Ok(stored) => {
                for entry in stale {
                    looked.checked.insert(entry.id);
                    if let Some(seq) = stored.get(&entry.id.to_string()) {
                        looked.found.insert(entry.id, *seq);
                    }
                }
            }
            Err(e) => {
                tracing::warn!(subject, error = %e, "cannot tell whether old outbox entries are stored; retrying later");
                looked.unknown.extend(stale.iter().map(|e| e.id));
            }
        }
    }
    if !looked.found.is_empty() {
        tracing::info!(
            entries = looked.found.len(),
            "outbox entries past the duplicate window were already in the stream; recorded, not published again"
        );
    }
    looked
}

/// What [`stored_long_ago`] found out.
#[derive(Debug, Default)]
struct Looked {
    /// Looked for (found or not).
    checked: HashSet<Uuid>,
    /// Found in the stream, at these sequences: recorded, not published again.
    found: HashMap<Uuid, u64>,
    /// Could not be looked for: retried later, never published blind.
    unknown: Vec<Uuid>,
}

/// How far the api's clock and the NATS servers' may disagree: the search for an entry
/// starts this long before its commit.
const CLOCK_SLACK: chrono::TimeDelta = chrono::TimeDelta::seconds(30);

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
        // The relay publishes late: the count at insert may be stale, so it carries none
        // and edges fetch the current one.
        unread: None,
    };
    Some(payload::message(state.bus.subjects(), &notification, traceparent))
}
