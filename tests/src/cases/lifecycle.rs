//! Archive and delete from a browser (the edge's inbox REST) and from a producer (the
//! api's HTTP/JSON API): the inbox changes, and every tab's badge follows on its stream.

use std::time::Duration;

use serde_json::{Value, json};
use tidings_testkit::sse::{SseStream, http_request};
use tidings_testkit::{TestCluster, TestEdge, http_call};

/// Reads `unread` events until one says `count` (changes close together may be
/// coalesced), never seeing it drop below.
async fn badge_reaches(tab: &mut SseStream, count: u64) {
    loop {
        let seen = tab.next_named("unread").await.json()["unreadCount"].as_u64().unwrap();
        if seen == count {
            return;
        }
        assert!(seen > count, "the badge never drops below the truth ({seen} < {count})");
    }
}

#[tokio::test]
async fn archive_and_delete_on_the_edge_and_the_api_move_every_tabs_badge() {
    let cluster = TestCluster::start(2).await;
    let auth = format!("Bearer {}", TestEdge::token("lena", &[], Duration::from_secs(3600)));
    let mut tab = cluster.stream(1, "lena", "", None).await.unwrap();
    tab.next_named("connected").await;
    badge_reaches(&mut tab, 0).await;
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(
            cluster.send(&["lena"], &format!("n{i}")).await.deliveries[0]
                .notification_id
                .clone(),
        );
        tab.next_named("notification").await;
    }
    let foreign = cluster.send(&["mats"], "not lena's").await.deliveries[0]
        .notification_id
        .clone();
    badge_reaches(&mut tab, 4).await;

    let edge = cluster.edges[0].addr;
    let call = |method: &'static str, path: &'static str, body: Option<Value>| {
        let auth = auth.clone();
        async move {
            let (status, text) = http_request(
                edge,
                method,
                path,
                &[("authorization", &auth)],
                body.map(|b| b.to_string()),
            )
            .await;
            (status, serde_json::from_str::<Value>(&text).unwrap_or(Value::Null))
        }
    };

    // Archived on edge 0: out of the list and the count; the tab on edge 1 follows.
    let (status, body) = call("POST", "/v1/notifications/archive", Some(json!({ "ids": [ids[3]] }))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({ "unreadCount": 3, "archived": 1 }));
    badge_reaches(&mut tab, 3).await;
    let (_, page) = call("GET", "/v1/notifications", None).await;
    let listed: Vec<&str> = page["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [&ids[2], &ids[1], &ids[0]]);
    let (_, page) = call("GET", "/v1/notifications?archived=only", None).await;
    assert_eq!(page["notifications"][0]["id"], ids[3].as_str(), "{page}");
    assert!(page["notifications"][0]["archivedAt"].is_string(), "{page}");
    let (_, page) = call("GET", "/v1/notifications?archived=include&unread_only=false", None).await;
    assert_eq!(page["notifications"].as_array().unwrap().len(), 4, "{page}");
    let (status, _) = call("GET", "/v1/notifications?archived=all", None).await;
    assert_eq!(status, 400);

    // Another member's notification, through a token of this one: 404, nothing changed.
    let (status, body) = call(
        "POST",
        "/v1/notifications/archive",
        Some(json!({ "ids": [ids[2], foreign] })),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found")),
        "{body}"
    );
    let (status, body) = call("POST", "/v1/notifications/delete", Some(json!({ "ids": [foreign] }))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({ "unreadCount": 3, "deleted": 0 }));
    let (_, count) = call("GET", "/v1/notifications/unread-count", None).await;
    assert_eq!(count["unreadCount"], 3);
    let theirs = cluster
        .client
        .clone()
        .get_unread_count(tidings_proto::v1::GetUnreadCountRequest {
            member_id: "mats".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .unread_count;
    assert_eq!(theirs, 1, "the other member's notification is untouched");

    // Deleted up to ids[1] on the edge: gone, and the badge follows.
    let (status, body) = call("POST", "/v1/notifications/delete", Some(json!({ "up_to": ids[1] }))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({ "unreadCount": 1, "deleted": 2 }));
    badge_reaches(&mut tab, 1).await;
    let (_, page) = call("GET", "/v1/notifications?archived=include", None).await;
    assert_eq!(page["notifications"].as_array().unwrap().len(), 2, "{page}");

    // The producer archives the last one over the api's HTTP/JSON API: badge 0.
    let reply = http_call(
        cluster.api.grpc_addr,
        "POST",
        "/v1/members/lena/notifications/archive",
        &[("authorization", "Bearer test-key-0123456789")],
        json!({ "upTo": ids[2] }).to_string(),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json(), json!({ "unreadCount": 0, "archived": 1 }));
    badge_reaches(&mut tab, 0).await;

    // Without a token: 401 before anything is read.
    let (status, _) = http_request(
        edge,
        "POST",
        "/v1/notifications/delete",
        &[],
        Some("{\"up_to\":\"x\"}".into()),
    )
    .await;
    assert_eq!(status, 401);
}
