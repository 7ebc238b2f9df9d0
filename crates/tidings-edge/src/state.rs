use std::sync::Arc;
use std::time::Duration;

use tidings_bus::{Bus, Tickets};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::Verifier;
use crate::extent::Extents;
use crate::hub::Hub;
use crate::inbox::ApiClient;
use crate::live::Live;
use crate::metrics::EdgeMetrics;
use crate::resumes::Resumes;
use crate::sweep::Clock;
use crate::topics::TopicModes;
use crate::unread::Unread;

/// What every request handler and connection task of one edge node shares.
#[derive(Debug)]
pub(crate) struct EdgeState {
    pub(crate) bus: Bus,
    pub(crate) hub: Arc<Hub>,
    pub(crate) live: Live,
    pub(crate) unread: Unread,
    pub(crate) metrics: EdgeMetrics,
    pub(crate) clock: Arc<Clock>,
    pub(crate) api: ApiClient,
    pub(crate) tickets: Tickets,
    pub(crate) verifier: Verifier,
    pub(crate) topic_modes: TopicModes,
    pub(crate) node: String,
    pub(crate) retry: Duration,
    pub(crate) heartbeat: Duration,
    pub(crate) replay_limit: u32,
    pub(crate) queue_capacity: usize,
    pub(crate) max_connections: usize,
    pub(crate) max_connections_per_member: usize,
    pub(crate) reauth_before: Duration,
    pub(crate) drain_window: Duration,
    /// A frame the client does not take within this is a slow reader.
    pub(crate) write_timeout: Duration,
    /// Cancelled on SIGTERM: not ready, stop accepting, close streams over the window.
    pub(crate) drain: CancellationToken,
    /// Cancelled when the drain window is over: everything ends now.
    pub(crate) shutdown: CancellationToken,
    /// Replays in flight at once on this node: a reconnect storm queues here rather
    /// than flooding the server (and, on the consumer path, its cap on consumers).
    pub(crate) replays: Arc<tokio::sync::Semaphore>,
    /// The stream's extent, one read shared by the connections asking together.
    pub(crate) extents: Arc<Extents>,
    /// Resumes, read one by one or, in a storm, together (`resumes.rs`).
    pub(crate) resumes: Resumes,
    /// Every catch-up task, so shutdown can wait for them.
    pub(crate) tracker: TaskTracker,
}
