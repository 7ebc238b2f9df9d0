//! Broadcast topics: `all` replays every missed message, `latest` only the newest and
//! conflates for a slow reader; public topics need no token.

use std::time::Duration;

use tidings_testkit::TestCluster;
use tidings_testkit::sse::{connect, http_request};

async fn cluster() -> TestCluster {
    TestCluster::start_with(1, |c| c.options.topic_modes = "board*=latest,*=all".into()).await
}

#[tokio::test]
async fn all_topics_replay_everything_missed() {
    let cluster = cluster().await;
    let mut s = cluster.stream(0, "gina", "?topics=news", None).await.unwrap();
    s.next_named("connected").await;
    cluster.publish("news", r#"{"n":1}"#).await;
    let first = s.next_named("news").await;
    assert_eq!(first.json()["n"], 1);
    let last = s.last_event_id.clone().unwrap();
    s.close();
    for n in 2..=4 {
        cluster.publish("news", &format!(r#"{{"n":{n}}}"#)).await;
    }
    let mut s = cluster.stream(0, "gina", "?topics=news", Some(&last)).await.unwrap();
    for n in 2..=4 {
        assert_eq!(s.next_named("news").await.json()["n"], n);
    }
}

#[tokio::test]
async fn latest_topics_send_only_the_newest_value_on_connect_and_resume() {
    let cluster = cluster().await;
    for n in 1..=5 {
        cluster.publish("board", &format!(r#"{{"rank":{n}}}"#)).await;
    }
    let mut s = cluster.stream(0, "hank", "?topics=board", None).await.unwrap();
    s.next_named("connected").await;
    assert_eq!(
        s.next_named("board").await.json()["rank"],
        5,
        "only the newest on connect"
    );
    let last = s.last_event_id.clone().unwrap();
    s.close();
    for n in 6..=9 {
        cluster.publish("board", &format!(r#"{{"rank":{n}}}"#)).await;
    }
    let mut s = cluster.stream(0, "hank", "?topics=board", Some(&last)).await.unwrap();
    assert_eq!(
        s.next_named("board").await.json()["rank"],
        9,
        "only the newest on resume"
    );
    // Nothing older follows: the next value is one published now.
    cluster.publish("board", r#"{"rank":10}"#).await;
    assert_eq!(s.next_named("board").await.json()["rank"], 10);
}

#[tokio::test]
async fn topics_need_the_tokens_permission() {
    let cluster = cluster().await;
    let refusal = cluster.stream(0, "ivan", "?topics=secret", None).await.unwrap_err();
    assert_eq!(refusal.status, 403);
    assert!(refusal.body.contains("secret"), "{}", refusal.body);
    let refusal = cluster.stream(0, "ivan", "?topics=a.b", None).await.unwrap_err();
    assert_eq!(refusal.status, 400);
}

/// A reader that stops reading keeps only the newest value of a `latest` topic queued:
/// when it reads again it gets far fewer than were published, ending with the newest.
#[tokio::test]
async fn a_slow_reader_of_a_latest_topic_gets_the_newest_value_not_the_backlog() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let cluster = cluster().await;
    let token = tidings_testkit::TestEdge::token("slow", &["board"], Duration::from_secs(3600));
    let mut socket = tokio::net::TcpStream::connect(cluster.edges[0].addr).await.unwrap();
    let request = format!(
        "GET /v1/stream?topics=board HTTP/1.1\r\nHost: edge\r\nAuthorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n"
    );
    socket.write_all(request.as_bytes()).await.unwrap();
    tidings_testkit::eventually("the stream to register", || async {
        (cluster.edges[0].stats().interests == 2).then_some(())
    })
    .await;

    // Published while the reader reads nothing: ~60 KiB each, far beyond socket buffers.
    let filler = "x".repeat(60 * 1024);
    let published = 300;
    for n in 1..=published {
        cluster
            .publish("board", &format!(r#"{{"rank":{n},"pad":"{filler}"}}"#))
            .await;
    }
    // Now read whatever arrives until the stream goes quiet.
    let mut received = Vec::new();
    let mut buf = vec![0u8; 1 << 20];
    while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(2), socket.read(&mut buf)).await {
        if n == 0 {
            break;
        }
        received.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&received);
    let boards = text.matches("event: board").count();
    assert!(
        boards < published / 2,
        "{boards} of {published} values were queued for a slow reader"
    );
    let last_rank = text.rmatch_indices("\"rank\":").next().map(|(i, _)| {
        text[i + 7..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
    });
    assert_eq!(last_rank.as_deref(), Some("300"), "the newest value arrives");
}

/// Public topics for these tests: `ranking` (latest) and `board` (all).
async fn public_cluster() -> TestCluster {
    TestCluster::start_with(1, |c| {
        c.options.public_topics = "ranking,board".into();
        c.options.topic_modes = "ranking=latest,*=all".into();
    })
    .await
}

#[tokio::test]
async fn an_anonymous_visitor_watches_public_topics_and_nothing_else() {
    let cluster = public_cluster().await;
    let edge = cluster.edges[0].addr;
    cluster.publish("ranking", r#"{"top":"old"}"#).await;
    cluster.publish("ranking", r#"{"top":"alice"}"#).await;

    let mut visitor = connect(edge, "/v1/stream?topics=ranking", &[]).await.unwrap();
    let connected = visitor.next_named("connected").await;
    assert_eq!(connected.json()["memberId"], serde_json::Value::Null);
    assert_eq!(
        visitor.next_named("ranking").await.json()["top"],
        "alice",
        "the newest value on load"
    );
    cluster.send(&["alice"], "private").await;
    cluster.publish("ranking", r#"{"top":"bob"}"#).await;
    let next = visitor.next().await;
    assert_eq!(
        (next.event.as_str(), next.json()["top"].as_str()),
        ("ranking", Some("bob"))
    );

    // Everything but public topics still needs a token: a 401 before any stream.
    for path in ["/v1/stream", "/v1/stream?topics=news", "/v1/stream?topics=ranking,news"] {
        let refused = connect(edge, path, &[]).await.unwrap_err();
        assert_eq!(refused.status, 401, "{path}");
    }
    let (status, _) = http_request(edge, "GET", "/v1/notifications", &[], None).await;
    assert_eq!(status, 401);
    // A member whose token names no topics may join public ones too.
    let mut member = cluster.stream(0, "dora", "?topics=ranking", None).await.unwrap();
    assert_eq!(member.next_named("connected").await.json()["memberId"], "dora");
    assert_eq!(member.next_named("ranking").await.json()["top"], "bob");
    // The visitor never got the notification: the next event is a topic value
    // published after it.
    cluster.send(&["dora"], "private too").await;
    cluster.publish("ranking", r#"{"top":"carol"}"#).await;
    let next = visitor.next().await;
    assert_eq!(
        (next.event.as_str(), next.json()["top"].as_str()),
        ("ranking", Some("carol"))
    );
}

#[tokio::test]
async fn an_anonymous_visitor_resumes_a_public_topic_with_only_that_topic() {
    let cluster = public_cluster().await;
    let edge = cluster.edges[0].addr;
    let mut visitor = connect(edge, "/v1/stream?topics=board", &[]).await.unwrap();
    visitor.next_named("connected").await;
    cluster.publish("board", r#"{"n":1}"#).await;
    visitor.next_named("board").await;
    let last = visitor.last_event_id.clone().unwrap();
    visitor.close();

    cluster.send(&["erin"], "private").await;
    cluster.publish("board", r#"{"n":2}"#).await;
    cluster.publish("news", r#"{"n":0}"#).await;
    cluster.publish("board", r#"{"n":3}"#).await;
    let mut visitor = connect(edge, "/v1/stream?topics=board", &[("last-event-id", &last)])
        .await
        .unwrap();
    assert_eq!(visitor.next_named("connected").await.json()["resumed"], true);
    let mut replayed = Vec::new();
    loop {
        let e = visitor.next().await;
        match e.event.as_str() {
            "board" => replayed.push(e.json()["n"].as_i64().unwrap()),
            "resumed" => {
                assert_eq!(e.json()["missed"], 2);
                break;
            }
            other => panic!("an anonymous stream got {other}: {e:?}"),
        }
    }
    assert_eq!(replayed, [2, 3]);
}

/// A `latest` topic's value published while an edge was cut off from NATS is lost
/// live; the resync after the reconnect brings it, as it brings the member's and the
/// `all` topics' missed messages.
#[tokio::test]
async fn a_latest_value_published_during_a_nats_outage_comes_with_the_resync() {
    use tidings_testkit::TestEdge;

    let (cluster, proxy) =
        TestCluster::start_behind_proxy(|c| c.options.topic_modes = "board*=latest,*=all".into()).await;
    let (edge, client) = (&cluster.edges[0], cluster.client.clone());
    let publish = |n: u32| {
        let mut client = client.clone();
        async move {
            client
                .publish(tidings_proto::v1::PublishRequest {
                    topic: "board".into(),
                    event: String::new(),
                    data_json: format!(r#"{{"rank":{n}}}"#),
                })
                .await
                .unwrap();
        }
    };

    let token = TestEdge::token("lena", &["board"], Duration::from_secs(600));
    let auth = format!("Bearer {token}");
    let mut s = connect(edge.addr, "/v1/stream?topics=board", &[("authorization", &auth)])
        .await
        .unwrap();
    s.next_named("connected").await;
    publish(1).await;
    assert_eq!(s.next_named("board").await.json()["rank"], 1);

    // The edge loses NATS; the value published meanwhile never reaches it live.
    proxy.cut();
    tokio::time::sleep(Duration::from_millis(300)).await;
    publish(2).await;
    proxy.restore();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let value = loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let event = s.next_within(left).await;
        let event = event.expect("the resync brings the value published during the outage");
        if event.event != "unread" {
            break event;
        }
    };
    assert_eq!(value.event, "board", "no reset, no other event first: {:?}", value.data);
    assert_eq!(value.json()["rank"], 2);
}
