//! What every request handler, stream body and catch-up task of one edge node shares.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tidings_bus::{Bus, Tickets};
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api_client::ApiClient;
use crate::auth::Verifier;
use crate::clock::Clock;
use crate::extent::Extents;
use crate::hub::Hub;
use crate::live::Live;
use crate::metrics::EdgeMetrics;
use crate::resumes::Resumes;
use crate::topics::{PublicTopics, TopicModes};
use crate::unread::Unread;

/// One edge node's shared state: its parts, its limits and its lifecycle.
#[derive(Debug)]
pub(crate) struct EdgeState {
    pub(crate) bus: Bus,
    /// Which connections want which member and topic.
    pub(crate) hub: Arc<Hub>,
    /// The node's NATS interest and live delivery.
    pub(crate) live: Live,
    pub(crate) unread: Unread,
    pub(crate) metrics: EdgeMetrics,
    pub(crate) clock: Arc<Clock>,
    pub(crate) api: ApiClient,
    pub(crate) tickets: Tickets,
    pub(crate) verifier: Verifier,
    pub(crate) topic_modes: TopicModes,
    /// Topics joinable without a token.
    pub(crate) public_topics: PublicTopics,
    /// This node's name in `connected` events and logs.
    pub(crate) node: String,
    /// Replays in flight at once on this node: a reconnect storm queues here rather
    /// than flooding the server (and, on the consumer path, its cap on consumers).
    pub(crate) replays: Arc<Semaphore>,
    /// The stream's extent, one read shared by the connections asking together.
    pub(crate) extents: Arc<Extents>,
    /// Resumes, read one by one or, in a storm, together (`resumes.rs`).
    pub(crate) resumes: Resumes,
    pub(crate) limits: Limits,
    pub(crate) lifecycle: Lifecycle,
    /// Test hook: how many upcoming catch-up reads of the stream fail as if NATS had
    /// timed out (`catch_up.rs`).
    #[cfg(feature = "fault-injection")]
    pub(crate) fail_reads: std::sync::atomic::AtomicU64,
}

/// The node's configured bounds and timings.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    /// The `retry:` frame every stream starts with, written once (`sse::retry`).
    pub(crate) retry: Bytes,
    /// Comment heartbeats go to streams quiet this long.
    pub(crate) heartbeat: Duration,
    /// Most events one resume replays; beyond it the client gets `reset`.
    pub(crate) replay_limit: u32,
    /// Frames one connection may have queued (its bound as a slow reader).
    pub(crate) queue_capacity: usize,
    pub(crate) max_connections: usize,
    pub(crate) max_connections_per_member: usize,
    /// `reauth` goes out this long before a token expires.
    pub(crate) reauth_before: Duration,
    /// Open streams close spread over this window after SIGTERM.
    pub(crate) drain_window: Duration,
    /// A frame the client does not take within this is a slow reader.
    pub(crate) write_timeout: Duration,
}

/// Where the node is between start and exit (`app.rs` drives it).
#[derive(Debug, Default)]
pub(crate) struct Lifecycle {
    /// Cancelled on SIGTERM: not ready, stop accepting, close streams over the window.
    pub(crate) drain: CancellationToken,
    /// Cancelled when the drain window is over: everything ends now.
    pub(crate) shutdown: CancellationToken,
    /// Every stream's catch-up task (opening, gaps, resyncs), so shutdown can wait
    /// for them.
    pub(crate) streams: TaskTracker,
    /// Notified whenever a stream closes, so the drain can stop accepting as soon as
    /// the last one is gone.
    pub(crate) stream_closed: Notify,
}
