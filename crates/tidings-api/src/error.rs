//! [`ApiError`], everything a call can fail with, and its one mapping to gRPC.

use std::sync::Arc;

use tidings_bus::BusError;
use tidings_store::StoreError;

/// Everything a call can fail with, mapped once to a gRPC status. Internal details
/// (SQL, NATS errors) are logged here and never sent to the client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A request field breaks a rule; the message names the field.
    #[error("{0}")]
    InvalidArgument(String),
    /// A request or field is over a documented size or count limit.
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    NotFound(String),
    /// No or an unknown producer API key.
    #[error("{0}")]
    Unauthenticated(String),
    /// The idempotency key was used before for another request.
    #[error("{0}")]
    Conflict(String),
    /// Not attempted: an earlier request of the same batch had a conflicting
    /// idempotency key, and a batch stops there.
    #[error("not attempted: an earlier request of this batch had a conflicting idempotency_key")]
    Skipped,
    #[error("postgres is unavailable")]
    StoreUnavailable(#[source] StoreError),
    /// The transaction lost to a concurrent one (deadlock, serialization failure):
    /// nothing was written; the same request again succeeds.
    #[error("postgres aborted the transaction")]
    StoreAborted(#[source] StoreError),
    #[error("nats is unavailable")]
    BusUnavailable(String),
    /// The api is shutting down: a SendStream call ends between batches, and the
    /// requests after its last answer were not stored.
    #[error("the api is shutting down")]
    ShuttingDown,
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
    /// One failure answered to several callers (every Send of a group-commit batch
    /// whose transaction failed). It was logged once, by [`ApiError::shared`]; each copy
    /// maps to the same status without logging again.
    #[error(transparent)]
    Shared(Arc<ApiError>),
}

impl ApiError {
    pub(crate) fn invalid(field: &str, why: impl std::fmt::Display) -> Self {
        Self::InvalidArgument(format!("{field}: {why}"))
    }

    /// Whether Postgres or NATS is down: every request fails alike, whatever it holds.
    pub(crate) fn is_outage(&self) -> bool {
        match self {
            Self::StoreUnavailable(_) | Self::BusUnavailable(_) | Self::ShuttingDown => true,
            Self::Shared(e) => e.is_outage(),
            _ => false,
        }
    }

    /// Logs this failure once and makes it shareable: wrap each copy in
    /// [`ApiError::Shared`].
    pub(crate) fn shared(self) -> Arc<Self> {
        self.log();
        Arc::new(self)
    }

    /// Internal details go to the log, never to the client.
    fn log(&self) {
        match self {
            Self::StoreUnavailable(source) => tracing::warn!(error = %source, "postgres unavailable"),
            Self::StoreAborted(source) => tracing::warn!(error = %source, "transaction aborted for a concurrent one"),
            Self::BusUnavailable(source) => tracing::warn!(error = %source, "nats unavailable"),
            Self::Internal(source) => tracing::error!(error = ?source, "internal error"),
            _ => {}
        }
    }

    fn status(&self) -> tonic::Status {
        use tonic::Status;
        match self {
            Self::InvalidArgument(m) => Status::invalid_argument(m),
            Self::TooLarge(m) => Status::resource_exhausted(m),
            Self::NotFound(m) => Status::not_found(m),
            Self::Unauthenticated(m) => Status::unauthenticated(m),
            Self::Conflict(m) => Status::already_exists(m),
            e @ Self::Skipped => Status::aborted(e.to_string()),
            Self::StoreUnavailable(_) => {
                Status::unavailable("postgres is unavailable; retry with the same idempotency_key")
            }
            Self::StoreAborted(_) => Status::aborted(
                "the write conflicted with a concurrent one and was not stored; retry with the same idempotency_key",
            ),
            Self::BusUnavailable(_) => Status::unavailable("nats is unavailable; retry later"),
            Self::ShuttingDown => Status::unavailable(
                "the api is shutting down; requests after the last answer were not stored, send them again",
            ),
            Self::Internal(_) => Status::internal("internal error"),
            Self::Shared(e) => e.status(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(_) => Self::StoreUnavailable(e),
            StoreError::Aborted(_) | StoreError::KeyContended => Self::StoreAborted(e),
            other => Self::Internal(other.into()),
        }
    }
}

impl From<BusError> for ApiError {
    fn from(e: BusError) -> Self {
        Self::BusUnavailable(e.to_string())
    }
}

impl From<ApiError> for tonic::Status {
    fn from(e: ApiError) -> Self {
        if !matches!(e, ApiError::Shared(_)) {
            e.log();
        }
        e.status()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shared_failure_maps_like_the_original() {
        let shared = ApiError::Internal(anyhow::anyhow!("disk on fire")).shared();
        let status = tonic::Status::from(ApiError::Shared(shared.clone()));
        assert_eq!(status.code(), tonic::Code::Internal);
        assert_eq!(status.message(), "internal error", "details stay in the log");
        let status = tonic::Status::from(ApiError::ShuttingDown);
        assert_eq!(status.code(), tonic::Code::Unavailable);
    }
}
