//! The record of a run: every acknowledged Send as the producer saw it, and every event
//! each client received, in the order it received them. The checker reads nothing else
//! (plus the rows Postgres holds), so what it judges is what a producer and a browser
//! could observe.

use std::sync::{Arc, Mutex};
use std::time::Instant;

/// One member's delivery of an acknowledged Send.
#[derive(Debug, Clone)]
pub(crate) struct Ack {
    /// The idempotency key; also the notification's `content` prefix.
    pub(crate) key: String,
    pub(crate) member: String,
    pub(crate) notification_id: String,
    /// Empty when the api left the publish to its relay.
    pub(crate) event_id: String,
    /// When the producer first called Send with this key.
    pub(crate) started: Instant,
    pub(crate) acked: Instant,
    /// Calls it took (1 = no retry).
    pub(crate) attempts: u32,
}

/// What a client saw, in order.
#[derive(Debug, Clone)]
pub(crate) enum Seen {
    /// A stream opened on `node`; `id` is its start position.
    Connected {
        id: String,
        node: String,
        resumed: bool,
    },
    Notification {
        id: String,
        notification_id: String,
        content: String,
    },
    Reset {
        id: Option<String>,
        reason: String,
    },
    /// The stream ended (`why`: closed by the server, dead, or left on purpose).
    Closed {
        why: &'static str,
    },
    /// A connection attempt failed (`why`: refused with a status, or unreachable).
    Failed {
        why: String,
    },
}

/// One client: its member and what it saw, with when.
#[derive(Debug, Clone)]
pub(crate) struct ClientLog {
    pub(crate) member: String,
    pub(crate) seen: Vec<(Instant, Seen)>,
}

/// Everything recorded in a run.
#[derive(Debug, Default)]
pub(crate) struct Book {
    pub(crate) acks: Vec<Ack>,
    /// Sends that never got an OK: `(key, last error)`.
    pub(crate) unacked: Vec<(String, String)>,
    /// Calls that failed with a retryable code and were retried with the same key.
    pub(crate) retries: u64,
    pub(crate) clients: Vec<ClientLog>,
    /// The scenario's own timeline: `(when, what)`.
    pub(crate) marks: Vec<(Instant, String)>,
}

/// The shared, append-only record.
#[derive(Debug, Clone, Default)]
pub(crate) struct Recorder(Arc<Mutex<Book>>);

impl Recorder {
    pub(crate) fn ack(&self, ack: Ack) {
        self.book().acks.push(ack);
    }

    pub(crate) fn unacked(&self, key: String, error: String) {
        self.book().unacked.push((key, error));
    }

    pub(crate) fn retried(&self) {
        self.book().retries += 1;
    }

    /// Registers a client of `member`; returns its index.
    pub(crate) fn client(&self, member: &str) -> usize {
        let mut book = self.book();
        book.clients.push(ClientLog {
            member: member.to_owned(),
            seen: Vec::new(),
        });
        book.clients.len() - 1
    }

    pub(crate) fn saw(&self, client: usize, seen: Seen) {
        self.book().clients[client].seen.push((Instant::now(), seen));
    }

    /// Notes a step of the scenario (a fault injected or healed) on the timeline.
    pub(crate) fn mark(&self, what: impl Into<String>) -> Instant {
        let now = Instant::now();
        let what = what.into();
        println!("chaos: {what}");
        self.book().marks.push((now, what));
        now
    }

    /// Acknowledged Sends whose ack came within `from..to`.
    pub(crate) fn acked_between(&self, from: Instant, to: Instant) -> usize {
        self.book()
            .acks
            .iter()
            .filter(|a| a.acked >= from && a.acked < to)
            .count()
    }

    /// Clients that have seen a `connected` event.
    pub(crate) fn connected_clients(&self) -> usize {
        self.book()
            .clients
            .iter()
            .filter(|c| c.seen.iter().any(|(_, s)| matches!(s, Seen::Connected { .. })))
            .count()
    }

    /// Clients whose latest stream at `at` was opened on `node`: those a fault there
    /// hits.
    pub(crate) fn clients_on(&self, node: &str, at: Instant) -> usize {
        self.book()
            .clients
            .iter()
            .filter(|c| {
                c.seen
                    .iter()
                    .rev()
                    .filter(|(when, _)| *when <= at)
                    .find_map(|(_, s)| match s {
                        Seen::Connected { node, .. } => Some(node.as_str()),
                        _ => None,
                    })
                    == Some(node)
            })
            .count()
    }

    /// A copy of the record so far.
    pub(crate) fn snapshot(&self) -> Book {
        let book = self.book();
        Book {
            acks: book.acks.clone(),
            unacked: book.unacked.clone(),
            retries: book.retries,
            clients: book.clients.clone(),
            marks: book.marks.clone(),
        }
    }

    fn book(&self) -> std::sync::MutexGuard<'_, Book> {
        self.0.lock().expect("invariant: no recorder user panics holding it")
    }
}
