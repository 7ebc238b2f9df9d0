//! Archive, delete and retention against a real Postgres.

use chrono::{TimeDelta, Utc};
use tidings_domain::UnreadCount;
use tidings_store::{Archive, Archived, Changed, Selection, Store};
use tidings_testkit::{TestDb, eventually};
use uuid::Uuid;

use super::{NOW, count, member, rows, send};

async fn six_for_m_one_for_other(store: &Store) -> (Vec<Uuid>, Uuid) {
    let mut ids = Vec::new();
    for _ in 0..6 {
        ids.push(rows(&store.insert_sends(&[send(&["m"], None)], NOW).await.unwrap()[0])[0].id);
    }
    let foreign = rows(&store.insert_sends(&[send(&["other"], None)], NOW).await.unwrap()[0])[0].id;
    (ids, foreign)
}

async fn listed(store: &Store, archived: Archived, unread_only: bool) -> Vec<Uuid> {
    store
        .list(&member("m"), None, 50, unread_only, archived)
        .await
        .unwrap()
        .iter()
        .map(|i| i.id)
        .collect()
}

#[tokio::test]
async fn archived_notifications_leave_the_default_list_and_the_unread_count() {
    let db = TestDb::new().await;
    let store = db.store();
    let m = member("m");
    let (ids, foreign) = six_for_m_one_for_other(&store).await;

    let done = store.archive(&m, &Selection::Ids(vec![ids[5]])).await.unwrap();
    assert_eq!(
        done,
        Archive::Done(Changed {
            changed: 1,
            unread: UnreadCount { count: 5, version: 7 }
        })
    );
    assert!(!listed(&store, Archived::Exclude, false).await.contains(&ids[5]));
    assert!(!listed(&store, Archived::Exclude, true).await.contains(&ids[5]));
    assert_eq!(listed(&store, Archived::Only, false).await, [ids[5]]);
    assert_eq!(listed(&store, Archived::Include, false).await.len(), 6);
    assert_eq!(store.unread_count(&m).await.unwrap(), 5);
    let first_archived_at = store.list(&m, None, 1, false, Archived::Only).await.unwrap()[0].archived_at;
    assert!(first_archived_at.is_some());

    // A retry changes nothing, not even the time it was archived.
    let again = store.archive(&m, &Selection::Ids(vec![ids[5]])).await.unwrap();
    assert_eq!(
        again,
        Archive::Done(Changed {
            changed: 0,
            unread: UnreadCount { count: 5, version: 7 }
        })
    );
    assert_eq!(
        store.list(&m, None, 1, false, Archived::Only).await.unwrap()[0].archived_at,
        first_archived_at
    );

    // All or nothing: another member's id, or an unknown one, archives nothing.
    for bad in [foreign, Uuid::now_v7()] {
        let refused = store.archive(&m, &Selection::Ids(vec![ids[4], bad])).await.unwrap();
        assert_eq!(refused, Archive::NotFound(bad));
        assert_eq!(
            store.archive(&m, &Selection::UpTo(bad)).await.unwrap(),
            Archive::NotFound(bad)
        );
    }
    assert_eq!(listed(&store, Archived::Only, false).await, [ids[5]], "nothing changed");
    assert_eq!(
        store
            .list(&member("other"), None, 5, false, Archived::Exclude)
            .await
            .unwrap()[0]
            .id,
        foreign
    );

    // Up to ids[2]: it and the two older ones.
    let done = store.archive(&m, &Selection::UpTo(ids[2])).await.unwrap();
    assert_eq!(
        done,
        Archive::Done(Changed {
            changed: 3,
            unread: UnreadCount { count: 2, version: 10 }
        })
    );
    assert_eq!(listed(&store, Archived::Exclude, false).await, [ids[4], ids[3]]);
    assert_eq!(
        store.unread_counts(&[m.clone(), member("other")]).await.unwrap(),
        [
            UnreadCount { count: 2, version: 10 },
            UnreadCount { count: 1, version: 1 }
        ]
    );
    // Reading an archived notification keeps it out of the count either way.
    store.mark_read(&m, &Selection::UpTo(ids[5])).await.unwrap();
    assert_eq!(store.unread_count(&m).await.unwrap(), 0);
}

#[tokio::test]
async fn deleted_notifications_are_gone_and_retries_and_foreign_ids_change_nothing() {
    let db = TestDb::new().await;
    let store = db.store();
    let m = member("m");
    let (ids, foreign) = six_for_m_one_for_other(&store).await;
    assert_eq!(count(&db, "select count(*) from outbox").await, 7);

    let done = store
        .delete(&m, &Selection::Ids(vec![ids[0], foreign, Uuid::now_v7()]))
        .await
        .unwrap();
    assert_eq!(
        done,
        Changed {
            changed: 1,
            unread: UnreadCount { count: 5, version: 7 }
        }
    );
    let again = store.delete(&m, &Selection::Ids(vec![ids[0]])).await.unwrap();
    assert_eq!(
        again,
        Changed {
            changed: 0,
            unread: UnreadCount { count: 5, version: 7 }
        },
        "a retry succeeds"
    );
    assert_eq!(
        store.unread_count(&member("other")).await.unwrap(),
        1,
        "another member's id changed nothing"
    );

    let done = store.delete(&m, &Selection::UpTo(ids[3])).await.unwrap();
    assert_eq!(
        done,
        Changed {
            changed: 3,
            unread: UnreadCount { count: 2, version: 10 }
        }
    );
    assert_eq!(listed(&store, Archived::Include, false).await, [ids[5], ids[4]]);
    let again = store.delete(&m, &Selection::UpTo(ids[3])).await.unwrap();
    assert_eq!(again.changed, 0, "the anchor is gone; the retry still succeeds");
    assert_eq!(count(&db, "select count(*) from notification").await, 3);
    assert_eq!(
        count(&db, "select count(*) from outbox").await,
        3,
        "outbox entries go with their rows"
    );
}

/// Notifications for `members` created `age` ago (a millisecond apart), with UUIDv7 ids
/// of their time, as Sends then would have stored them and published them; those at
/// `pending` indexes are still in the outbox. Returns the ids in order.
async fn old_rows(db: &TestDb, members: &[String], age: TimeDelta, pending: &[usize]) -> Vec<Uuid> {
    let start = Utc::now() - age;
    let times: Vec<_> = (0..members.len())
        .map(|i| start + TimeDelta::milliseconds(i as i64))
        .collect();
    let ids: Vec<Uuid> = times
        .iter()
        .map(|at| {
            let ts = uuid::Timestamp::from_unix(
                uuid::NoContext,
                at.timestamp().unsigned_abs(),
                at.timestamp_subsec_nanos(),
            );
            Uuid::new_v7(ts)
        })
        .collect();
    sqlx::query(
        "insert into notification (id, member_id, type, content, created_at, producer, stream_seq, stream_epoch)
         select id, m, 't', 'c', at, 'p', 1, 1 from unnest($1::uuid[], $2::text[], $3::timestamptz[]) as r(id, m, at)",
    )
    .bind(&ids)
    .bind(members)
    .bind(&times)
    .execute(&db.pool)
    .await
    .unwrap();
    let outboxed: Vec<Uuid> = pending.iter().map(|&i| ids[i]).collect();
    let outboxed_members: Vec<&String> = pending.iter().map(|&i| &members[i]).collect();
    sqlx::query("insert into outbox (member_id, notification_id) select * from unnest($1::text[], $2::uuid[])")
        .bind(&outboxed_members)
        .bind(&outboxed)
        .execute(&db.pool)
        .await
        .unwrap();
    ids
}

#[tokio::test]
async fn retention_deletes_only_expired_published_rows_in_bounded_batches() {
    let db = TestDb::new().await;
    let store = db.store();
    let members: Vec<String> = (0..2_500).map(|i| format!("m{}", i % 37)).collect();
    let ids = old_rows(&db, &members, TimeDelta::days(100), &[7, 1_007, 2_007]).await;
    let pending = vec![ids[7], ids[1_007], ids[2_007]];
    let young = old_rows(&db, &["m1".to_owned()], TimeDelta::days(89), &[]).await[0];
    store.insert_sends(&[send(&["m1", "m2"], None)], NOW).await.unwrap();

    let cutoff = Utc::now() - TimeDelta::days(90);
    let mut run = store.retention_lock().await.unwrap().expect("nobody else holds it");
    let mut after = None;
    let mut batches = Vec::new();
    loop {
        let batch = run.delete_expired(cutoff, after, 1_000).await.unwrap();
        batches.push(batch.deleted);
        after = batch.last.or(after);
        if batch.deleted < 1_000 {
            break;
        }
    }
    run.release().await;
    assert_eq!(
        batches,
        [1_000, 1_000, 497],
        "bounded batches, each starting where the last ended"
    );
    let left: Vec<Uuid> = sqlx::query_scalar("select id from notification where created_at < $1 order by id")
        .bind(cutoff)
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert_eq!(left, pending, "rows still in the outbox are never deleted");
    assert_eq!(count(&db, "select count(*) from notification").await, 3 + 1 + 2);
    let young_left: bool = sqlx::query_scalar("select exists (select 1 from notification where id = $1)")
        .bind(young)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert!(young_left);

    // Once published (out of the outbox), they expire too.
    sqlx::query("delete from outbox").execute(&db.pool).await.unwrap();
    let mut run = store.retention_lock().await.unwrap().unwrap();
    assert_eq!(run.delete_expired(cutoff, None, 1_000).await.unwrap().deleted, 3);
    run.release().await;
}

#[tokio::test]
async fn one_retention_run_at_a_time_and_the_lock_dies_with_its_connection() {
    let db = TestDb::new().await;
    let (a, b) = (db.store(), db.store());
    let run = a.retention_lock().await.unwrap().expect("free");
    assert!(b.retention_lock().await.unwrap().is_none(), "held by another session");
    assert!(
        a.retention_lock().await.unwrap().is_none(),
        "held by another session of the same pool too"
    );
    run.release().await;
    let run = b.retention_lock().await.unwrap().expect("released");
    // A run dropped halfway (a cancelled task) closes its connection, and the lock goes.
    drop(run);
    let again = eventually("the dropped run's lock to be released", || async {
        a.retention_lock().await.unwrap()
    })
    .await;
    again.release().await;
}

/// The archive migrations leave valid indexes (built concurrently, a failed build would
/// leave an invalid one) and no old unread index.
#[tokio::test]
async fn the_archive_migrations_leave_valid_indexes_only() {
    let db = TestDb::new().await;
    let indexes: Vec<(String, bool)> = sqlx::query_as(
        "select c.relname::text, i.indisvalid from pg_index i join pg_class c on c.oid = i.indexrelid
         where i.indrelid = 'notification'::regclass order by 1",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    for name in ["notification_member_active", "notification_member_unread_active"] {
        assert!(indexes.contains(&(name.to_owned(), true)), "{name}: {indexes:?}");
    }
    assert!(indexes.iter().all(|(_, valid)| *valid), "{indexes:?}");
    assert!(
        !indexes.iter().any(|(name, _)| name == "notification_member_unread"),
        "{indexes:?}"
    );
}
