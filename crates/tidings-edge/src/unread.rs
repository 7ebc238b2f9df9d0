//! Unread counts for badges: after a notification or a MarkRead, the member's count is
//! fetched from the api and pushed to the member's connections on this node as an
//! `unread` event. Fetches are coalesced per member: one in flight, and one more if
//! anything changed meanwhile, so the last count sent is never older than the last
//! change.

use std::collections::HashSet;
use std::sync::Arc;

use tidings_domain::MemberId;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::hub::Hub;
use crate::inbox::ApiClient;
use crate::sweep::Clock;

/// Pending refresh requests; beyond this, requests are dropped (and logged): the next
/// change of that member fetches again.
const QUEUE: usize = 65_536;
/// Fetches in flight at once.
const CONCURRENCY: usize = 32;

#[derive(Debug, Clone)]
pub(crate) struct Unread {
    requests: mpsc::Sender<MemberId>,
}

impl Unread {
    pub(crate) fn spawn(
        api: ApiClient,
        hub: Arc<Hub>,
        clock: Arc<Clock>,
        shutdown: CancellationToken,
        tracker: &tokio_util::task::TaskTracker,
    ) -> Self {
        let (requests, rx) = mpsc::channel(QUEUE);
        tracker.spawn(run(api, hub, clock, rx, shutdown));
        Self { requests }
    }

    pub(crate) fn refresh(&self, member: MemberId) {
        if self.requests.try_send(member).is_err() {
            tracing::warn!("unread refresh queue full; dropping a refresh");
        }
    }
}

async fn run(
    api: ApiClient,
    hub: Arc<Hub>,
    clock: Arc<Clock>,
    mut requests: mpsc::Receiver<MemberId>,
    shutdown: CancellationToken,
) {
    let mut in_flight: HashSet<MemberId> = HashSet::new();
    let mut dirty: HashSet<MemberId> = HashSet::new();
    let mut waiting: std::collections::VecDeque<MemberId> = std::collections::VecDeque::new();
    let mut queued: HashSet<MemberId> = HashSet::new();
    let (done_tx, mut done) = mpsc::channel::<MemberId>(CONCURRENCY);
    loop {
        while in_flight.len() < CONCURRENCY {
            let Some(member) = waiting.pop_front() else { break };
            queued.remove(&member);
            in_flight.insert(member.clone());
            let (api, hub, clock, done_tx) = (api.clone(), hub.clone(), clock.clone(), done_tx.clone());
            tokio::spawn(async move {
                match api.unread_count(&member).await {
                    Ok(count) => {
                        let body = serde_json::json!({ "unreadCount": count }).to_string();
                        hub.unread(
                            &member,
                            &crate::sse::event(None, "unread", body.as_bytes()),
                            clock.now(),
                        );
                    }
                    Err(e) => tracing::debug!(member = %member, error = %e, "unread count unavailable"),
                }
                let _ = done_tx.send(member).await;
            });
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            Some(member) = requests.recv() => {
                if in_flight.contains(&member) {
                    dirty.insert(member);
                } else if queued.insert(member.clone()) {
                    waiting.push_back(member);
                }
            }
            Some(member) = done.recv() => {
                in_flight.remove(&member);
                if dirty.remove(&member) && queued.insert(member.clone()) {
                    waiting.push_back(member);
                }
            }
        }
    }
}
