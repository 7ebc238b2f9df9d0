-- Every notification row is updated once, milliseconds after its insert, when its
-- JetStream sequence is recorded. With full pages that update writes a new row version
-- elsewhere plus an entry in every index (four of them). Leaving a fifth of each page
-- free lets Postgres keep the new version on the same page with no index entries (a
-- HOT update: stream_seq and stream_epoch are in no index), and page pruning reclaims
-- the old one. Measured (tidings-bench unicast, 1,000 Sends/s): 0 of the updates were
-- HOT before, 99% after. Costs a fifth more heap pages. Applies to pages written from
-- now on.
alter table notification set (fillfactor = 80);
