//! Single-use stream tickets, shared by every edge through a JetStream key-value bucket:
//! a browser trades its real credential for a short-lived ticket (so no token lands in
//! access logs as `?access_token=`), and any edge redeems it exactly once.

use std::time::Duration;

use async_nats::jetstream::kv;
use bytes::Bytes;
use rand::RngCore as _;

use crate::Bus;

/// How long an unredeemed ticket lives.
pub const TICKET_TTL: Duration = Duration::from_secs(30);

/// The tickets bucket of one stream, opened on first use: a bucket that cannot be
/// opened (NATS unreachable, a conflicting stream of the same name) makes ticket calls
/// fail, with [`TicketError`], until it can; it never stops the process that holds it.
#[derive(Debug, Clone)]
pub struct Tickets {
    bus: Bus,
    store: std::sync::Arc<tokio::sync::OnceCell<kv::Store>>,
}

/// A ticket store operation failed (NATS unavailable).
#[derive(Debug, thiserror::Error)]
#[error("ticket store: {0}")]
pub struct TicketError(String);

impl Bus {
    /// The `<stream>_TICKETS` bucket, opened (created if needed) on first use.
    pub fn tickets(&self) -> Tickets {
        Tickets {
            bus: self.clone(),
            store: std::sync::Arc::default(),
        }
    }

    /// Opens (creating if needed) the `<stream>_TICKETS` bucket, replicated like the
    /// stream: an R1 bucket on an R3 cluster would lose every ticket, and stop ticket
    /// redemption on every edge, with the one node that holds it.
    async fn open_tickets(&self) -> Result<kv::Store, TicketError> {
        let config = kv::Config {
            bucket: format!("{}_TICKETS", self.stream_name()),
            description: "Tidings single-use stream tickets".into(),
            max_age: TICKET_TTL,
            max_value_size: 16 * 1024,
            history: 1,
            num_replicas: self.replicas(),
            ..Default::default()
        };
        let store = match self.js.get_key_value(&config.bucket).await {
            Ok(store) => {
                let held = store.status().await.map(|s| s.info.config.num_replicas);
                if let Ok(held) = held
                    && held < config.num_replicas
                {
                    tracing::warn!(
                        bucket = %config.bucket,
                        replicas = held,
                        stream_replicas = config.num_replicas,
                        "the ticket bucket has fewer replicas than the stream; raise them (nats kv edit)"
                    );
                }
                store
            }
            Err(_) => self
                .js
                .create_key_value(config)
                .await
                .map_err(|e| TicketError(e.to_string()))?,
        };
        Ok(store)
    }
}

impl Tickets {
    /// Opens the bucket now, if it is not open yet (a role does this at start-up to
    /// say early when tickets will not work).
    pub async fn open(&self) -> Result<(), TicketError> {
        self.store().await.map(drop)
    }

    async fn store(&self) -> Result<&kv::Store, TicketError> {
        self.store.get_or_try_init(|| self.bus.open_tickets()).await
    }

    /// Stores `value` under a fresh random ticket id (128 bits, hex) and returns the id.
    pub async fn issue(&self, value: Bytes) -> Result<String, TicketError> {
        let mut raw = [0u8; 16];
        rand::rng().fill_bytes(&mut raw);
        let id: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        self.store()
            .await?
            .create(&id, value)
            .await
            .map_err(|e| TicketError(e.to_string()))?;
        Ok(id)
    }

    /// The ticket's value, once: the delete is conditional on the revision read, so of
    /// two concurrent redemptions exactly one wins. `None` for an unknown, expired or
    /// already redeemed ticket.
    pub async fn redeem(&self, id: &str) -> Result<Option<Bytes>, TicketError> {
        if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(None);
        }
        let store = self.store().await?;
        let Some(entry) = store.entry(id).await.map_err(|e| TicketError(e.to_string()))? else {
            return Ok(None);
        };
        if entry.operation != kv::Operation::Put {
            return Ok(None);
        }
        match store.delete_expect_revision(id, Some(entry.revision)).await {
            Ok(()) => Ok(Some(entry.value)),
            Err(_) => Ok(None),
        }
    }
}
