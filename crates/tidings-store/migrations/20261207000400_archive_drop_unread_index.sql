-- no-transaction
-- The old unread index (`read_at is null`, archived rows included) serves no query of
-- this version. Dropped concurrently: it waits for the queries using it instead of
-- blocking the table. During a rolling upgrade, replicas of the previous version count
-- unread rows through the primary key (member_id, id) until they are replaced (slower,
-- still correct).
drop index concurrently if exists notification_member_unread;
