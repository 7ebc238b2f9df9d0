-- no-transaction
-- The unread count and `unread_only` paging exclude archived notifications: the partial
-- unread index holds only unread rows that are not archived, so archiving shrinks it
-- like reading does. Replaces `notification_member_unread` (dropped by 000400, once
-- this one is valid).
--
-- Safe on a large live table: built concurrently, outside a transaction, one statement
-- (see 000200). On failure: `drop index concurrently notification_member_unread_active;`
-- and start again.
create index concurrently notification_member_unread_active on notification (member_id, id desc)
    where read_at is null and archived_at is null;
