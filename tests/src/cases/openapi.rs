//! Both roles serve their OpenAPI document at `/openapi.json`, without a credential,
//! as the document the code generates (the one committed under `docs/openapi/`); and the
//! edge's schema of the `notification` event is the payload the api writes.

use std::time::Duration;

use tidings_testkit::{TestCluster, TestEdge, http_call};

#[tokio::test]
async fn both_roles_serve_their_openapi_document() {
    let cluster = TestCluster::start(1).await;
    for (role, addr, generated) in [
        ("api", cluster.api.grpc_addr, tidings_api::openapi_json()),
        ("edge", cluster.edges[0].addr, tidings_edge::openapi_json()),
    ] {
        let reply = http_call(addr, "GET", "/openapi.json", &[], "").await;
        assert_eq!(reply.status, 200, "{role}: {}", reply.body);
        assert_eq!(reply.header("content-type"), Some("application/json"), "{role}");
        let served = reply.json();
        assert!(served["openapi"].as_str().unwrap().starts_with("3.1"), "{role}");
        let generated: serde_json::Value = serde_json::from_str(&generated).unwrap();
        assert_eq!(served, generated, "{role}");
    }

    // A documented route of the same edge, with a credential: the document is not all
    // this edge serves.
    let token = TestEdge::token("olga", &[], Duration::from_secs(3600));
    let reply = http_call(
        cluster.edges[0].addr,
        "GET",
        "/v1/notifications/unread-count",
        &[("authorization", &format!("Bearer {token}"))],
        "",
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["unreadCount"], 0);
}

#[test]
fn the_edge_describes_the_notification_event_the_api_writes() {
    let payload = tidings_api::payload::notification(
        uuid::Uuid::new_v4(),
        "comment.created",
        "hi",
        Some(r#"{"a":1}"#),
        Some("g"),
        chrono::Utc::now(),
    );
    let written: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    let doc: serde_json::Value = serde_json::from_str(&tidings_edge::openapi_json()).unwrap();
    let schema = &doc["components"]["schemas"]["SseNotification"]["properties"];
    let mut written: Vec<&String> = written.as_object().unwrap().keys().collect();
    let mut described: Vec<&String> = schema.as_object().unwrap().keys().collect();
    written.sort();
    described.sort();
    assert_eq!(written, described);
}
