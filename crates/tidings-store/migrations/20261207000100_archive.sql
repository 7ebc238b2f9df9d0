-- Archive (issue 18): an archived notification leaves the member's default list and
-- unread count but stays in the inbox, listable with the `archived` filter.
--
-- Safe on a large live table: a nullable column without a default is a catalog change
-- only (no table rewrite, no scan), so the ACCESS EXCLUSIVE lock it takes lasts
-- milliseconds. Taking that lock waits behind any long transaction on the table, and
-- every query arriving meanwhile would queue behind the waiting ALTER: `lock_timeout`
-- bounds that wait, so the migration fails (and start-up with it, to be retried)
-- instead of stalling the inbox. The indexes that use the column are built
-- concurrently, each in a migration of its own (000200..000400).
set local lock_timeout = '5s';

alter table notification add column archived_at timestamptz;
