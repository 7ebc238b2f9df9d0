-- Unread counters (issue 20): each member's unread count kept in a row of its own, so
-- GetUnreadCount is a primary-key lookup instead of a count(*) over the member's unread
-- index entries, which every Send made the edges ask for.
--
-- "Unread" is what the count(*) it replaces counted: read_at is null and archived_at is
-- null. Triggers on `notification` keep the counter exact for every writer, this
-- release's and the previous one's during a rolling upgrade (it knows nothing of the
-- table): one statement-level trigger per event, with transition tables, so a
-- statement costs one counter update per member it touched, however many rows. Row-level
-- triggers would update the counter once per row: measured on 2,000 unread rows of one
-- member, `update … set read_at = now()` took twice as long with them (84 ms against
-- 40 ms, which is what it takes without any trigger; the commit has the runs).
--
-- `version` grows by one for every unit the count moves (an insert of k unread rows adds
-- k to both), so whoever reads two counts of a member can tell the newer.
--
-- A member without a row has no unread notification once 000600 has filled the table
-- in. Until then, the first change of a member not yet filled in starts its row from a
-- count(*) (see member_unread_add); 000600 explains why that stays exact with writers
-- running alongside.
--
-- Creating the triggers takes a lock on `notification` that waits for the writes in
-- flight to end (so every write from then on goes through the triggers) and blocks new
-- ones meanwhile: lock_timeout makes a busy table fail the migration (the api exits, is
-- restarted and tries again) rather than queue every Send behind it.
set local lock_timeout = '5s';

create table member_unread (
    member_id text   primary key,
    count     bigint not null check (count >= 0),
    version   bigint not null
);

-- Adds `delta` to each member's count and `abs(delta)` to its version. Counters are
-- locked in member order, in both steps, so concurrent statements touching several of
-- the same members wait for each other instead of deadlocking.
--
-- 1. Members without a row get one holding their count before this statement: count(*)
--    (committed rows, plus this transaction's own changes, which include the statement's)
--    minus the statement's delta. A concurrent transaction creating the same row makes
--    this insert wait for it and then do nothing; step 2 then adds to its row.
-- 2. Every member's row, now visible to this new statement, moves by delta.
create function member_unread_add(members text[], deltas bigint[]) returns void
language plpgsql volatile as $$
begin
    insert into member_unread (member_id, count, version)
    select d.member_id,
           (select count(*) from notification n
            where n.member_id = d.member_id and n.read_at is null and n.archived_at is null) - d.delta,
           0
    from unnest(members, deltas) as d(member_id, delta)
    where not exists (select 1 from member_unread u where u.member_id = d.member_id)
    order by d.member_id
    on conflict (member_id) do nothing;

    perform 1 from member_unread where member_id = any(members) order by member_id for update;

    update member_unread u set count = u.count + d.delta, version = u.version + abs(d.delta)
    from unnest(members, deltas) as d(member_id, delta)
    where u.member_id = d.member_id;
end
$$;

-- A Send's insert moves its members' counters itself, in the same statement, to return
-- each row's count (tidings-store `send.rs`), and says so in `tidings.unread_counted`,
-- which this trigger then consumes. Every other insert (the previous release's) is
-- counted here.
create function member_unread_on_insert() returns trigger
language plpgsql volatile as $$
begin
    if current_setting('tidings.unread_counted', true) = 'on' then
        perform set_config('tidings.unread_counted', '', true);
        return null;
    end if;
    perform member_unread_add(array_agg(member_id), array_agg(delta))
    from (select member_id, count(*) as delta from new_rows
          where read_at is null and archived_at is null
          group by member_id) d
    having count(*) > 0;
    return null;
end
$$;

-- Most updates leave every row as unread as it was (recording a stream sequence, the
-- update every notification gets after its publish): they change no counter.
create function member_unread_on_update() returns trigger
language plpgsql volatile as $$
begin
    perform member_unread_add(array_agg(member_id), array_agg(delta))
    from (select member_id, sum(d) as delta
          from (select member_id, 1 as d from new_rows where read_at is null and archived_at is null
                union all
                select member_id, -1 from old_rows where read_at is null and archived_at is null) c
          group by member_id
          having sum(d) <> 0) d
    having count(*) > 0;
    return null;
end
$$;

create function member_unread_on_delete() returns trigger
language plpgsql volatile as $$
begin
    perform member_unread_add(array_agg(member_id), array_agg(delta))
    from (select member_id, -count(*) as delta from old_rows
          where read_at is null and archived_at is null
          group by member_id) d
    having count(*) > 0;
    return null;
end
$$;

create trigger member_unread_insert after insert on notification
    referencing new table as new_rows
    for each statement execute function member_unread_on_insert();

create trigger member_unread_update after update on notification
    referencing old table as old_rows new table as new_rows
    for each statement execute function member_unread_on_update();

create trigger member_unread_delete after delete on notification
    referencing old table as old_rows
    for each statement execute function member_unread_on_delete();
