//! The outbox relay's queries: lease due entries without blocking other relays, then
//! either record their publication or push them back with backoff. No transaction or
//! row lock is held while the relay publishes: a lease is a later `next_attempt_at`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::{Store, StoreError};

/// A notification row's key: the member first, as in every key of the schema (a table
/// distributed by member can only look rows up by keys that hold the member).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NotificationKey {
    pub member_id: String,
    pub id: Uuid,
}

/// A notification whose publish is pending, with everything needed to publish it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PendingPublish {
    pub id: Uuid,
    pub member_id: String,
    #[sqlx(rename = "type")]
    pub kind: String,
    pub content: String,
    pub data: Option<String>,
    pub group_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub traceparent: Option<String>,
    pub attempts: i32,
}

/// The outbox's size, for metrics and readiness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxBacklog {
    pub entries: u64,
    pub oldest: Option<DateTime<Utc>>,
}

impl PendingPublish {
    pub fn key(&self) -> NotificationKey {
        NotificationKey {
            member_id: self.member_id.clone(),
            id: self.id,
        }
    }
}

impl Store {
    /// Leases up to `limit` due entries, in notification order: they are not due again
    /// for `lease`, so other relays skip them meanwhile and take them over when this
    /// relay dies before [`Store::outbox_published`] or [`Store::outbox_retry_later`].
    /// One statement; nothing stays locked while they are published.
    pub async fn lease_outbox(&self, limit: u32, lease: Duration) -> Result<Vec<PendingPublish>, StoreError> {
        let entries = sqlx::query_as(
            "with due as (
                 select member_id, notification_id from outbox
                 where next_attempt_at <= now()
                 order by next_attempt_at, notification_id
                 limit $1
                 for update skip locked),
             leased as (
                 update outbox o set next_attempt_at = now() + $2 * interval '1 millisecond'
                 from due where o.member_id = due.member_id and o.notification_id = due.notification_id
                 returning o.member_id, o.notification_id, o.traceparent, o.attempts)
             select l.notification_id as id, n.member_id, n.type, n.content, n.data::text as data, n.group_id,
                    n.created_at, l.traceparent, l.attempts
             from leased l join notification n on n.member_id = l.member_id and n.id = l.notification_id
             order by l.notification_id",
        )
        .bind(i64::from(limit))
        .bind(lease.as_millis() as f64)
        .fetch_all(self.pool())
        .await?;
        Ok(entries)
    }

    /// Records the stream sequences of published entries and removes them.
    pub async fn outbox_published(&self, published: &[(NotificationKey, u64)], epoch: u64) -> Result<(), StoreError> {
        let mut conn = self.pool().acquire().await?;
        record_published(&mut conn, published, epoch).await
    }

    /// Pushes entries back: attempt n waits `base * 2^(n-1)`, at most `max`.
    pub async fn outbox_retry_later(
        &self,
        keys: &[NotificationKey],
        base: Duration,
        max: Duration,
    ) -> Result<(), StoreError> {
        if keys.is_empty() {
            return Ok(());
        }
        let (members, ids) = columns(keys.iter());
        sqlx::query(
            "update outbox o set attempts = attempts + 1,
                 next_attempt_at = now() + least($3 * power(2, least(attempts, 20)), $4) * interval '1 millisecond'
             from unnest($1::text[], $2::uuid[]) as k(member_id, id)
             where o.member_id = k.member_id and o.notification_id = k.id",
        )
        .bind(&members)
        .bind(&ids)
        .bind(base.as_millis() as f64)
        .bind(max.as_millis() as f64)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Makes every entry backed off after a failed publish due now (the stream
    /// answers again); returns how many. Entries never tried keep their time.
    pub async fn outbox_due_now(&self) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "update outbox set next_attempt_at = now()
             where attempts > 0 and next_attempt_at > now()",
        )
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected())
    }

    pub async fn outbox_backlog(&self) -> Result<OutboxBacklog, StoreError> {
        let (entries, oldest): (i64, Option<DateTime<Utc>>) =
            sqlx::query_as("select count(*), min(enqueued_at) from outbox")
                .fetch_one(self.pool())
                .await?;
        Ok(OutboxBacklog {
            entries: entries.unsigned_abs(),
            oldest,
        })
    }
}

/// Sets `stream_seq`/`stream_epoch` on published rows and deletes their outbox entries,
/// in one statement, committed without waiting for the WAL flush.
///
/// The record is bookkeeping of what JetStream already holds, so its commit need not
/// be durable at once (`synchronous_commit = off`, for this statement's transaction
/// alone; the rows' insert stays synchronous): should Postgres crash before the WAL
/// writer flushed it (within ~3 × `wal_writer_delay`), the row is unrecorded again and
/// the relay publishes it again, which JetStream answers with the same sequence
/// (`Nats-Msg-Id`), or finds it in the stream past the duplicate window — what a
/// record that failed gets. Waiting for the flush cost each Send's answer ~0.15 ms on
/// a quiet disk and ~2 ms on a busy one (BENCHMARKS.md, session 13).
pub(crate) async fn record_published(
    conn: &mut PgConnection,
    published: &[(NotificationKey, u64)],
    epoch: u64,
) -> Result<(), StoreError> {
    if published.is_empty() {
        return Ok(());
    }
    let (members, ids) = columns(published.iter().map(|(key, _)| key));
    let seqs: Vec<i64> = published
        .iter()
        .map(|(_, s)| i64::try_from(*s).unwrap_or(i64::MAX))
        .collect();
    sqlx::query(
        "with no_flush as materialized (select set_config('synchronous_commit', 'off', true)),
              p as (select t.* from unnest($1::text[], $2::uuid[], $3::bigint[]) as t(member_id, id, seq), no_flush),
              u as (update notification n set stream_seq = p.seq, stream_epoch = $4
                    from p where n.member_id = p.member_id and n.id = p.id)
         delete from outbox o using p where o.member_id = p.member_id and o.notification_id = p.id",
    )
    .bind(&members)
    .bind(&ids)
    .bind(&seqs)
    .bind(i64::try_from(epoch).unwrap_or(i64::MAX))
    .execute(conn)
    .await?;
    Ok(())
}

/// Keys as the two column arrays `unnest` takes.
fn columns<'a>(keys: impl Iterator<Item = &'a NotificationKey>) -> (Vec<&'a str>, Vec<Uuid>) {
    keys.map(|k| (k.member_id.as_str(), k.id)).unzip()
}
