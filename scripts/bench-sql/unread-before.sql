-- A member's unread count before archiving existed (inbox.rs at 37cd5bd).
\set m random(0, 99999)
select count(*) from notification where member_id = 'member-' || :m and read_at is null;
