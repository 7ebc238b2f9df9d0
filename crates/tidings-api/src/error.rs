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
    /// The idempotency key was used before for another request.
    #[error("{0}")]
    Conflict(String),
    /// Not attempted: an earlier request of the same batch had a conflicting
    /// idempotency key, and a batch stops there.
    #[error("not attempted: an earlier request of this batch had a conflicting idempotency_key")]
    Skipped,
    #[error("postgres is unavailable")]
    StoreUnavailable(#[source] StoreError),
    #[error("nats is unavailable")]
    BusUnavailable(String),
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    pub(crate) fn invalid(field: &str, why: impl std::fmt::Display) -> Self {
        Self::InvalidArgument(format!("{field}: {why}"))
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(_) => Self::StoreUnavailable(e),
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
        match e {
            ApiError::InvalidArgument(m) => Self::invalid_argument(m),
            ApiError::TooLarge(m) => Self::resource_exhausted(m),
            ApiError::NotFound(m) => Self::not_found(m),
            ApiError::Conflict(m) => Self::already_exists(m),
            e @ ApiError::Skipped => Self::aborted(e.to_string()),
            ApiError::StoreUnavailable(source) => {
                tracing::warn!(error = %source, "postgres unavailable");
                Self::unavailable("postgres is unavailable; retry with the same idempotency_key")
            }
            ApiError::BusUnavailable(source) => {
                tracing::warn!(error = %source, "nats unavailable");
                Self::unavailable("nats is unavailable; retry later")
            }
            ApiError::Internal(source) => {
                tracing::error!(error = ?source, "internal error");
                Self::internal("internal error")
            }
        }
    }
}
