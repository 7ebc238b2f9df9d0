-- An inbox page (crates/tidings-store/src/inbox.rs, the default list: archived ones
-- left out): a member's newest 51 notifications.
\set m random(0, 99999)
select id, member_id, type, content, data::text as data, group_id, created_at, read_at, archived_at,
       stream_seq, stream_epoch
from notification where member_id = 'member-' || :m and archived_at is null order by id desc limit 51;
