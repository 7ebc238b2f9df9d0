-- A unary Send as the api wrote it before notifications were keyed by member
-- (crates/tidings-store/src/send.rs and outbox.rs at 37cd5bd): the row and its outbox
-- entry in one statement, then its stream sequence recorded and the entry removed.
\set m random(0, 99999)
with t as (select bench_uuid7(now()) as id, 'member-' || :m as member_id),
     ins as (insert into notification (id, member_id, type, content, data, group_id, created_at, producer, idempotency_key)
             select id, member_id, 'comment.created', 'Someone replied to your comment', '{"postId": 1}'::jsonb,
                    null, now(), 'bench', null from t
             on conflict (producer, idempotency_key, member_id) where idempotency_key is not null do nothing
             returning id, data),
     queued as (insert into outbox (notification_id, next_attempt_at, traceparent)
                select id, now() + interval '1 second', null from ins)
select id from ins \gset
with p as (select * from unnest(array[:id::uuid], array[1]::bigint[]) as t(id, seq)),
     u as (update notification n set stream_seq = p.seq, stream_epoch = 1 from p where n.id = p.id)
delete from outbox using p where outbox.notification_id = p.id;
