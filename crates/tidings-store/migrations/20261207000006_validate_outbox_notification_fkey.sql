-- Keying by member, step 6 of 7: checks the outbox rows step 5 did not. Validating
-- takes a lock that lets reads and writes of both tables go on.
alter table outbox validate constraint outbox_notification_fkey;
