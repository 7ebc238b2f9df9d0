//! The read side of a member's inbox: paging, unread count, marking read.
//!
//! Every query is bounded by one member's index entries: paging walks
//! `notification_member_active` (the default list, archived rows left out),
//! `notification_member_unread_active` (`unread_only`) or the primary key (member_id, id)
//! (archived included or only) from the cursor. The unread count is one row of
//! `member_unread`, which triggers on `notification` keep exact (migration 000500): a
//! primary-key lookup, however many unread notifications the member has.

use chrono::{DateTime, Utc};
use tidings_domain::{MemberId, UnreadCount};
use uuid::Uuid;

use crate::{Store, StoreError};

/// One notification of a member's inbox.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct InboxItem {
    pub id: Uuid,
    pub member_id: String,
    #[sqlx(rename = "type")]
    pub kind: String,
    pub content: String,
    /// The JSON value given at Send, as text.
    pub data: Option<String>,
    pub group_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub read_at: Option<DateTime<Utc>>,
    /// When it was archived; `None` while in the inbox proper.
    pub archived_at: Option<DateTime<Utc>>,
    pub stream_seq: Option<i64>,
    pub stream_epoch: Option<i64>,
}

/// Which notifications a list shows, by archive state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Archived {
    /// Only those not archived: the inbox proper (the default).
    #[default]
    Exclude,
    /// Archived or not.
    Include,
    /// Only archived ones.
    Only,
}

/// Which of a member's notifications a mark-read, archive or delete applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// These ids.
    Ids(Vec<Uuid>),
    /// This notification and every older one of the member.
    UpTo(Uuid),
}

/// A member's unread count (unread and not archived): their counter, and 0 without one
/// (a member gets a counter row at their first unread notification).
pub(crate) const UNREAD_COUNT: &str = "select coalesce((select count from member_unread where member_id = $1), 0)";
/// [`UNREAD_COUNT`] with the counter's version (0 without a row).
const UNREAD_COUNT_VERSION: &str = "select coalesce(u.count, 0), coalesce(u.version, 0)
     from (select 1) as one left join member_unread u on u.member_id = $1";

impl Store {
    /// A page of the member's inbox, newest first, strictly older than `before` (the
    /// last id of the previous page). Returns at most `limit` items. `unread_only` lists
    /// unread notifications that are not archived, whatever `archived` says (unread
    /// means what the unread count counts).
    pub async fn list(
        &self,
        member: &MemberId,
        before: Option<Uuid>,
        limit: u32,
        unread_only: bool,
        archived: Archived,
    ) -> Result<Vec<InboxItem>, StoreError> {
        // One statement per filter rather than a predicate on parameters, so the planner
        // always sees which partial index applies.
        let filter = match (unread_only, archived) {
            (true, _) => "and read_at is null and archived_at is null",
            (false, Archived::Exclude) => "and archived_at is null",
            (false, Archived::Include) => "",
            (false, Archived::Only) => "and archived_at is not null",
        };
        let sql = format!(
            "select id, member_id, type, content, data::text as data, group_id, created_at, read_at, archived_at,
                    stream_seq, stream_epoch
             from notification
             where member_id = $1 and ($2::uuid is null or id < $2) {filter}
             order by id desc limit $3"
        );
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(member.as_str())
            .bind(before)
            .bind(i64::from(limit))
            .fetch_all(self.pool())
            .await?)
    }

    /// The unread counts of many members with their versions, in their order: one
    /// query, one counter lookup per member.
    pub async fn unread_counts(&self, members: &[MemberId]) -> Result<Vec<UnreadCount>, StoreError> {
        let ids: Vec<&str> = members.iter().map(MemberId::as_str).collect();
        let counts: Vec<(i64, i64)> = sqlx::query_as(
            "select coalesce(u.count, 0), coalesce(u.version, 0)
             from unnest($1::text[]) with ordinality as m(id, i)
             left join member_unread u on u.member_id = m.id
             order by m.i",
        )
        .bind(&ids)
        .fetch_all(self.pool())
        .await?;
        Ok(counts.into_iter().map(unread_count).collect())
    }

    /// The number of the member's unread notifications.
    pub async fn unread_count(&self, member: &MemberId) -> Result<u64, StoreError> {
        let count: i64 = sqlx::query_scalar(UNREAD_COUNT)
            .bind(member.as_str())
            .fetch_one(self.pool())
            .await?;
        Ok(count.unsigned_abs())
    }

    /// Marks notifications read (already-read ones keep their first `read_at`) and
    /// returns the new unread count. Ids of other members or unknown ids are ignored;
    /// `None` when `UpTo` names no notification of this member.
    pub async fn mark_read(&self, member: &MemberId, which: &Selection) -> Result<Option<UnreadCount>, StoreError> {
        let mut tx = self.pool().begin().await?;
        match which {
            Selection::Ids(ids) => {
                sqlx::query(
                    "update notification set read_at = now()
                     where member_id = $1 and id = any($2) and read_at is null",
                )
                .bind(member.as_str())
                .bind(ids)
                .execute(&mut *tx)
                .await?;
            }
            Selection::UpTo(id) => {
                if !has(&mut tx, member, *id).await? {
                    return Ok(None);
                }
                sqlx::query(
                    "update notification set read_at = now()
                     where member_id = $1 and id <= $2 and read_at is null",
                )
                .bind(member.as_str())
                .bind(id)
                .execute(&mut *tx)
                .await?;
            }
        }
        let count = unread(&mut tx, member).await?;
        tx.commit().await?;
        Ok(Some(count))
    }
}

/// Whether the member has notification `id`.
pub(crate) async fn has(tx: &mut sqlx::PgConnection, member: &MemberId, id: Uuid) -> Result<bool, StoreError> {
    Ok(
        sqlx::query_scalar("select exists (select 1 from notification where member_id = $1 and id = $2)")
            .bind(member.as_str())
            .bind(id)
            .fetch_one(tx)
            .await?,
    )
}

/// The member's unread count and version, inside the transaction of a change: the
/// counter the change's statement moved, locked by this transaction until it commits.
pub(crate) async fn unread(tx: &mut sqlx::PgConnection, member: &MemberId) -> Result<UnreadCount, StoreError> {
    let row: (i64, i64) = sqlx::query_as(UNREAD_COUNT_VERSION)
        .bind(member.as_str())
        .fetch_one(tx)
        .await?;
    Ok(unread_count(row))
}

fn unread_count((count, version): (i64, i64)) -> UnreadCount {
    UnreadCount {
        count: count.unsigned_abs(),
        version: version.unsigned_abs(),
    }
}
