//! What a node refuses and what it closes: bad credentials, limits, slow readers,
//! expired tokens.

use std::time::Duration;

use tidings_testkit::sse::{connect, http_request};
use tidings_testkit::{TestCluster, TestEdge};

#[tokio::test]
async fn missing_bad_and_expired_tokens_get_401_json_before_any_stream() {
    let cluster = TestCluster::start(1).await;
    let addr = cluster.edges[0].addr;
    let expired = TestEdge::token("jane", &[], Duration::ZERO);
    let foreign = {
        let claims = tidings_edge::Claims {
            sub: "jane".into(),
            exp: tidings_edge::expiry_in(Duration::from_secs(60)),
            topics: None,
        };
        tidings_edge::Verifier::hs256(b"some-other-secret-some-other-secret")
            .sign(&claims)
            .unwrap()
    };
    let cases = [
        ("/v1/stream".to_owned(), vec![], "no token"),
        (
            "/v1/stream".to_owned(),
            vec![("authorization".to_owned(), "Bearer nonsense".to_owned())],
            "invalid",
        ),
        (
            "/v1/stream".to_owned(),
            vec![("authorization".to_owned(), format!("Bearer {foreign}"))],
            "invalid",
        ),
        (format!("/v1/stream?access_token={expired}"), vec![], "expired"),
        (
            "/v1/stream?ticket=0123456789abcdef0123456789abcdef".to_owned(),
            vec![],
            "ticket",
        ),
        ("/v1/notifications".to_owned(), vec![], "no token"),
    ];
    for (path, headers, why) in cases {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let (status, body) = http_request(addr, "GET", &path, &headers, None).await;
        assert_eq!(status, 401, "{path}: {body}");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["error"]["code"], "unauthenticated");
        assert!(
            json["error"]["message"].as_str().unwrap().contains(why),
            "{why}: {body}"
        );
    }
    // The token also works from the cookie.
    let token = TestEdge::token("jane", &[], Duration::from_secs(60));
    let cookie = format!("theme=dark; tidings_token={token}");
    let mut s = connect(addr, "/v1/stream", &[("cookie", &cookie)]).await.unwrap();
    assert_eq!(s.next().await.event, "connected");
}

#[tokio::test]
async fn a_ticket_opens_one_stream_once() {
    let cluster = TestCluster::start(2).await;
    let token = TestEdge::token("kate", &[], Duration::from_secs(60));
    let auth = format!("Bearer {token}");
    let (status, body) = http_request(
        cluster.edges[0].addr,
        "POST",
        "/v1/stream/ticket",
        &[("authorization", &auth)],
        None,
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let ticket = serde_json::from_str::<serde_json::Value>(&body).unwrap()["ticket"]
        .as_str()
        .unwrap()
        .to_owned();
    // Redeemed on the other edge.
    let mut s = connect(cluster.edges[1].addr, &format!("/v1/stream?ticket={ticket}"), &[])
        .await
        .unwrap();
    assert_eq!(s.next().await.json()["memberId"], "kate");
    let again = connect(cluster.edges[0].addr, &format!("/v1/stream?ticket={ticket}"), &[])
        .await
        .unwrap_err();
    assert_eq!(again.status, 401, "a ticket is single-use");
    let error: serde_json::Value = serde_json::from_str(&again.body).unwrap();
    assert_eq!(error["error"]["code"], "unauthenticated", "{}", again.body);
    assert!(
        error["error"]["message"].as_str().unwrap().contains("already used"),
        "{}",
        again.body
    );
}

#[tokio::test]
async fn connection_limits_per_member_and_per_node() {
    let cluster = TestCluster::start_with(1, |c| {
        c.options.max_connections = 3;
        c.options.max_connections_per_member = 2;
    })
    .await;
    let _a1 = cluster.stream(0, "lee", "", None).await.unwrap();
    let _a2 = cluster.stream(0, "lee", "", None).await.unwrap();
    let refused = cluster.stream(0, "lee", "", None).await.unwrap_err();
    assert_eq!(refused.status, 429, "{}", refused.body);
    let _b = cluster.stream(0, "max", "", None).await.unwrap();
    let refused = cluster.stream(0, "ned", "", None).await.unwrap_err();
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert!(refused.headers.contains_key("retry-after"));
}

#[tokio::test]
async fn a_slow_reader_is_closed_without_delaying_a_fast_tab_of_the_same_member() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let cluster = TestCluster::start_with(1, |c| c.options.connection_queue = 8).await;
    let mut fast = cluster.stream(0, "olga", "", None).await.unwrap();
    fast.next_named("connected").await;
    let token = TestEdge::token("olga", &[], Duration::from_secs(3600));
    let mut slow = tokio::net::TcpStream::connect(cluster.edges[0].addr).await.unwrap();
    let request = format!("GET /v1/stream HTTP/1.1\r\nHost: edge\r\nAuthorization: Bearer {token}\r\n\r\n");
    slow.write_all(request.as_bytes()).await.unwrap();
    tidings_testkit::eventually("both tabs to connect", || async {
        (cluster.edges[0].stats().connections == 2).then_some(())
    })
    .await;

    let pad = format!("\"{}\"", "p".repeat(15 * 1024));
    let n = 300;
    for i in 0..n {
        let request = tidings_proto::v1::SendRequest {
            member_ids: vec!["olga".into()],
            r#type: "bulk".into(),
            content: format!("{i}"),
            data_json: pad.clone(),
            ..Default::default()
        };
        cluster.client.clone().send(request).await.unwrap();
    }
    let mut got = 0;
    while got < n {
        fast.next_named("notification").await;
        got += 1;
    }
    // The slow tab was closed: once its buffered bytes are read, the response ends
    // (the last chunk of a chunked body), and a browser would reconnect and resume.
    tidings_testkit::eventually("the slow tab to be closed", || async {
        (cluster.edges[0].stats().connections == 1).then_some(())
    })
    .await;
    let mut sink = vec![0u8; 1 << 20];
    let mut tail: Vec<u8> = Vec::new();
    let ended = tokio::time::timeout(tidings_testkit::patience(), async {
        loop {
            match slow.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    tail.extend_from_slice(&sink[..n]);
                    let keep = tail.len().saturating_sub(16);
                    tail.drain(..keep);
                    if tail.ends_with(b"0\r\n\r\n") {
                        return;
                    }
                }
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the server ended the slow tab's stream");
}

#[tokio::test]
async fn a_stream_sends_reauth_before_exp_and_closes_at_exp() {
    let cluster = TestCluster::start_with(1, |c| c.options.reauth_before = Duration::from_secs(2)).await;
    let token = TestEdge::token("pia", &[], Duration::from_secs(4));
    let auth = format!("Bearer {token}");
    let mut s = connect(cluster.edges[0].addr, "/v1/stream", &[("authorization", &auth)])
        .await
        .unwrap();
    s.next_named("connected").await;
    let reauth = s.next_named("reauth").await;
    assert!(reauth.json()["expiresAt"].as_u64().is_some());
    let rest = s.until_closed(Duration::from_secs(10)).await;
    assert!(rest.is_some(), "the stream ended at exp");
    // The browser comes back with a fresh token and resumes.
    let fresh = TestEdge::token("pia", &[], Duration::from_secs(60));
    let auth = format!("Bearer {fresh}");
    let last = s.last_event_id.clone().unwrap();
    let mut again = connect(
        cluster.edges[0].addr,
        "/v1/stream",
        &[("authorization", &auth), ("last-event-id", &last)],
    )
    .await
    .unwrap();
    assert_eq!(again.next_named("connected").await.json()["resumed"], true);
}

#[tokio::test]
async fn cors_allows_configured_origins_with_credentials_only() {
    let cluster = TestCluster::start_with(1, |c| c.options.cors_origins = vec!["https://app.example.com".into()]).await;
    let preflight = |origin: &'static str| {
        let addr = cluster.edges[0].addr;
        async move {
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let (mut sender, connection) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
                .await
                .unwrap();
            tokio::spawn(connection);
            let request = http::Request::builder()
                .method("OPTIONS")
                .uri("/v1/stream")
                .header("host", "edge")
                .header("origin", origin)
                .header("access-control-request-method", "GET")
                .header("access-control-request-headers", "authorization,last-event-id")
                .body(http_body_util::Empty::<bytes::Bytes>::new())
                .unwrap();
            sender.send_request(request).await.unwrap().headers().clone()
        }
    };
    let allowed = preflight("https://app.example.com").await;
    assert_eq!(allowed["access-control-allow-origin"], "https://app.example.com");
    assert_eq!(allowed["access-control-allow-credentials"], "true");
    let refused = preflight("https://evil.example.net").await;
    assert!(!refused.contains_key("access-control-allow-origin"), "{refused:?}");
}

#[tokio::test]
async fn a_first_connect_may_resume_from_the_last_event_id_query_parameter() {
    let cluster = TestCluster::start(1).await;
    let first = cluster.send(&["rita"], "one").await.deliveries[0].event_id.clone();
    cluster.send(&["rita"], "two").await;
    let token = TestEdge::token("rita", &[], Duration::from_secs(60));
    let path = format!("/v1/stream?access_token={token}&lastEventId={first}");
    let mut s = connect(cluster.edges[0].addr, &path, &[]).await.unwrap();
    assert_eq!(s.next_named("connected").await.json()["resumed"], true);
    assert_eq!(s.next_named("notification").await.json()["content"], "two");
}

#[tokio::test]
async fn idle_streams_get_comment_heartbeats() {
    let cluster = TestCluster::start_with(1, |c| c.options.heartbeat = Duration::from_secs(1)).await;
    let mut s = cluster.stream(0, "sam", "", None).await.unwrap();
    s.next_named("connected").await;
    tidings_testkit::eventually("two heartbeats", || {
        let comments = s.comments();
        async move { (comments >= 2).then_some(()) }
    })
    .await;
}
