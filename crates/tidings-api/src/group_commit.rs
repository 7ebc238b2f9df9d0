//! Group commit for unary Sends: the Sends that arrive while earlier ones are being
//! written share one transaction and one pipelined publish, as a SendStream batch does.
//!
//! A few writers take turns at one bounded queue. A writer that finds the queue empty
//! waits for the next Send and writes it alone, so a lone Send waits for nothing; when
//! every writer is busy, Sends queue up and the next free writer takes all of them (up
//! to the write path's batch limits, as for a SendStream batch). Under load,
//! transactions, commits (fsyncs) and round trips per Send fall as batches grow,
//! instead of Sends queueing for pool connections.
//!
//! A writer stores and publishes; once JetStream has acknowledged, the notifications
//! are on their way to the edges, and the writer hands the batch to one recorder and
//! takes the next. The recorder records the sequences of every batch handed to it
//! meanwhile in one statement, then answers their Sends (an answer still means the
//! sequence is recorded, as for SendStream; the record's commit does not wait for the
//! WAL flush, see `tidings_store`'s `record_published`).
//!
//! Lifecycle: the writers and the recorder run on the role's task tracker. They stop
//! when the last [`GroupCommit`] handle is dropped (the gRPC service goes away at
//! shutdown), after answering everything queued, so no accepted Send is left without
//! an answer; they need no cancellation of their own.

use std::sync::Arc;
use std::time::Instant;

use tidings_domain::StreamEpoch;
use tidings_store::{Held, NewSend, NotificationKey, SendOutcome};
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio_util::task::TaskTracker;
use tracing::Span;

use crate::ApiError;
use crate::send::{MAX_BATCH_REQUESTS, MAX_BATCH_ROWS, Receipt, Written};
use crate::state::ApiState;

/// Writers, each with at most one transaction open on a connection of its own
/// (`tidings_store::Held`, as the recorder's). Enough to overlap one batch's commit
/// with the next one's publish; few enough that batches form under load instead of
/// each Send taking a pool connection of its own.
const WRITERS: usize = 4;
/// Sends waiting for a writer. A full queue makes callers wait (backpressure), it
/// never drops one.
const QUEUE: usize = 4096;
/// Published batches waiting for the recorder; when it falls behind, writers wait.
const RECORDING: usize = 64;

/// The handle the gRPC service sends through. Cheap to clone; the writers stop when
/// the last handle is dropped, after answering everything queued.
#[derive(Debug, Clone)]
pub(crate) struct GroupCommit {
    queue: mpsc::Sender<Job>,
}

struct Job {
    send: NewSend,
    caller: Span,
    reply: Reply,
    queued_at: Instant,
}

type Reply = oneshot::Sender<Result<Receipt, ApiError>>;

/// A published batch and who waits for it: `replies[i]` answers `written.outcomes[i]`
/// (`None` where the Send is being written again).
struct ToRecord {
    written: Written,
    replies: Vec<Option<Reply>>,
}

impl GroupCommit {
    /// Starts the writers and the recorder on `tracker`.
    pub(crate) fn start(state: ApiState, tracker: &TaskTracker) -> Self {
        let (queue, jobs) = mpsc::channel(QUEUE);
        let jobs = Arc::new(Mutex::new(jobs));
        let (recorder, published) = mpsc::channel(RECORDING);
        for _ in 0..WRITERS {
            tracker.spawn(write(state.clone(), jobs.clone(), recorder.clone()));
        }
        tracker.spawn(record(state, published));
        Self { queue }
    }

    /// Stores and publishes one Send, in whichever batch it joins.
    pub(crate) async fn send(&self, send: NewSend) -> Result<Receipt, ApiError> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            send,
            caller: Span::current(),
            reply,
            queued_at: Instant::now(),
        };
        let stopped = || ApiError::Internal(anyhow::anyhow!("group commit writers stopped"));
        self.queue.send(job).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

/// One writer: take the next Send, plus whatever else is already queued, and write
/// them as one batch. The queue's lock is held only while taking, so the next writer
/// takes the Sends that arrive during this one's write.
async fn write(state: ApiState, jobs: Arc<Mutex<mpsc::Receiver<Job>>>, recorder: mpsc::Sender<ToRecord>) {
    let mut db = state.store.held();
    loop {
        let batch = {
            // Idle for a while: the connection goes back to the pool until work comes.
            let mut jobs = db.wait_for(jobs.lock()).await;
            let first = db.wait_for(jobs.recv()).await;
            let Some(first) = first else { return };
            let mut rows = first.send.members.len();
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH_REQUESTS && rows < MAX_BATCH_ROWS {
                match jobs.try_recv() {
                    Ok(job) => {
                        rows += job.send.members.len();
                        batch.push(job);
                    }
                    Err(_) => break,
                }
            }
            batch
        };
        for job in &batch {
            state
                .metrics
                .stage_queued
                .observe(job.queued_at.elapsed().as_secs_f64());
        }
        write_batch(&state, &mut db, batch, &recorder).await;
    }
}

/// Writes one batch and passes it to the recorder. The store stops a batch at an
/// idempotency conflict (a SendStream must answer in order); unary Sends are
/// independent, so the ones it skipped are written again, in a batch of their own.
async fn write_batch(state: &ApiState, db: &mut Held, batch: Vec<Job>, recorder: &mpsc::Sender<ToRecord>) {
    let mut sends = Vec::with_capacity(batch.len());
    let mut callers = Vec::with_capacity(batch.len());
    let mut replies = Vec::with_capacity(batch.len());
    for job in batch {
        sends.push(job.send);
        callers.push(job.caller);
        replies.push(job.reply);
    }
    while !sends.is_empty() {
        let written = match state.write(db, &sends, &callers).await {
            Ok(written) => written,
            // A statement Postgres refused may have failed for one Send's data: each is
            // written again alone, so only that Send fails, never the producers whose
            // Sends happened to share its batch. (An outage fails them all alike.)
            Err(e) if sends.len() > 1 && !e.is_outage() => {
                tracing::warn!(error = ?e, sends = sends.len(), "a batch failed; writing its Sends one by one");
                for ((send, caller), reply) in sends.into_iter().zip(callers).zip(replies) {
                    let job = Job {
                        send,
                        caller,
                        reply,
                        queued_at: Instant::now(),
                    };
                    Box::pin(write_batch(state, db, vec![job], recorder)).await;
                }
                return;
            }
            Err(e) => {
                // The transaction failed as a whole: every Send gets the same answer,
                // and the failure is logged once.
                let e = e.shared();
                for reply in replies {
                    let _ = reply.send(Err(ApiError::Shared(e.clone())));
                }
                return;
            }
        };
        let mut again = (Vec::new(), Vec::new(), Vec::new());
        let mut answers = Vec::with_capacity(sends.len());
        for (((send, caller), reply), outcome) in sends.into_iter().zip(callers).zip(replies).zip(&written.outcomes) {
            if matches!(outcome, SendOutcome::Skipped) {
                again.0.push(send);
                again.1.push(caller);
                again.2.push(reply);
                answers.push(None);
            } else {
                answers.push(Some(reply));
            }
        }
        // Fails only when the recorder is gone, which it is not while writers run.
        let _ = recorder
            .send(ToRecord {
                written,
                replies: answers,
            })
            .await;
        (sends, callers, replies) = again;
    }
}

/// The recorder: records every published batch waiting, in one statement per stream
/// epoch (normally one), then answers their Sends.
async fn record(state: ApiState, mut published: mpsc::Receiver<ToRecord>) {
    let mut db = state.store.held();
    loop {
        let first = db.wait_for(published.recv()).await;
        let Some(first) = first else { return };
        let mut batches = vec![first];
        while batches.len() < RECORDING {
            match published.try_recv() {
                Ok(batch) => batches.push(batch),
                Err(_) => break,
            }
        }
        let mut by_epoch: Vec<(StreamEpoch, Vec<(NotificationKey, u64)>)> = Vec::new();
        for batch in &batches {
            let epoch = batch.written.epoch;
            match by_epoch.iter_mut().find(|(e, _)| *e == epoch) {
                Some((_, rows)) => rows.extend_from_slice(&batch.written.published),
                None => by_epoch.push((epoch, batch.written.published.clone())),
            }
        }
        for (epoch, rows) in by_epoch {
            state.record(&mut db, &rows, epoch).await;
        }
        for batch in batches {
            for (reply, result) in batch.replies.into_iter().zip(batch.written.receipts()) {
                // The caller may have gone; what was written stays written.
                if let Some(reply) = reply {
                    let _ = reply.send(result);
                }
            }
        }
    }
}
