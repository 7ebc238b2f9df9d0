//! Broadcast topics: `all` replays every missed message, `latest` only the newest and
//! conflates for a slow reader.

use std::time::Duration;

use tidings_testkit::TestCluster;

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
    assert!(
        s.next_within(Duration::from_millis(300))
            .await
            .is_none_or(|e| e.event != "board")
    );
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
