//! Resumes that arrive together are read together.
//!
//! Every resume replays its member's subject (and `all` topics) from the client's
//! position to the stream's last sequence as read after live interest was taken. One
//! at a time, each is its own Direct Get replay, at most [`REPLAY_CONCURRENCY`] at
//! once. A replay costs nats-server a walk over everything stored since the client's
//! position (`tidings_bus::Bus::read_range` says why), so a reconnect storm of clients
//! that were away while much was published — an outage, a rolling deploy — costs the
//! server that walk once per client. When enough resumes wait here that reading their
//! whole range once is cheaper, this node reads it in one pass into a *window*: every
//! stream message of the range, by subject, in memory. Waiting resumes, and those that
//! come while the window lives, are answered from it; a resume past its end extends it
//! by the missing tail (when that pays too). Resumes woken by one event queue one by
//! one: the server yields while they keep coming (at most [`GATHER_YIELDS`] times)
//! before it chooses. The window goes after [`WINDOW_IDLE`]
//! without resumes. A pass that fails hands its resumes back to the one-by-one path,
//! which has its own fallback (a consumer).
//!
//! Bounds: each connection waits for at most one resume, so the queue is bounded by
//! the connections; a window holds at most [`MAX_WINDOW_MESSAGES`] messages and
//! [`MAX_WINDOW_BYTES`] of payload; every answer holds at most the replay limit.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tidings_bus::{Bus, BusEvent, Replay, ReplayError, ReplayRange};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Replays running one by one at once per edge; the rest wait in the queue.
pub(crate) const REPLAY_CONCURRENCY: usize = 64;
/// Reading a range pays when the resumes' ranges together are at least this many
/// times its length: walking past a stored message costs the server a few tens of
/// nanoseconds (measured ~27 ns), moving it here and decoding it about a microsecond.
const PASS_RATIO: u64 = 32;
/// Most resumes taken from the queue at once.
const MAX_TAKEN: usize = 4096;
/// Most times the server yields to let resumes woken together queue before it reads.
const GATHER_YIELDS: usize = 16;
/// Most messages a window holds (each costs ~200 bytes besides its payload).
const MAX_WINDOW_MESSAGES: u64 = 250_000;
/// Most payload bytes a window holds.
const MAX_WINDOW_BYTES: usize = 64 << 20;
/// A window no resume asked for in this long is dropped.
const WINDOW_IDLE: Duration = Duration::from_secs(2);

/// The queue of resumes; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Resumes {
    queue: mpsc::Sender<Job>,
    from_window: Arc<AtomicU64>,
}

/// One resume: every message on `subjects` in `[from, until]`.
#[derive(Debug)]
struct Request {
    subjects: Vec<String>,
    from: u64,
    until: u64,
}

#[derive(Debug)]
struct Job {
    request: Request,
    answer: oneshot::Sender<Result<Replay, ReplayError>>,
}

impl Resumes {
    /// Starts the task that serves the queue, until `shutdown`. `replays` also bounds
    /// this node's other replays (gaps, resyncs). The queue holds `max_connections`:
    /// each connection waits for at most one resume, so it never makes one wait.
    pub(crate) fn spawn(
        bus: Bus,
        replays: Arc<Semaphore>,
        limit: u32,
        max_connections: usize,
        shutdown: CancellationToken,
        tracker: &TaskTracker,
    ) -> Self {
        let (queue, jobs) = mpsc::channel(max_connections.max(1));
        let from_window = Arc::new(AtomicU64::new(0));
        let server = Server {
            bus,
            replays,
            limit,
            tracker: tracker.clone(),
            from_window: from_window.clone(),
            window: None,
        };
        tracker.spawn(async move {
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = server.run(jobs) => {}
            }
        });
        Self { queue, from_window }
    }

    /// What `Bus::replay(ReplayRange::resume(subjects, from, until), limit)` answers.
    pub(crate) async fn replay(&self, subjects: Vec<String>, from: u64, until: u64) -> Result<Replay, ReplayError> {
        if from > until {
            return Ok(Replay::Events(Vec::new()));
        }
        let (answer, answered) = oneshot::channel();
        let request = Request { subjects, from, until };
        self.queue
            .send(Job { request, answer })
            .await
            .map_err(|_| ReplayError::Stopped)?;
        answered.await.map_err(|_| ReplayError::Stopped)?
    }

    /// Resumes answered from a window since start.
    pub(crate) fn answered_from_window(&self) -> u64 {
        self.from_window.load(Ordering::Relaxed)
    }
}

struct Server {
    bus: Bus,
    replays: Arc<Semaphore>,
    limit: u32,
    tracker: TaskTracker,
    from_window: Arc<AtomicU64>,
    window: Option<Window>,
}

impl Server {
    async fn run(mut self, mut jobs: mpsc::Receiver<Job>) {
        loop {
            let first = match tokio::time::timeout(WINDOW_IDLE, jobs.recv()).await {
                Ok(Some(job)) => job,
                Ok(None) => return,
                Err(_) => {
                    self.window = None;
                    continue;
                }
            };
            let mut waiting = vec![first];
            take_queued(&mut jobs, &mut waiting);
            // Resumes woken by one event (a NATS reconnect, one extent read answering
            // many) are all runnable now but queue one by one: yield while they keep
            // coming, so they are read together rather than the first ones alone.
            for _ in 0..GATHER_YIELDS {
                let before = waiting.len();
                tokio::task::yield_now().await;
                take_queued(&mut jobs, &mut waiting);
                if waiting.len() == before || waiting.len() >= MAX_TAKEN {
                    break;
                }
            }
            let rest = self.answer_from_window(waiting).await;
            let rest = self.answer_from_new_window(rest).await;
            for job in rest {
                // Waiting here for a free slot lets the queue grow into a pass.
                let Ok(permit) = self.replays.clone().acquire_owned().await else {
                    return;
                };
                let (bus, limit) = (self.bus.clone(), self.limit);
                self.tracker.spawn(async move {
                    let Job { request: r, answer } = job;
                    let replay = bus
                        .replay(ReplayRange::resume(r.subjects, r.from, r.until), limit)
                        .await;
                    drop(permit);
                    let _ = answer.send(replay);
                });
            }
        }
    }

    /// Answers the resumes that start inside the window, extending it to their end
    /// when that pays; returns the others.
    async fn answer_from_window(&mut self, waiting: Vec<Job>) -> Vec<Job> {
        let Some(window) = &mut self.window else {
            return waiting;
        };
        let (inside, mut rest): (Vec<Job>, Vec<Job>) = waiting.into_iter().partition(|j| j.request.from >= window.from);
        let until = inside.iter().map(|j| j.request.until).max().unwrap_or(0);
        if until > window.until {
            let ranges: u64 = inside.iter().map(|j| j.request.until - j.request.from + 1).sum();
            let tail = until - window.until;
            let fits = window.messages + tail <= MAX_WINDOW_MESSAGES;
            let extended = if fits && tail.saturating_mul(PASS_RATIO) <= ranges {
                let room = MAX_WINDOW_BYTES.saturating_sub(window.bytes);
                match self.bus.read_range(window.until + 1, until, room).await {
                    Ok(events) => {
                        window.extend(events, until);
                        true
                    }
                    Err(e) => {
                        tracing::info!(error = %e, "cannot extend the resume window; dropping it");
                        false
                    }
                }
            } else {
                false
            };
            if !extended {
                self.window = None;
                rest.extend(inside);
                return rest;
            }
        }
        self.answer(inside);
        rest
    }

    /// Reads a new window for the resumes that pay for it; returns the others.
    async fn answer_from_new_window(&mut self, waiting: Vec<Job>) -> Vec<Job> {
        let (together, mut rest) = split(waiting);
        let (Some(from), Some(until)) = (
            together.iter().map(|j| j.request.from).min(),
            together.iter().map(|j| j.request.until).max(),
        ) else {
            return rest;
        };
        match self.bus.read_range(from, until, MAX_WINDOW_BYTES).await {
            Ok(events) => {
                tracing::info!(
                    from,
                    until,
                    resumes = together.len(),
                    "reconnect storm: resumes read in one pass"
                );
                self.window = Some(Window::new(from, until, events));
                self.answer(together);
            }
            Err(e) => {
                tracing::info!(error = %e, resumes = together.len(), "one pass failed; replaying one by one");
                rest.extend(together);
            }
        }
        rest
    }

    fn answer(&self, jobs: Vec<Job>) {
        let Some(window) = &self.window else { return };
        self.from_window.fetch_add(jobs.len() as u64, Ordering::Relaxed);
        for job in jobs {
            let _ = job.answer.send(Ok(window.replay(&job.request, self.limit)));
        }
    }
}

/// Every stream message in `[from, until]`, by subject, in sequence order.
struct Window {
    from: u64,
    until: u64,
    by_subject: HashMap<String, Vec<BusEvent>>,
    messages: u64,
    bytes: usize,
}

impl Window {
    fn new(from: u64, until: u64, events: Vec<BusEvent>) -> Self {
        let mut window = Self {
            from,
            until: from.saturating_sub(1),
            by_subject: HashMap::new(),
            messages: 0,
            bytes: 0,
        };
        window.extend(events, until);
        window
    }

    /// Appends the events of `(self.until, until]`.
    fn extend(&mut self, events: Vec<BusEvent>, until: u64) {
        self.messages += until - self.until;
        self.until = until;
        for event in events {
            self.bytes += event.payload.len();
            match self.by_subject.get_mut(&event.subject) {
                Some(list) => list.push(event),
                None => {
                    self.by_subject.insert(event.subject.clone(), vec![event]);
                }
            }
        }
    }

    /// The answer to `request`, which starts inside the window and ends in it.
    fn replay(&self, request: &Request, limit: u32) -> Replay {
        let runs: Vec<&[BusEvent]> = request
            .subjects
            .iter()
            .filter_map(|s| self.by_subject.get(s))
            .map(|list| {
                let start = list.partition_point(|e| e.seq < request.from);
                let end = list.partition_point(|e| e.seq <= request.until);
                &list[start..end]
            })
            .collect();
        let pending: usize = runs.iter().map(|run| run.len()).sum();
        if pending > limit as usize {
            return Replay::TooMany {
                pending: pending as u64,
            };
        }
        let mut events: Vec<BusEvent> = runs.into_iter().flatten().cloned().collect();
        events.sort_by_key(|e| e.seq);
        Replay::Events(events)
    }
}

/// Moves the queued resumes into `waiting`, up to [`MAX_TAKEN`].
fn take_queued(jobs: &mut mpsc::Receiver<Job>, waiting: &mut Vec<Job>) {
    while waiting.len() < MAX_TAKEN {
        match jobs.try_recv() {
            Ok(job) => waiting.push(job),
            Err(_) => break,
        }
    }
}

/// Splits waiting resumes into those a pass should read (the newest positions, as
/// many as keep the pass cheaper than their replays) and the rest.
fn split(mut waiting: Vec<Job>) -> (Vec<Job>, Vec<Job>) {
    waiting.sort_by_key(|j| std::cmp::Reverse(j.request.from));
    let (mut ranges, mut until, mut take) = (0u64, 0u64, 0);
    for (i, job) in waiting.iter().enumerate() {
        let Request { from, until: end, .. } = job.request;
        ranges = ranges.saturating_add(end.saturating_sub(from) + 1);
        until = until.max(end);
        let pass = until.saturating_sub(from) + 1;
        if i > 0 && pass <= MAX_WINDOW_MESSAGES && ranges >= pass.saturating_mul(PASS_RATIO) {
            take = i + 1;
        }
    }
    let rest = waiting.split_off(take);
    (waiting, rest)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use tidings_bus::{EventKind, SubjectTarget};
    use tidings_domain::MemberId;

    use super::*;

    fn jobs(ranges: &[(u64, u64)]) -> Vec<Job> {
        ranges
            .iter()
            .map(|&(from, until)| Job {
                request: Request {
                    subjects: vec![format!("s{from}")],
                    from,
                    until,
                },
                answer: oneshot::channel().0,
            })
            .collect()
    }

    fn froms(jobs: &[Job]) -> Vec<u64> {
        jobs.iter().map(|j| j.request.from).collect()
    }

    fn event(seq: u64, subject: &str) -> BusEvent {
        BusEvent {
            seq,
            previous_on_subject: None,
            target: SubjectTarget::Member(MemberId::parse("a").unwrap()),
            subject: subject.into(),
            kind: EventKind::Notification,
            payload: Bytes::from_static(b"{}"),
            published_at: None,
            traceparent: None,
            unread: None,
        }
    }

    fn seqs(replay: &Replay) -> Vec<u64> {
        match replay {
            Replay::Events(events) => events.iter().map(|e| e.seq).collect(),
            Replay::TooMany { pending } => panic!("too many: {pending}"),
        }
    }

    #[test]
    fn a_few_resumes_replay_one_by_one() {
        let (together, rest) = split(jobs(&[(100, 1000), (200, 1000), (150, 1000)]));
        assert!(together.is_empty());
        assert_eq!(rest.len(), 3);
    }

    #[test]
    fn a_storm_is_read_in_one_pass_without_the_outliers() {
        // 100 clients that missed the last ~1,000 messages, and two far behind.
        let mut ranges: Vec<(u64, u64)> = (0..100).map(|i| (99_000 + i, 100_000)).collect();
        ranges.extend([(1, 100_000), (5_000, 100_000)]);
        let (together, rest) = split(jobs(&ranges));
        assert_eq!(together.len(), 100);
        assert!(together.iter().all(|j| j.request.from >= 99_000));
        assert_eq!(froms(&rest), [5_000, 1]);
    }

    #[test]
    fn a_pass_never_reads_more_than_a_window_holds() {
        let ranges: Vec<(u64, u64)> = (0..4000).map(|i| (i, 3_000_000)).collect();
        let (together, _) = split(jobs(&ranges));
        assert!(together.is_empty(), "3,000,000 messages is over the bound");
    }

    #[test]
    fn a_window_answers_each_resume_with_its_subjects_range_in_order() {
        let events = (10..=40)
            .map(|seq| event(seq, ["m", "n", "t"][(seq % 3) as usize]))
            .collect();
        let mut window = Window::new(10, 40, events);
        let request = |subjects: &[&str], from, until| Request {
            subjects: subjects.iter().map(|s| (*s).to_owned()).collect(),
            from,
            until,
        };
        let m_and_t: Vec<u64> = (20..=35).filter(|s| s % 3 != 1).collect();
        assert_eq!(seqs(&window.replay(&request(&["m", "t"], 20, 35), 100)), m_and_t);
        assert_eq!(seqs(&window.replay(&request(&["x"], 10, 40), 100)), Vec::<u64>::new());
        assert!(matches!(
            window.replay(&request(&["m", "t"], 20, 35), 10),
            Replay::TooMany { pending: 11 }
        ));
        window.extend(vec![event(43, "m")], 45);
        assert_eq!(seqs(&window.replay(&request(&["m"], 38, 45), 100)), [39, 43]);
        assert_eq!((window.messages, window.until), (36, 45));
    }
}
