//! Finding messages the stream already holds by their `Nats-Msg-Id`, for a publisher
//! about to publish again past the stream's duplicate window, where JetStream would
//! store a second copy instead of answering with the first.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use async_nats::jetstream::consumer::DeliverPolicy;
use chrono::{DateTime, Utc};
use futures::StreamExt as _;

use crate::replay::err;
use crate::{Bus, ReplayError};

/// Most messages of one subject read to look for ids: far above what a member's
/// subject holds under any sane per-subject limit; past it the search says so.
const MAX_SCANNED: u64 = 100_000;
/// Each message of the search must come within this.
const NEXT_MESSAGE: Duration = Duration::from_secs(10);

impl Bus {
    /// Which of `ids` (`Nats-Msg-Id`s) the stream holds on `subject`, stored at or after
    /// `since`, with their sequences. Reads the subject from `since` to the stream's
    /// end through a short-lived ordered consumer: one subject's messages, which the
    /// stream's per-subject limit bounds. An error when the answer would be a guess
    /// (the read failed, or more than [`MAX_SCANNED`] messages to look through).
    pub async fn find_stored(
        &self,
        subject: &str,
        since: DateTime<Utc>,
        ids: &HashSet<String>,
    ) -> Result<HashMap<String, u64>, ReplayError> {
        let start = DeliverPolicy::ByStartTime { start_time: since };
        self.with_consumer_at(vec![subject.to_owned()], start, async |consumer| {
            let mut found = HashMap::new();
            let pending = consumer.cached_info().num_pending;
            if pending == 0 {
                return Ok(found);
            }
            if pending > MAX_SCANNED {
                return Err(ReplayError::Unavailable(format!(
                    "{pending} messages on {subject} to look through (at most {MAX_SCANNED})"
                )));
            }
            let mut messages = consumer.messages().await.map_err(err)?;
            while let Some(message) = tokio::time::timeout(NEXT_MESSAGE, messages.next())
                .await
                .map_err(|_| ReplayError::TimedOut("looking for stored messages"))?
            {
                let message = message.map_err(err)?;
                let info = message.info().map_err(err)?;
                let (seq, left) = (info.stream_sequence, info.pending);
                if let Some(id) = message.headers.as_ref().and_then(|h| h.get("Nats-Msg-Id"))
                    && ids.contains(id.as_str())
                {
                    found.insert(id.as_str().to_owned(), seq);
                }
                if left == 0 || found.len() == ids.len() {
                    break;
                }
            }
            Ok(found)
        })
        .await
    }

    /// The stream's duplicate window, as the server holds it.
    pub fn duplicate_window(&self) -> Duration {
        self.duplicate_window
    }
}
