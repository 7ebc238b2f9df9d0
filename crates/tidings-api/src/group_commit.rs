//! Group commit for unary Sends: the Sends that arrive while earlier ones are being
//! written share one transaction and one pipelined publish, as a SendStream batch does.
//!
//! A few writers take turns at one bounded queue. A writer that finds the queue empty
//! waits for the next Send and writes it alone, so a lone Send waits for nothing; when
//! every writer is busy, Sends queue up and the next free writer takes all of them (up
//! to SendStream's batch limits). Under load, transactions, commits (fsyncs) and round
//! trips per Send fall as batches grow, instead of Sends queueing for pool connections.

use std::sync::Arc;

use tidings_proto::v1 as pb;
use tidings_store::NewSend;
use tokio::sync::{Mutex, mpsc, oneshot};
use tonic::Status;
use tracing::Span;

use crate::{ApiError, Sender};

/// Writers, each with at most one transaction open. Enough to overlap one batch's
/// commit with the next one's publish; few enough that batches form under load
/// instead of each Send taking a pool connection of its own.
const WRITERS: usize = 4;
/// Sends waiting for a writer. A full queue makes callers wait (backpressure), it
/// never drops one.
const QUEUE: usize = 4096;

/// The handle the gRPC service sends through. Cheap to clone; the writers stop when
/// the last handle is dropped, after answering everything queued.
#[derive(Debug, Clone)]
pub(crate) struct GroupCommit {
    queue: mpsc::Sender<Job>,
}

struct Job {
    send: NewSend,
    caller: Span,
    reply: oneshot::Sender<Result<pb::SendResponse, Status>>,
}

impl GroupCommit {
    /// Starts the writers on the current runtime.
    pub(crate) fn start(sender: Sender) -> Self {
        let (queue, jobs) = mpsc::channel(QUEUE);
        let jobs = Arc::new(Mutex::new(jobs));
        for _ in 0..WRITERS {
            tokio::spawn(write(sender.clone(), jobs.clone()));
        }
        Self { queue }
    }

    /// Stores and publishes one Send, in whichever batch it joins.
    pub(crate) async fn send(&self, send: NewSend) -> Result<pb::SendResponse, Status> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            send,
            caller: Span::current(),
            reply,
        };
        let stopped = || Status::from(ApiError::Internal(anyhow::anyhow!("group commit writers stopped")));
        self.queue.send(job).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

/// One writer: take the next Send, plus whatever else is already queued, and write
/// them as one batch. The queue's lock is held only while taking, so the next writer
/// takes the Sends that arrive during this one's write.
async fn write(sender: Sender, jobs: Arc<Mutex<mpsc::Receiver<Job>>>) {
    loop {
        let batch = {
            let mut jobs = jobs.lock().await;
            let Some(first) = jobs.recv().await else { return };
            let mut rows = first.send.members.len();
            let mut batch = vec![first];
            while batch.len() < crate::service::MAX_BATCH_REQUESTS && rows < crate::service::MAX_BATCH_ROWS {
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
        write_batch(&sender, batch).await;
    }
}

/// Writes one batch and answers each Send. The store stops a batch at an idempotency
/// conflict (a SendStream must answer in order); unary Sends are independent, so the
/// ones it skipped are written again, in a batch of their own.
async fn write_batch(sender: &Sender, batch: Vec<Job>) {
    let mut sends = Vec::with_capacity(batch.len());
    let mut callers = Vec::with_capacity(batch.len());
    let mut replies = Vec::with_capacity(batch.len());
    for job in batch {
        sends.push(job.send);
        callers.push(job.caller);
        replies.push(job.reply);
    }
    while !sends.is_empty() {
        let results = match sender.send(&sends, &callers).await {
            Ok(results) => results,
            Err(e) => {
                // The transaction failed as a whole: every Send gets the same answer.
                let status = Status::from(e);
                for reply in replies {
                    let _ = reply.send(Err(status.clone()));
                }
                return;
            }
        };
        let mut again = (Vec::new(), Vec::new(), Vec::new());
        for (((send, caller), reply), result) in sends.into_iter().zip(callers).zip(replies).zip(results) {
            match result {
                Err(ApiError::Skipped) => {
                    again.0.push(send);
                    again.1.push(caller);
                    again.2.push(reply);
                }
                // The caller may have gone; what was written stays written.
                other => {
                    let _ = reply.send(other.map_err(Status::from));
                }
            }
        }
        (sends, callers, replies) = again;
    }
}
