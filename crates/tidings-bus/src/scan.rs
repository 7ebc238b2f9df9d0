//! Reading a whole range of the stream in one pass: what a reconnect storm needs.
//!
//! A replay of one member reads its subject with `next_by_subj`, and the server finds
//! each next message by walking the stream's blocks message by message from the
//! start position: the cost of a replay grows with everything stored since the
//! client's position, not with what it missed. Ten thousand clients that each missed
//! ten notifications among a hundred thousand make the server walk a hundred thousand
//! messages ten thousand times (measured: nats-server's `firstMatching` was most of its
//! CPU during such a storm). One pass over the range reads each message once; the
//! caller answers many replays from it.
//!
//! The pass is one ordered consumer without a subject filter, not Direct Get: a
//! consumer delivers each stored message as it is, where every Direct Get answer is
//! given freshly generated headers (most of nats-server's CPU in a Direct Get pass,
//! measured), and a consumer reads from the stream leader, so the range is complete
//! with no proof needed. It works on every supported server (2.10 too).

use std::time::Duration;

use async_nats::jetstream::consumer::Consumer;
use async_nats::jetstream::consumer::pull::OrderedConfig;
use futures::StreamExt as _;

use crate::replay::{ReplayError, err};
use crate::{Bus, BusEvent};

/// Longest wait for the next message of a pass.
const NEXT_TIMEOUT: Duration = Duration::from_secs(10);

impl Bus {
    /// Every stored message in `[from, until]` (subject delete markers skipped), in
    /// sequence order: all of them, on every subject, as the stream leader has them.
    /// Fails rather than return more than `max_bytes` of payload.
    pub async fn read_range(&self, from: u64, until: u64, max_bytes: usize) -> Result<Vec<BusEvent>, ReplayError> {
        let from = from.max(1);
        if until < from {
            return Ok(Vec::new());
        }
        self.with_consumer(Vec::new(), from, async |consumer| {
            self.read_pass(consumer, until, max_bytes).await
        })
        .await
    }

    async fn read_pass(
        &self,
        consumer: Consumer<OrderedConfig>,
        until: u64,
        max_bytes: usize,
    ) -> Result<Vec<BusEvent>, ReplayError> {
        let mut events = Vec::new();
        if consumer.cached_info().num_pending == 0 {
            return Ok(events);
        }
        let (mut bytes, mut read) = (0usize, 0u64);
        let mut messages = consumer.messages().await.map_err(err)?;
        while let Some(message) = tokio::time::timeout(NEXT_TIMEOUT, messages.next())
            .await
            .map_err(|_| ReplayError::TimedOut("reading the stream"))?
        {
            let message = message.map_err(err)?;
            let info = message.info().map_err(err)?;
            let (seq, left) = (info.stream_sequence, info.pending);
            if seq > until {
                break;
            }
            read += 1;
            let message = message.message;
            bytes += message.payload.len();
            if bytes > max_bytes {
                self.replays.count_scan(read);
                return Err(ReplayError::TooLarge(format!(
                    "more than {max_bytes} bytes to read up to {until}"
                )));
            }
            let headers = message.headers.unwrap_or_default();
            events.extend(BusEvent::from_stored(
                self.subjects(),
                seq,
                message.subject.to_string(),
                &headers,
                message.payload,
            ));
            if left == 0 || seq >= until {
                break;
            }
        }
        self.replays.count_scan(read);
        Ok(events)
    }
}
