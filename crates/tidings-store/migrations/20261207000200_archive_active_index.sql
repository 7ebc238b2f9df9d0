-- no-transaction
-- The default inbox list skips archived notifications. Walking the primary key
-- (member_id, id) and filtering would cost a member's whole archived history per page once they have
-- archived everything (the usual "clear my inbox"); this index holds only what the
-- default list shows. `archived: include|only` still walk the primary key.
-- Costs one more index entry per insert.
--
-- Safe on a large live table: built concurrently (no lock that blocks inserts, updates
-- or reads; it takes two scans of the table and waits for transactions older than it),
-- so the migration runs outside a transaction (`-- no-transaction`, sqlx) and holds one
-- statement (a multi-statement string would be an implicit transaction). If the build
-- fails or is cancelled, Postgres leaves an INVALID index behind and this migration is
-- not recorded: run `drop index concurrently notification_member_active;` and start
-- again (no `if not exists` on purpose, so an invalid index is never taken for done).
create index concurrently notification_member_active on notification (member_id, id desc)
    where archived_at is null;
