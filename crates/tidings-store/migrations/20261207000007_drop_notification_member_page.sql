-- no-transaction
-- Keying by member, step 7 of 7: inbox paging reads the primary key (member_id, id)
-- backwards now, so the index that served it is one index too many for every insert.
-- Dropped concurrently: no lock that stops reads or writes.
drop index concurrently if exists notification_member_page;
