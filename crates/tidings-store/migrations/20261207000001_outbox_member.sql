-- Keying by member, step 1 of 7: the outbox gets its notification's member_id, the
-- column every key of a table distributed by member must start with (deploy/README.md,
-- "Past one Postgres primary").
--
-- Safe on a live database: the outbox holds only notifications not yet acknowledged by
-- JetStream (normally a handful; at most what accrued during a NATS outage), so the
-- backfill and `set not null` scan a small table. `add column` without a default
-- changes only the catalog. The lock on the outbox is held for this transaction alone;
-- lock_timeout makes a busy table fail the migration (the api exits, is restarted and
-- tries again) rather than queue every Send behind it.
--
-- The previous release's api inserts outbox rows without member_id while a rolling
-- upgrade runs: a trigger fills it in from the notification for those rows only (its
-- WHEN clause keeps it off this release's inserts). A later release drops it.
set local lock_timeout = '5s';

alter table outbox add column member_id text;

update outbox o set member_id = n.member_id
from notification n
where n.id = o.notification_id and o.member_id is null;

alter table outbox alter column member_id set not null;

create function outbox_member_of_notification() returns trigger
language plpgsql volatile as $$
begin
    select n.member_id into new.member_id from notification n where n.id = new.notification_id;
    return new;
end
$$;

create trigger outbox_member_for_previous_release
    before insert on outbox
    for each row when (new.member_id is null)
    execute function outbox_member_of_notification();
