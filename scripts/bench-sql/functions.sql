-- A UUIDv7 for a given time (Postgres 15 has none built in): 48 bits of Unix
-- milliseconds, version 7, random bits. Used by scripts/bench-inbox-scale.
create or replace function bench_uuid7(t timestamptz) returns uuid language sql volatile as $$
    select (lpad(to_hex((extract(epoch from t) * 1000)::bigint), 12, '0')
            || '7' || substr(h, 1, 3) || '8' || substr(h, 4, 15))::uuid
    from (select md5(random()::text) as h) r
$$;
