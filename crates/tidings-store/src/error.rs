/// A failure of the store. Callers map [`StoreError::Unavailable`] to a retryable
/// status (gRPC UNAVAILABLE); the details are for logs, not for clients.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("postgres is unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    #[error("migrating the database failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("postgres query failed: {0}")]
    Query(#[source] sqlx::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => Self::Unavailable(e),
            other => Self::Query(other),
        }
    }
}
