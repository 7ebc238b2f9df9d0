-- An inbox page as the api read it before archiving existed (inbox.rs at 37cd5bd): a
-- member's newest 51 notifications.
\set m random(0, 99999)
select id, member_id, type, content, data::text as data, group_id, created_at, read_at, stream_seq, stream_epoch
from notification where member_id = 'member-' || :m order by id desc limit 51;
