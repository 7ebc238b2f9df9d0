//! A stream deleted and created again under a running edge: its sequences start over,
//! so every open stream's position means nothing in the new one, and live events
//! would be taken for duplicates of what the client has (silently dropped) or carry
//! ids of the old incarnation.
//!
//! Every STREAM.INFO the node makes checks the incarnation ([`tidings_bus::Bus::extent`]):
//! each connect's and resync's read, one every [`CHECK_EVERY`] (`app.rs` runs it), and
//! one the live task makes at once when live sequences go backwards. When it changes,
//! the live task ends every open stream with `reset` (`other_incarnation`) carrying the
//! id of the new incarnation's start, so each browser reloads its inbox and resumes
//! from there: what the new stream holds is replayed, nothing of the old one is taken
//! for it.

use std::time::Duration;

use tidings_domain::{EventId, StreamEpoch};

use crate::delivery::Closed;
use crate::hub::Hub;
use crate::sse;

/// How often the node reads the stream's extent when nothing else does: the longest a
/// re-created stream goes unnoticed when no live sequence reveals it.
pub(crate) const CHECK_EVERY: Duration = Duration::from_secs(2);

/// Ends every open stream with a `reset` to the start of incarnation `epoch`.
pub(crate) fn replaced(hub: &Hub, epoch: StreamEpoch, now: u32) -> usize {
    let frame = sse::reset(Some(&EventId::new(epoch, 0).to_string()), "other_incarnation");
    // First, so a stream registering from now on does not start at the old position.
    hub.void_position();
    let conns = hub.all();
    for conn in &conns {
        let mut delivery = conn.delivery();
        delivery.push_control(frame.clone(), None, now);
        delivery.end(Closed::StreamReplaced);
    }
    conns.len()
}
