//! A member's inbox behind ListNotifications, MarkRead, GetUnreadCount,
//! ArchiveNotifications and DeleteNotifications: paging over the store, and the
//! unread-change announcement after every change (mark read, archive, delete), so the
//! badge of every tab stays exact.

use tidings_domain::{MemberId, UnreadCount};
use tidings_store::{Archive, Archived, Changed, InboxItem, Selection};
use uuid::Uuid;

use crate::ApiError;
use crate::state::ApiState;

/// One page of an inbox, newest first.
#[derive(Debug)]
pub(crate) struct Page {
    pub(crate) items: Vec<InboxItem>,
    /// The last id of this page when another page follows (the next cursor).
    pub(crate) next: Option<Uuid>,
}

impl ApiState {
    /// At most `limit` notifications older than `before`.
    pub(crate) async fn page(
        &self,
        member: &MemberId,
        before: Option<Uuid>,
        limit: u32,
        unread_only: bool,
        archived: Archived,
    ) -> Result<Page, ApiError> {
        // One extra row tells whether another page exists.
        let mut items = self
            .store
            .list(member, before, limit + 1, unread_only, archived)
            .await?;
        let more = items.len() > limit as usize;
        items.truncate(limit as usize);
        let next = match (more, items.last()) {
            (true, Some(last)) => Some(last.id),
            _ => None,
        };
        Ok(Page { items, next })
    }

    /// Marks notifications read and returns the new unread count; `None` when `which`
    /// is `UpTo` an id the member does not have.
    pub(crate) async fn mark_read(
        &self,
        member: &MemberId,
        which: &Selection,
    ) -> Result<Option<UnreadCount>, ApiError> {
        let unread = self.store.mark_read(member, which).await?;
        if let Some(count) = unread {
            self.announce_unread_change(member, count).await;
        }
        Ok(unread)
    }

    /// Archives notifications and announces the new unread count; `NotFound` names an
    /// id the member does not have (nothing was archived, nothing is announced).
    pub(crate) async fn archive(&self, member: &MemberId, which: &Selection) -> Result<Archive, ApiError> {
        let outcome = self.store.archive(member, which).await?;
        if let Archive::Done(changed) = outcome {
            self.announce_unread_change(member, changed.unread).await;
        }
        Ok(outcome)
    }

    /// Deletes notifications and announces the new unread count (also when nothing
    /// was deleted: a retry whose first answer was lost still refreshes the badges).
    pub(crate) async fn delete(&self, member: &MemberId, which: &Selection) -> Result<Changed, ApiError> {
        let changed = self.store.delete(member, which).await?;
        self.announce_unread_change(member, changed.unread).await;
        Ok(changed)
    }

    pub(crate) async fn unread_count(&self, member: &MemberId) -> Result<u64, ApiError> {
        Ok(self.store.unread_count(member).await?)
    }

    /// One count per member, in order, with its version.
    pub(crate) async fn unread_counts(&self, members: &[MemberId]) -> Result<Vec<UnreadCount>, ApiError> {
        Ok(self.store.unread_counts(members).await?)
    }

    /// Tells every edge holding the member its new unread count, with the version that
    /// lets an edge tell it from an older one that arrives later (a notification's).
    /// Best effort and not stored (see [`tidings_bus::Bus::announce_unread`]): the
    /// read state is committed either way, and a stream's next connect or
    /// notification refreshes the badge.
    async fn announce_unread_change(&self, member: &MemberId, unread: UnreadCount) {
        if !self.bus.is_connected() {
            return;
        }
        if let Err(e) = self.bus.announce_unread(member, unread).await {
            tracing::debug!(error = %e, "announcing an unread change failed");
        }
    }
}
