//! Reading a whole range of the stream in one pass: what a reconnect storm needs.
//!
//! A replay of one member reads its subject with `next_by_subj`, and the server finds
//! each next message by walking the stream's blocks message by message from the
//! start position: the cost of a replay grows with everything stored since the
//! client's position, not with what it missed. Ten thousand clients that each missed
//! ten notifications among a hundred thousand make the server walk a hundred thousand
//! messages ten thousand times (measured: nats-server's `firstMatching` was most of its
//! CPU during such a storm). One pass over the range, by batch Direct Get without a
//! subject filter, reads each message once; the caller answers many replays from it.
//!
//! Completeness is proven as for one replay (`direct.rs`): a page from a server that
//! holds sequence `s` holds everything up to `s`, and the pass ends only once it has a
//! message at or past the end, or a server that has nothing more and covered it.

use crate::direct::{DirectError, Fetched, PAGE, Session, Sink};
use crate::replay::{ReplayError, err};
use crate::{Bus, BusEvent, Subjects};

impl Bus {
    /// Every stored message in `[from, until]` (subject delete markers skipped), in
    /// sequence order: all of them, on every subject. Fails rather than return more
    /// than `max_bytes` of payload, and without batch Direct Get (nats-server < 2.11)
    /// or when the answering server cannot prove the range complete.
    pub async fn read_range(&self, from: u64, until: u64, max_bytes: usize) -> Result<Vec<BusEvent>, ReplayError> {
        let from = from.max(1);
        if until < from {
            return Ok(Vec::new());
        }
        if !self.direct_get() {
            return Err(err(DirectError::Unsupported));
        }
        let mut range = Range {
            until,
            max_bytes,
            bytes: 0,
            read: 0,
            events: Vec::new(),
        };
        let mut session = Session::open(self).await.map_err(err)?;
        let over = session.read(None, from, until, &mut range).await.map_err(err)?;
        self.replays.count_scan(range.read);
        if over.is_some() {
            return Err(ReplayError::new(format!(
                "more than {max_bytes} bytes between {from} and {until}"
            )));
        }
        Ok(range.events)
    }
}

/// The events of a pass, bounded by their payload size.
struct Range {
    until: u64,
    max_bytes: usize,
    bytes: usize,
    /// Messages read, markers and messages past the end included.
    read: u64,
    events: Vec<BusEvent>,
}

impl Sink for Range {
    fn take(&mut self, subjects: &Subjects, m: Fetched) -> bool {
        self.read += 1;
        if m.seq > self.until {
            return true;
        }
        self.bytes += m.payload.len();
        self.events
            .extend(BusEvent::from_stored(subjects, m.seq, m.subject, &m.headers, m.payload));
        self.bytes <= self.max_bytes
    }

    fn room(&self) -> u64 {
        PAGE
    }

    fn counted(&self) -> u64 {
        self.events.len() as u64
    }
}
