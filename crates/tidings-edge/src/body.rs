//! The response body of an SSE stream: it hands hyper whatever the connection's queue
//! holds and sleeps (a stored waker, nothing else) while it is empty. Dropping it —
//! the client went away, or the stream ended and was sent — closes the connection's
//! books: the hub forgets it and the node's interest follows.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::Frame;

use crate::delivery::Closed;
use crate::hub::Conn;
use crate::queue::Path;
use crate::state::EdgeState;

pub(crate) struct SseBody {
    conn: Arc<Conn>,
    state: Arc<EdgeState>,
}

impl SseBody {
    /// Counts the stream as open; the matching close is the body's drop.
    pub(crate) fn new(conn: Arc<Conn>, state: Arc<EdgeState>) -> Self {
        state.metrics.opened.inc();
        state.metrics.connections.inc();
        Self { conn, state }
    }
}

impl http_body::Body for SseBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let now = self.state.clock.now();
        let metrics = &self.state.metrics;
        let mut wall_ns = None;
        let taken = self.conn.delivery().take(cx.waker(), now, |path, published_at| {
            let histogram = match path {
                Path::Live => &metrics.latency_live,
                Path::Replay => &metrics.latency_replay,
                Path::Control => return,
            };
            if published_at == 0 {
                return;
            }
            let now_ns = *wall_ns.get_or_insert_with(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
            });
            histogram.observe(now_ns.saturating_sub(published_at) as f64 / 1e9);
        });
        match taken {
            None => Poll::Pending,
            Some(None) => Poll::Ready(None),
            Some(Some(frame)) => Poll::Ready(Some(Ok(Frame::data(frame)))),
        }
    }
}

impl Drop for SseBody {
    fn drop(&mut self) {
        let reason = {
            let mut delivery = self.conn.delivery();
            delivery.end(Closed::ClientGone);
            delivery.ended().unwrap_or(Closed::ClientGone)
        };
        let released = self.state.hub.unregister(&self.conn);
        self.state.live.release(released);
        self.state.lifecycle.stream_closed.notify_one();
        let metrics = &self.state.metrics;
        metrics.connections.dec();
        metrics.closed.with_label_values(&[reason.label()]).inc();
        tracing::debug!(
            connection = self.conn.id,
            member = self.conn.who(),
            reason = reason.label(),
            duration_ms = self.conn.opened.elapsed().as_millis() as u64,
            "stream closed"
        );
    }
}
