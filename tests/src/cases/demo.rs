//! The dev demo: its page and the development endpoints it plays the backend with,
//! mounted only when asked for (`tidings dev`).

use tidings_testkit::TestCluster;
use tidings_testkit::sse::{connect, http_request};

#[tokio::test]
async fn the_demo_signs_in_sends_and_publishes_through_the_real_cluster() {
    let cluster = TestCluster::start_with(1, |c| {
        c.options.demo = true;
        c.options.public_topics = "ranking".into();
        c.options.topic_modes = "ranking=latest,*=all".into();
    })
    .await;
    let edge = cluster.edges[0].addr;
    let (status, page) = http_request(edge, "GET", "/demo/", &[], None).await;
    assert_eq!(status, 200);
    assert!(page.contains(r#"<script type="module" src="demo.js">"#), "{page}");
    let (status, client) = http_request(edge, "GET", "/demo/tidings.js", &[], None).await;
    assert_eq!(status, 200);
    assert!(client.contains("export function createTidings"), "the client library");

    let (status, minted) = http_request(
        edge,
        "POST",
        "/demo/token",
        &[],
        Some(r#"{"member":"demo-ann"}"#.into()),
    )
    .await;
    assert_eq!(status, 201, "{minted}");
    let token = serde_json::from_str::<serde_json::Value>(&minted).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let auth = format!("Bearer {token}");
    let mut stream = connect(edge, "/v1/stream?topics=ranking", &[("authorization", &auth)])
        .await
        .unwrap();
    assert_eq!(stream.next_named("connected").await.json()["memberId"], "demo-ann");

    let (status, sent) = http_request(
        edge,
        "POST",
        "/demo/send",
        &[],
        Some(r#"{"member":"demo-ann","content":"hello from the form","data":{"k":1}}"#.into()),
    )
    .await;
    assert_eq!(status, 200, "{sent}");
    let notification = stream.next_named("notification").await;
    assert_eq!(notification.json()["content"], "hello from the form");
    assert_eq!(notification.json()["data"]["k"], 1);
    assert_eq!(stream.next_named("unread").await.json()["unreadCount"], 1);

    let (status, _) = http_request(
        edge,
        "POST",
        "/demo/publish",
        &[],
        Some(r#"{"data":{"entries":[]}}"#.into()),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        stream.next_named("ranking").await.json()["entries"],
        serde_json::json!([])
    );

    // Bad input gets the JSON error body, not a panic or a token.
    for (path, body) in [
        ("/demo/token", r#"{"member":""}"#),
        ("/demo/token", "not json"),
        ("/demo/send", r#"{"member":"a\u0000b","content":"x"}"#),
        ("/demo/publish", r#"{"topic":"a.b","data":1}"#),
    ] {
        let (status, answer) = http_request(edge, "POST", path, &[], Some(body.into())).await;
        assert_eq!(status, 400, "{path} {body}: {answer}");
        assert!(answer.contains(r#""error""#), "{answer}");
    }
}

#[tokio::test]
async fn an_edge_serves_no_demo_and_mints_no_token_unless_in_dev_mode() {
    let cluster = TestCluster::start(1).await;
    let edge = cluster.edges[0].addr;
    for (method, path) in [("GET", "/demo/"), ("POST", "/demo/token"), ("POST", "/demo/send")] {
        let (status, _) = http_request(edge, method, path, &[], Some(r#"{"member":"x"}"#.into())).await;
        assert_eq!(status, 404, "{method} {path}");
    }
}
