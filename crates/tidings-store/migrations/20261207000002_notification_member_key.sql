-- no-transaction
-- Keying by member, step 2 of 7: the index that becomes notification's primary key
-- (member_id, id) in step 5. Built concurrently: writes go on while it is built (one
-- statement per migration: Postgres runs CONCURRENTLY only outside a transaction
-- block). Should the build fail it leaves an invalid index behind, which step 5 then
-- refuses to use: `drop index concurrently notification_member_key` and start the api
-- again.
create unique index concurrently if not exists notification_member_key on notification (member_id, id);
