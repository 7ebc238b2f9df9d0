//! Retention's queries: the lock that makes one api replica at a time delete expired
//! notifications, and the bounded batch it deletes with. The pacing (batch size, pauses,
//! how many batches per run, how often) is the api's (`tidings_api` `retention.rs`).
//!
//! - The lock is a session-level Postgres advisory lock ([`RETENTION_LOCK`]) on a
//!   connection taken out of the pool for the run ([`RetentionRun`]): a session lock
//!   lives on one connection, and a pooled one would go back to the pool still holding
//!   it if the run were dropped halfway. The detached connection is closed when the run
//!   ends or is dropped, and Postgres releases the lock with the session — also when the
//!   process dies.
//! - A batch is one statement over `notification_by_id`: expired ids form a range (ids
//!   are UUIDv7, time-ordered), walked upwards from where the previous batch stopped, so
//!   no batch rescans what earlier ones did. The outbox check is a primary-key probe
//!   (member_id, notification_id).
//!   Retention deletes across members by id range; it is the one statement without a
//!   member in its `where`.

use chrono::{DateTime, Utc};
use sqlx::{Connection as _, PgConnection};
use uuid::Uuid;

use crate::{Store, StoreError};

/// The advisory lock key of retention runs (`select pg_try_advisory_lock(…)`): "tidings"
/// in ASCII and a 1, as a big-endian i64. Any constant would do, as long as nothing else
/// in the database takes it (sqlx's migration lock is derived from the database name).
pub const RETENTION_LOCK: i64 = 0x7469_6469_6e67_7301;

/// One replica's retention run: holds [`RETENTION_LOCK`] on a connection of its own.
#[derive(Debug)]
pub struct RetentionRun {
    conn: PgConnection,
}

/// What one batch deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expired {
    pub deleted: u64,
    /// The highest id deleted: the next batch starts above it.
    pub last: Option<Uuid>,
}

impl Store {
    /// Takes the retention lock if no other session holds it; `None` when another
    /// replica's run holds it.
    pub async fn retention_lock(&self) -> Result<Option<RetentionRun>, StoreError> {
        let mut conn = self.pool().acquire().await?.detach();
        let locked: bool = sqlx::query_scalar("select pg_try_advisory_lock($1)")
            .bind(RETENTION_LOCK)
            .fetch_one(&mut conn)
            .await?;
        if !locked {
            // Closing the session cannot leave anything behind; an error here is moot.
            let _ = conn.close().await;
            return Ok(None);
        }
        Ok(Some(RetentionRun { conn }))
    }
}

impl RetentionRun {
    /// Deletes up to `limit` notifications created before `cutoff`, lowest ids first,
    /// above `after` (the previous batch's [`Expired::last`]). Rows still in the outbox
    /// (not yet published) are never deleted: the relay still owes them to a stream.
    /// Rows another transaction has locked are skipped, not waited for; the next run
    /// takes them.
    pub async fn delete_expired(
        &mut self,
        cutoff: DateTime<Utc>,
        after: Option<Uuid>,
        limit: u32,
    ) -> Result<Expired, StoreError> {
        // `created_at` guards the id range: an id that is not a UUIDv7 (none that Tidings
        // writes) can never make a young row look expired.
        let ids: Vec<Uuid> = sqlx::query_scalar(
            "with doomed as (
                 select n.member_id, n.id from notification n
                 where n.id < $1 and ($2::uuid is null or n.id > $2) and n.created_at < $3
                   and not exists (
                       select 1 from outbox o where o.member_id = n.member_id and o.notification_id = n.id
                   )
                 order by n.id
                 limit $4
                 for update of n skip locked
             )
             delete from notification n using doomed d
             where n.member_id = d.member_id and n.id = d.id
             returning n.id",
        )
        .bind(uuid_v7_floor(cutoff))
        .bind(after)
        .bind(cutoff)
        .bind(i64::from(limit))
        .fetch_all(&mut self.conn)
        .await?;
        Ok(Expired {
            deleted: ids.len() as u64,
            last: ids.into_iter().max(),
        })
    }

    /// Releases the lock and closes the connection.
    pub async fn release(mut self) {
        let _ = sqlx::query("select pg_advisory_unlock($1)")
            .bind(RETENTION_LOCK)
            .execute(&mut self.conn)
            .await;
        // Closing ends the session, which releases the lock even if the unlock failed.
        let _ = self.conn.close().await;
    }
}

/// The lowest UUIDv7 of the millisecond `t`: every id generated before `t` sorts below
/// it (Postgres compares uuids bytewise, and a v7 starts with its big-endian Unix
/// milliseconds).
fn uuid_v7_floor(t: DateTime<Utc>) -> Uuid {
    let ms = u64::try_from(t.timestamp_millis()).unwrap_or(0);
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
    bytes[6] = 0x70; // version 7
    bytes[8] = 0x80; // RFC 4122 variant
    Uuid::from_bytes(bytes)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn the_floor_sorts_between_ids_of_the_millisecond_before_and_of_its_own() {
        let t = DateTime::from_timestamp_millis(1_765_000_000_123).unwrap();
        let floor = uuid_v7_floor(t);
        assert_eq!(floor.get_version_num(), 7);
        let at = |ms: i64| {
            let ts = uuid::Timestamp::from_unix(uuid::NoContext, (ms / 1000) as u64, ((ms % 1000) * 1_000_000) as u32);
            Uuid::new_v7(ts)
        };
        for _ in 0..100 {
            assert!(at(1_765_000_000_122) < floor);
            assert!(at(1_765_000_000_123) >= floor);
        }
    }
}
