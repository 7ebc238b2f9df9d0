use tidings_domain::{EventId, MemberId};
use tidings_proto::v1 as pb;
use tonic::Code;

use crate::support::{Harness, send_to};

#[tokio::test]
async fn a_send_is_stored_and_published_with_subject_headers_and_sequence() {
    let h = Harness::start().await;
    let mut client = h.api.client().await;
    let mut request = tonic::Request::new(send_to(&["alice", "bob.*> x"]));
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    request
        .metadata_mut()
        .insert("traceparent", traceparent.parse().unwrap());
    let response = client.send(request).await.unwrap().into_inner();
    assert_eq!(response.deliveries.len(), 2);

    for delivery in &response.deliveries {
        let event_id = EventId::parse(&delivery.event_id).expect("published inline: an event id");
        assert_eq!(event_id.epoch, h.bus.bus.epoch());
        let stored = h.stored(event_id.seq).await;
        let member = MemberId::parse(&delivery.member_id).unwrap();
        assert_eq!(stored.subject.as_str(), h.bus.bus.subjects().member(&member));
        assert_eq!(
            stored.headers.get("Nats-Msg-Id").unwrap().as_str(),
            delivery.notification_id
        );
        let trace_id = |tp: &str| tp.split('-').nth(1).map(str::to_owned);
        assert_eq!(
            trace_id(stored.headers.get("traceparent").unwrap().as_str()),
            trace_id(traceparent),
            "same trace"
        );
        let published_at: u128 = stored
            .headers
            .get("Tidings-Published-At")
            .unwrap()
            .as_str()
            .parse()
            .unwrap();
        assert!(published_at > 1_700_000_000_000_000_000);
        let payload: serde_json::Value = serde_json::from_slice(&stored.payload).unwrap();
        assert_eq!(payload["id"], delivery.notification_id.as_str());
        assert_eq!(payload["type"], "comment.created");
        assert_eq!(payload["data"], serde_json::json!({"post": 7}));
        assert_eq!(payload["groupId"], "thread-7");

        let (seq, epoch): (Option<i64>, Option<i64>) =
            sqlx::query_as("select stream_seq, stream_epoch from notification where id = $1::uuid")
                .bind(&delivery.notification_id)
                .fetch_one(&h.db.pool)
                .await
                .unwrap();
        assert_eq!(seq, Some(event_id.seq as i64));
        assert_eq!(epoch, Some(event_id.epoch.0 as i64));
    }
    let outbox: i64 = sqlx::query_scalar("select count(*) from outbox")
        .fetch_one(&h.db.pool)
        .await
        .unwrap();
    assert_eq!(outbox, 0, "published rows leave the outbox");
}

#[tokio::test]
async fn a_retried_send_with_the_same_key_stores_and_delivers_once() {
    let h = Harness::start().await;
    let mut client = h.api.client().await;
    let request = pb::SendRequest {
        idempotency_key: "order-42-paid".into(),
        ..send_to(&["a", "b", "c"])
    };
    let first = client.send(request.clone()).await.unwrap().into_inner();
    let second = client.send(request.clone()).await.unwrap().into_inner();
    assert_eq!(first, second, "same ids and event ids");
    assert_eq!(h.stream_messages().await, 3);
    assert_eq!(h.notification_rows().await, 3);

    let other_members = pb::SendRequest {
        member_ids: vec!["a".into()],
        ..request
    };
    let status = client.send(other_members).await.unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists);
    assert!(status.message().contains("idempotency_key"), "{}", status.message());
}

#[tokio::test]
async fn bad_requests_get_clear_errors_and_change_nothing() {
    let h = Harness::start().await;
    let mut client = h.api.client().await;
    let cases: Vec<(pb::SendRequest, Code, &str)> = vec![
        (send_to(&[]), Code::InvalidArgument, "member_ids"),
        (send_to(&["ok", "bad\u{0}"]), Code::InvalidArgument, "member_ids[1]"),
        (
            pb::SendRequest {
                r#type: "not a type".into(),
                ..send_to(&["a"])
            },
            Code::InvalidArgument,
            "type",
        ),
        (
            pb::SendRequest {
                data_json: "{oops".into(),
                ..send_to(&["a"])
            },
            Code::InvalidArgument,
            "data_json",
        ),
        (
            pb::SendRequest {
                // Would arrive as 1.2345678901234568e29: refused, never rounded.
                data_json: r#"{"id":123456789012345678901234567890}"#.into(),
                ..send_to(&["a"])
            },
            Code::InvalidArgument,
            "data_json",
        ),
        (
            pb::SendRequest {
                data_json: format!("{}{}", "[".repeat(1000), "]".repeat(1000)),
                ..send_to(&["a"])
            },
            Code::InvalidArgument,
            "data_json",
        ),
        (
            pb::SendRequest {
                content: "x".repeat(5000),
                ..send_to(&["a"])
            },
            Code::ResourceExhausted,
            "content",
        ),
        (
            pb::SendRequest {
                member_ids: vec!["m".into(); 1001],
                ..send_to(&[])
            },
            Code::ResourceExhausted,
            "member_ids",
        ),
    ];
    for (request, code, field) in cases {
        let status = client.send(request).await.unwrap_err();
        assert_eq!(status.code(), code, "{field}: {}", status.message());
        assert!(status.message().starts_with(field), "{}", status.message());
    }
    // A 10 MB request is refused before it is decoded.
    let huge = pb::SendRequest {
        content: "x".repeat(10 * 1024 * 1024),
        ..send_to(&["a"])
    };
    let status = client.send(huge).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains("larger than the api accepts"),
        "{}",
        status.message()
    );

    assert_eq!(h.notification_rows().await, 0);
    assert_eq!(h.stream_messages().await, 0);
    // The node is fine afterwards.
    client.send(send_to(&["a"])).await.unwrap();
}

#[tokio::test]
async fn producers_must_present_a_known_key() {
    let h = Harness::start().await;
    for key in [None, Some("wrong-key-0123456789".to_owned())] {
        let mut client = h.api.client_with_key(key.clone()).await;
        let status = client.send(send_to(&["a"])).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{key:?}");
        let status = client
            .get_unread_count(pb::GetUnreadCountRequest {
                member_id: "a".into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated);
    }
    assert_eq!(h.notification_rows().await, 0);
}

#[tokio::test]
async fn publish_to_a_topic_is_stored_for_replay_but_in_no_inbox() {
    let h = Harness::start().await;
    let mut client = h.api.client().await;
    let response = client
        .publish(pb::PublishRequest {
            topic: "ranking".into(),
            event: "board".into(),
            data_json: "[3,1,2]".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let event_id = EventId::parse(&response.event_id).unwrap();
    let stored = h.stored(event_id.seq).await;
    assert_eq!(
        stored.subject.as_str(),
        format!("{}.topic.ranking", h.bus.settings.prefix)
    );
    assert_eq!(stored.headers.get("Tidings-Event").unwrap().as_str(), "board");
    assert_eq!(stored.payload.as_ref(), b"[3,1,2]");
    assert_eq!(h.notification_rows().await, 0);

    let spoof = pb::PublishRequest {
        topic: "ranking".into(),
        event: "notification".into(),
        data_json: "{}".into(),
    };
    assert_eq!(client.publish(spoof).await.unwrap_err().code(), Code::InvalidArgument);
}

#[tokio::test]
async fn health_and_reflection_are_served() {
    let h = Harness::start().await;
    let channel = h.channel().await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let status = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "tidings.v1.NotificationService".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        status.status(),
        tonic_health::pb::health_check_response::ServingStatus::Serving
    );

    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let mut reflection = ServerReflectionClient::new(channel);
    let request = tonic_reflection::pb::v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
        .server_reflection_info(futures::stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let response = responses.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("{response:?}")
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.contains(&"tidings.v1.NotificationService".to_owned()),
        "{names:?}"
    );
    assert!(names.contains(&"grpc.health.v1.Health".to_owned()), "{names:?}");

    let ready = reqwest_like_get(h.api.http_addr, "/readyz").await;
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
    assert!(
        ready.contains(r#""postgres":true"#) && ready.contains(r#""nats":true"#),
        "{ready}"
    );
}

/// A minimal HTTP/1.1 GET, enough for health endpoints.
pub(crate) async fn reqwest_like_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

#[tokio::test]
async fn concurrent_sends_share_transactions_and_each_gets_its_own_answer() {
    let h = Harness::start().await;
    let client = h.api.client().await;
    let taken = pb::SendRequest {
        idempotency_key: "taken".into(),
        ..send_to(&["x"])
    };
    client.clone().send(taken.clone()).await.unwrap();

    // One request of the wave reuses the key for other members: it alone must fail,
    // whichever batch it lands in.
    let n = 200;
    let conflicting = n / 2;
    let calls = (0..n).map(|i| {
        let mut client = client.clone();
        let request = if i == conflicting {
            pb::SendRequest {
                member_ids: vec!["y".into()],
                ..taken.clone()
            }
        } else {
            send_to(&[&format!("m{i}")])
        };
        async move { client.send(request).await }
    });
    let answers = futures::future::join_all(calls).await;
    for (i, answer) in answers.into_iter().enumerate() {
        if i == conflicting {
            assert_eq!(answer.unwrap_err().code(), Code::AlreadyExists);
            continue;
        }
        let response = answer.unwrap_or_else(|e| panic!("send {i}: {e}")).into_inner();
        assert_eq!(response.deliveries.len(), 1);
        assert_eq!(
            response.deliveries[0].member_id,
            format!("m{i}"),
            "send {i} got its own answer"
        );
        assert!(!response.deliveries[0].event_id.is_empty(), "send {i} published inline");
    }
    assert_eq!(h.stream_messages().await, n as u64);

    // Rows written by one transaction share its xmin: fewer transactions than Sends.
    let transactions: i64 =
        sqlx::query_scalar("select count(distinct xmin::text) from notification where member_id <> 'x'")
            .fetch_one(&h.db.pool)
            .await
            .unwrap();
    assert!(
        transactions < n as i64 / 2,
        "{transactions} transactions for {n} concurrent Sends"
    );
}

/// The inline publish and the relay build the same message from the same row: a browser
/// gets the same bytes whichever path delivered a notification, and they match the
/// inbox's `data_json`. The data is written with white space, keys in an order `jsonb`
/// changes and a number spelled two ways, so any second rendering shows up here.
#[tokio::test]
async fn the_relay_publishes_the_same_bytes_as_the_inline_publish() {
    let h = Harness::start().await;
    let mut client = h.api.client().await;
    let alice = MemberId::parse("alice").unwrap();
    let subject = h.bus.bus.subjects().member(&alice);
    // A plain subscriber sees every publish on the subject, also the relay's re-publish
    // that JetStream drops as a duplicate.
    let nats = async_nats::connect(&h.bus.nats_url).await.unwrap();
    let mut published = nats.subscribe(subject.clone()).await.unwrap();
    nats.flush().await.unwrap();

    let request = pb::SendRequest {
        data_json: r#" { "c" : [1, 2.50, {"y": null, "x": "\u00e9"}], "bb" : true , "a": {} } "#.into(),
        ..send_to(&["alice"])
    };
    let delivery = client.send(request).await.unwrap().into_inner().deliveries.remove(0);
    assert!(!delivery.event_id.is_empty(), "published inline");
    let inline = next_message(&mut published).await;

    // Hand the published notification to the relay once more, as after a crash between
    // the publish and the recording of its sequence.
    sqlx::query("insert into outbox (notification_id) values ($1::uuid)")
        .bind(&delivery.notification_id)
        .execute(&h.db.pool)
        .await
        .unwrap();
    let relayed = next_message(&mut published).await;

    let msg_id = |m: &async_nats::Message| m.headers.as_ref().unwrap().get("Nats-Msg-Id").unwrap().to_string();
    assert_eq!(
        msg_id(&relayed),
        delivery.notification_id,
        "the relay's copy of the same notification"
    );
    assert_eq!(msg_id(&inline), delivery.notification_id);
    assert_eq!(
        String::from_utf8_lossy(&relayed.payload),
        String::from_utf8_lossy(&inline.payload),
        "inline and relay publish identical bytes"
    );

    let listed = client
        .list_notifications(pb::ListNotificationsRequest {
            member_id: "alice".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let fields: std::collections::HashMap<String, Box<serde_json::value::RawValue>> =
        serde_json::from_slice(&inline.payload).unwrap();
    assert_eq!(
        fields["data"].get(),
        listed.notifications[0].data_json,
        "the inbox reads the same text"
    );
    assert_eq!(h.stream_messages().await, 1, "the re-publish was a duplicate");
}

async fn next_message(subscriber: &mut async_nats::Subscriber) -> async_nats::Message {
    use futures::StreamExt as _;
    tokio::time::timeout(tidings_testkit::patience(), subscriber.next())
        .await
        .expect("a publish on the member's subject")
        .unwrap()
}

#[tokio::test]
async fn a_nul_in_one_send_fails_that_send_alone_never_the_sends_it_is_written_with() {
    let h = Harness::start().await;
    let client = h.api.client().await;
    // Sent together, the Sends share group-commit batches; a NUL that reached Postgres
    // would fail the whole batch's statement, every producer's Send in it.
    let requests: Vec<pb::SendRequest> = (0..40)
        .map(|i| {
            let mut request = send_to(&[&format!("m{i}")]);
            match i {
                7 => request.content = "bad\0content".into(),
                23 => request.data_json = r#"{"note":"bad\u0000data"}"#.into(),
                _ => {}
            }
            request
        })
        .collect();
    let answers = futures::future::join_all(requests.into_iter().map(|request| {
        let mut client = client.clone();
        async move { client.send(request).await }
    }))
    .await;
    for (i, answer) in answers.iter().enumerate() {
        match i {
            7 | 23 => {
                let status = answer.as_ref().expect_err("a NUL is refused");
                assert_eq!(status.code(), Code::InvalidArgument, "{i}: {status:?}");
                let field = if i == 7 { "content: " } else { "data_json: " };
                assert!(status.message().starts_with(field), "{i}: {}", status.message());
            }
            _ => assert!(answer.is_ok(), "{i}: {answer:?}"),
        }
    }
    assert_eq!(h.notification_rows().await, 38);
}

#[tokio::test]
async fn a_send_postgres_refuses_fails_alone_and_the_sends_batched_with_it_are_stored() {
    let h = Harness::start().await;
    // Something in one Send that Postgres refuses although it passed validation: this
    // test's own database refuses the row whose content is `poison`. Every row also
    // takes 20 ms, so the writers stay busy and the 40 Sends queue into shared batches.
    for statement in [
        "create function refuse_poison() returns trigger language plpgsql as $$
         begin
           perform pg_sleep(0.02);
           if new.content = 'poison' then raise exception 'refused'; end if;
           return new;
         end $$",
        "create trigger refuse_poison before insert on notification
         for each row execute function refuse_poison()",
    ] {
        sqlx::query(statement).execute(&h.db.pool).await.unwrap();
    }
    let client = h.api.client().await;
    let answers = futures::future::join_all((0..40).map(|i| {
        let mut client = client.clone();
        let mut request = send_to(&[&format!("m{i}")]);
        if i == 21 {
            request.content = "poison".into();
        }
        async move { client.send(request).await }
    }))
    .await;
    for (i, answer) in answers.iter().enumerate() {
        if i == 21 {
            assert_eq!(answer.as_ref().expect_err("refused").code(), Code::Internal);
        } else {
            assert!(answer.is_ok(), "{i}: {answer:?}");
        }
    }
    assert_eq!(h.notification_rows().await, 39);
}
