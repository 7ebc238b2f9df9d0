//! The kit's own proof: each path it offers works against real servers.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::time::Duration;

use async_nats::jetstream;
use futures::StreamExt as _;
use tidings_domain::MemberId;
use tidings_testkit::{NatsCluster, NatsServer, TestBus, TestDb, eventually, init_test_log};

#[tokio::test]
async fn a_test_database_is_fresh_migrated_and_dropped() {
    init_test_log();
    let db = TestDb::new().await;
    let applied: i64 = sqlx::query_scalar("select count(*) from _sqlx_migrations where success")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(applied, tidings_store::MIGRATOR.iter().count() as i64);
    let rows: i64 = sqlx::query_scalar("select count(*) from notification")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(rows, 0, "a fresh database has no notifications");

    // A write round-trips.
    let id = uuid::Uuid::now_v7();
    sqlx::query(
        "insert into notification (id, member_id, type, content, created_at, producer) \
         values ($1, 'm-1', 'comment.created', 'hi', now(), 'test')",
    )
    .bind(id)
    .execute(&db.pool)
    .await
    .unwrap();
    let member: String = sqlx::query_scalar("select member_id from notification where id = $1")
        .bind(id)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(member, "m-1");

    // Two test databases never share rows.
    let other = TestDb::new().await;
    assert_ne!(other.name, db.name);
    let rows: i64 = sqlx::query_scalar("select count(*) from notification")
        .fetch_one(&other.pool)
        .await
        .unwrap();
    assert_eq!(rows, 0);

    let (name, admin) = (db.name.clone(), other.pool.clone());
    drop(db);
    let exists: bool = sqlx::query_scalar("select exists (select 1 from pg_database where datname = $1)")
        .bind(&name)
        .fetch_one(&admin)
        .await
        .unwrap();
    assert!(!exists, "{name} should be dropped with its TestDb");
}

#[tokio::test]
async fn a_namespace_stores_republishes_and_is_deleted() {
    init_test_log();
    let ns = TestBus::new().await;
    let bus = &ns.bus;
    let member = MemberId::parse("member.with*odd>chars").unwrap();

    let client = bus.client().clone();
    let mut live = client.subscribe(bus.subjects().live_member(&member)).await.unwrap();
    client.flush().await.unwrap();

    let ack = bus
        .jetstream()
        .send_publish(
            bus.subjects().member(&member),
            jetstream::message::PublishMessage::build()
                .message_id("n-1")
                .payload("hello".into()),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(ack.sequence, 1);
    assert_eq!(ack.stream, ns.settings.name);

    // Stored: read back by sequence.
    let stream = bus.jetstream().get_stream(&ns.settings.name).await.unwrap();
    let stored = stream.get_raw_message(ack.sequence).await.unwrap();
    assert_eq!(stored.subject.as_str(), bus.subjects().member(&member));
    assert_eq!(stored.payload.as_ref(), b"hello");

    // Re-published live with its stream sequence.
    let msg = tokio::time::timeout(Duration::from_secs(5), live.next())
        .await
        .unwrap()
        .unwrap();
    let headers = msg.headers.unwrap();
    assert_eq!(headers.get_last("Nats-Sequence").unwrap().as_str(), "1");
    assert_eq!(
        headers.get_last("Nats-Subject").unwrap().as_str(),
        bus.subjects().member(&member)
    );

    // Another namespace sees nothing of this one.
    let other = TestBus::new().await;
    assert_ne!(other.settings.prefix, ns.settings.prefix);
    let info = other
        .bus
        .jetstream()
        .get_stream(&other.settings.name)
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .clone();
    assert_eq!(info.state.messages, 0);

    let (name, js) = (ns.settings.name.clone(), other.bus.jetstream().clone());
    drop(ns);
    assert!(
        js.get_stream(&name).await.is_err(),
        "{name} should be deleted with its TestBus"
    );
}

#[tokio::test]
async fn a_spawned_server_survives_kill_and_restart_with_its_data() {
    init_test_log();
    let mut server = NatsServer::start().await;
    let ns = TestBus::on(server.url()).await;
    let js = ns.bus.jetstream().clone();
    let member = MemberId::parse("m").unwrap();
    let subject = ns.bus.subjects().member(&member);
    js.publish(subject.clone(), "before".into())
        .await
        .unwrap()
        .await
        .unwrap();

    server.kill();
    assert!(!server.is_running());
    server.restart().await;

    // The same client reconnects by itself; the stream kept what it stored.
    let ack = eventually("publishing after the restart", || {
        let (js, subject) = (js.clone(), subject.clone());
        async move { js.publish(subject, "after".into()).await.ok()?.await.ok() }
    })
    .await;
    assert_eq!(ack.sequence, 2);
}

#[tokio::test]
async fn a_three_node_cluster_elects_a_stream_leader_and_survives_losing_it() {
    init_test_log();
    let mut cluster = NatsCluster::start(3).await;
    let ns = TestBus::replicated(cluster.urls(), 3).await;
    let js = ns.bus.jetstream().clone();
    let name = ns.settings.name.clone();

    // Right after creation the stream's group may still be forming: a cluster node can
    // answer "stream not found" or report no leader for a moment.
    let state = eventually("the new stream's leader", || {
        let (js, name) = (js.clone(), name.clone());
        async move {
            let state = js.get_stream(&name).await.ok()?.info().await.ok()?.cluster.clone()?;
            state.leader.is_some().then_some(state)
        }
    })
    .await;
    let leader = state.leader.expect("a leader is elected");
    assert_eq!(state.replicas.len(), 2, "R3: a leader and two followers");

    let subject = ns.bus.subjects().member(&MemberId::parse("m").unwrap());
    // Nor may the subject's interest have reached this client's server yet: a publish
    // nobody answered (async-nats: `StreamNotFound`) stored nothing and is sent again.
    let first = eventually("the first publish to be answered", || {
        let (js, subject) = (js.clone(), subject.clone());
        async move {
            match js.publish(subject, "one".into()).await.unwrap().await {
                Ok(ack) => Some(ack),
                Err(e) if e.kind() == async_nats::jetstream::context::PublishErrorKind::StreamNotFound => None,
                Err(e) => panic!("the first publish failed: {e}"),
            }
        }
    })
    .await;
    assert_eq!(first.sequence, 1);

    cluster.node_mut(&leader).kill();
    let new_leader = eventually("a new stream leader", || {
        let (js, name, old) = (js.clone(), name.clone(), leader.clone());
        async move {
            let mut stream = js.get_stream(&name).await.ok()?;
            let leader = stream.info().await.ok()?.cluster.clone()?.leader?;
            (leader != old).then_some(leader)
        }
    })
    .await;
    assert_ne!(new_leader, leader);
    let ack = eventually("publishing with one node down", || {
        let (js, subject) = (js.clone(), subject.clone());
        async move { js.publish(subject, "two".into()).await.ok()?.await.ok() }
    })
    .await;
    assert_eq!(ack.sequence, 2, "nothing acknowledged was lost");
}
