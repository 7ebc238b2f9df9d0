//! A deployment starting from nothing, replicas starting together, and a restart with
//! changed settings: what every replica does at start-up must be safe to do at once and
//! again.

use std::time::Duration;

use tidings_bus::{Bus, StreamSettings};
use tidings_domain::{EventId, StreamEpoch};
use tidings_store::Store;
use tidings_testkit::{TestBus, TestDb, init_test_log};

#[tokio::test]
async fn replicas_starting_together_create_and_migrate_one_database() {
    init_test_log();
    let db = TestDb::new().await;
    let fresh = format!("{}_r", db.name);
    let config = tidings_store::DbConfig::new(db.url.replace(&db.name, &fresh));

    let start = || async {
        let store = Store::connect(&config).await?;
        store.migrate().await?;
        Ok::<_, tidings_store::StoreError>(store)
    };
    let (a, b, c) = tokio::join!(start(), start(), start());
    let stores = [a.unwrap(), b.unwrap(), c.unwrap()];
    for store in &stores {
        store.ping().await.unwrap();
    }
    let applied: i64 = sqlx::query_scalar("select count(*) from _sqlx_migrations")
        .fetch_one(stores[0].pool())
        .await
        .unwrap();
    assert_eq!(
        applied,
        tidings_store::MIGRATOR.iter().count() as i64,
        "each migration applied once"
    );
    for store in stores {
        store.pool().close().await;
    }
    let drop_it = format!(r#"drop database "{fresh}" with (force)"#);
    sqlx::query(sqlx::AssertSqlSafe(drop_it))
        .execute(&db.pool)
        .await
        .unwrap();
}

#[tokio::test]
async fn the_stream_keeps_its_epoch_across_restarts_and_updates_but_not_recreation() {
    init_test_log();
    let ns = TestBus::new().await;
    let nats = ns.nats_config();
    let first = ns.bus.epoch();

    // Replicas starting together agree on the stream and its epoch.
    let (a, b) = tokio::join!(
        Bus::connect(&nats, &ns.settings, "replica-a"),
        Bus::connect(&nats, &ns.settings, "replica-b")
    );
    assert_eq!(a.unwrap().epoch(), first);
    assert_eq!(b.unwrap().epoch(), first);

    // A restart with new retention updates the stream in place: old ids stay valid.
    let changed = StreamSettings {
        max_age: Duration::from_secs(3600),
        max_msgs_per_subject: 50,
        ..ns.settings.clone()
    };
    let updated = Bus::connect(&nats, &changed, "replica-c").await.unwrap();
    assert_eq!(updated.epoch(), first);
    let info = updated
        .jetstream()
        .get_stream(&changed.name)
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .clone();
    assert_eq!(info.config.max_age, Duration::from_secs(3600));
    assert_eq!(info.config.max_messages_per_subject, 50);

    // A stream deleted and created again is another incarnation: its event ids can
    // never be mistaken for the old one's, even at the same sequence.
    updated.jetstream().delete_stream(&changed.name).await.unwrap();
    let recreated = Bus::connect(&nats, &changed, "replica-d").await.unwrap();
    assert_ne!(recreated.epoch(), first);
    let (old, new) = (EventId::new(first, 1), EventId::new(recreated.epoch(), 1));
    assert_ne!(old.to_string(), new.to_string());
    assert_ne!(recreated.epoch(), StreamEpoch(0));
}

/// On a replicated stream the ticket bucket is replicated too: an R1 bucket on an R3
/// cluster loses every ticket, and ticket redemption on every edge, with one node.
#[tokio::test]
async fn the_ticket_bucket_has_the_streams_replicas() {
    init_test_log();
    let cluster = tidings_testkit::NatsCluster::start(3).await;
    let ns = TestBus::replicated(cluster.urls(), 3).await;
    let db = TestDb::new().await;
    let api = tidings_testkit::TestApi::start(tidings_testkit::TestApi::config(&db, &ns), false).await;
    let _edge = tidings_testkit::TestEdge::start(tidings_testkit::TestEdge::config(&ns, &api)).await;
    let bucket = format!("KV_{}_TICKETS", ns.settings.name);
    let mut stream = ns
        .bus
        .jetstream()
        .get_stream(&bucket)
        .await
        .expect("the edge opened the bucket");
    let info = stream.info().await.expect("bucket info");
    assert_eq!(info.config.num_replicas, 3);
}

/// Only the api updates the stream: an edge started with other settings (here a
/// shorter retention; in production, say, default replicas) uses the stream as it finds
/// it, and says so.
#[tokio::test]
async fn an_edge_never_changes_the_stream_it_finds() {
    init_test_log();
    let db = TestDb::new().await;
    let ns = TestBus::new().await;
    let api = tidings_testkit::TestApi::start(tidings_testkit::TestApi::config(&db, &ns), false).await;
    let mut config = tidings_testkit::TestEdge::config(&ns, &api);
    config.stream.max_age = Duration::from_secs(3600);
    assert_ne!(config.stream.max_age, ns.settings.max_age);
    let _edge = tidings_testkit::TestEdge::start(config).await;
    let mut stream = ns.bus.jetstream().get_stream(&ns.settings.name).await.unwrap();
    let info = stream.info().await.unwrap();
    assert_eq!(
        info.config.max_age, ns.settings.max_age,
        "the edge left the stream as it was"
    );
}

/// A ticket bucket that cannot be opened (here: a stream of its name that is not a
/// bucket) does not stop the edge: streams open with tokens, and only tickets fail,
/// with a 503.
#[tokio::test]
async fn an_edge_whose_ticket_bucket_cannot_open_still_serves_tokens() {
    init_test_log();
    let db = TestDb::new().await;
    let ns = TestBus::new().await;
    let bucket = format!("KV_{}_TICKETS", ns.settings.name);
    let js = ns.bus.jetstream();
    js.create_stream(async_nats::jetstream::stream::Config {
        name: bucket.clone(),
        subjects: vec![format!("{}_not_a_bucket.>", ns.settings.prefix)],
        ..Default::default()
    })
    .await
    .unwrap();
    let api = tidings_testkit::TestApi::start(tidings_testkit::TestApi::config(&db, &ns), false).await;
    let edge = tidings_testkit::TestEdge::start(tidings_testkit::TestEdge::config(&ns, &api)).await;

    let token = tidings_testkit::TestEdge::token("hana", &[], Duration::from_secs(600));
    let auth = format!("Bearer {token}");
    let mut stream = tidings_testkit::sse::connect(edge.addr, "/v1/stream", &[("authorization", &auth)])
        .await
        .unwrap();
    stream.next_named("connected").await;
    let (status, body) = tidings_testkit::sse::http_request(
        edge.addr,
        "POST",
        "/v1/stream/ticket",
        &[("authorization", &auth)],
        None,
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains(r#""code":"unavailable""#), "{body}");
    let _ = js.delete_stream(&bucket).await;
}
