use sqlx::migrate::{MigrateDatabase, Migrator};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{Connection as _, Postgres};

use crate::{DbConfig, StoreError};

/// Every migration, embedded in the binary. Run by `tidings migrate` and at api
/// start-up; sqlx takes a Postgres advisory lock, so replicas starting together are safe.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// A pooled connection idle at least this long is pinged before use.
const PING_WHEN_IDLE_FOR: std::time::Duration = std::time::Duration::from_secs(1);

/// The api's handle on Postgres: a bounded connection pool.
#[derive(Debug, Clone)]
pub struct Store {
    pool: PgPool,
}

impl Store {
    /// Connects, first creating the database if it does not exist (so `tidings dev` runs
    /// against a bare local Postgres). Fails within `acquire_timeout` if Postgres is down.
    pub async fn connect(config: &DbConfig) -> Result<Self, StoreError> {
        let options = config
            .connect_options()
            .map_err(|e| StoreError::Unavailable(sqlx::Error::Configuration(e.into())))?;
        let url = config.url.expose();
        let exists = tokio_timeout(config, Postgres::database_exists(url)).await?;
        if !exists {
            tracing::info!(url = %config.redacted_url(), "creating database");
            match tokio_timeout(config, Postgres::create_database(url)).await {
                Ok(()) => {}
                // Another replica created it first: Postgres reports duplicate_database,
                // or a unique violation on pg_database when the two creates overlap.
                Err(StoreError::Query(sqlx::Error::Database(e)))
                    if matches!(e.code().as_deref(), Some("42P04" | "23505")) => {}
                Err(e) => return Err(e),
            }
        }
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections)
            .acquire_timeout(config.acquire_timeout)
            // sqlx pings every connection it hands out by default: a round trip before
            // every statement, a tenth of the api's CPU at 1,000 Sends/s. Ping only a
            // connection that sat idle a while (a Postgres restart meanwhile would have
            // broken it); one in steady use proves itself with every statement, and if
            // it breaks, that statement fails with UNAVAILABLE and sqlx drops it.
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= PING_WHEN_IDLE_FOR {
                        conn.ping().await?;
                    }
                    Ok(true)
                })
            })
            .connect_with(options)
            .await?;
        Ok(Self { pool })
    }

    /// Wraps an existing pool (tests hand in the pool of their own database).
    pub fn from_pool(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Applies every pending migration.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Cheap liveness probe for `/readyz`.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("select 1").execute(&self.pool).await?;
        Ok(())
    }
}

/// sqlx's database-level helpers open their own connection with no timeout of ours;
/// bound them so a dead Postgres fails start-up instead of hanging it.
async fn tokio_timeout<T>(
    config: &DbConfig,
    fut: impl std::future::Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(config.acquire_timeout, fut).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(StoreError::Unavailable(sqlx::Error::PoolTimedOut)),
    }
}
