-- Keying by member, step 5 of 7: the swap. Both primary keys become (member_id, …) on
-- the indexes built in steps 2 and 4, and the outbox references its notification by
-- (member_id, id).
--
-- Catalog changes only, no table scan: adding a primary key over an existing unique
-- index of not-null columns just marks it, and a foreign key added `not valid` checks
-- new rows only (step 6 checks the old ones without blocking writes). The exclusive
-- locks this needs are held for milliseconds, but waiting for one would queue every
-- statement on the table behind it: lock_timeout makes a busy table fail the migration
-- instead (the api exits, is restarted and tries again).
set local lock_timeout = '5s';

alter table outbox drop constraint outbox_notification_id_fkey;
alter table outbox drop constraint outbox_pkey;
alter table outbox add constraint outbox_pkey primary key using index outbox_member_key;

alter table notification drop constraint notification_pkey;
alter table notification add constraint notification_pkey primary key using index notification_member_key;

alter table outbox add constraint outbox_notification_fkey
    foreign key (member_id, notification_id) references notification (member_id, id)
    on delete cascade not valid;
