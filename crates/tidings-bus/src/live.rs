//! The live side for edges: core subscriptions to the stream's re-published subjects,
//! decoded as they arrive, and the two round trips that say when the server has taken
//! a subscription.
//!
//! `flush` writes our buffered SUBs to the socket. That is enough before reading the
//! stream: the read goes over the same NATS connection, and the server handles one
//! connection's operations in order, so the SUBs take effect before the read.
//! Dropping an older subscription in favour of a newer one needs more: `barrier` waits
//! until the server has processed everything we sent and everything it routed to us
//! before that has reached our subscriptions.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::{Stream, StreamExt as _};
use tidings_domain::Topic;

use crate::{Bus, BusError, BusEvent, Subjects};

/// How long a new subscription may take to reach every server of a NATS cluster: the
/// server this client is connected to has it at once ([`Bus::flush`]), but the stream
/// leader that re-publishes may sit on another server, which learns of the interest
/// over a route — possibly after it answered a STREAM.INFO sent next (routes are
/// pooled, so the interest and the request may travel apart). A consumer that took new
/// interest reads the stream once more after this long.
pub const INTEREST_PROPAGATION: std::time::Duration = std::time::Duration::from_millis(250);

/// What a live subscription receives.
#[derive(Debug, Clone, Copy)]
pub enum LiveTarget<'a> {
    /// One member partition (`<prefix>.live.member.<p>.*`).
    Partition(u16),
    /// Every member partition (`<prefix>.live.member.*.*`).
    AllMembers,
    /// One topic.
    Topic(&'a Topic),
}

/// One live subscription: each re-published message, decoded once
/// ([`BusEvent::from_live`]); anything that is not one of ours (a foreign subject,
/// missing headers, a delete marker) is skipped. Dropping it unsubscribes. The stream
/// ends only when the NATS client shuts down (a reconnect resubscribes by itself).
pub struct LiveSubscription {
    subscriber: async_nats::Subscriber,
    subjects: Arc<Subjects>,
}

impl std::fmt::Debug for LiveSubscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveSubscription").finish_non_exhaustive()
    }
}

impl Stream for LiveSubscription {
    type Item = BusEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<BusEvent>> {
        loop {
            let Some(message) = futures::ready!(self.subscriber.poll_next_unpin(cx)) else {
                return Poll::Ready(None);
            };
            let subjects = &self.subjects;
            if let Some(event) =
                BusEvent::from_live(subjects, &message.subject, message.headers.as_ref(), message.payload)
            {
                return Poll::Ready(Some(event));
            }
        }
    }
}

impl Bus {
    /// Subscribes to `target`'s live messages. The SUB is buffered: [`Bus::flush`] or
    /// [`Bus::barrier`] makes it take effect.
    pub async fn subscribe_live(&self, target: LiveTarget<'_>) -> Result<LiveSubscription, BusError> {
        let subjects = self.subjects();
        let subject = match target {
            LiveTarget::Partition(p) => subjects.live_partition(p),
            LiveTarget::AllMembers => subjects.live_members(),
            LiveTarget::Topic(t) => subjects.live_topic(t),
        };
        let subscriber = self
            .client
            .subscribe(subject)
            .await
            .map_err(|e| BusError::failed("subscribe", e))?;
        Ok(LiveSubscription {
            subscriber,
            subjects: self.subjects_shared(),
        })
    }

    /// Writes our buffered operations (new SUBs) to the server, within the request
    /// timeout: what this client sends next is handled after them.
    pub async fn flush(&self) -> Result<(), BusError> {
        tokio::time::timeout(self.request_timeout(), self.client.flush())
            .await
            .map_err(|_| BusError::TimedOut("take the subscription"))?
            .map_err(|e| BusError::failed("flush", e))
    }

    /// Waits until the server has processed everything this client sent before, and
    /// everything it routed to this client before that has reached its subscriptions.
    /// async-nats' `flush` only writes our buffer to the socket, so this is a request
    /// nobody answers: the server replies "no responders" once it has processed
    /// everything we sent before it, and that reply follows every message it routed
    /// to us earlier (one connection, in order).
    pub async fn barrier(&self) -> Result<(), BusError> {
        use async_nats::RequestErrorKind;
        let request = self.client.request(self.client.new_inbox(), bytes::Bytes::new());
        match tokio::time::timeout(self.request_timeout(), request).await {
            Err(_) => Err(BusError::TimedOut("confirm the subscription")),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) if e.kind() == RequestErrorKind::NoResponders => Ok(()),
            Ok(Err(e)) => Err(BusError::failed("confirm the subscription", e)),
        }
    }
}
