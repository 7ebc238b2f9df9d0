-- A member's unread count (crates/tidings-store/src/inbox.rs: archived ones left out).
\set m random(0, 99999)
select count(*) from notification where member_id = 'member-' || :m and read_at is null and archived_at is null;
