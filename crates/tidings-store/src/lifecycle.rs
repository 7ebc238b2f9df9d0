//! The end of a notification's life in a member's inbox: archive (it stays, out of the
//! default list and the unread count) and delete (it is gone). Each change commits with
//! the member's new unread count, read in the same transaction.
//!
//! Every statement names the member (`member_id = $1`): a member's notifications only,
//! never another's, and each one served by the member's index entries.

use tidings_domain::{MemberId, UnreadCount};
use uuid::Uuid;

use crate::inbox::{has, unread};
use crate::{Selection, Store, StoreError};

/// What an archive or delete did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Changed {
    /// Notifications archived (not counting those archived before) or deleted.
    pub changed: u64,
    /// The member's unread count after the change, with its version.
    pub unread: UnreadCount,
}

/// An archive's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Archive {
    Done(Changed),
    /// This id is not one of the member's notifications: nothing was archived.
    NotFound(Uuid),
}

impl Store {
    /// Archives the selected notifications (those archived already keep their first
    /// `archived_at`, so a retry changes nothing). All or nothing: an id the member does
    /// not have, or an `UpTo` anchor the member does not have, archives nothing and is
    /// answered [`Archive::NotFound`]. Archived rows stay, so a retry never hits that.
    pub async fn archive(&self, member: &MemberId, which: &Selection) -> Result<Archive, StoreError> {
        let mut tx = self.pool().begin().await?;
        let changed = match which {
            Selection::Ids(ids) => {
                let found: Vec<Uuid> =
                    sqlx::query_scalar("select id from notification where member_id = $1 and id = any($2)")
                        .bind(member.as_str())
                        .bind(ids)
                        .fetch_all(&mut *tx)
                        .await?;
                if let Some(missing) = ids.iter().find(|id| !found.contains(id)) {
                    return Ok(Archive::NotFound(*missing));
                }
                sqlx::query(
                    "update notification set archived_at = now()
                     where member_id = $1 and id = any($2) and archived_at is null",
                )
                .bind(member.as_str())
                .bind(ids)
                .execute(&mut *tx)
                .await?
                .rows_affected()
            }
            Selection::UpTo(id) => {
                if !has(&mut tx, member, *id).await? {
                    return Ok(Archive::NotFound(*id));
                }
                sqlx::query(
                    "update notification set archived_at = now()
                     where member_id = $1 and id <= $2 and archived_at is null",
                )
                .bind(member.as_str())
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected()
            }
        };
        let unread = unread(&mut tx, member).await?;
        tx.commit().await?;
        Ok(Archive::Done(Changed { changed, unread }))
    }

    /// Deletes the selected notifications of the member, outbox entries included (one
    /// deleted before its publish is never delivered). Ids the member does not have are
    /// skipped, and `UpTo` needs no notification at its id: a deleted id cannot be told
    /// from one that never existed, and a retry must succeed. Another member's ids
    /// change nothing (`changed` says how many went).
    pub async fn delete(&self, member: &MemberId, which: &Selection) -> Result<Changed, StoreError> {
        let mut tx = self.pool().begin().await?;
        let changed = match which {
            Selection::Ids(ids) => sqlx::query("delete from notification where member_id = $1 and id = any($2)")
                .bind(member.as_str())
                .bind(ids)
                .execute(&mut *tx)
                .await?
                .rows_affected(),
            Selection::UpTo(id) => sqlx::query("delete from notification where member_id = $1 and id <= $2")
                .bind(member.as_str())
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected(),
        };
        let unread = unread(&mut tx, member).await?;
        tx.commit().await?;
        Ok(Changed { changed, unread })
    }
}
