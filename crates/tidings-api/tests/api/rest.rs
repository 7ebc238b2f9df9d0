//! The HTTP/JSON producer API, over real HTTP/1.1 on the gRPC port, against real
//! Postgres and NATS: every route, every error, and that it is the gRPC operations
//! underneath (same ids for the same idempotency key, same messages).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tidings_proto::v1 as pb;
use tidings_testkit::{
    HttpReply, NatsServer, TcpProxy, TestApi, TestBus, TestCluster, TestDb, eventually, http_call, init_test_log,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::support::Harness;

const KEY: &str = "Bearer test-key-0123456789";

async fn call(addr: SocketAddr, method: &str, path: &str, body: Value) -> HttpReply {
    let body = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    http_call(addr, method, path, &[("authorization", KEY)], body).await
}

async fn post(addr: SocketAddr, path: &str, body: Value) -> HttpReply {
    call(addr, "POST", path, body).await
}

async fn get(addr: SocketAddr, path: &str) -> HttpReply {
    call(addr, "GET", path, Value::Null).await
}

fn a_send(members: &[&str]) -> Value {
    json!({
        "memberIds": members,
        "type": "comment.created",
        "content": "Bob replied",
        "data": {"post": 7, "tags": ["a", "b"]},
        "groupId": "thread-7",
    })
}

/// Asserts an error answer: status, `error.code`, and a message starting with `prefix`.
#[track_caller]
fn assert_error(reply: &HttpReply, status: u16, code: &str, prefix: &str) {
    assert_eq!(reply.status, status, "{}", reply.body);
    let body = reply.json();
    assert_eq!(body["error"]["code"], code, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.starts_with(prefix), "{message:?} should start with {prefix:?}");
}

#[tokio::test]
async fn a_send_over_http_is_stored_published_and_answered_like_grpc() {
    let h = Harness::start().await;
    let addr = h.api.grpc_addr;
    let reply = post(addr, "/v1/notifications", a_send(&["alice", "bob", "alice"])).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let body = reply.json();
    let deliveries = body["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 2, "duplicates collapse: {body}");
    assert_eq!(deliveries[0]["memberId"], "alice");
    assert_eq!(deliveries[1]["memberId"], "bob");
    for d in deliveries {
        assert!(
            d["notificationId"].as_str().unwrap().parse::<uuid::Uuid>().is_ok(),
            "{d}"
        );
        assert!(d["eventId"].as_str().is_some(), "published inline: {d}");
    }
    assert_eq!(h.notification_rows().await, 2);
    assert_eq!(h.stream_messages().await, 2);

    // The gRPC inbox holds what HTTP sent, data as Postgres renders it.
    let listed = h
        .api
        .client()
        .await
        .list_notifications(pb::ListNotificationsRequest {
            member_id: "bob".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let n = &listed.notifications[0];
    assert_eq!(n.id, deliveries[1]["notificationId"]);
    assert_eq!(
        (n.r#type.as_str(), n.group_id.as_str()),
        ("comment.created", "thread-7")
    );
    assert_eq!(n.data_json, r#"{"post": 7, "tags": ["a", "b"]}"#);

    // Counted by operation and status, on the ops port only.
    let metrics = http_call(h.api.http_addr, "GET", "/metrics", &[], "").await;
    assert!(
        metrics
            .body
            .contains(r#"tidings_api_http_requests_total{operation="Send",status="200"} 1"#),
        "{}",
        metrics.body
    );
    assert_eq!(
        get(addr, "/metrics").await.status,
        404,
        "no metrics on the producer port"
    );
}

#[tokio::test]
async fn an_idempotent_retry_over_http_returns_the_same_ids_and_stores_once() {
    let h = Harness::start().await;
    let addr = h.api.grpc_addr;
    let send = |key: &'static str, members: &'static [&'static str]| async move {
        http_call(
            addr,
            "POST",
            "/v1/notifications",
            &[("authorization", KEY), ("idempotency-key", key)],
            a_send(members).to_string(),
        )
        .await
    };
    let first = send("reply-991", &["alice", "bob"]).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let again = send("reply-991", &["alice", "bob"]).await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(first.json(), again.json(), "same ids, same event ids");
    assert_eq!(h.notification_rows().await, 2, "stored once");
    assert_eq!(h.stream_messages().await, 2, "published once");

    // The key is the producer's, whichever transport: gRPC with it gets the same ids.
    let grpc = h
        .api
        .client()
        .await
        .send(pb::SendRequest {
            idempotency_key: "reply-991".into(),
            ..crate::support::send_to(&["alice", "bob"])
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        grpc.deliveries[0].notification_id,
        first.json()["deliveries"][0]["notificationId"]
    );

    let other = send("reply-991", &["carol"]).await;
    assert_error(&other, 409, "already_exists", "idempotency_key: ");
    assert_eq!(h.notification_rows().await, 2, "the conflicting Send stored nothing");

    // The key in the body works too; in both places at once it is refused.
    let mut in_body = a_send(&["dave"]);
    in_body["idempotencyKey"] = json!("k-2");
    assert_eq!(post(addr, "/v1/notifications", in_body.clone()).await.status, 200);
    let both = http_call(
        addr,
        "POST",
        "/v1/notifications",
        &[("authorization", KEY), ("idempotency-key", "k-2")],
        in_body.to_string(),
    )
    .await;
    assert_error(&both, 400, "invalid_argument", "idempotency_key: ");
}

#[tokio::test]
async fn bad_requests_over_http_get_400_or_413_json_naming_the_field_and_store_nothing() {
    let h = Harness::start().await;
    let addr = h.api.grpc_addr;
    let raw = |body: &'static str| async move {
        http_call(addr, "POST", "/v1/notifications", &[("authorization", KEY)], body).await
    };
    assert_error(&raw("{not json").await, 400, "invalid_argument", "body: ");
    assert_error(&raw("").await, 400, "invalid_argument", "body: ");
    let unknown = raw(r#"{"memberIds":["a"],"type":"t","groupID":"g"}"#).await;
    assert_error(&unknown, 400, "invalid_argument", "body: unknown field `groupID`");
    let mistyped = raw(r#"{"memberIds":"a","type":"t"}"#).await;
    assert_error(&mistyped, 400, "invalid_argument", "body: invalid type");
    let missing = raw(r#"{"type":"t"}"#).await;
    assert_error(&missing, 400, "invalid_argument", "body: missing field `memberIds`");

    // The rules of gRPC, with gRPC's messages.
    let cases = [
        (
            json!({"memberIds": [], "type": "t"}),
            400,
            "invalid_argument",
            "member_ids: ",
        ),
        (
            json!({"memberIds": ["ok", ""], "type": "t"}),
            400,
            "invalid_argument",
            "member_ids[1]: ",
        ),
        (
            json!({"memberIds": ["a"], "type": "has space"}),
            400,
            "invalid_argument",
            "type: ",
        ),
        (
            json!({"memberIds": ["a"], "type": "t", "content": "a\u{0}b"}),
            400,
            "invalid_argument",
            "content: ",
        ),
        (
            json!({"memberIds": ["a"], "type": "t", "content": "x".repeat(4097)}),
            413,
            "resource_exhausted",
            "content: ",
        ),
        (
            json!({"memberIds": vec!["m"; 1001], "type": "t"}),
            413,
            "resource_exhausted",
            "member_ids: ",
        ),
        (
            json!({"memberIds": ["a"], "type": "t", "data": "x".repeat(16 * 1024)}),
            413,
            "resource_exhausted",
            "data_json: ",
        ),
        (
            json!({"memberIds": ["a"], "type": "t", "groupId": "g\n"}),
            400,
            "invalid_argument",
            "group_id: ",
        ),
    ];
    for (body, status, code, prefix) in cases {
        assert_error(&post(addr, "/v1/notifications", body).await, status, code, prefix);
    }
    // A number no double holds exactly is refused, never rounded on the way in.
    let inexact = raw(r#"{"memberIds":["a"],"type":"t","data":{"n":123456789012345678901234567890}}"#).await;
    assert_error(&inexact, 400, "invalid_argument", "data_json: ");
    assert_eq!(h.notification_rows().await, 0);

    // Unknown routes and methods answer JSON too.
    assert_error(&get(addr, "/v1/nope").await, 404, "not_found", "no route GET /v1/nope");
    assert_error(
        &get(addr, "/v1/notifications").await,
        405,
        "unimplemented",
        "GET is not allowed",
    );
}

#[tokio::test]
async fn missing_or_unknown_keys_get_401_json_on_every_route() {
    let h = Harness::start().await;
    let addr = h.api.grpc_addr;
    let routes = [
        ("POST", "/v1/notifications", a_send(&["a"]).to_string()),
        (
            "POST",
            "/v1/notifications/batch",
            json!({"notifications": [a_send(&["a"])]}).to_string(),
        ),
        ("POST", "/v1/topics/ranking/messages", json!({"data": 1}).to_string()),
        ("GET", "/v1/members/a/notifications", String::new()),
        ("GET", "/v1/members/a/unread-count", String::new()),
        (
            "POST",
            "/v1/members/a/notifications/read",
            json!({"ids": []}).to_string(),
        ),
    ];
    for (method, path, body) in routes {
        for headers in [
            vec![],
            vec![("authorization", "Bearer test-key-012345678X")],
            vec![("authorization", "Basic test-key-0123456789")],
        ] {
            let reply = http_call(addr, method, path, &headers, body.clone()).await;
            assert_error(&reply, 401, "unauthenticated", "");
            assert_eq!(reply.header("www-authenticate"), Some("Bearer"), "{method} {path}");
        }
    }
    assert_eq!(h.notification_rows().await, 0);
}

#[tokio::test]
async fn a_body_over_the_limit_is_413_before_it_is_read_whole() {
    let h = Harness::start().await;
    let addr = h.api.grpc_addr;
    let limit = tidings_api::MAX_REQUEST_BYTES;

    // Declared too large: refused on the headers, without a byte of the body sent.
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /v1/notifications HTTP/1.1\r\nHost: api\r\nAuthorization: {KEY}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        limit + 1
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    let answer = read_head(&mut tcp).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");

    // Chunked, with no length: refused once past the limit, while the client is still
    // sending (it never finishes its body).
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /v1/notifications HTTP/1.1\r\nHost: api\r\nAuthorization: {KEY}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    let (mut reader, mut writer) = tcp.into_split();
    let chunk = format!("{:x}\r\n{}\r\n", 64 * 1024, " ".repeat(64 * 1024));
    let sender = tokio::spawn(async move {
        // 1.5 MiB, then the body stays open; the server may close on us meanwhile.
        for _ in 0..24 {
            if writer.write_all(chunk.as_bytes()).await.is_err() {
                break;
            }
        }
        writer
    });
    let answer = read_head(&mut reader).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("resource_exhausted"), "{answer}");
    drop(sender.await);

    // Just under the limit is read (and then judged by the Send's own rules).
    let big = json!({"memberIds": ["a"], "type": "t", "content": "x".repeat(limit - 200)}).to_string();
    assert!(big.len() < limit);
    let reply = http_call(addr, "POST", "/v1/notifications", &[("authorization", KEY)], big).await;
    assert_error(&reply, 413, "resource_exhausted", "content: ");
}

/// Reads an HTTP answer until its body has begun (or the connection closes), bounded.
async fn read_head(reader: &mut (impl tokio::io::AsyncRead + Unpin)) -> String {
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
            if String::from_utf8_lossy(&answer).contains("}}") {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("an answer within 10 s");
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn a_batch_answers_each_item_in_order_and_an_invalid_item_fails_alone() {
    let h = Harness::start().await;
    let addr = h.api.grpc_addr;
    let mut taken = a_send(&["x"]);
    taken["idempotencyKey"] = json!("taken");
    assert_eq!(post(addr, "/v1/notifications", taken.clone()).await.status, 200);

    let mut conflicting = a_send(&["y"]);
    conflicting["idempotencyKey"] = json!("taken");
    let mut keyed = a_send(&["dan"]);
    keyed["idempotencyKey"] = json!("batch-key");
    let batch = json!({"notifications": [
        a_send(&["alice"]),
        {"memberIds": ["bob"], "type": "bad type"},
        conflicting,
        keyed,
        a_send(&["carol", "erin"]),
    ]});
    let reply = post(addr, "/v1/notifications/batch", batch.clone()).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let results = reply.json()["results"].as_array().unwrap().clone();
    assert_eq!(results.len(), 5);
    assert_eq!(results[0]["deliveries"][0]["memberId"], "alice");
    assert_eq!(results[1]["error"]["code"], "invalid_argument");
    assert!(results[1]["error"]["message"].as_str().unwrap().starts_with("type: "));
    assert_eq!(results[2]["error"]["code"], "already_exists");
    assert_eq!(results[3]["deliveries"][0]["memberId"], "dan");
    let members: Vec<&str> = results[4]["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["memberId"].as_str().unwrap())
        .collect();
    assert_eq!(members, ["carol", "erin"]);
    assert_eq!(h.notification_rows().await, 1 + 4, "the valid items, and only them");

    // The same batch again: the keyed item answers with its ids, stored once.
    let again = post(addr, "/v1/notifications/batch", batch).await;
    assert_eq!(again.json()["results"][3], results[3]);
    assert_eq!(h.notification_rows().await, 1 + 4 + 3, "unkeyed items are new Sends");

    // A batch that is not a batch is refused whole.
    assert_error(
        &post(addr, "/v1/notifications/batch", json!({"notifications": []})).await,
        400,
        "invalid_argument",
        "notifications: ",
    );
    let many = json!({"notifications": vec![json!({"memberIds": ["a"], "type": "t"}); 513]});
    assert_error(
        &post(addr, "/v1/notifications/batch", many).await,
        413,
        "resource_exhausted",
        "notifications: ",
    );
    let unknown = json!({"notifications": [{"memberIds": ["a"], "type": "t", "colour": 1}]});
    assert_error(
        &post(addr, "/v1/notifications/batch", unknown).await,
        400,
        "invalid_argument",
        "body: unknown field",
    );
}

#[tokio::test]
async fn publish_over_http_reaches_the_topic_and_bad_messages_are_refused() {
    let h = Harness::start().await;
    let addr = h.api.grpc_addr;
    let reply = post(
        addr,
        "/v1/topics/ranking/messages",
        json!({"event": "update", "data": [{"kim": 42}]}),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let event_id: tidings_domain::EventId = reply.json()["eventId"].as_str().unwrap().parse().unwrap();
    let stored = h.stored(event_id.seq).await;
    assert_eq!(&stored.payload[..], br#"[{"kim":42}]"#);

    for (path, body, prefix) in [
        ("/v1/topics/a.b/messages", json!({"data": 1}), "topic: "),
        (
            "/v1/topics/ranking/messages",
            json!({"event": "notification", "data": 1}),
            "event: ",
        ),
        (
            "/v1/topics/ranking/messages",
            json!({"event": "update"}),
            "body: missing field `data`",
        ),
        (
            "/v1/topics/ranking/messages",
            json!({"data": 1, "evnt": "x"}),
            "body: unknown field",
        ),
    ] {
        assert_error(&post(addr, path, body).await, 400, "invalid_argument", prefix);
    }
    let big = json!({"data": "x".repeat(64 * 1024)});
    assert_error(
        &post(addr, "/v1/topics/ranking/messages", big).await,
        413,
        "resource_exhausted",
        "data_json: ",
    );
}

#[tokio::test]
async fn the_inbox_over_http_lists_counts_and_marks_read_for_the_member_in_the_path() {
    let h = Harness::start().await;
    let addr = h.api.grpc_addr;
    let mut ids = Vec::new();
    for i in 0..3 {
        let mut body = a_send(&["alice"]);
        body["content"] = json!(format!("n{i}"));
        let reply = post(addr, "/v1/notifications", body).await;
        ids.push(
            reply.json()["deliveries"][0]["notificationId"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let bobs = post(addr, "/v1/notifications", a_send(&["bob"])).await.json()["deliveries"][0]["notificationId"]
        .as_str()
        .unwrap()
        .to_owned();

    let page = get(addr, "/v1/members/alice/notifications?limit=2").await;
    assert_eq!(page.status, 200, "{}", page.body);
    let page = page.json();
    let items = page["notifications"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["id"], ids[2], "newest first");
    assert_eq!(items[0]["content"], "n2");
    assert_eq!(items[0]["data"], json!({"post": 7, "tags": ["a", "b"]}));
    assert_eq!(items[0]["groupId"], "thread-7");
    assert_eq!(items[0]["readAt"], Value::Null);
    assert!(items[0]["createdAt"].as_str().unwrap().ends_with('Z'));
    assert!(items[0]["eventId"].is_string());
    let cursor = page["nextCursor"].as_str().unwrap();
    let rest = get(
        addr,
        &format!("/v1/members/alice/notifications?limit=2&cursor={cursor}"),
    )
    .await
    .json();
    assert_eq!(rest["notifications"].as_array().unwrap().len(), 1);
    assert_eq!(rest["nextCursor"], "", "the last page, as on the edge");

    let count = |member: &'static str| async move { get(addr, &format!("/v1/members/{member}/unread-count")).await };
    assert_eq!(count("alice").await.json(), json!({"unreadCount": 3}));

    let read = |body: Value| async move { post(addr, "/v1/members/alice/notifications/read", body).await };
    assert_eq!(read(json!({"ids": [ids[0]]})).await.json(), json!({"unreadCount": 2}));
    // Another member's id is ignored: it stays unread for its member.
    assert_eq!(read(json!({"ids": [bobs]})).await.json(), json!({"unreadCount": 2}));
    assert_eq!(count("bob").await.json(), json!({"unreadCount": 1}));
    assert_error(&read(json!({"up_to": bobs})).await, 404, "not_found", "up_to: ");
    assert_eq!(read(json!({"upTo": ids[1]})).await.json(), json!({"unreadCount": 1}));
    let unread = get(addr, "/v1/members/alice/notifications?unread_only=true")
        .await
        .json();
    assert_eq!(unread["notifications"].as_array().unwrap().len(), 1);
    assert_eq!(unread["notifications"][0]["id"], ids[2]);

    // A member nobody wrote to has an empty inbox, not a 404; ids may hold `/`.
    let nobody = get(addr, "/v1/members/team%2Fnobody/notifications").await;
    assert_eq!(nobody.json(), json!({"notifications": [], "nextCursor": ""}));
    assert_eq!(count("nobody").await.json(), json!({"unreadCount": 0}));

    for (reply, prefix) in [
        (get(addr, "/v1/members/alice/notifications?limit=201").await, "limit: "),
        (
            get(addr, "/v1/members/alice/notifications?limit=-1").await,
            "query string: ",
        ),
        (
            get(addr, "/v1/members/alice/notifications?colour=red").await,
            "query string: ",
        ),
        (
            get(addr, "/v1/members/alice/notifications?cursor=forged").await,
            "cursor: ",
        ),
        (read(json!({})).await, "ids: "),
        (read(json!({"ids": ["nope"]})).await, "ids[0]: "),
        (read(json!({"ids": [], "colour": 1})).await, "body: unknown field"),
    ] {
        assert_error(&reply, 400, "invalid_argument", prefix);
    }
}

#[tokio::test]
async fn a_notification_sent_over_http_arrives_on_an_sse_stream() {
    let cluster = TestCluster::start(1).await;
    let mut stream = cluster.stream(0, "alice", "", None).await.unwrap();
    stream.next_named("connected").await;
    let reply = post(cluster.api.grpc_addr, "/v1/notifications", a_send(&["alice"])).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let delivery = &reply.json()["deliveries"][0];
    let event = stream.next_named("notification").await;
    assert_eq!(event.id.as_deref(), delivery["eventId"].as_str());
    let data = event.json();
    assert_eq!(data["id"], delivery["notificationId"]);
    assert_eq!(data["content"], "Bob replied");
    assert_eq!(data["data"], json!({"post": 7, "tags": ["a", "b"]}));
    assert_eq!(data["groupId"], "thread-7");
}

#[tokio::test]
async fn nats_down_a_send_over_http_still_succeeds_and_a_publish_is_503() {
    init_test_log();
    let db = TestDb::new().await;
    let mut nats = NatsServer::start().await;
    let bus = TestBus::on(nats.url()).await;
    let mut config = TestApi::config(&db, &bus);
    config.publish_timeout = Duration::from_millis(500);
    let api = TestApi::start(config, false).await;
    let addr = api.grpc_addr;

    nats.kill();
    let reply = post(addr, "/v1/notifications", a_send(&["alice"])).await;
    assert_eq!(reply.status, 200, "committed, so the call succeeds: {}", reply.body);
    let delivery = &reply.json()["deliveries"][0];
    assert_eq!(delivery["eventId"], Value::Null, "not published yet");
    let publish = post(addr, "/v1/topics/ranking/messages", json!({"data": 1})).await;
    assert_error(&publish, 503, "unavailable", "nats is unavailable");
    assert_eq!(publish.header("retry-after"), Some("2"));

    nats.restart().await;
    let id = delivery["notificationId"].as_str().unwrap().parse().unwrap();
    db.published_seq(id).await;
    let listed = get(addr, "/v1/members/alice/notifications").await.json();
    assert!(
        listed["notifications"][0]["eventId"].is_string(),
        "the relay published it: {listed}"
    );
}

#[tokio::test]
async fn postgres_unreachable_answers_503_in_bounded_time_and_recovers() {
    init_test_log();
    let db = TestDb::new().await;
    let bus = TestBus::new().await;
    let url = crate::faults::url_of(&db.url);
    let proxy = TcpProxy::start(url).await;
    let mut config = TestApi::config(&db, &bus);
    config.db.url = db.url.replace(&url.to_string(), &proxy.addr().to_string()).into();
    config.db.acquire_timeout = Duration::from_secs(2);
    let api = TestApi::start(config, false).await;
    let addr = api.grpc_addr;
    assert_eq!(post(addr, "/v1/notifications", a_send(&["a"])).await.status, 200);

    proxy.cut();
    for (method, path, body) in [
        ("POST", "/v1/notifications", a_send(&["a"])),
        (
            "POST",
            "/v1/notifications/batch",
            json!({"notifications": [a_send(&["a"]), a_send(&["b"])]}),
        ),
        ("GET", "/v1/members/a/unread-count", Value::Null),
        ("GET", "/v1/members/a/notifications", Value::Null),
    ] {
        let started = Instant::now();
        let reply = call(addr, method, path, body).await;
        assert_error(&reply, 503, "unavailable", "postgres is unavailable");
        assert_eq!(reply.header("retry-after"), Some("2"), "{path}");
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{path} answered after {:?}",
            started.elapsed()
        );
    }

    proxy.restore();
    eventually("sends over HTTP to work again", || async move {
        (post(addr, "/v1/notifications", a_send(&["a"])).await.status == 200).then_some(())
    })
    .await;
    let rows: i64 = sqlx::query_scalar("select count(*) from notification")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(rows, 2, "nothing was half-stored during the outage");
}

/// HTTP/1.1 on the producer port keeps the slowloris guard: a client that never
/// finishes its request head is dropped (hyper's 30 s header-read timeout, which
/// tonic's server enforces), while gRPC on the same port keeps working.
#[tokio::test]
async fn the_producer_port_drops_an_http1_client_that_never_finishes_its_request() {
    let h = Harness::start().await;
    let mut slow = tokio::net::TcpStream::connect(h.api.grpc_addr).await.unwrap();
    slow.write_all(b"POST /v1/notifications HTTP/1.1\r\nHost: api\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 256];
    let read = tokio::time::timeout(Duration::from_secs(45), slow.read(&mut buf))
        .await
        .expect("the half-sent request is still open after 45 s");
    assert!(
        matches!(read, Ok(0) | Err(_)) || buf.starts_with(b"HTTP/1.1 408"),
        "{read:?}"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(25),
        "closed after {:?}",
        started.elapsed()
    );
    h.api
        .client()
        .await
        .send(crate::support::send_to(&["a"]))
        .await
        .unwrap();
}
