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
    /// Test-only fault on the write path (the `fault-injection` feature).
    pub(crate) fault: Fault,
    pub(crate) metrics: ApiMetrics,
}

impl ApiState {
    pub(crate) fn new(store: Store, bus: Bus, publish_timeout: Duration) -> Self {
        Self {
            store,
            bus,
            publish_timeout,
            relay_wake: Arc::new(Notify::new()),
            fault: Fault::from_env(),
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

/// A fault the write path can be told to have, for tests of what survives it:
/// `TIDINGS_FAULT` = `crash-after-commit` (abort between commit and publish),
/// `crash-after-publish` (abort between publish and record), or `lose-publish-acks`
/// (the inline publish's acknowledgements are lost: stored, but answered as if it
/// timed out). Read only with the `fault-injection` feature, which only tests enable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    None,
    CrashAfterCommit,
    CrashAfterPublish,
    LosePublishAcks,
}

impl Fault {
    #[cfg(feature = "fault-injection")]
    fn from_env() -> Self {
        match std::env::var("TIDINGS_FAULT").as_deref() {
            Ok("crash-after-commit") => Self::CrashAfterCommit,
            Ok("crash-after-publish") => Self::CrashAfterPublish,
            Ok("lose-publish-acks") => Self::LosePublishAcks,
            _ => Self::None,
        }
    }

    #[cfg(not(feature = "fault-injection"))]
    fn from_env() -> Self {
        Self::None
    }
}
