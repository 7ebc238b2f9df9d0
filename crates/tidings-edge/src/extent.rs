//! The stream's extent, read once for every connection that asked while the previous
//! read was out.
//!
//! A connection needs the stream's last sequence *as read after* its live interest was
//! confirmed: everything up to it is replayed, everything after it arrives live. Each
//! read is a STREAM.INFO request through the server's JetStream API, and a reconnect
//! storm asks thousands of times a second. Callers therefore share reads: a caller
//! joins the next read that has not been sent yet (so it is sent after the caller
//! asked, as the hand-over needs); that read is sent as soon as the one in flight has
//! answered. At most one read is in flight and one waits, whatever the load.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use futures::FutureExt as _;
use futures::future::{BoxFuture, Shared};
use tidings_bus::{Bus, ReplayError, StreamExtent};

type Read = Shared<BoxFuture<'static, Result<StreamExtent, ReplayError>>>;

#[derive(Debug)]
pub(crate) struct Extents {
    bus: Bus,
    reads: Mutex<Reads>,
}

#[derive(Default)]
struct Reads {
    /// Not sent yet: callers join it.
    next: Option<Read>,
    /// Sent: too early for anyone asking now.
    in_flight: Option<Read>,
}

impl std::fmt::Debug for Reads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reads")
            .field("next", &self.next.is_some())
            .field("in_flight", &self.in_flight.is_some())
            .finish()
    }
}

impl Extents {
    pub(crate) fn new(bus: Bus) -> Arc<Self> {
        Arc::new(Self {
            bus,
            reads: Mutex::default(),
        })
    }

    /// The stream's extent, from a STREAM.INFO request sent after this call.
    pub(crate) async fn read(self: &Arc<Self>) -> Result<StreamExtent, ReplayError> {
        let read = {
            let mut reads = self.lock();
            match &reads.next {
                Some(next) => next.clone(),
                None => {
                    let previous = reads.in_flight.clone();
                    let this = self.clone();
                    let next = async move {
                        if let Some(previous) = previous {
                            let _ = previous.await;
                        }
                        {
                            // From here on, callers wait for the read after this one.
                            let mut reads = this.lock();
                            reads.in_flight = reads.next.take();
                        }
                        this.bus.extent().await
                    }
                    .boxed()
                    .shared();
                    reads.next = Some(next.clone());
                    next
                }
            }
        };
        read.await
    }

    fn lock(&self) -> MutexGuard<'_, Reads> {
        // Two `Option`s: nothing a panic could leave half-done.
        self.reads.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures::StreamExt as _;
    use tidings_bus::Outgoing;
    use tidings_testkit::{TestBus, init_test_log};

    use super::*;

    async fn publish(bus: &Bus, n: usize) -> u64 {
        let subject = bus
            .subjects()
            .member(&tidings_domain::MemberId::parse("m").expect("a member id"));
        let outgoing = (0..n)
            .map(|_| Outgoing {
                subject: subject.clone(),
                msg_id: None,
                event: None,
                traceparent: None,
                unread: None,
                payload: "{}".into(),
            })
            .collect();
        let stored = bus.publish_all(outgoing, Duration::from_secs(5)).await;
        stored.last().and_then(|s| s.as_ref().ok()).map_or(0, |s| s.seq)
    }

    #[tokio::test]
    async fn callers_asking_together_share_a_read_sent_after_they_asked() {
        init_test_log();
        let ns = TestBus::new().await;
        let bus = &ns.bus;
        // This stream's reads only: other tests share the server.
        let mut requests = bus
            .client()
            .subscribe(format!("$JS.API.STREAM.INFO.{}", bus.stream_name()))
            .await
            .expect("subscribe");
        bus.client().flush().await.expect("flush");
        let extents = Extents::new(bus.clone());

        let last = publish(bus, 3).await;
        let answers = futures::future::join_all((0..200).map(|_| extents.read())).await;
        assert!(answers.iter().all(|a| a.as_ref().is_ok_and(|e| e.last_seq == last)));
        // The first caller's read, and one for everyone who asked while it was out.
        bus.client().flush().await.expect("flush");
        let mut sent = 0;
        while let Some(Some(_)) = requests.next().now_or_never() {
            sent += 1;
        }
        assert!((1..=2).contains(&sent), "{sent} reads for 200 callers");

        // A caller never gets a read sent before it asked.
        let last = publish(bus, 2).await;
        assert_eq!(extents.read().await.expect("extent").last_seq, last);
    }
}
