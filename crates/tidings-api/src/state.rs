//! [`ApiState`]: what every part of the api works with — Postgres, NATS, the metrics
//! and the few settings the write path needs. The handlers, the group-commit writers,
//! SendStream's workers, the relay and the health endpoints each hold a clone.
//!
//! The operations live next to their concern, as `impl ApiState` blocks: the write path
//! in `send.rs`, the inbox in `inbox.rs`, topic publishing in `topic.rs`.
//!
//! It holds no group-commit handle on purpose: the writers hold an `ApiState`, and their
//! queue must close once the gRPC service (the handle's only owner) is gone, so that
//! they drain and stop at shutdown.

use std::sync::Arc;
use std::time::Duration;

use tidings_bus::Bus;
use tidings_store::Store;
use tokio::sync::Notify;

use crate::metrics::ApiMetrics;

/// The api's shared state. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct ApiState {
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

impl ApiState {
    pub(crate) fn new(store: Store, bus: Bus, publish_timeout: Duration) -> Self {
        Self {
            store,
            bus,
            publish_timeout,
            relay_wake: Arc::new(Notify::new()),
            crash_after_commit: crash_after_commit(),
            metrics: ApiMetrics::new(),
        }
    }

    /// Outbox entries wait this long before the relay may take them: long enough for
    /// the inline publish to finish first, short enough that a crash delays delivery
    /// by seconds, not minutes.
    pub(crate) fn relay_grace(&self) -> Duration {
        self.publish_timeout * 2
    }
}

#[cfg(feature = "fault-injection")]
fn crash_after_commit() -> bool {
    std::env::var("TIDINGS_FAULT").is_ok_and(|f| f == "crash-after-commit")
}

#[cfg(not(feature = "fault-injection"))]
fn crash_after_commit() -> bool {
    false
}
