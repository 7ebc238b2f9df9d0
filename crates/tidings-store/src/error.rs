/// A failure of the store. Callers map [`StoreError::Unavailable`] to a retryable
/// status (gRPC UNAVAILABLE); the details are for logs, not for clients.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("postgres is unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    #[error("migrating the database failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Postgres aborted the transaction for a concurrent one (deadlock, 40P01, or
    /// serialization failure, 40001): nothing was written, and the same request again
    /// succeeds. Callers map it to a retryable status (gRPC ABORTED).
    #[error("postgres aborted the transaction for a concurrent one: {0}")]
    Aborted(#[source] sqlx::Error),
    /// Concurrent calls with one idempotency key and other members kept racing this
    /// one: nothing was written, and the same request again gets a definite answer.
    /// Callers map it like [`StoreError::Aborted`].
    #[error("an idempotency key was contended by concurrent calls for other members")]
    KeyContended,
    #[error("postgres query failed: {0}")]
    Query(#[source] sqlx::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            // A connection that broke, or a peer that answered the start-up exchange with
            // garbage or nothing (a dying server, a proxy with no backend).
            sqlx::Error::Io(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => Self::Unavailable(e),
            // Connection exceptions (class 08) and the server shutting down or
            // refusing connections (57P01..57P03) are outages, not bad queries.
            sqlx::Error::Database(ref db)
                if db
                    .code()
                    .is_some_and(|c| c.starts_with("08") || matches!(c.as_ref(), "57P01" | "57P02" | "57P03")) =>
            {
                Self::Unavailable(e)
            }
            sqlx::Error::Database(ref db) if db.code().is_some_and(|c| matches!(c.as_ref(), "40P01" | "40001")) => {
                Self::Aborted(e)
            }
            other => Self::Query(other),
        }
    }
}
