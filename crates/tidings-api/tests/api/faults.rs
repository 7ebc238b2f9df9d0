use std::time::{Duration, Instant};

use tidings_domain::EventId;
use tidings_testkit::{NatsServer, TcpProxy, TestApi, TestBus, TestDb, eventually, init_test_log};
use tonic::Code;

use crate::send::reqwest_like_get;
use crate::support::send_to;

/// An api on a nats-server of its own (so the test can kill it), with a short publish
/// timeout: a failed inline publish is left to the relay within a second.
async fn api_on_its_own_nats() -> (TestDb, NatsServer, TestBus, TestApi) {
    init_test_log();
    let db = TestDb::new().await;
    let nats = NatsServer::start().await;
    let bus = TestBus::on(nats.url()).await;
    let mut config = TestApi::config(&db, &bus);
    config.publish_timeout = Duration::from_millis(500);
    let api = TestApi::start(config, false).await;
    (db, nats, bus, api)
}

#[tokio::test]
async fn nats_down_during_send_still_succeeds_and_the_relay_publishes_exactly_once() {
    let (db, mut nats, bus, api) = api_on_its_own_nats().await;
    let mut client = api.client().await;

    nats.kill();
    let mut request = tonic::Request::new(send_to(&["alice"]));
    let traceparent = "00-11111111111111111111111111111111-2222222222222222-01";
    request
        .metadata_mut()
        .insert("traceparent", traceparent.parse().unwrap());
    let response = client
        .send(request)
        .await
        .expect("committed, so the call succeeds")
        .into_inner();
    let delivery = &response.deliveries[0];
    assert_eq!(delivery.event_id, "", "not published yet");

    nats.restart().await;
    let id = delivery.notification_id.clone();
    let seq = db.published_seq(id.parse().unwrap()).await;

    let stream = bus.bus.jetstream().get_stream(&bus.settings.name).await.unwrap();
    let stored = stream.get_raw_message(seq).await.unwrap();
    assert_eq!(stored.headers.get("Nats-Msg-Id").unwrap().as_str(), id);
    assert_eq!(
        stored.headers.get("traceparent").unwrap().as_str(),
        traceparent,
        "the relay continues the trace"
    );
    let mut stream = stream;
    assert_eq!(stream.info().await.unwrap().state.messages, 1, "published exactly once");
    let outbox: i64 = sqlx::query_scalar("select count(*) from outbox")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(outbox, 0);

    // Inbox reads report the event id the relay got.
    let listed = client
        .list_notifications(tidings_proto::v1::ListNotificationsRequest {
            member_id: "alice".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(EventId::parse(&listed.notifications[0].event_id).unwrap().seq, seq);
}

/// What a caller sends as `traceparent` is kept only as a canonical W3C value: a forged
/// or oversized one is neither stored with the outbox row nor sent on with the message.
#[tokio::test]
async fn a_forged_traceparent_is_neither_stored_nor_published() {
    let (db, mut nats, bus, api) = api_on_its_own_nats().await;
    let mut client = api.client().await;

    // With NATS down the rows wait in the outbox, as stored.
    nats.kill();
    let valid = "00-11111111111111111111111111111111-2222222222222222-01";
    let forged = format!("00-{}-2222222222222222-01", "z".repeat(4000));
    let mut ids = Vec::new();
    for (member, traceparent) in [("forged", forged.as_str()), ("valid", valid)] {
        let mut request = tonic::Request::new(send_to(&[member]));
        request
            .metadata_mut()
            .insert("traceparent", traceparent.parse().unwrap());
        let response = client.send(request).await.unwrap().into_inner();
        ids.push(response.deliveries[0].notification_id.clone());
    }
    let stored: Vec<Option<String>> = sqlx::query_scalar(
        "select o.traceparent from outbox o join notification n on n.id = o.notification_id order by n.member_id",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(stored, [None, Some(valid.to_owned())], "forged, then valid");

    nats.restart().await;
    let stream = bus.bus.jetstream().get_stream(&bus.settings.name).await.unwrap();
    for id in ids {
        let seq = db.published_seq(id.parse().unwrap()).await;
        let message = stream.get_raw_message(seq).await.unwrap();
        if let Some(tp) = message.headers.get("traceparent") {
            assert_eq!(
                tp.as_str().len(),
                55,
                "only a canonical value travels: {:.60}",
                tp.as_str()
            );
        }
    }
}

#[tokio::test]
async fn postgres_down_answers_unavailable_in_bounded_time_and_recovers() {
    init_test_log();
    let db = TestDb::new().await;
    let bus = TestBus::new().await;
    let url = url_of(&db.url);
    let proxy = TcpProxy::start(url).await;
    let mut config = TestApi::config(&db, &bus);
    config.db.url = db.url.replace(&url.to_string(), &proxy.addr().to_string()).into();
    config.db.acquire_timeout = Duration::from_secs(2);
    let api = TestApi::start(config, false).await;
    let mut client = api.client().await;
    client.send(send_to(&["a"])).await.unwrap();

    proxy.cut();
    for _ in 0..3 {
        let started = Instant::now();
        let status = client.send(send_to(&["a"])).await.unwrap_err();
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "no hang: {:?}",
            started.elapsed()
        );
        let status = client
            .get_unread_count(tidings_proto::v1::GetUnreadCountRequest {
                member_id: "a".into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unavailable);
    }
    let ready = reqwest_like_get(api.http_addr, "/readyz").await;
    assert!(
        ready.starts_with("HTTP/1.1 503") && ready.contains(r#""postgres":false"#),
        "{ready}"
    );

    proxy.restore();
    eventually("sends to work again", || {
        let mut client = client.clone();
        async move { client.send(send_to(&["a"])).await.ok() }
    })
    .await;
    let rows: i64 = sqlx::query_scalar("select count(*) from notification")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(rows, 2, "nothing was half-stored during the outage");
}

pub(crate) fn url_of(database_url: &str) -> std::net::SocketAddr {
    let rest = database_url
        .split('@')
        .nth(1)
        .unwrap_or(database_url.trim_start_matches("postgres://"));
    let host_port = rest.split('/').next().unwrap();
    let host_port = if host_port.contains(':') {
        host_port.to_owned()
    } else {
        format!("{host_port}:5432")
    };
    let host_port = host_port.replace("localhost", "127.0.0.1");
    std::net::ToSocketAddrs::to_socket_addrs(&host_port)
        .unwrap()
        .next()
        .unwrap()
}
