-- Fills `notification` with :rows rows spread over :members members and the last 90
-- days, in id (time) order like the api writes them: UUIDv7 ids, a twentieth of them
-- unread, a tenth with an idempotency key, all published. Used by scripts/bench-inbox-scale.
set synchronous_commit = off;
insert into notification (id, member_id, type, content, data, group_id, created_at, read_at,
                          stream_seq, stream_epoch, producer, idempotency_key)
select bench_uuid7(t), 'member-' || ((i::bigint * 7919) % :members), 'comment.created',
       'Someone replied to your comment on a post you follow: ' || i,
       jsonb_build_object('postId', i, 'by', 'member-' || (i % 977)), null, t,
       case when i % 20 = 0 then null else t + interval '1 hour' end,
       i, 1, 'bench', case when i % 10 = 0 then 'key-' || i end
from (select i, now() - interval '90 days' + (i * (interval '90 days' / :rows)) as t
      from generate_series(:from, :to) i) s;
