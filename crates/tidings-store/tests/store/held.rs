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
