//! A connection one worker keeps between statements (`Held`).

use std::time::Duration;

use sqlx::postgres::PgPoolOptions;
use tidings_store::{Store, StoreError};
use tidings_testkit::TestDb;

use super::{NOW, member, send};

#[tokio::test]
async fn a_held_connection_stays_out_of_the_pool_until_a_statement_fails() {
    let db = TestDb::new().await;
    // One connection in all: whoever holds it, nobody else gets one.
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_millis(300))
        .connect(&db.url)
        .await
        .unwrap();
    let store = Store::from_pool(pool);
    let mut held = store.held();
    assert!(!held.is_holding(), "nothing is taken before the first statement");

    for _ in 0..3 {
        held.insert_sends(&[send(&["m"], None)], NOW).await.unwrap();
    }
    assert!(held.is_holding());
    let starved = store.unread_count(&member("m")).await;
    assert!(
        matches!(starved, Err(StoreError::Unavailable(_))),
        "the held connection never went back between statements: {starved:?}"
    );

    // A failed statement hands the connection back (a NUL is no text to Postgres).
    let mut bad = send(&["m"], None);
    bad.content = "bad\0content".into();
    assert!(held.insert_sends(&[bad], NOW).await.is_err());
    assert!(!held.is_holding());
    assert_eq!(store.unread_count(&member("m")).await.unwrap(), 3);
}

#[tokio::test]
async fn a_worker_waiting_for_work_hands_its_connection_back_after_idle() {
    let db = TestDb::new().await;
    let store = Store::from_pool(PgPoolOptions::new().max_connections(1).connect(&db.url).await.unwrap());
    let mut held = store.held();
    held.insert_sends(&[send(&["m"], None)], NOW).await.unwrap();

    // Work that is there at once: the connection stays.
    assert_eq!(held.wait_for(async { 7 }).await, 7);
    assert!(held.is_holding());

    // Work that comes only after the idle time: the connection went back meanwhile, and
    // the work still arrives.
    tokio::time::pause();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let later = async move {
        tokio::time::sleep(tidings_store::HELD_IDLE * 2).await;
        tx.send(8).unwrap();
    };
    let (got, ()) = tokio::join!(held.wait_for(rx), later);
    assert_eq!(got.unwrap(), 8);
    assert!(!held.is_holding());
    tokio::time::resume();
    assert_eq!(store.unread_count(&member("m")).await.unwrap(), 1);
}

/// Recording a sequence commits without waiting for the WAL flush, for its own
/// transaction only: the same connection's next insert is durable before it answers
/// again (`synchronous_commit` back to the server's setting).
#[tokio::test]
async fn a_records_unflushed_commit_never_reaches_the_next_insert() {
    let db = TestDb::new().await;
    let store = Store::from_pool(PgPoolOptions::new().max_connections(1).connect(&db.url).await.unwrap());
    let setting = async || -> String {
        sqlx::query_scalar("show synchronous_commit")
            .fetch_one(store.pool())
            .await
            .unwrap()
    };
    let server = setting().await;
    assert_ne!(server, "off", "the test database commits durably to begin with");

    let mut held = store.held();
    let out = held.insert_sends(&[send(&["m"], None)], NOW).await.unwrap();
    let tidings_store::SendOutcome::Stored { rows, .. } = &out[0] else {
        panic!("{out:?}")
    };
    held.record_published(&[(rows[0].key(), 7)], 1).await.unwrap();
    held.release();
    assert_eq!(setting().await, server, "on the one connection, after the record");
    let recorded: Option<i64> = sqlx::query_scalar("select stream_seq from notification")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(recorded, Some(7));
}
