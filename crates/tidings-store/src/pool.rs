use sqlx::migrate::{MigrateDatabase, Migrator};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{Connection as _, Postgres};

use crate::{DbConfig, StoreError};

/// Every migration, embedded in the binary. Run by `tidings migrate` and at api
/// start-up through [`Store::migrate`], which lets one replica at a time apply them.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// The advisory lock a replica holds while it migrates ("tidings" in ASCII). Advisory
/// locks are per database, so databases on one server do not share it.
const MIGRATION_LOCK: i64 = 0x0074_6964_696e_6773;

/// How often a replica waiting for another's migrations asks for the lock again.
const MIGRATION_POLL: std::time::Duration = std::time::Duration::from_millis(200);

/// How often a replica that keeps waiting says so.
const MIGRATION_WAIT_LOG: std::time::Duration = std::time::Duration::from_secs(30);

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

    /// Applies every pending migration, one replica at a time.
    ///
    /// Not under sqlx's lock: a replica waiting for it sits in a `pg_advisory_lock`
    /// statement, whose snapshot a `create index concurrently` of the migrating
    /// replica waits for while the waiter waits for the migrating replica's lock.
    /// Postgres breaks that deadlock by cancelling one of them, which may be the index
    /// build (leaving an invalid index). Waiting replicas ask with
    /// `pg_try_advisory_lock` every [`MIGRATION_POLL`] instead: between two asks they
    /// hold no snapshot. The lock lives on a connection taken out of the pool and
    /// closed afterwards, so it is released however the migrations end.
    ///
    /// Migrations applied by a newer release are no error: a replica of the previous
    /// release restarting during a rolling upgrade starts, on a schema whose
    /// migrations are written to serve it (deploy/README.md).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?.detach();
        let waiting = std::time::Instant::now();
        let mut said = waiting;
        while !sqlx::query_scalar::<_, bool>("select pg_try_advisory_lock($1)")
            .bind(MIGRATION_LOCK)
            .fetch_one(&mut conn)
            .await?
        {
            if said.elapsed() >= MIGRATION_WAIT_LOG {
                said = std::time::Instant::now();
                tracing::info!(waited = ?waiting.elapsed(), "waiting for another replica's migrations");
            }
            tokio::time::sleep(MIGRATION_POLL).await;
        }
        let mut migrator = Migrator::with_migrations(MIGRATOR.iter().cloned().collect());
        migrator.set_locking(false).set_ignore_missing(true);
        let migrated = migrator.run(&mut conn).await;
        // Closing the connection releases the lock.
        let _ = conn.close().await;
        Ok(migrated?)
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
