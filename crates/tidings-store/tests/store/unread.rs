//! The unread counters (`member_unread`) against a real Postgres: after every kind of
//! change, and under concurrent writers, each member's counter is what a count(*) of
//! their unread, unarchived notifications says.

use std::time::Duration;

use chrono::{TimeDelta, Utc};
use tidings_domain::UnreadCount;
use tidings_store::{Selection, Store};
use tidings_testkit::TestDb;
use uuid::Uuid;

use super::{NOW, member, rows, send};

async fn version(db: &TestDb, m: &str) -> i64 {
    sqlx::query_scalar("select version from member_unread where member_id = $1")
        .bind(m)
        .fetch_one(&db.pool)
        .await
        .unwrap()
}

async fn sends(store: &Store, members: &[&str], times: usize) -> Vec<Uuid> {
    let mut ids = Vec::new();
    for _ in 0..times {
        let out = store
            .insert_sends(&[send(members, None), send(members, None)], NOW)
            .await
            .unwrap();
        for o in &out {
            ids.extend(rows(o).iter().map(|r| r.id));
        }
    }
    ids
}

#[tokio::test]
async fn the_counter_follows_sends_reads_archives_deletes_and_retention() {
    let db = TestDb::new().await;
    let store = db.store();
    let m = member("m");
    sends(&store, &["m", "other"], 5).await;
    assert_eq!(store.unread_count(&m).await.unwrap(), 10);
    assert_eq!(version(&db, "m").await, 10, "one version per unit the count moved");
    assert!(db.unread_mismatches().await.is_empty());

    let mine: Vec<Uuid> = store
        .list(&m, None, 50, false, tidings_store::Archived::Exclude)
        .await
        .unwrap()
        .iter()
        .rev()
        .map(|i| i.id)
        .collect();
    assert_eq!(mine.len(), 10);

    // Recording stream sequences changes no one's count.
    let published: Vec<_> = mine
        .iter()
        .map(|id| {
            (
                tidings_store::NotificationKey {
                    member_id: "m".into(),
                    id: *id,
                },
                1,
            )
        })
        .collect();
    store.record_published(&published, 1).await.unwrap();
    assert_eq!(
        version(&db, "m").await,
        10,
        "an update that leaves unread rows unread moves nothing"
    );

    assert_eq!(
        store
            .mark_read(&m, &Selection::Ids(vec![mine[9]]))
            .await
            .unwrap()
            .map(|u| u.count),
        Some(9)
    );
    assert_eq!(
        store
            .mark_read(&m, &Selection::Ids(vec![mine[9]]))
            .await
            .unwrap()
            .map(|u| u.count),
        Some(9)
    );
    assert_eq!(
        store
            .mark_read(&m, &Selection::UpTo(mine[2]))
            .await
            .unwrap()
            .map(|u| u.count),
        Some(6)
    );
    assert_eq!(version(&db, "m").await, 14);
    assert!(db.unread_mismatches().await.is_empty());

    // Archiving an unread one lowers the count; archiving a read one does not.
    store
        .archive(&m, &Selection::Ids(vec![mine[0], mine[3]]))
        .await
        .unwrap();
    assert_eq!(store.unread_count(&m).await.unwrap(), 5);
    // Deleting a read one changes nothing; an unread one lowers the count.
    store.delete(&m, &Selection::Ids(vec![mine[1], mine[4]])).await.unwrap();
    assert_eq!(store.unread_count(&m).await.unwrap(), 4);
    assert!(db.unread_mismatches().await.is_empty());

    // Mark all read.
    assert_eq!(
        store
            .mark_read(&m, &Selection::UpTo(mine[9]))
            .await
            .unwrap()
            .map(|u| u.count),
        Some(0)
    );
    assert_eq!(
        store
            .unread_counts(&[m.clone(), member("other"), member("nobody")])
            .await
            .unwrap()
            .iter()
            .map(|u| u.count)
            .collect::<Vec<_>>(),
        [0, 10, 0]
    );

    // Retention deletes across members.
    sqlx::query("update notification set created_at = now() - interval '40 days'")
        .execute(&db.pool)
        .await
        .unwrap();
    sqlx::query("delete from outbox").execute(&db.pool).await.unwrap();
    let mut run = store.retention_lock().await.unwrap().expect("nobody else holds it");
    // The ids are of now, so the cutoff is just ahead of them.
    let cutoff = Utc::now() + TimeDelta::seconds(1);
    let gone = run.delete_expired(cutoff, None, 1_000).await.unwrap();
    run.release().await;
    assert!(gone.deleted >= 10, "{gone:?}");
    assert!(
        db.unread_mismatches().await.is_empty(),
        "{:?}",
        db.unread_mismatches().await
    );
    assert_eq!(store.unread_count(&member("other")).await.unwrap(), 0);
}

#[tokio::test]
async fn a_mark_all_read_of_thousands_moves_the_counter_once() {
    let db = TestDb::new().await;
    let store = db.store();
    let m = member("m");
    let many: Vec<&str> = vec!["m"; 1];
    for _ in 0..20 {
        let batch: Vec<_> = (0..100).map(|_| send(&many, None)).collect();
        store.insert_sends(&batch, NOW).await.unwrap();
    }
    assert_eq!(store.unread_count(&m).await.unwrap(), 2_000);
    let newest = store
        .list(&m, None, 1, false, tidings_store::Archived::Exclude)
        .await
        .unwrap()[0]
        .id;
    assert_eq!(
        store
            .mark_read(&m, &Selection::UpTo(newest))
            .await
            .unwrap()
            .map(|u| u.count),
        Some(0)
    );
    assert_eq!(version(&db, "m").await, 4_000);
    assert!(db.unread_mismatches().await.is_empty());
}

/// Writers that touch overlapping sets of members at once (multi-member sends, mark
/// all read, archive, delete), in opposite member orders: counters stay exact and no
/// statement fails (a deadlock would fail one).
#[tokio::test]
async fn concurrent_writers_keep_every_counter_exact() {
    let db = TestDb::new().await;
    let store = db.store();
    let members = ["a", "b", "c", "d", "e"];
    let mut tasks = Vec::new();
    for w in 0..6_usize {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..40_usize {
                let mut set: Vec<&str> = members
                    .iter()
                    .copied()
                    .filter(|m| !(m.as_bytes()[0] as usize + i + w).is_multiple_of(3))
                    .collect();
                if w % 2 == 1 {
                    set.reverse();
                }
                if set.is_empty() {
                    continue;
                }
                let out = store
                    .insert_sends(&[send(&set, None), send(&set, None)], NOW)
                    .await
                    .unwrap();
                let first = &rows(&out[0])[0];
                match i % 4 {
                    0 => {
                        store
                            .mark_read(&first.member_id, &Selection::UpTo(first.id))
                            .await
                            .unwrap();
                    }
                    1 => {
                        store
                            .archive(&first.member_id, &Selection::Ids(vec![first.id]))
                            .await
                            .unwrap();
                    }
                    2 => {
                        store
                            .delete(&first.member_id, &Selection::Ids(vec![first.id]))
                            .await
                            .unwrap();
                    }
                    _ => {}
                }
            }
        }));
    }
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(60), t)
            .await
            .expect("no writer hangs")
            .unwrap();
    }
    assert!(
        db.unread_mismatches().await.is_empty(),
        "{:?}",
        db.unread_mismatches().await
    );
    let total: i64 = sqlx::query_scalar("select sum(count)::bigint from member_unread")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert!(total > 0);
}

/// A Send's rows carry their member's count: a member's k-th row of the statement
/// their count before it plus k, at their version plus k.
#[tokio::test]
async fn each_fresh_row_carries_its_members_count_and_version() {
    let db = TestDb::new().await;
    let store = db.store();
    let out = store
        .insert_sends(
            &[send(&["m"], None), send(&["x", "m"], None), send(&["m"], Some("k"))],
            NOW,
        )
        .await
        .unwrap();
    let carried: Vec<(String, Option<UnreadCount>)> = out
        .iter()
        .flat_map(|o| rows(o).iter().map(|r| (r.member_id.to_string(), r.unread)))
        .collect();
    let at = |count, version| Some(UnreadCount { count, version });
    assert_eq!(
        carried,
        [
            ("m".to_owned(), at(1, 1)),
            ("x".to_owned(), at(1, 1)),
            ("m".to_owned(), at(2, 2)),
            ("m".to_owned(), at(3, 3)),
        ]
    );
    assert!(
        db.unread_mismatches().await.is_empty(),
        "the trigger did not count them twice"
    );

    // A retry of the keyed send stores nothing and carries nothing.
    let again = store.insert_sends(&[send(&["m"], Some("k"))], NOW).await.unwrap();
    assert_eq!(rows(&again[0])[0].unread, None);
    assert_eq!(store.unread_count(&member("m")).await.unwrap(), 3);

    let read = store
        .mark_read(&member("m"), &Selection::UpTo(rows(&out[0])[0].id))
        .await
        .unwrap();
    assert_eq!(read, at(2, 4));
    let next = store.insert_sends(&[send(&["m"], None)], NOW).await.unwrap();
    assert_eq!(rows(&next[0])[0].unread, at(3, 5));
}

/// Sends to one member from concurrent calls: every row carries a version of its own,
/// and the count at that version, as if the calls had run one after another.
#[tokio::test]
async fn concurrent_sends_to_one_member_carry_distinct_versions() {
    let db = TestDb::new().await;
    let store = db.store();
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut carried = Vec::new();
                for _ in 0..25 {
                    let out = store.insert_sends(&[send(&["m"], None)], NOW).await.unwrap();
                    carried.push(rows(&out[0])[0].unread.unwrap());
                }
                carried
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort_by_key(|c| c.version);
    let want: Vec<UnreadCount> = (1..=100).map(|v| UnreadCount { count: v, version: v }).collect();
    assert_eq!(all, want);
}
