//! The write path: storing the notifications of many Send requests in one transaction,
//! each with its outbox entry, honouring idempotency keys.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{Connection as _, PgConnection};
use tidings_domain::{MemberId, NotificationType, UnreadCount};
use uuid::Uuid;

use crate::{Held, NotificationKey, Store, StoreError};

/// One Send, validated: everything the store needs to write its rows.
#[derive(Debug, Clone)]
pub struct NewSend {
    /// The authenticated producer; scopes `idempotency_key`.
    pub producer: String,
    pub idempotency_key: Option<String>,
    pub kind: NotificationType,
    pub content: String,
    /// A JSON value, already validated, as text.
    pub data_json: Option<String>,
    pub group_id: Option<String>,
    /// Distinct recipients, in request order.
    pub members: Vec<MemberId>,
    /// W3C trace context of the request, kept with the outbox entry.
    pub traceparent: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// What happened to one [`NewSend`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    Stored {
        /// One row per member, in the order of [`NewSend::members`]: all
        /// [`RowState::Fresh`], or all written by an earlier call with the same key.
        rows: Vec<StoredRow>,
        /// For fresh rows, the send's data as Postgres stored it: its `jsonb` rendered
        /// back as text, the text the relay and the inbox read, so an inline publish
        /// carries the same bytes as a relayed one. `None` without data, and for rows
        /// of an earlier call (this call does not publish them).
        data: Option<String>,
    },
    /// The idempotency key was used before for a different set of members.
    KeyConflict,
    /// Not attempted: an earlier send of the batch had a [`SendOutcome::KeyConflict`],
    /// and a batch stops there so a stream's answers stay in order.
    Skipped,
}

/// One member's notification row after the transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRow {
    pub id: Uuid,
    pub member_id: MemberId,
    pub created_at: DateTime<Utc>,
    pub state: RowState,
    /// For a fresh row, the member's unread count just after it was stored: a member's
    /// k-th row of the statement carries their count before it plus k, at their
    /// counter's version plus k. `None` for rows of an earlier call.
    pub unread: Option<UnreadCount>,
}

impl StoredRow {
    pub fn key(&self) -> NotificationKey {
        NotificationKey {
            member_id: self.member_id.as_str().to_owned(),
            id: self.id,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowState {
    /// Written by this call: the caller publishes it (or leaves it to the relay).
    Fresh,
    /// Written by an earlier call with the same key and already published.
    Published { seq: u64, epoch: u64 },
    /// Written by an earlier call with the same key; its publish is still pending.
    Pending,
}

impl Store {
    /// Stores every send in one transaction: notification rows plus outbox entries.
    /// A send whose idempotency key was seen before writes nothing and returns the
    /// earlier rows; one whose key was used for other members is a conflict, and the
    /// sends after it are skipped. Outbox entries become due for the relay after `relay_grace`, giving
    /// the caller time to publish them itself first.
    pub async fn insert_sends(&self, sends: &[NewSend], relay_grace: Duration) -> Result<Vec<SendOutcome>, StoreError> {
        let mut conn = self.pool().acquire().await?;
        insert_sends(&mut conn, sends, relay_grace).await
    }

    /// Records stream sequences after JetStream acknowledged the publishes, and
    /// clears their outbox entries.
    pub async fn record_published(&self, published: &[(NotificationKey, u64)], epoch: u64) -> Result<(), StoreError> {
        let mut conn = self.pool().acquire().await?;
        crate::outbox::record_published(&mut conn, published, epoch).await
    }
}

impl Held {
    /// [`Store::insert_sends`] on this worker's connection.
    pub async fn insert_sends(
        &mut self,
        sends: &[NewSend],
        relay_grace: Duration,
    ) -> Result<Vec<SendOutcome>, StoreError> {
        self.run(async |conn| insert_sends(conn, sends, relay_grace).await)
            .await
    }

    /// [`Store::record_published`] on this worker's connection.
    pub async fn record_published(
        &mut self,
        published: &[(NotificationKey, u64)],
        epoch: u64,
    ) -> Result<(), StoreError> {
        self.run(async |conn| crate::outbox::record_published(conn, published, epoch).await)
            .await
    }
}

async fn insert_sends(
    conn: &mut PgConnection,
    sends: &[NewSend],
    relay_grace: Duration,
) -> Result<Vec<SendOutcome>, StoreError> {
    // Ids are UUIDv7: time-ordered, so inbox order is id order.
    let planned: Vec<Vec<Uuid>> = sends
        .iter()
        .map(|s| s.members.iter().map(|_| Uuid::now_v7()).collect())
        .collect();
    if sends.iter().all(|s| s.idempotency_key.is_none()) {
        // Nothing to look up before or after: the one insert statement is its own
        // transaction: one round trip instead of three (begin, insert, commit).
        let batch: Vec<(&NewSend, &[Uuid])> = sends.iter().zip(&planned).map(|(s, ids)| (s, ids.as_slice())).collect();
        let mut inserted = insert_rows(conn, &batch, relay_grace).await?;
        return Ok(sends
            .iter()
            .zip(planned)
            .map(|(send, ids)| fresh_rows(send, ids, &mut inserted))
            .collect());
    }
    // A concurrent call with one of these keys but other members can make our insert
    // store part of a send (the members it did not take): that transaction is rolled
    // back and the batch written again, now seeing the other call's rows. Each try
    // that loses such a race means another call committed the key meanwhile.
    for _ in 0..MAX_KEY_RACES {
        if let Some(outcomes) = insert_keyed(conn, sends, &planned, relay_grace).await? {
            return Ok(outcomes);
        }
    }
    Err(StoreError::KeyContended)
}

/// [`Store::insert_sends`] for a batch with idempotency keys: `None` when a
/// concurrent call with one of the keys made this try store part of a send, and the
/// try was rolled back.
async fn insert_keyed(
    conn: &mut PgConnection,
    sends: &[NewSend],
    planned: &[Vec<Uuid>],
    relay_grace: Duration,
) -> Result<Option<Vec<SendOutcome>>, StoreError> {
    let mut tx = conn.begin().await?;
    let mut outcomes: Vec<Option<SendOutcome>> = vec![None; sends.len()];

    // Keys seen before: replay their rows, or refuse a different member set.
    let mut earlier = existing_rows(&mut tx, sends.iter()).await?;
    for (send, outcome) in sends.iter().zip(outcomes.iter_mut()) {
        if let Some(rows) = key_of(send).and_then(|k| earlier.remove(&k)) {
            *outcome = Some(replay(send, rows));
        }
    }
    if let Some(first) = outcomes.iter().position(|o| o == &Some(SendOutcome::KeyConflict)) {
        for later in &mut outcomes[first + 1..] {
            *later = Some(SendOutcome::Skipped);
        }
    }

    let to_insert: Vec<(&NewSend, &[Uuid])> = sends
        .iter()
        .zip(planned)
        .zip(&outcomes)
        .filter(|(_, o)| o.is_none())
        .map(|((s, ids), _)| (s, ids.as_slice()))
        .collect();
    let mut fresh = insert_rows(&mut tx, &to_insert, relay_grace).await?;

    // A concurrent call may have stored the same key between our check and insert:
    // our insert then skipped those rows, and the winner's rows are visible now.
    let raced: Vec<(&NewSend, &Vec<Uuid>)> = sends
        .iter()
        .zip(planned)
        .zip(&outcomes)
        .filter(|((s, ids), o)| o.is_none() && key_of(s).is_some() && !fresh.all(ids))
        .map(|(pair, _)| pair)
        .collect();
    if raced.iter().any(|(_, ids)| fresh.any(ids)) {
        tx.rollback().await?;
        return Ok(None);
    }
    let mut raced_rows = existing_rows(&mut tx, raced.iter().map(|(s, _)| *s)).await?;
    tx.commit().await?;

    Ok(Some(
        sends
            .iter()
            .zip(planned.iter().cloned())
            .zip(outcomes)
            .map(|((send, ids), outcome)| match outcome {
                Some(done) => done,
                None if !fresh.all(&ids) => match key_of(send).and_then(|k| raced_rows.remove(&k)) {
                    Some(rows) => replay(send, rows),
                    None => SendOutcome::KeyConflict,
                },
                None => fresh_rows(send, ids, &mut fresh),
            })
            .collect(),
    ))
}

type Key = (String, String);

fn key_of(send: &NewSend) -> Option<Key> {
    send.idempotency_key.clone().map(|k| (send.producer.clone(), k))
}

fn fresh_rows(send: &NewSend, ids: Vec<Uuid>, inserted: &mut Inserted) -> SendOutcome {
    let data = ids.first().and_then(|first| inserted.data.remove(first));
    let rows = send
        .members
        .iter()
        .zip(ids)
        .map(|(member, id)| StoredRow {
            id,
            member_id: member.clone(),
            created_at: send.created_at,
            state: RowState::Fresh,
            unread: inserted.unread.get(&id).copied(),
        })
        .collect();
    SendOutcome::Stored { rows, data }
}

fn replay(send: &NewSend, rows: Vec<ExistingRow>) -> SendOutcome {
    let mut by_member: HashMap<String, ExistingRow> = rows.into_iter().map(|r| (r.member_id.clone(), r)).collect();
    if by_member.len() != send.members.len() {
        return SendOutcome::KeyConflict;
    }
    let mut out = Vec::with_capacity(send.members.len());
    for member in &send.members {
        let Some(row) = by_member.remove(member.as_str()) else {
            return SendOutcome::KeyConflict;
        };
        let state = match (row.stream_seq, row.stream_epoch) {
            (Some(seq), Some(epoch)) => RowState::Published {
                seq: seq.unsigned_abs(),
                epoch: epoch.unsigned_abs(),
            },
            _ => RowState::Pending,
        };
        out.push(StoredRow {
            id: row.id,
            member_id: member.clone(),
            created_at: row.created_at,
            state,
            unread: None,
        });
    }
    SendOutcome::Stored { rows: out, data: None }
}

#[derive(Debug, sqlx::FromRow)]
struct ExistingRow {
    producer: String,
    idempotency_key: String,
    member_id: String,
    id: Uuid,
    created_at: DateTime<Utc>,
    stream_seq: Option<i64>,
    stream_epoch: Option<i64>,
}

async fn existing_rows<'a>(
    conn: &mut PgConnection,
    sends: impl Iterator<Item = &'a NewSend>,
) -> Result<HashMap<Key, Vec<ExistingRow>>, StoreError> {
    let (producers, keys): (Vec<String>, Vec<String>) = sends.filter_map(key_of).unzip();
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<ExistingRow> = sqlx::query_as(
        "select producer, idempotency_key, member_id, id, created_at, stream_seq, stream_epoch
         from notification
         where (producer, idempotency_key) in (select * from unnest($1::text[], $2::text[]))",
    )
    .bind(&producers)
    .bind(&keys)
    .fetch_all(conn)
    .await?;
    let mut grouped: HashMap<Key, Vec<ExistingRow>> = HashMap::new();
    for row in rows {
        grouped
            .entry((row.producer.clone(), row.idempotency_key.clone()))
            .or_default()
            .push(row);
    }
    Ok(grouped)
}

/// The rows one [`insert_rows`] wrote.
#[derive(Debug, Default)]
struct Inserted {
    /// Every id inserted (an idempotency conflict with a concurrent call skips rows).
    ids: HashSet<Uuid>,
    /// Postgres' rendering of each send's data, by the id of the send's first row.
    data: HashMap<Uuid, String>,
    /// Each row's member's unread count just after it, by id.
    unread: HashMap<Uuid, UnreadCount>,
}

impl Inserted {
    fn all(&self, ids: &[Uuid]) -> bool {
        ids.iter().all(|id| self.ids.contains(id))
    }

    fn any(&self, ids: &[Uuid]) -> bool {
        ids.iter().any(|id| self.ids.contains(id))
    }
}

/// How many times a keyed batch is written again after losing a race that left one of
/// its sends partly stored (each loss means a concurrent call committed the key).
const MAX_KEY_RACES: usize = 3;

/// Inserts the rows of `sends` and their outbox entries in one statement; returns what
/// it inserted.
///
/// The statement also returns each send's data as `jsonb` renders it (key order, white
/// space, number spelling), read once per send from its first row: the relay and the
/// inbox read that rendering back, so the inline publish uses it too and a notification
/// carries the same bytes whichever path publishes it. The rendering is computed once
/// per send and travels once, however many members the send has.
///
/// It also moves the members' unread counters (`member_unread`) itself, one upsert in
/// member order, and returns each member's counter after it: a member's k-th row of n
/// (in id order) carries count - n + k, at version - n + k, worked out here rather than
/// by a window over the inserted rows. It sets `tidings.unread_counted` for the rest of
/// the transaction before the insert produces a row, so the insert trigger's WHEN
/// clause (migration 000700) skips these rows without calling a function. A member
/// without a counter row has no unread notification (migration 000600 filled the table
/// in), so the row it creates starts from 0.
async fn insert_rows(
    conn: &mut PgConnection,
    sends: &[(&NewSend, &[Uuid])],
    relay_grace: Duration,
) -> Result<Inserted, StoreError> {
    let rows: usize = sends.iter().map(|(s, _)| s.members.len()).sum();
    if rows == 0 {
        return Ok(Inserted::default());
    }
    let mut cols = Columns::with_capacity(rows);
    for (send, ids) in sends {
        for (i, (member, id)) in send.members.iter().zip(ids.iter()).enumerate() {
            cols.id.push(*id);
            cols.member.push(member.as_str().to_owned());
            cols.kind.push(send.kind.as_str().to_owned());
            cols.content.push(send.content.clone());
            cols.data.push(send.data_json.clone());
            cols.group.push(send.group_id.clone());
            cols.created.push(send.created_at);
            cols.producer.push(send.producer.clone());
            cols.key.push(send.idempotency_key.clone());
            cols.traceparent.push(send.traceparent.clone());
            cols.render.push(i == 0 && send.data_json.is_some());
        }
    }
    let grace_ms = i64::try_from(relay_grace.as_millis()).unwrap_or(i64::MAX);
    let mut inserted: Vec<(Uuid, String, Option<String>, i64, i64)> = sqlx::query_as(
        "with t as (
             select * from unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                                  $7::timestamptz[], $8::text[], $9::text[], $10::text[], $12::bool[])
                 as t(id, member_id, type, content, data, group_id, created_at, producer, idempotency_key,
                      traceparent, render)
         ),
         ins as (
             insert into notification (id, member_id, type, content, data, group_id, created_at, producer, idempotency_key)
             select id, member_id, type, content, data::jsonb, group_id, created_at, producer, idempotency_key
             from t cross join (select set_config('tidings.unread_counted', 'on', true)) as told
             on conflict (producer, idempotency_key, member_id) where idempotency_key is not null do nothing
             returning member_id, id, data
         ),
         queued as (
             insert into outbox (member_id, notification_id, next_attempt_at, traceparent)
             select ins.member_id, ins.id, now() + $11 * interval '1 millisecond', t.traceparent
             from ins join t using (member_id, id)
         ),
         counted as (
             insert into member_unread as u (member_id, count, version)
             select member_id, count(*), count(*) from ins group by member_id order by member_id
             on conflict (member_id) do update
                 set count = u.count + excluded.count, version = u.version + excluded.version
             returning member_id, count, version
         )
         select ins.id, ins.member_id, case when t.render then ins.data::text end, c.count, c.version
         from ins join t using (member_id, id)
         join counted c using (member_id)",
    )
    .bind(&cols.id)
    .bind(&cols.member)
    .bind(&cols.kind)
    .bind(&cols.content)
    .bind(&cols.data)
    .bind(&cols.group)
    .bind(&cols.created)
    .bind(&cols.producer)
    .bind(&cols.key)
    .bind(&cols.traceparent)
    .bind(grace_ms)
    .bind(&cols.render)
    .fetch_all(conn)
    .await?;
    // Each row carries its member's counter after the statement; the member's k-th row
    // of n (in id order) gets the count before plus k: count - n + k.
    inserted.sort_unstable_by(|a, b| (&a.1, a.0).cmp(&(&b.1, b.0)));
    let mut out = Inserted::default();
    for member_rows in inserted.chunk_by_mut(|a, b| a.1 == b.1) {
        let n = i64::try_from(member_rows.len()).unwrap_or(i64::MAX);
        for (k, (id, _, data, count, version)) in (1..).zip(member_rows) {
            out.ids.insert(*id);
            out.unread.insert(
                *id,
                UnreadCount {
                    count: (*count - n + k).unsigned_abs(),
                    version: (*version - n + k).unsigned_abs(),
                },
            );
            if let Some(data) = data.take() {
                out.data.insert(*id, data);
            }
        }
    }
    Ok(out)
}

/// Column arrays for `unnest`: one round trip however many rows.
#[derive(Default)]
struct Columns {
    id: Vec<Uuid>,
    member: Vec<String>,
    kind: Vec<String>,
    content: Vec<String>,
    data: Vec<Option<String>>,
    group: Vec<Option<String>>,
    created: Vec<DateTime<Utc>>,
    producer: Vec<String>,
    key: Vec<Option<String>>,
    traceparent: Vec<Option<String>>,
    /// Whether to return the row's data rendered: the first row of a send with data.
    render: Vec<bool>,
}

impl Columns {
    fn with_capacity(n: usize) -> Self {
        Self {
            id: Vec::with_capacity(n),
            member: Vec::with_capacity(n),
            kind: Vec::with_capacity(n),
            content: Vec::with_capacity(n),
            data: Vec::with_capacity(n),
            group: Vec::with_capacity(n),
            created: Vec::with_capacity(n),
            producer: Vec::with_capacity(n),
            key: Vec::with_capacity(n),
            traceparent: Vec::with_capacity(n),
            render: Vec::with_capacity(n),
        }
    }
}
