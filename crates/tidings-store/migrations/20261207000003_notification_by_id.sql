-- no-transaction
-- Keying by member, step 3 of 7: a plain index on id, for what looks notifications up
-- across members by id (the retention pass walks ids in time order; the previous
-- release's relay joins the outbox by id). Not unique: a table distributed by member
-- may only enforce uniqueness on keys that contain member_id; ids are UUIDv7 drawn by
-- the api, and (member_id, id) is the primary key. Built concurrently, like step 2.
create index concurrently if not exists notification_by_id on notification (id);
