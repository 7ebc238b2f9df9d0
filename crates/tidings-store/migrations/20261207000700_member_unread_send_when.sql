-- Unread counters: a Send's insert no longer calls the insert trigger's function.
--
-- A Send's statement moves its members' counters itself (tidings-store `send.rs`) and
-- sets `tidings.unread_counted` before its insert produces a row; 000500's trigger then
-- ran a plpgsql function only to see the flag and return. The flag is now tested in
-- the trigger's WHEN clause, evaluated when the insert ends, so that call is gone: the
-- Send's Postgres time per statement fell (the commit has the pgbench runs).
--
-- The flag is now left on until the transaction ends (set_config(…, true) is undone by
-- commit or rollback) instead of being cleared by the trigger: it means "this
-- transaction's inserts count their own rows". A Send runs its insert alone, or in a
-- transaction whose only insert into `notification` is that one.
--
-- member_unread_on_insert keeps its own test of the flag: a statement that may set it
-- only after its insert ended (000500's Send, from an api still running during a
-- rolling upgrade, sets it where it groups the inserted rows) passes the WHEN clause,
-- and the function still finds the flag on, clears it and counts nothing.
--
-- `create or replace trigger` takes the lock 000500's `create trigger` took (share row
-- exclusive: writes wait, reads go on), where `drop trigger` would take an access
-- exclusive one; lock_timeout, as in 000500, makes a busy table fail the migration
-- (retried at the next start) rather than queue every Send behind it.
set local lock_timeout = '5s';

create or replace trigger member_unread_insert after insert on notification
    referencing new table as new_rows
    for each statement
    when (current_setting('tidings.unread_counted', true) is distinct from 'on')
    execute function member_unread_on_insert();
