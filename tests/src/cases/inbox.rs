//! The inbox REST API on the edge and the `unread` events agree with the api.

use std::time::Duration;

use tidings_testkit::sse::http_request;
use tidings_testkit::{TestCluster, TestEdge};

#[tokio::test]
async fn rest_and_unread_events_agree_with_the_api_across_edges() {
    let cluster = TestCluster::start(2).await;
    let token = TestEdge::token("quinn", &[], Duration::from_secs(3600));
    let auth = format!("Bearer {token}");
    let mut tab_b = cluster.stream(1, "quinn", "", None).await.unwrap();
    tab_b.next_named("connected").await;
    assert_eq!(
        tab_b.next_named("unread").await.json()["unreadCount"],
        0,
        "the badge starts right"
    );

    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(
            cluster.send(&["quinn"], &format!("n{i}")).await.deliveries[0]
                .notification_id
                .clone(),
        );
        tab_b.next_named("notification").await;
    }
    // The badge reaches 3 (counts of changes close together may be coalesced).
    let mut last_count = 0;
    while last_count != 3 {
        last_count = tab_b.next_named("unread").await.json()["unreadCount"].as_u64().unwrap();
    }

    let edge_a = cluster.edges[0].addr;
    let (status, body) = http_request(
        edge_a,
        "GET",
        "/v1/notifications?limit=2",
        &[("authorization", &auth)],
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let page: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(page["notifications"].as_array().unwrap().len(), 2);
    assert_eq!(page["notifications"][0]["id"], ids[2].as_str(), "newest first");
    assert!(page["nextCursor"].as_str().is_some_and(|c| !c.is_empty()));
    let (_, body) = http_request(
        edge_a,
        "GET",
        "/v1/notifications/unread-count",
        &[("authorization", &auth)],
        None,
    )
    .await;
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["unreadCount"],
        3
    );

    // Marked read on edge A; the tab on edge B sees its badge drop.
    let body = serde_json::json!({ "up_to": ids[1] }).to_string();
    let (status, answer) = http_request(
        edge_a,
        "POST",
        "/v1/notifications/read",
        &[("authorization", &auth)],
        Some(body),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&answer).unwrap()["unreadCount"],
        1
    );
    loop {
        let count = tab_b.next_named("unread").await.json()["unreadCount"].as_u64().unwrap();
        if count == 1 {
            break;
        }
        assert!(count > 1, "the badge never drops below the truth");
    }
    let api_count = cluster
        .client
        .clone()
        .get_unread_count(tidings_proto::v1::GetUnreadCountRequest {
            member_id: "quinn".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .unread_count;
    assert_eq!(api_count, 1);

    for (body, status) in [("{\"ids\":[\"nope\"]}", 400), ("not json", 400), ("{}", 400)] {
        let (got, answer) = http_request(
            edge_a,
            "POST",
            "/v1/notifications/read",
            &[("authorization", &auth)],
            Some(body.into()),
        )
        .await;
        assert_eq!(got, status, "{body}: {answer}");
        assert!(answer.contains("\"error\""), "{answer}");
    }
}

/// A MarkRead is announced to the member's streams, never stored: marking read while
/// away takes no place in the history a resume replays (a bounded replay would reset
/// after as many marks as the replay limit) nor in the stream's per-subject limit.
#[tokio::test]
async fn marking_read_while_away_takes_no_place_in_the_history() {
    let cluster = TestCluster::start_with(1, |c| c.options.replay_limit = 3).await;
    let sent = cluster.send(&["rosa"], "one").await.deliveries[0].clone();
    let stored = || async {
        let mut stream = cluster
            .bus
            .bus
            .jetstream()
            .get_stream(&cluster.bus.settings.name)
            .await
            .unwrap();
        stream.info().await.unwrap().state.messages
    };
    assert_eq!(stored().await, 1);

    // An open tab watches its badge while the member marks the notification read.
    let mut tab = cluster.stream(0, "rosa", "", None).await.unwrap();
    tab.next_named("connected").await;
    assert_eq!(tab.next_named("unread").await.json()["unreadCount"], 1);
    let mark = tidings_proto::v1::MarkReadRequest {
        member_id: "rosa".into(),
        up_to: sent.notification_id.clone(),
        ..Default::default()
    };
    for _ in 0..10 {
        cluster.client.clone().mark_read(mark.clone()).await.unwrap();
    }
    assert_eq!(
        tab.next_named("unread").await.json()["unreadCount"],
        0,
        "the announcement reaches the open tab"
    );
    drop(tab);
    assert_eq!(stored().await, 1, "ten marks stored nothing");

    // Away since the notification: the resume replays nothing, and no reset.
    let mut back = cluster.stream(0, "rosa", "", Some(&sent.event_id)).await.unwrap();
    assert_eq!(back.next_named("connected").await.json()["resumed"], true);
    let next = back.next().await;
    assert_eq!(next.event, "resumed", "{next:?}");
    assert_eq!(next.json()["missed"], 0);
}
