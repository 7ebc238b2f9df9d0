-- no-transaction
-- Unread counters, step 2: a row for every member that has unread notifications,
-- holding their exact count. Runs outside a transaction (`-- no-transaction`) as one
-- statement that commits every 500 members: each batch locks only its own counter rows
-- (for milliseconds) and a large table never makes one long transaction.
--
-- Exact while the previous release keeps writing during a rolling upgrade, because the
-- triggers of 000500 are in place first and every write committed since has a counter
-- row (counter rows are never deleted):
-- - A member whose counter a write created or moved before the batch reached them keeps
--   it: the batch's insert conflicts and does nothing.
-- - A write the batch's count(*) did not see (not committed yet) either created the
--   member's row first (the batch's insert waits for it to commit, then does nothing)
--   or finds the batch's row when it commits its own change (its insert waits for the
--   batch to commit, does nothing, and adds its change to the batch's count, which did
--   not include it).
-- If the migration is stopped halfway, the batches done stay; running it again skips
-- the members that have a row.
--
-- Members are walked in id order from the primary key (member_id, id): each batch reads
-- the index entries of its own members only.
do $$
declare
    batch text[];
    last  text := '';
begin
    loop
        select array_agg(member_id order by member_id) into batch
        from (select distinct member_id from notification
              where member_id > last order by member_id limit 500) b;
        exit when batch is null;
        insert into member_unread (member_id, count, version)
        select m.member_id, c.count, 0
        from unnest(batch) as m(member_id)
        cross join lateral (
            select count(*) from notification n
            where n.member_id = m.member_id and n.read_at is null and n.archived_at is null
        ) c
        where c.count > 0
        order by m.member_id
        on conflict (member_id) do nothing;
        last := batch[array_length(batch, 1)];
        commit;
    end loop;
end
$$;
