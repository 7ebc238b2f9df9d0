//! SendStream's front-end to the write path: one worker per call reads requests as they
//! come, commits each group that has arrived by the time the previous group is done in
//! one transaction (up to the write path's batch limits), and answers in request order.
//! The other front-end, for unary Sends, is `group_commit.rs`.
//!
//! - A bad request ends the call after the answers to everything before it; nothing
//!   after it is stored.
//! - Answers wait in a buffer of [`RESPONSE_BUFFER`]; a client that stops reading
//!   stalls only its own call, and one that goes away ends it.
//! - Workers run on the role's task tracker. At shutdown a worker finishes the batch in
//!   hand, answers it, then ends the call with UNAVAILABLE instead of reading on: every
//!   answered request is stored, and the client knows to send the rest again.
//!
//! It sees no protobuf: the service hands it validated [`NewSend`]s and turns its
//! [`Receipt`]s into responses. `E` is the transport's error, so a broken inbound
//! stream's error reaches the client as it came.

use futures::{FutureExt as _, Stream, StreamExt as _};
use tidings_store::{HELD_IDLE, Held, NewSend};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

use crate::ApiError;
use crate::send::{MAX_BATCH_REQUESTS, MAX_BATCH_ROWS, Receipt};
use crate::state::ApiState;

/// Answers buffered per call.
const RESPONSE_BUFFER: usize = 1024;

/// Starts SendStream workers. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct SendStreams {
    state: ApiState,
    tracker: TaskTracker,
    shutdown: CancellationToken,
}

impl SendStreams {
    pub(crate) fn new(state: ApiState, tracker: TaskTracker, shutdown: CancellationToken) -> Self {
        Self {
            state,
            tracker,
            shutdown,
        }
    }

    /// Starts one call's worker in the current span; returns its answers, one per
    /// request, in order.
    pub(crate) fn open<S, E>(&self, inbound: S) -> ReceiverStream<Result<Receipt, E>>
    where
        S: Stream<Item = Result<NewSend, E>> + Unpin + Send + 'static,
        E: From<ApiError> + Send + 'static,
    {
        let (answers, rx) = mpsc::channel(RESPONSE_BUFFER);
        let worker = run(self.state.clone(), inbound, answers, self.shutdown.clone());
        self.tracker.spawn(worker.in_current_span());
        ReceiverStream::new(rx)
    }
}

async fn run<S, E>(
    state: ApiState,
    mut inbound: S,
    answers: mpsc::Sender<Result<Receipt, E>>,
    shutdown: CancellationToken,
) where
    S: Stream<Item = Result<NewSend, E>> + Unpin,
    E: From<ApiError>,
{
    let mut db = state.store.held();
    loop {
        let first = tokio::select! {
            biased;
            () = answers.closed() => return,
            () = shutdown.cancelled() => {
                let _ = answers.send(Err(ApiError::ShuttingDown.into())).await;
                return;
            }
            next = inbound.next() => next,
            // A call idle for a while holds no connection: a producer may keep a
            // stream open and quiet for hours.
            () = tokio::time::sleep(HELD_IDLE), if db.is_holding() => {
                db.release();
                continue;
            }
        };
        let Some(first) = first else { return };
        let (sends, stop) = arrived(first, &mut inbound);
        if !sends.is_empty() && !answer(&state, &mut db, &sends, &answers).await {
            return;
        }
        if let Some(e) = stop {
            let _ = answers.send(Err(e)).await;
            return;
        }
    }
}

/// `first` and whatever else has already arrived, without waiting, up to the batch
/// limits; stops at a bad request and returns its error.
fn arrived<S, E>(first: Result<NewSend, E>, inbound: &mut S) -> (Vec<NewSend>, Option<E>)
where
    S: Stream<Item = Result<NewSend, E>> + Unpin,
{
    let mut sends = Vec::new();
    let mut rows = 0usize;
    let mut next = Some(first);
    while let Some(item) = next {
        match item {
            Ok(send) => {
                rows += send.members.len();
                sends.push(send);
            }
            Err(e) => return (sends, Some(e)),
        }
        if sends.len() >= MAX_BATCH_REQUESTS || rows >= MAX_BATCH_ROWS {
            break;
        }
        next = inbound.next().now_or_never().flatten();
    }
    (sends, None)
}

/// Writes one batch and sends its answers in order; `false` when the call is over (a
/// failed request, a failed batch, or a client gone).
async fn answer<E: From<ApiError>>(
    state: &ApiState,
    db: &mut Held,
    sends: &[NewSend],
    answers: &mpsc::Sender<Result<Receipt, E>>,
) -> bool {
    let callers = vec![tracing::Span::current(); sends.len()];
    match state.send(db, sends, &callers).await {
        Ok(results) => {
            for result in results {
                let failed = result.is_err();
                if answers.send(result.map_err(E::from)).await.is_err() || failed {
                    return false;
                }
            }
            true
        }
        Err(e) => {
            let _ = answers.send(Err(e.into())).await;
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use futures::stream;
    use tidings_domain::{MemberId, NotificationType};

    use super::*;

    fn send(members: usize) -> NewSend {
        NewSend {
            producer: "p".into(),
            idempotency_key: None,
            kind: NotificationType::parse("t").unwrap(),
            content: String::new(),
            data_json: None,
            group_id: None,
            members: (0..members)
                .map(|i| MemberId::parse(&format!("m{i}")).unwrap())
                .collect(),
            traceparent: None,
            created_at: Utc::now(),
        }
    }

    #[test]
    fn a_batch_is_what_has_arrived_up_to_the_first_bad_request() {
        let mut inbound = stream::iter([Ok(send(1)), Err("bad"), Ok(send(1))]);
        let (sends, stop) = arrived(Ok(send(1)), &mut inbound);
        assert_eq!((sends.len(), stop), (2, Some("bad")));

        // Nothing waits for requests that have not arrived.
        let mut pending = stream::pending::<Result<NewSend, &str>>();
        let (sends, stop) = arrived(Ok(send(1)), &mut pending);
        assert_eq!((sends.len(), stop), (1, None));
    }

    #[test]
    fn a_batch_stops_at_the_write_paths_limits() {
        // The first request of each batch is handed in; the rest have arrived.
        let mut many = stream::iter((0..MAX_BATCH_REQUESTS + 5).map(|_| Ok::<_, ()>(send(1))));
        let (sends, _) = arrived(Ok(send(1)), &mut many);
        assert_eq!(sends.len(), MAX_BATCH_REQUESTS);
        let (sends, _) = arrived(Ok(send(1)), &mut many);
        assert_eq!(sends.len(), 1 + 6, "the rest is the next batch");

        let mut wide = stream::iter((0..4).map(|_| Ok::<_, ()>(send(MAX_BATCH_ROWS / 2))));
        let (sends, _) = arrived(Ok(send(MAX_BATCH_ROWS / 2)), &mut wide);
        assert_eq!(sends.len(), 2);
    }
}
