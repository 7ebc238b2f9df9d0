//! Unread counts for badges, pushed to the member's connections on this node as an
//! `unread` event. A notification the api published inline and every unread
//! announcement carry the member's count with its version (`Tidings-Unread`): it is
//! shown at once ([`carried`]), no call to the api. The count is fetched from the api
//! at connect and after a message without one (the outbox relay's publishes, an older
//! api's). Each connection keeps the newest version it was given and drops older counts
//! (`Delivery::push_unread`), so a fetch answered late, or a notification's count
//! overtaken by a MarkRead's, never shows an older count after a newer one.
//!
//! Fetches are coalesced per member: one in flight, and one more if
//! anything changed meanwhile, so the last count sent is never older than the last
//! change. Members waiting together are fetched together: one GetUnreadCount call
//! (one query on the api) for up to [`BATCH`] members, a few calls in flight, each
//! refresh waiting up to [`LINGER`] for others, so a busy node (or a reconnect storm,
//! where every stream starts with its count) costs the api a call per batch rather
//! than per notification.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use prometheus::IntCounter;
use tidings_domain::{MemberId, UnreadCount};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::api_client::ApiClient;
use crate::clock::Clock;
use crate::hub::Hub;
use crate::sse;

/// Pending refresh requests; beyond this, requests are dropped (and logged, sparingly): the next
/// change of that member fetches again.
const QUEUE: usize = 65_536;
/// Members per call (the api takes at most 500).
const BATCH: usize = 256;
/// Calls in flight at once; members asked for meanwhile wait for the next batch.
const CONCURRENCY: usize = 4;
/// How long a refresh may wait for others to share its call: far below what a person
/// notices on a badge, and it turns a call per notification on a busy node into a call
/// per few dozen (measured at 1,000 notifications/s: 465 calls/s before, see
/// BENCHMARKS.md). A full batch goes at once.
const LINGER: std::time::Duration = std::time::Duration::from_millis(10);

#[derive(Debug, Clone)]
pub(crate) struct Unread {
    requests: mpsc::Sender<MemberId>,
    /// Refreshes dropped on a full queue, for a warning that does not flood the log.
    dropped: Arc<AtomicU64>,
}

impl Unread {
    /// `fetched` counts the counts fetched and handed to connections.
    pub(crate) fn spawn(
        api: ApiClient,
        hub: Arc<Hub>,
        clock: Arc<Clock>,
        fetched: IntCounter,
        shutdown: CancellationToken,
        tracker: &tokio_util::task::TaskTracker,
    ) -> Self {
        let (requests, rx) = mpsc::channel(QUEUE);
        tracker.spawn(run(api, hub, clock, fetched, rx, shutdown, tracker.clone()));
        Self {
            requests,
            dropped: Arc::default(),
        }
    }

    pub(crate) fn refresh(&self, member: MemberId) {
        if self.requests.try_send(member).is_err() {
            // One line at the 1st, 2nd, 4th, 8th… drop: an overload is visible at once,
            // and at most 64 lines ever, however long it lasts.
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped.is_power_of_two() {
                tracing::warn!(dropped, "unread refresh queue full; dropping refreshes");
            }
        }
    }
}

/// Shows `count`, carried by the message that changed it, on the member's connections
/// here; returns how many there are.
pub(crate) fn carried(hub: &Hub, member: &MemberId, count: UnreadCount, now: u32) -> usize {
    hub.unread(member, &sse::unread(count.count), Some(count), now)
}

async fn run(
    api: ApiClient,
    hub: Arc<Hub>,
    clock: Arc<Clock>,
    fetched: IntCounter,
    mut requests: mpsc::Receiver<MemberId>,
    shutdown: CancellationToken,
    tracker: tokio_util::task::TaskTracker,
) {
    let mut in_flight: HashSet<MemberId> = HashSet::new();
    let mut dirty: HashSet<MemberId> = HashSet::new();
    let mut waiting: VecDeque<MemberId> = VecDeque::new();
    let mut queued: HashSet<MemberId> = HashSet::new();
    let mut calls = 0;
    let (done_tx, mut done) = mpsc::channel::<Vec<MemberId>>(CONCURRENCY);
    // When the members waiting are due for a call: LINGER after the first of them.
    let mut deadline: Option<tokio::time::Instant> = None;
    // One timer for the task's life, moved only when the deadline does: a timer made
    // and dropped at each request cost a connect storm two trips to the timer wheel
    // per stream.
    let linger = tokio::time::sleep(LINGER);
    tokio::pin!(linger);
    let mut armed: Option<tokio::time::Instant> = None;
    loop {
        let due = deadline.is_some_and(|d| tokio::time::Instant::now() >= d) || waiting.len() >= BATCH;
        while due && calls < CONCURRENCY && !waiting.is_empty() {
            let batch: Vec<MemberId> = waiting.drain(..waiting.len().min(BATCH)).collect();
            for member in &batch {
                queued.remove(member);
                in_flight.insert(member.clone());
            }
            calls += 1;
            let (api, hub, clock, fetched, done_tx) = (
                api.clone(),
                hub.clone(),
                clock.clone(),
                fetched.clone(),
                done_tx.clone(),
            );
            tracker.spawn(async move {
                match api.unread_counts(&batch).await {
                    Ok(counts) => {
                        // The batch's connections under one lock of the hub, each
                        // member's frame made once.
                        let (tabs, now) = (hub.tabs_of(&batch), clock.now());
                        let mut frame: Option<(usize, Bytes, Option<UnreadCount>)> = None;
                        for (i, conn) in &tabs {
                            let (_, frame, versioned) = match frame.as_ref() {
                                Some(made) if made.0 == *i => made,
                                _ => {
                                    let (count, version) = counts[*i];
                                    let versioned = version.map(|version| UnreadCount { count, version });
                                    frame.insert((*i, sse::unread(count), versioned))
                                }
                            };
                            conn.delivery().push_unread(frame.clone(), *versioned, now);
                        }
                        fetched.inc_by(tabs.len() as u64);
                    }
                    Err(e) => tracing::debug!(members = batch.len(), error = %e, "unread counts unavailable"),
                }
                let _ = done_tx.send(batch).await;
            });
        }
        if waiting.is_empty() {
            deadline = None;
        } else if due {
            // What is left waits for a call to finish, and goes with the next one.
            deadline = Some(tokio::time::Instant::now());
        }
        let wanted = deadline.filter(|_| calls < CONCURRENCY);
        if wanted != armed {
            if let Some(at) = wanted {
                linger.as_mut().reset(at);
            }
            armed = wanted;
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = &mut linger, if armed.is_some() => armed = None,
            Some(member) = requests.recv() => {
                // Everything asked for meanwhile, in one wake-up.
                let mut next = Some(member);
                while let Some(member) = next {
                    if in_flight.contains(&member) {
                        dirty.insert(member);
                    } else if queued.insert(member.clone()) {
                        waiting.push_back(member);
                        deadline.get_or_insert_with(|| tokio::time::Instant::now() + LINGER);
                    }
                    next = requests.try_recv().ok();
                }
            }
            Some(batch) = done.recv() => {
                calls -= 1;
                for member in batch {
                    in_flight.remove(&member);
                    if dirty.remove(&member) && queued.insert(member.clone()) {
                        waiting.push_back(member);
                        deadline.get_or_insert_with(|| tokio::time::Instant::now() + LINGER);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_full_queue_warns_sparingly_not_once_per_dropped_refresh() {
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        let (requests, _rx) = mpsc::channel(1);
        let unread = Unread {
            requests,
            dropped: Arc::default(),
        };
        let member = MemberId::parse("m").expect("a member id");
        tracing::subscriber::with_default(subscriber, || {
            for _ in 0..1000 {
                unread.refresh(member.clone());
            }
        });
        let log = String::from_utf8(lines.0.lock().expect("not poisoned").clone()).expect("text");
        let warnings = log.lines().filter(|l| l.contains("unread refresh queue full")).count();
        // 999 dropped: lines at 1, 2, 4, …, 512.
        assert_eq!(warnings, 10, "{log}");
        assert!(log.contains("dropped=512"), "{log}");
    }
}
