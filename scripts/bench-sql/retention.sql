-- A retention pass as the api runs it (crates/tidings-store/src/retention.rs): expired
-- notifications deleted in batches of :batch by id range over notification_by_id, each
-- batch its own transaction, outbox rows kept; then one line of figures. Expired here:
-- older than :days days. Used by scripts/bench-inbox-scale.
create or replace procedure bench_retention(days int, batch int)
language plpgsql as $$
declare
    cutoff timestamptz := now() - make_interval(days => days);
    floor_id uuid := (lpad(to_hex((extract(epoch from cutoff) * 1000)::bigint), 12, '0')
                      || '70008000000000000000')::uuid;
    last_id uuid;
    n int;
    total bigint := 0;
    started timestamptz := clock_timestamp();
    t0 timestamptz;
    times float8[] := '{}';
begin
    loop
        t0 := clock_timestamp();
        with doomed as (
                 select d.member_id, d.id from notification d
                 where d.id < floor_id and (last_id is null or d.id > last_id) and d.created_at < cutoff
                   and not exists (select 1 from outbox o where o.member_id = d.member_id and o.notification_id = d.id)
                 order by d.id limit batch
                 for update of d skip locked),
             gone as (delete from notification x using doomed where x.member_id = doomed.member_id and x.id = doomed.id
                      returning x.id)
        select count(*)::int, (array_agg(id order by id desc))[1] into n, last_id from gone;
        commit;
        exit when n = 0;
        total := total + n;
        times := times || extract(epoch from clock_timestamp() - t0) * 1000;
    end loop;
    raise notice 'retention: % rows in % batches of %, % s; per batch p50 % ms, p99 % ms, max % ms',
        total, cardinality(times), batch, round(extract(epoch from clock_timestamp() - started)::numeric, 1),
        (select round(percentile_cont(0.5) within group (order by t)::numeric, 1) from unnest(times) t),
        (select round(percentile_cont(0.99) within group (order by t)::numeric, 1) from unnest(times) t),
        (select round(max(t)::numeric, 1) from unnest(times) t);
end
$$;
