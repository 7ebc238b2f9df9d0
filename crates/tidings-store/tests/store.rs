//! The store against a real Postgres: a fresh database per test.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::collections::HashSet;
use std::time::Duration;

use chrono::Utc;
use tidings_domain::{MemberId, NotificationType};
use tidings_store::{Archived, NewSend, PendingPublish, RowState, Selection, SendOutcome, StoreError, StoredRow};
use tidings_testkit::TestDb;
use uuid::Uuid;

#[path = "store/held.rs"]
mod held;
#[path = "store/lifecycle.rs"]
mod lifecycle;
#[path = "store/unread.rs"]
mod unread;

fn member(s: &str) -> MemberId {
    MemberId::parse(s).unwrap()
}

fn send(members: &[&str], key: Option<&str>) -> NewSend {
    NewSend {
        producer: "billing".into(),
        idempotency_key: key.map(str::to_owned),
        kind: NotificationType::parse("invoice.paid").unwrap(),
        content: "Your invoice was paid".into(),
        data_json: Some(r#"{"amount":42}"#.into()),
        group_id: Some("inv-1".into()),
        members: members.iter().map(|m| member(m)).collect(),
        traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
        created_at: Utc::now(),
    }
}

fn rows(outcome: &SendOutcome) -> &[StoredRow] {
    match outcome {
        SendOutcome::Stored { rows, .. } => rows,
        other => panic!("unexpected {other:?}"),
    }
}

const NOW: Duration = Duration::ZERO;

async fn count(db: &TestDb, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(&db.pool).await.unwrap()
}

#[tokio::test]
async fn a_send_stores_one_row_and_one_outbox_entry_per_member_in_order() {
    let db = TestDb::new().await;
    let store = db.store();
    let out = store.insert_sends(&[send(&["b", "a", "c"], None)], NOW).await.unwrap();
    let rows = rows(&out[0]);
    assert_eq!(
        rows.iter().map(|r| r.member_id.as_str()).collect::<Vec<_>>(),
        ["b", "a", "c"]
    );
    assert!(rows.iter().all(|r| r.state == RowState::Fresh));
    assert_eq!(count(&db, "select count(*) from notification").await, 3);
    assert_eq!(count(&db, "select count(*) from outbox").await, 3);

    let item = &store
        .list(&member("a"), None, 10, false, Archived::Exclude)
        .await
        .unwrap()[0];
    assert_eq!(item.id, rows[1].id);
    assert_eq!(item.kind, "invoice.paid");
    assert_eq!(
        item.data.as_deref(),
        Some(r#"{"amount": 42}"#),
        "jsonb normalises spacing"
    );
    assert_eq!(item.stream_seq, None);

    store.record_published(&[(rows[1].key(), 7)], 99).await.unwrap();
    let item = &store
        .list(&member("a"), None, 10, false, Archived::Exclude)
        .await
        .unwrap()[0];
    assert_eq!((item.stream_seq, item.stream_epoch), (Some(7), Some(99)));
    assert_eq!(count(&db, "select count(*) from outbox").await, 2);
}

/// A write returns each send's data as Postgres renders it, once per send: the text the
/// relay and the inbox read back, so an inline publish can carry the same bytes.
#[tokio::test]
async fn a_write_returns_the_data_as_postgres_renders_it() {
    let db = TestDb::new().await;
    let store = db.store();
    let mut spaced = send(&["a", "b"], None);
    spaced.data_json = Some(r#"{ "ccc":1.50, "b" : [true,null] }"#.into());
    let mut none = send(&["c"], None);
    none.data_json = None;
    let out = store
        .insert_sends(&[spaced, none, send(&["d"], None)], NOW)
        .await
        .unwrap();
    let data = |o: &SendOutcome| match o {
        SendOutcome::Stored { data, .. } => data.clone(),
        other => panic!("unexpected {other:?}"),
    };
    let rendered = r#"{"b": [true, null], "ccc": 1.50}"#;
    assert_eq!(
        data(&out[0]).as_deref(),
        Some(rendered),
        "jsonb's key order and spacing"
    );
    assert_eq!(data(&out[1]), None);
    assert_eq!(data(&out[2]).as_deref(), Some(r#"{"amount": 42}"#), "each send its own");
    let leased = store.lease_outbox(10, Duration::from_secs(60)).await.unwrap();
    let relayed: Vec<Option<&str>> = leased
        .iter()
        .filter(|e| e.member_id == "a" || e.member_id == "b")
        .map(|e| e.data.as_deref())
        .collect();
    assert_eq!(relayed, [Some(rendered), Some(rendered)], "what the relay reads");

    // With a key, through the transaction; a replay publishes nothing and returns none.
    let keyed = store.insert_sends(&[send(&["e"], Some("k"))], NOW).await.unwrap();
    assert_eq!(data(&keyed[0]).as_deref(), Some(r#"{"amount": 42}"#));
    let again = store.insert_sends(&[send(&["e"], Some("k"))], NOW).await.unwrap();
    assert_eq!(data(&again[0]), None);
}

#[tokio::test]
async fn the_same_idempotency_key_stores_once_and_returns_the_same_ids() {
    let db = TestDb::new().await;
    let store = db.store();
    let first = store.insert_sends(&[send(&["a", "b"], Some("k1"))], NOW).await.unwrap();
    let ids: Vec<Uuid> = rows(&first[0]).iter().map(|r| r.id).collect();
    let keys: Vec<_> = rows(&first[0]).iter().map(StoredRow::key).collect();

    let again = store.insert_sends(&[send(&["a", "b"], Some("k1"))], NOW).await.unwrap();
    assert_eq!(rows(&again[0]).iter().map(|r| r.id).collect::<Vec<_>>(), ids);
    assert!(rows(&again[0]).iter().all(|r| r.state == RowState::Pending));

    store
        .record_published(&[(keys[0].clone(), 5), (keys[1].clone(), 6)], 1)
        .await
        .unwrap();
    // Members in another order still match, and now report their sequences.
    let third = store.insert_sends(&[send(&["b", "a"], Some("k1"))], NOW).await.unwrap();
    let states: Vec<_> = rows(&third[0]).iter().map(|r| (r.id, r.state)).collect();
    assert_eq!(
        states,
        [
            (ids[1], RowState::Published { seq: 6, epoch: 1 }),
            (ids[0], RowState::Published { seq: 5, epoch: 1 })
        ]
    );
    assert_eq!(count(&db, "select count(*) from notification").await, 2);

    // Another producer's identical key is a different request.
    let mut other = send(&["a", "b"], Some("k1"));
    other.producer = "shipping".into();
    let other = store.insert_sends(&[other], NOW).await.unwrap();
    assert!(rows(&other[0]).iter().all(|r| r.state == RowState::Fresh));
    assert_eq!(count(&db, "select count(*) from notification").await, 4);
}

#[tokio::test]
async fn a_key_reused_for_other_members_is_refused_and_writes_nothing() {
    let db = TestDb::new().await;
    let store = db.store();
    store.insert_sends(&[send(&["a", "b"], Some("k1"))], NOW).await.unwrap();
    for members in [&["a"][..], &["a", "b", "c"], &["a", "c"]] {
        let batch = [send(&["y"], None), send(members, Some("k1")), send(&["z"], None)];
        let out = store.insert_sends(&batch, NOW).await.unwrap();
        assert_eq!(rows(&out[0]).len(), 1, "sends before the conflict are stored");
        assert_eq!(out[1], SendOutcome::KeyConflict, "{members:?}");
        assert_eq!(out[2], SendOutcome::Skipped, "sends after it are not attempted");
    }
    assert_eq!(
        count(&db, "select count(*) from notification where idempotency_key = 'k1'").await,
        2
    );
    assert_eq!(
        count(&db, "select count(*) from notification where member_id = 'z'").await,
        0
    );
    assert_eq!(
        count(&db, "select count(*) from notification where member_id = 'y'").await,
        3
    );
}

#[tokio::test]
async fn concurrent_retries_with_one_key_store_once() {
    let db = TestDb::new().await;
    let store = db.store();
    let members: Vec<String> = (0..50).map(|i| format!("m{i}")).collect();
    let refs: Vec<&str> = members.iter().map(String::as_str).collect();
    let attempts = (0..8).map(|_| {
        let (store, s) = (store.clone(), send(&refs, Some("retry")));
        tokio::spawn(async move { store.insert_sends(&[s], NOW).await.unwrap() })
    });
    let results = futures::future::join_all(attempts).await;
    let id_sets: HashSet<Vec<Uuid>> = results
        .iter()
        .map(|r| rows(&r.as_ref().unwrap()[0]).iter().map(|r| r.id).collect())
        .collect();
    assert_eq!(id_sets.len(), 1, "every attempt returns the same ids");
    let fresh = results
        .iter()
        .filter(|r| rows(&r.as_ref().unwrap()[0])[0].state == RowState::Fresh)
        .count();
    assert_eq!(fresh, 1, "exactly one attempt wrote (and will publish) the rows");
    assert_eq!(count(&db, "select count(*) from notification").await, 50);
    assert_eq!(count(&db, "select count(*) from outbox").await, 50);
}

/// Calls racing with one key but overlapping member sets: one set is stored whole, the
/// other calls are conflicts that stored nothing — never a conflict answer with some of
/// its members stored (and about to be notified).
#[tokio::test]
async fn racing_calls_with_one_key_and_other_members_store_one_set_whole() {
    let db = TestDb::new().await;
    let store = db.store();
    let sets: [&[&str]; 3] = [&["x", "y"], &["y", "z"], &["x", "y", "z", "w"]];
    for round in 0..10 {
        let key = format!("race-{round}");
        let calls = (0..12).map(|i| {
            let (store, s) = (store.clone(), send(sets[i % sets.len()], Some(&key)));
            tokio::spawn(async move { store.insert_sends(&[s], NOW).await })
        });
        let results = futures::future::join_all(calls).await;
        let mut stored_sets = HashSet::new();
        for result in results {
            match result.unwrap() {
                Ok(out) => match &out[0] {
                    SendOutcome::Stored { rows, .. } => {
                        let mut members: Vec<String> = rows.iter().map(|r| r.member_id.as_str().to_owned()).collect();
                        members.sort();
                        stored_sets.insert(members);
                    }
                    SendOutcome::KeyConflict => {}
                    other => panic!("unexpected {other:?}"),
                },
                // Contended past the retries: nothing written, the caller retries.
                Err(StoreError::KeyContended) => {}
                Err(e) => panic!("{e:?}"),
            }
        }
        assert_eq!(stored_sets.len(), 1, "one member set wins the key: {stored_sets:?}");
        let winner = stored_sets.into_iter().next().unwrap();
        let mut in_db: Vec<String> =
            sqlx::query_scalar("select member_id from notification where idempotency_key = $1")
                .bind(&key)
                .fetch_all(&db.pool)
                .await
                .unwrap();
        in_db.sort();
        assert_eq!(in_db, winner, "round {round}: exactly the winner's rows are stored");
    }
    let rows = count(&db, "select count(*) from notification").await;
    let outbox = count(&db, "select count(*) from outbox").await;
    assert_eq!(rows, outbox, "no outbox entry without its row, or the reverse");
}

#[tokio::test]
async fn paging_is_newest_first_and_stable_while_new_rows_arrive() {
    let db = TestDb::new().await;
    let store = db.store();
    let m = member("reader");
    for _ in 0..25 {
        store
            .insert_sends(&[send(&["reader", "someone-else"], None)], NOW)
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = store.list(&m, cursor, 10, false, Archived::Exclude).await.unwrap();
        // New notifications keep arriving between pages.
        store.insert_sends(&[send(&["reader"], None)], NOW).await.unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.windows(2).all(|w| w[0].id > w[1].id), "newest first");
        assert!(page.iter().all(|i| i.member_id == "reader"));
        cursor = page.last().map(|i| i.id);
        seen.extend(page.into_iter().map(|i| i.id));
    }
    assert_eq!(seen.len(), 25, "every original row exactly once, none of the new ones");
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 25);
}

#[tokio::test]
async fn mark_read_by_ids_and_up_to_keeps_the_unread_count_exact() {
    let db = TestDb::new().await;
    let store = db.store();
    let (m, other) = (member("m"), member("other"));
    let mut ids = Vec::new();
    for _ in 0..6 {
        ids.push(rows(&store.insert_sends(&[send(&["m"], None)], NOW).await.unwrap()[0])[0].id);
    }
    let foreign = rows(&store.insert_sends(&[send(&["other"], None)], NOW).await.unwrap()[0])[0].id;
    assert_eq!(store.unread_count(&m).await.unwrap(), 6);

    // Another member's id and an unknown id are ignored; marking twice is harmless.
    let n = store
        .mark_read(&m, &Selection::Ids(vec![ids[5], foreign, Uuid::now_v7()]))
        .await
        .unwrap();
    assert_eq!(n.map(|u| u.count), Some(5));
    assert_eq!(
        store
            .mark_read(&m, &Selection::Ids(vec![ids[5]]))
            .await
            .unwrap()
            .map(|u| u.count),
        Some(5)
    );
    assert_eq!(store.unread_count(&other).await.unwrap(), 1);

    assert_eq!(
        store
            .mark_read(&m, &Selection::UpTo(ids[2]))
            .await
            .unwrap()
            .map(|u| u.count),
        Some(2)
    );
    let unread: Vec<Uuid> = store
        .list(&m, None, 50, true, Archived::Exclude)
        .await
        .unwrap()
        .iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(unread, [ids[4], ids[3]]);
    assert!(
        store
            .list(&m, None, 50, false, Archived::Exclude)
            .await
            .unwrap()
            .iter()
            .filter(|i| i.read_at.is_some())
            .count()
            == 4
    );

    assert_eq!(
        store
            .mark_read(&m, &Selection::UpTo(foreign))
            .await
            .unwrap()
            .map(|u| u.count),
        None,
        "not m's notification"
    );
    assert_eq!(
        store
            .mark_read(&m, &Selection::UpTo(Uuid::now_v7()))
            .await
            .unwrap()
            .map(|u| u.count),
        None
    );
}

#[tokio::test]
async fn relays_claim_disjoint_due_entries_and_back_off_failures() {
    let db = TestDb::new().await;
    let store = db.store();
    let members: Vec<String> = (0..10).map(|i| format!("m{i}")).collect();
    let refs: Vec<&str> = members.iter().map(String::as_str).collect();
    store.insert_sends(&[send(&refs, None)], NOW).await.unwrap();
    // Entries still inside the inline publisher's grace period are not due.
    store
        .insert_sends(&[send(&["later"], None)], Duration::from_secs(3600))
        .await
        .unwrap();

    let lease = Duration::from_secs(60);
    let a = store.lease_outbox(6, lease).await.unwrap();
    // Nothing stays locked while a relay publishes what it leased.
    let locked: Vec<Uuid> = sqlx::query_scalar("select notification_id from outbox for update nowait")
        .fetch_all(&db.pool)
        .await
        .expect("no row of the lease is locked");
    assert_eq!(locked.len(), 11);
    let b = store.lease_outbox(100, lease).await.unwrap();
    assert_eq!(a.len(), 6);
    assert_eq!(b.len(), 4, "the rest: a's entries are leased");
    let a_ids: HashSet<Uuid> = a.iter().map(|e| e.id).collect();
    assert!(b.iter().all(|e| !a_ids.contains(&e.id)));
    assert_eq!(
        a[0].traceparent.as_deref(),
        Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
    );

    let published: Vec<_> = a.iter().zip(1..).map(|(e, seq)| (e.key(), seq)).collect();
    store.outbox_published(&published, 3).await.unwrap();
    let failed: Vec<Uuid> = b.iter().map(|e| e.id).collect();
    let failed_keys: Vec<_> = b.iter().map(PendingPublish::key).collect();
    store
        .outbox_retry_later(&failed_keys, Duration::from_secs(60), Duration::from_secs(600))
        .await
        .unwrap();

    let backlog = store.outbox_backlog().await.unwrap();
    assert_eq!(backlog.entries, 5);
    assert!(backlog.oldest.is_some());
    let again = store.lease_outbox(100, lease).await.unwrap();
    assert!(again.is_empty(), "backed-off and not-yet-due entries wait");
    let attempts: i64 = sqlx::query_scalar("select sum(attempts) from outbox")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(attempts, 4);

    // The stream answers again: the backed-off entries are due at once, the one never
    // tried (still in its grace period) is not.
    assert_eq!(store.outbox_due_now().await.unwrap(), 4);
    let retried = store.lease_outbox(100, lease).await.unwrap();
    assert_eq!(
        retried.iter().map(|e| e.id).collect::<HashSet<_>>(),
        failed.iter().copied().collect::<HashSet<_>>()
    );
    let stored: i64 = count(
        &db,
        "select count(*) from notification where stream_seq is not null and stream_epoch = 3",
    )
    .await;
    assert_eq!(stored, 6);
}

/// A relay that dies holding a lease loses it when the lease passes: another relay
/// takes the entries over.
#[tokio::test]
async fn a_dead_relays_lease_passes_to_another_relay() {
    let db = TestDb::new().await;
    let store = db.store();
    store.insert_sends(&[send(&["a", "b"], None)], NOW).await.unwrap();
    let dead = store.lease_outbox(10, Duration::from_millis(300)).await.unwrap();
    assert_eq!(dead.len(), 2);
    assert!(
        store
            .lease_outbox(10, Duration::from_secs(60))
            .await
            .unwrap()
            .is_empty()
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    let taken: Vec<Uuid> = store
        .lease_outbox(10, Duration::from_secs(60))
        .await
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(
        taken,
        dead.iter().map(|e| e.id).collect::<Vec<_>>(),
        "same entries, same order"
    );
}

/// The plans behind "fast for a member with 100k notifications": each inbox query is an
/// index range scan over one member's entries, never a scan of the table.
#[tokio::test]
async fn inbox_queries_use_the_member_indexes_at_100k_rows() {
    let db = TestDb::new().await;
    sqlx::query(
        "insert into notification (id, member_id, type, content, created_at, producer, read_at, archived_at)
         select gen_random_uuid(), case when i % 4 = 0 then 'big' else 'm' || (i % 5000) end, 't', 'c', now(), 'p',
                case when i % 100 = 0 then null else now() end,
                -- 'big' cleared most of its inbox: nine in ten of its rows are archived.
                case when i % 40 = 0 then null else now() end
         from generate_series(1, 400000) as i",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    sqlx::query("analyze notification").execute(&db.pool).await.unwrap();

    let plans = [
        (
            "page, archived included",
            "select * from notification where member_id = 'big' and ($1::uuid is null or id < $1) order by id desc limit 51",
            "notification_pkey",
        ),
        (
            "default page (archived left out)",
            "select * from notification where member_id = 'big' and ($1::uuid is null or id < $1) and archived_at is null order by id desc limit 51",
            "notification_member_active",
        ),
        (
            "unread page",
            "select * from notification where member_id = 'big' and ($1::uuid is null or id < $1) and read_at is null and archived_at is null order by id desc limit 51",
            "notification_member_unread_active",
        ),
        (
            "unread count",
            "select count(*) from notification where member_id = 'big' and read_at is null and archived_at is null and $1::uuid is null",
            "notification_member_unread_active",
        ),
    ];
    for (what, sql, index) in plans {
        let explain = format!("explain (format json) {sql}");
        let plan: serde_json::Value = sqlx::query_scalar(sqlx::AssertSqlSafe(explain))
            .bind(None::<Uuid>)
            .fetch_one(&db.pool)
            .await
            .unwrap();
        let text = plan.to_string();
        assert!(text.contains(index), "{what} should use {index}: {text}");
        assert!(!text.contains("Seq Scan"), "{what} scans the table: {text}");
    }
}

#[tokio::test]
async fn a_deadlock_is_an_aborted_write_to_retry_not_a_failed_query() {
    let db = TestDb::new().await;
    sqlx::query("create table lock_pair (id int primary key)")
        .execute(&db.pool)
        .await
        .unwrap();
    sqlx::query("insert into lock_pair values (1), (2)")
        .execute(&db.pool)
        .await
        .unwrap();
    let lock = |id: i32| sqlx::query("select 1 from lock_pair where id = $1 for update").bind(id);
    let mut a = db.pool.begin().await.unwrap();
    let mut b = db.pool.begin().await.unwrap();
    lock(1).execute(&mut *a).await.unwrap();
    lock(2).execute(&mut *b).await.unwrap();
    // Each now waits for the other: Postgres aborts one (40P01) after deadlock_timeout.
    let (ra, rb) = tokio::join!(lock(2).execute(&mut *a), lock(1).execute(&mut *b));
    let lost = ra.err().or(rb.err()).expect("postgres breaks the deadlock");
    let e = StoreError::from(lost);
    assert!(matches!(e, StoreError::Aborted(_)), "{e:?}");
}
