//! What `broadcast`'s subscribers received, in memory that does not grow with the run:
//! each subscriber's reader checks its own stream as it goes ([`Order`]: message `i` must
//! be the `i`-th received) and adds each delivery's latencies to histograms shared by
//! all readers ([`Deliveries`]), kept per quarter of the run — a message's quarter is
//! its place in the schedule — so a latency that grows as the run goes on shows.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use crate::histogram::Histogram;

/// Locks the readers share: readers of subscriber `i` use shard `i % SHARDS`, so the
/// few threads of the runtime seldom wait on one another, and the histograms cost
/// `SHARDS` times theirs (a few MiB), whatever the number of subscribers.
const SHARDS: usize = 16;

/// One subscriber's check: every message, once, in publishing order.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Order {
    received: u64,
    in_order: bool,
}

impl Order {
    pub(crate) fn new() -> Self {
        Self {
            received: 0,
            in_order: true,
        }
    }

    /// Notes the next message received: its number, if it could be read.
    pub(crate) fn receive(&mut self, n: Option<u64>) {
        self.in_order &= n == Some(self.received);
        self.received += 1;
    }

    pub(crate) fn received(&self) -> u64 {
        self.received
    }

    /// Whether exactly messages 0 .. `messages` came, in that order.
    pub(crate) fn complete(&self, messages: u64) -> bool {
        self.in_order && self.received == messages
    }
}

/// Latency histograms of the whole run's deliveries.
#[derive(Debug)]
pub(crate) struct Deliveries {
    messages: u64,
    shards: Box<[Mutex<Quarters>]>,
}

/// Latencies by quarter of the run, at the subscriber's socket and to its read, and
/// the first and the last arrival at a socket (Unix nanoseconds).
#[derive(Debug, Default, Clone)]
pub(crate) struct Quarters {
    pub(crate) at_socket: [Histogram; 4],
    pub(crate) to_read: [Histogram; 4],
    pub(crate) arrivals: Option<(u128, u128)>,
}

impl Quarters {
    /// All four quarters of `of` together.
    pub(crate) fn whole(of: &[Histogram; 4]) -> Histogram {
        let mut whole = Histogram::default();
        for q in of {
            whole.merge(q);
        }
        whole
    }

    fn merge(&mut self, other: &Self) {
        for (mine, theirs) in self.at_socket.iter_mut().zip(&other.at_socket) {
            mine.merge(theirs);
        }
        for (mine, theirs) in self.to_read.iter_mut().zip(&other.to_read) {
            mine.merge(theirs);
        }
        if let Some((first, last)) = other.arrivals {
            self.arrive(first);
            self.arrive(last);
        }
    }

    fn arrive(&mut self, at: u128) {
        let (first, last) = self.arrivals.get_or_insert((at, at));
        *first = (*first).min(at);
        *last = (*last).max(at);
    }
}

impl Deliveries {
    /// For a run of `messages` messages.
    pub(crate) fn new(messages: u64) -> Self {
        Self {
            messages,
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }

    /// One delivery of message `n` to `subscriber`, which arrived at its socket at
    /// `arrived_at` (Unix nanoseconds).
    pub(crate) fn record(&self, subscriber: usize, n: u64, at_socket: Duration, to_read: Duration, arrived_at: u128) {
        let q = quarter(n, self.messages);
        let mut shard = self.shards[subscriber % SHARDS]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        shard.at_socket[q].record(at_socket);
        shard.to_read[q].record(to_read);
        shard.arrive(arrived_at);
    }

    /// Every shard's together.
    pub(crate) fn total(&self) -> Quarters {
        let mut total = Quarters::default();
        for shard in &self.shards {
            total.merge(&shard.lock().unwrap_or_else(PoisonError::into_inner));
        }
        total
    }
}

/// The quarter (0..4) of the run message `n` of `messages` is in: the first
/// ⌈messages/4⌉ or so are quarter 0; anything past the end counts in the last.
fn quarter(n: u64, messages: u64) -> usize {
    let q = u128::from(n) * 4 / u128::from(messages.max(1));
    q.min(3) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_wants_every_message_once_in_order() {
        let check = |received: &[Option<u64>], messages| {
            let mut order = Order::new();
            for n in received {
                order.receive(*n);
            }
            order.complete(messages)
        };
        assert!(check(&[Some(0), Some(1), Some(2)], 3));
        assert!(!check(&[Some(0), Some(2), Some(1)], 3), "reordered");
        assert!(!check(&[Some(0), Some(1)], 3), "one missing at the end");
        assert!(!check(&[Some(0), Some(2)], 3), "one missing in the middle");
        assert!(!check(&[Some(0), Some(0), Some(1)], 3), "duplicated");
        assert!(!check(&[Some(0), None, Some(2)], 3), "unreadable");
        assert!(!check(&[Some(0), Some(1), Some(2), Some(3)], 3), "one too many");
        assert!(check(&[], 0));
    }

    #[test]
    fn quarters_split_the_schedule() {
        let quarters: Vec<usize> = (0..8).map(|n| quarter(n, 8)).collect();
        assert_eq!(quarters, [0, 0, 1, 1, 2, 2, 3, 3]);
        let quarters: Vec<usize> = (0..10).map(|n| quarter(n, 10)).collect();
        assert_eq!(quarters, [0, 0, 0, 1, 1, 2, 2, 2, 3, 3]);
        assert_eq!(quarter(0, 1), 0);
        assert_eq!(quarter(5, 3), 3, "past the end");
        assert_eq!(quarter(u64::MAX, u64::MAX), 3);
    }

    #[test]
    fn deliveries_add_up_over_shards_by_quarter() {
        let deliveries = Deliveries::new(4);
        let ms = Duration::from_millis;
        for subscriber in 0..100 {
            for n in 0..4 {
                let t = ms(10 * (n + 1));
                deliveries.record(
                    subscriber,
                    n,
                    t,
                    t + ms(1),
                    1_000 + u128::from(n) * 10 + subscriber as u128,
                );
            }
        }
        let total = deliveries.total();
        for q in 0..4 {
            assert_eq!(total.at_socket[q].len(), 100);
            let p = total.at_socket[q].percentiles().expect("recorded");
            assert_eq!((p.p50, p.max), (ms(10 * (q as u64 + 1)), ms(10 * (q as u64 + 1))));
        }
        let whole = Quarters::whole(&total.to_read);
        assert_eq!(whole.len(), 400);
        assert_eq!(whole.percentiles().expect("recorded").max, ms(41));
        assert_eq!(total.arrivals, Some((1_000, 1_000 + 30 + 99)));
        assert_eq!(Deliveries::new(1).total().arrivals, None);
    }
}
