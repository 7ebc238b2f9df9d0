-- no-transaction
-- Keying by member, step 4 of 7: the index that becomes the outbox's primary key
-- (member_id, notification_id) in step 5. Built concurrently, like step 2.
create unique index concurrently if not exists outbox_member_key on outbox (member_id, notification_id);
