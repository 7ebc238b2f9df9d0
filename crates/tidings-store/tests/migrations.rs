//! The migrations over a database that is already in use: an earlier release's schema,
//! filled like a live inbox, migrated while the previous release keeps writing to it.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use chrono::Utc;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tidings_domain::{MemberId, NotificationType};
use tidings_store::{MIGRATOR, NewSend, SendOutcome};
use tidings_testkit::TestDb;
use uuid::Uuid;

/// The last migration before notifications were keyed by member.
const BEFORE_MEMBER_KEYS: i64 = 20261130000001;

/// Rows in the populated database: enough that the concurrent index builds take a
/// while, few enough for a test.
const ROWS: i64 = 200_000;

/// The previous release's write path, statement for statement: a Send to one member
/// (row plus outbox entry, without the outbox's member_id), then recording its
/// sequence by id. The previous release keeps running these during a rolling upgrade.
const PREVIOUS_INSERT: &str = "with ins as (
         insert into notification (id, member_id, type, content, created_at, producer)
         values ($1, $2, 'comment.created', 'c', now(), 'old-release')
         returning id),
     queued as (insert into outbox (notification_id, traceparent) select id, null from ins)
     select id from ins";
const PREVIOUS_RECORD: &str = "with p as (select $1::uuid as id, $2::bigint as seq),
          u as (update notification n set stream_seq = p.seq, stream_epoch = 1 from p where n.id = p.id)
     delete from outbox using p where outbox.notification_id = p.id";
const PREVIOUS_LIST: &str = "select id from notification where member_id = $1 order by id desc limit 20";

#[tokio::test]
async fn keying_by_member_migrates_a_populated_database_while_the_previous_release_writes() {
    let db = TestDb::migrated_to(BEFORE_MEMBER_KEYS).await;
    populate(&db.pool).await;
    let before = inbox(&db.pool, "m7").await;
    assert_eq!(before.len(), 20);

    // The previous release writes on its own connections, without pause, until the
    // migrations are done.
    let writer_pool = pool(&db.url, 2).await;
    let phase = Arc::new(AtomicU8::new(BEFORE));
    let during = Arc::new(AtomicU64::new(0));
    let writer = tokio::spawn(previous_release(writer_pool, phase.clone(), during.clone()));

    tokio::time::sleep(Duration::from_millis(100)).await;
    let migrator = pool(&db.url, 1).await;
    phase.store(MIGRATING, Ordering::SeqCst);
    let restarts = tokio::time::timeout(Duration::from_secs(120), migrate_restarting(&migrator))
        .await
        .expect("the migrations finish");
    phase.store(DONE, Ordering::SeqCst);
    let written = writer.await.unwrap();
    println!("the migrations started over {restarts} times");
    let during = during.load(Ordering::SeqCst);
    assert!(
        during >= 10,
        "the previous release wrote throughout the migrations (only {during} writes overlapped them)"
    );

    // Nothing lost: the populated rows, the pending entries, every write of the
    // previous release; every outbox entry carries its notification's member.
    let pg = &db.pool;
    let scalar = |sql: &'static str| async move { sqlx::query_scalar::<_, i64>(sql).fetch_one(pg).await.unwrap() };
    assert_eq!(
        scalar("select count(*) from notification").await,
        ROWS + written.len() as i64
    );
    assert_eq!(
        scalar("select count(*) from notification where producer = 'old-release'").await,
        written.len() as i64
    );
    assert_eq!(
        scalar(
            "select count(*) from outbox o left join notification n
             on n.member_id = o.member_id and n.id = o.notification_id where n.id is null"
        )
        .await,
        0,
        "every outbox entry references its notification by (member_id, id)"
    );
    assert!(
        scalar("select count(*) from outbox").await >= 1_000,
        "the pending entries are kept"
    );
    assert_eq!(inbox(&db.pool, "m7").await, before, "the inbox reads the same");
    let wrong = db.unread_mismatches().await;
    assert!(wrong.is_empty(), "counters that differ from count(*): {wrong:?}");

    // The keys a table distributed by member needs.
    assert_eq!(primary_key(&db.pool, "notification").await, ["member_id", "id"]);
    assert_eq!(primary_key(&db.pool, "outbox").await, ["member_id", "notification_id"]);
    let without_member: Vec<String> = sqlx::query_scalar(
        "select c.relname::text from pg_index i join pg_class c on c.oid = i.indexrelid
         where i.indrelid in ('notification'::regclass, 'outbox'::regclass) and i.indisunique
           and not exists (select 1 from pg_attribute a where a.attrelid = i.indrelid
                           and a.attnum = any(i.indkey) and a.attname = 'member_id')",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert!(
        without_member.is_empty(),
        "unique without member_id: {without_member:?}"
    );
    let foreign: Vec<(String, bool)> = sqlx::query_as(
        "select pg_get_constraintdef(oid), convalidated from pg_constraint
         where conrelid = 'outbox'::regclass and contype = 'f'",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        foreign,
        [(
            "FOREIGN KEY (member_id, notification_id) REFERENCES notification(member_id, id) ON DELETE CASCADE"
                .to_owned(),
            true
        )]
    );
    assert_eq!(scalar("select count(*) from pg_index where not indisvalid").await, 0);
    assert_eq!(
        scalar("select count(*) from pg_class where relname = 'notification_member_page'").await,
        0,
        "the primary key serves paging now"
    );

    // This release's statements over the migrated data: the pending entries (the
    // populated ones and the previous release's) lease with their members, and a
    // Send writes and records.
    let store = db.store();
    let pending = store.lease_outbox(10_000, Duration::from_secs(60)).await.unwrap();
    assert!(pending.len() >= 1_000);
    let published: Vec<_> = pending.iter().zip(1..).map(|(p, seq)| (p.key(), seq)).collect();
    store.outbox_published(&published, 2).await.unwrap();
    assert_eq!(store.outbox_backlog().await.unwrap().entries, 0);
    let send = NewSend {
        producer: "new-release".into(),
        idempotency_key: None,
        kind: NotificationType::parse("comment.created").unwrap(),
        content: "c".into(),
        data_json: None,
        group_id: None,
        members: vec![MemberId::parse("newcomer").unwrap()],
        traceparent: None,
        created_at: Utc::now(),
    };
    let outcome = store.insert_sends(&[send], Duration::ZERO).await.unwrap();
    let SendOutcome::Stored { rows, .. } = &outcome[0] else {
        panic!("{outcome:?}")
    };
    store.record_published(&[(rows[0].key(), 99)], 2).await.unwrap();
    let newest = &store
        .list(
            &MemberId::parse("newcomer").unwrap(),
            None,
            1,
            false,
            tidings_store::Archived::Exclude,
        )
        .await
        .unwrap()[0];
    assert_eq!((newest.id, newest.stream_seq), (rows[0].id, Some(99)));
}

/// The last migration before the unread counters.
const BEFORE_UNREAD_COUNTERS: i64 = 20261207000400;

/// The previous release reading, archiving and deleting: a member's mark all read, the
/// archive of one notification and the delete of another. It knows nothing of the
/// counters, which the triggers keep for it.
const PREVIOUS_MARK_ALL_READ: &str = "update notification set read_at = now() where member_id = $1 and read_at is null";
const PREVIOUS_ARCHIVE: &str = "update notification set archived_at = now()
     where member_id = $1 and id = (select id from notification where member_id = $1 and archived_at is null order by id desc limit 1)";
const PREVIOUS_DELETE: &str = "delete from notification where member_id = $1 and id = (select id from notification where member_id = $1 order by id limit 1)";

/// The counters start exact for a populated database however the previous release's
/// writes interleave with the triggers' installation and the batched backfill.
#[tokio::test]
async fn the_unread_counters_are_filled_in_exactly_while_the_previous_release_writes() {
    let db = TestDb::migrated_to(BEFORE_UNREAD_COUNTERS).await;
    populate(&db.pool).await;

    let phase = Arc::new(AtomicU8::new(BEFORE));
    let during = Arc::new(AtomicU64::new(0));
    let mut writers = Vec::new();
    for w in 0..3_i64 {
        let (pool, phase, during) = (pool(&db.url, 1).await, phase.clone(), during.clone());
        writers.push(tokio::spawn(async move {
            for i in 0.. {
                let began = phase.load(Ordering::SeqCst);
                if began == DONE {
                    break;
                }
                // Members spread over every batch of the backfill.
                let member = format!("m{}", (i * 7 + w * 667) % 2000);
                let sql = match (i + w) % 5 {
                    0 => PREVIOUS_MARK_ALL_READ,
                    1 => PREVIOUS_ARCHIVE,
                    2 => PREVIOUS_DELETE,
                    _ => PREVIOUS_INSERT,
                };
                let q = if sql == PREVIOUS_INSERT {
                    sqlx::query(sql).bind(Uuid::now_v7()).bind(&member)
                } else {
                    sqlx::query(sql).bind(&member)
                };
                q.execute(&pool)
                    .await
                    .unwrap_or_else(|e| panic!("the previous release's statement {i} failed: {e}"));
                if began == MIGRATING && phase.load(Ordering::SeqCst) == MIGRATING {
                    during.fetch_add(1, Ordering::SeqCst);
                }
            }
        }));
    }

    tokio::time::sleep(Duration::from_millis(100)).await;
    let migrator = pool(&db.url, 1).await;
    phase.store(MIGRATING, Ordering::SeqCst);
    tokio::time::timeout(Duration::from_secs(120), MIGRATOR.run(&migrator))
        .await
        .expect("the migrations finish")
        .unwrap();
    // A little more of the previous release against the filled-in counters.
    tokio::time::sleep(Duration::from_millis(200)).await;
    phase.store(DONE, Ordering::SeqCst);
    for w in writers {
        w.await.unwrap();
    }
    let during = during.load(Ordering::SeqCst);
    assert!(
        during >= 10,
        "the previous release wrote during the migrations (only {during} writes)"
    );

    let wrong = db.unread_mismatches().await;
    assert!(wrong.is_empty(), "counters that differ from count(*): {wrong:?}");
    let counted: i64 = sqlx::query_scalar("select count(*) from member_unread where count > 0")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert!(
        counted >= 100,
        "the populated members with unread notifications (one in twenty) have counters ({counted})"
    );
}

/// A step that needs an exclusive lock on a table something else holds gives up after
/// its lock_timeout instead of queueing every statement on the table behind it; the
/// next start finishes the migration.
#[tokio::test]
async fn a_migration_that_cannot_get_its_lock_fails_and_the_next_start_finishes_it() {
    let db = TestDb::migrated_to(BEFORE_MEMBER_KEYS).await;
    let holder = pool(&db.url, 1).await;
    let mut held = holder.begin().await.unwrap();
    sqlx::query("lock table outbox in access share mode")
        .execute(&mut *held)
        .await
        .unwrap();

    let migrator = pool(&db.url, 1).await;
    let failed = tokio::time::timeout(Duration::from_secs(30), MIGRATOR.run(&migrator))
        .await
        .expect("the migration gives up instead of waiting for the lock");
    let error = failed.expect_err("the outbox is locked").to_string();
    assert!(error.contains("lock timeout"), "{error}");

    held.rollback().await.unwrap();
    MIGRATOR.run(&migrator).await.unwrap();
    let (pk,): (String,) =
        sqlx::query_as("select pg_get_constraintdef(oid) from pg_constraint where conname = 'notification_pkey'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(pk, "PRIMARY KEY (member_id, id)");
}

async fn pool(url: &str, connections: u32) -> PgPool {
    PgPoolOptions::new()
        .max_connections(connections)
        .connect(url)
        .await
        .unwrap()
}

/// ROWS notifications over 2,000 members, one in twenty unread, one in ten with an
/// idempotency key, the newest 1,000 still in the outbox.
async fn populate(pool: &PgPool) {
    sqlx::query(
        "insert into notification (id, member_id, type, content, created_at, read_at, stream_seq, stream_epoch,
                                   producer, idempotency_key)
         select gen_random_uuid(), 'm' || (i % 2000), 'comment.created', 'content ' || i,
                now() - (i || ' seconds')::interval,
                case when i % 20 = 0 then null else now() end,
                case when i > 1000 then i end, case when i > 1000 then 1 end,
                'populated', case when i % 10 = 0 then 'key-' || i end
         from generate_series(1, $1) as i",
    )
    .bind(ROWS)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query("insert into outbox (notification_id) select id from notification where stream_seq is null")
        .execute(pool)
        .await
        .unwrap();
    sqlx::query("analyze notification").execute(pool).await.unwrap();
}

const BEFORE: u8 = 0;
const MIGRATING: u8 = 1;
const DONE: u8 = 2;

/// The previous release's Sends, recorded one in two, with an inbox read between, until
/// `phase` is DONE (5,000 Sends at most): returns the ids written; counts in `during`
/// those begun and finished while the migrations ran. Every statement must succeed.
async fn previous_release(pool: PgPool, phase: Arc<AtomicU8>, during: Arc<AtomicU64>) -> Vec<Uuid> {
    let mut written = Vec::new();
    for i in 0..5_000_i64 {
        let began = phase.load(Ordering::SeqCst);
        if began == DONE {
            break;
        }
        let member = format!("m{}", i % 2000);
        let id = Uuid::now_v7();
        let send = || sqlx::query(PREVIOUS_INSERT).bind(id).bind(&member).execute(&pool);
        again_after_deadlock(send)
            .await
            .unwrap_or_else(|e| panic!("the previous release's Send {i} failed: {e}"));
        if i % 2 == 0 {
            let record = || sqlx::query(PREVIOUS_RECORD).bind(id).bind(1_000_000 + i).execute(&pool);
            again_after_deadlock(record)
                .await
                .unwrap_or_else(|e| panic!("the previous release's record {i} failed: {e}"));
        }
        sqlx::query(PREVIOUS_LIST)
            .bind(&member)
            .fetch_all(&pool)
            .await
            .unwrap_or_else(|e| panic!("the previous release's inbox read {i} failed: {e}"));
        written.push(id);
        if began == MIGRATING && phase.load(Ordering::SeqCst) == MIGRATING {
            during.fetch_add(1, Ordering::SeqCst);
        }
    }
    written
}

/// How many times a test lets the migrations start over.
const RESTARTS: u32 = 3;

/// Runs the migrations as a replica does, starting over (as its restart would) when
/// Postgres broke a deadlock with the previous release's statements by aborting the
/// migration's; returns how many times it started over. Step 5 locks the outbox, then
/// the notifications, and the previous release's Send the other way round: Postgres
/// aborts one of the two, and whichever it is, tries again (deploy/README.md).
async fn migrate_restarting(migrator: &PgPool) -> u32 {
    for restarts in 0..RESTARTS {
        match MIGRATOR.run(migrator).await {
            Ok(()) => return restarts,
            Err(sqlx::migrate::MigrateError::ExecuteMigration(e, _) | sqlx::migrate::MigrateError::Execute(e))
                if deadlocked(&e) => {}
            Err(e) => panic!("the migrations failed: {e}"),
        }
    }
    panic!("the migrations deadlocked {RESTARTS} times")
}

/// A statement of the previous release, tried again when Postgres aborted it to break
/// a deadlock with the migration (nothing of it was stored; its caller retries).
async fn again_after_deadlock<F, Fut, T>(mut statement: F) -> Result<T, sqlx::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, sqlx::Error>>,
{
    let mut tries = 0;
    loop {
        match statement().await {
            Err(e) if deadlocked(&e) && tries < RESTARTS => tries += 1,
            result => return result,
        }
    }
}

fn deadlocked(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().as_deref() == Some("40P01"))
}

async fn inbox(pool: &PgPool, member: &str) -> Vec<Uuid> {
    sqlx::query_scalar(
        "select id from notification where member_id = $1 and producer = 'populated' order by id desc limit 20",
    )
    .bind(member)
    .fetch_all(pool)
    .await
    .unwrap()
}

async fn primary_key(pool: &PgPool, table: &str) -> Vec<String> {
    sqlx::query_scalar(
        "select a.attname::text from pg_index i
         cross join lateral unnest(i.indkey) with ordinality as k(attnum, n)
         join pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.attnum
         where i.indrelid = $1::regclass and i.indisprimary order by k.n",
    )
    .bind(table)
    .fetch_all(pool)
    .await
    .unwrap()
}
