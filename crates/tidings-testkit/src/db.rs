use sqlx::postgres::{PgPool, PgPoolOptions};
use tidings_store::{DbConfig, MIGRATOR, Store};

use crate::services::{Keepalive, services};

/// A database of its own for one test: created and migrated by [`TestDb::new`], dropped
/// (with any connections still open) when the value is dropped.
#[derive(Debug)]
pub struct TestDb {
    /// `tidings_test_<pid>_<uuid>`: the pid of the test process, so that a clean-up of
    /// databases a crashed run left behind (`scripts/test`) can tell them from those of
    /// a run still going on the same server.
    pub name: String,
    /// URL of this database, for role configs and child processes.
    pub url: String,
    /// A small pool on this database.
    pub pool: PgPool,
    admin_url: String,
    _services: Keepalive,
}

impl TestDb {
    /// Creates and migrates a fresh database. Panics with instructions when no Postgres
    /// can be found.
    pub async fn new() -> Self {
        Self::migrated_to(i64::MAX).await
    }

    /// A fresh database with the migrations up to `version` applied: an earlier
    /// release's schema, for testing the migrations after it over its data.
    pub async fn migrated_to(version: i64) -> Self {
        let (urls, keep) = services().await;
        let admin_url = urls.database_url;
        let name = format!("tidings_test_{}_{}", std::process::id(), uuid::Uuid::new_v4().simple());
        let admin = connect(&admin_url).await;
        sqlx::query(sqlx::AssertSqlSafe(format!(r#"create database "{name}""#)))
            .execute(&admin)
            .await
            .unwrap_or_else(|e| {
                panic!("creating test database {name}: {e} (does the DATABASE_URL role have CREATEDB?)")
            });
        admin.close().await;

        let url = with_database(&admin_url, &name);
        let pool = connect(&url).await;
        MIGRATOR
            .run_to(version, &pool)
            .await
            .unwrap_or_else(|e| panic!("migrating {name}: {e}"));
        Self {
            name,
            url,
            pool,
            admin_url,
            _services: keep,
        }
    }

    /// A role config pointing at this database.
    pub fn config(&self) -> DbConfig {
        DbConfig::new(self.url.clone())
    }

    /// Waits until notification `id` has been published (its `stream_seq` is set, by
    /// the inline publish or the outbox relay) and returns that stream sequence.
    pub async fn published_seq(&self, id: uuid::Uuid) -> u64 {
        crate::eventually("the notification to be published", || async move {
            sqlx::query_scalar::<_, Option<i64>>("select stream_seq from notification where id = $1")
                .bind(id)
                .fetch_one(&self.pool)
                .await
                .ok()
                .flatten()
                .map(i64::unsigned_abs)
        })
        .await
    }

    /// Members whose maintained unread counter (`member_unread`) differs from a
    /// `count(*)` of their unread, unarchived notifications: `(member, counted, kept)`.
    pub async fn unread_mismatches(&self) -> Vec<(String, i64, i64)> {
        sqlx::query_as(
            "with truth as (
                 select member_id, count(*) as c from notification
                 where read_at is null and archived_at is null group by member_id
             )
             select member_id, coalesce(t.c, 0), coalesce(u.count, 0)
             from truth t full join member_unread u using (member_id)
             where coalesce(t.c, 0) <> coalesce(u.count, 0)
             order by member_id",
        )
        .fetch_all(&self.pool)
        .await
        .unwrap_or_else(|e| panic!("comparing unread counters with count(*): {e}"))
    }

    /// The store over this database's pool.
    pub fn store(&self) -> Store {
        Store::from_pool(self.pool.clone())
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        // Drop runs inside the test's runtime, which may be single-threaded: do the async
        // work on a thread and runtime of its own, and wait for it so nothing is left.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let admin = PgPoolOptions::new().max_connections(1).connect(&admin_url).await.ok()?;
                let sql = format!(r#"drop database if exists "{name}" with (force)"#);
                sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&admin).await.ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(_))) {
            tracing::warn!(database = %self.name, "could not drop test database");
        }
    }
}

async fn connect(url: &str) -> PgPool {
    PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(std::time::Duration::from_secs(10))
        .connect(url)
        .await
        .unwrap_or_else(|e| panic!("connecting to Postgres at DATABASE_URL: {e}"))
}

/// `url` with its path replaced by `/database`.
fn with_database(url: &str, database: &str) -> String {
    let mut parsed = url::Url::parse(url).unwrap_or_else(|e| panic!("DATABASE_URL is not a URL: {e}"));
    parsed.set_path(&format!("/{database}"));
    parsed.to_string()
}
