//! The outbox relay's queries: claim due entries without blocking other relays, then
//! either record their publication or push them back with backoff.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, Postgres, Transaction};
use uuid::Uuid;

use crate::{Store, StoreError};

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

/// Entries claimed by one relay. They stay locked (other relays skip them) until the
/// claim is finished with [`OutboxClaim::published`] and/or [`OutboxClaim::retry_later`]
/// and committed, or dropped (which releases them untouched).
#[derive(Debug)]
pub struct OutboxClaim {
    tx: Transaction<'static, Postgres>,
    pub entries: Vec<PendingPublish>,
}

/// The outbox's size, for metrics and readiness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxBacklog {
    pub entries: u64,
    pub oldest: Option<DateTime<Utc>>,
}

impl Store {
    /// Claims up to `limit` due entries, oldest first, skipping entries another relay
    /// holds (`for update skip locked`).
    pub async fn claim_outbox(&self, limit: u32) -> Result<OutboxClaim, StoreError> {
        let mut tx = self.pool().begin().await?;
        let entries = sqlx::query_as(
            "select o.notification_id as id, n.member_id, n.type, n.content, n.data::text as data, n.group_id,
                    n.created_at, o.traceparent, o.attempts
             from outbox o join notification n on n.id = o.notification_id
             where o.next_attempt_at <= now()
             order by o.next_attempt_at, o.notification_id
             limit $1
             for update of o skip locked",
        )
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        Ok(OutboxClaim { tx, entries })
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

impl OutboxClaim {
    /// Records the stream sequences of published entries and removes them.
    pub async fn published(&mut self, published: &[(Uuid, u64)], epoch: u64) -> Result<(), StoreError> {
        record_published(&mut self.tx, published, epoch).await
    }

    /// Pushes failed entries back: attempt n waits `base * 2^(n-1)`, at most `max`.
    pub async fn retry_later(&mut self, ids: &[Uuid], base: Duration, max: Duration) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "update outbox set attempts = attempts + 1,
                 next_attempt_at = now() + least($2 * power(2, least(attempts, 20)), $3) * interval '1 millisecond'
             where notification_id = any($1)",
        )
        .bind(ids)
        .bind(base.as_millis() as f64)
        .bind(max.as_millis() as f64)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    pub async fn commit(self) -> Result<(), StoreError> {
        self.tx.commit().await?;
        Ok(())
    }
}

/// Sets `stream_seq`/`stream_epoch` on published rows and deletes their outbox entries,
/// in one statement.
pub(crate) async fn record_published(
    conn: &mut PgConnection,
    published: &[(Uuid, u64)],
    epoch: u64,
) -> Result<(), StoreError> {
    if published.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = published.iter().map(|(id, _)| *id).collect();
    let seqs: Vec<i64> = published
        .iter()
        .map(|(_, s)| i64::try_from(*s).unwrap_or(i64::MAX))
        .collect();
    sqlx::query(
        "with p as (select * from unnest($1::uuid[], $2::bigint[]) as t(id, seq)),
              u as (update notification n set stream_seq = p.seq, stream_epoch = $3 from p where n.id = p.id)
         delete from outbox using p where outbox.notification_id = p.id",
    )
    .bind(&ids)
    .bind(&seqs)
    .bind(i64::try_from(epoch).unwrap_or(i64::MAX))
    .execute(conn)
    .await?;
    Ok(())
}
