use std::collections::HashSet;

use tidings_proto::v1 as pb;
use tonic::Code;

use crate::support::{Harness, send_to};

#[tokio::test]
async fn paging_marking_read_and_counting_over_grpc() {
    let h = Harness::start().await;
    let mut client = h.api.client().await;
    let mut ids = Vec::new();
    for _ in 0..7 {
        let r = client.send(send_to(&["m", "other"])).await.unwrap().into_inner();
        ids.push(r.deliveries[0].notification_id.clone());
    }
    let list = |cursor: String, unread_only: bool| pb::ListNotificationsRequest {
        member_id: "m".into(),
        cursor,
        limit: 3,
        unread_only,
        ..Default::default()
    };
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = client
            .list_notifications(list(cursor, false))
            .await
            .unwrap()
            .into_inner();
        // Newer notifications arriving between pages do not disturb the walk.
        client.send(send_to(&["m"])).await.unwrap();
        seen.extend(page.notifications.iter().map(|n| n.id.clone()));
        assert!(
            page.notifications
                .iter()
                .all(|n| n.member_id == "m" && n.read_at.is_none())
        );
        if page.next_cursor.is_empty() {
            break;
        }
        cursor = page.next_cursor;
    }
    let expected: Vec<String> = ids.iter().rev().cloned().collect();
    assert_eq!(seen, expected, "newest first, each once");

    let unread = |c: &mut tidings_testkit::ApiClient| {
        let mut c = c.clone();
        async move {
            c.get_unread_count(pb::GetUnreadCountRequest {
                member_id: "m".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .unread_count
        }
    };
    assert_eq!(unread(&mut client).await, 10);
    let marked = client
        .mark_read(pb::MarkReadRequest {
            member_id: "m".into(),
            ids: vec![ids[6].clone()],
            up_to: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(marked.unread_count, 9);
    let marked = client
        .mark_read(pb::MarkReadRequest {
            member_id: "m".into(),
            ids: vec![],
            up_to: ids[3].clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        marked.unread_count, 5,
        "ids[0..=3] and ids[6] read; ids[4], ids[5] and 3 newer unread"
    );
    let page = client
        .list_notifications(list(String::new(), true))
        .await
        .unwrap()
        .into_inner();
    assert!(page.notifications.iter().all(|n| n.read_at.is_none()));

    // Another member's notification cannot be the anchor of up_to.
    let foreign = client.send(send_to(&["other"])).await.unwrap().into_inner().deliveries[0]
        .notification_id
        .clone();
    let status = client
        .mark_read(pb::MarkReadRequest {
            member_id: "m".into(),
            ids: vec![],
            up_to: foreign,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);

    for bad in [
        pb::ListNotificationsRequest {
            member_id: "m".into(),
            cursor: "forged".into(),
            ..Default::default()
        },
        pb::ListNotificationsRequest {
            member_id: "m".into(),
            limit: 201,
            ..Default::default()
        },
        pb::ListNotificationsRequest {
            member_id: String::new(),
            ..Default::default()
        },
    ] {
        assert_eq!(
            client.list_notifications(bad).await.unwrap_err().code(),
            Code::InvalidArgument
        );
    }
}

#[tokio::test]
async fn the_unread_count_is_exact_under_concurrent_sends() {
    let h = Harness::start().await;
    let client = h.api.client().await;
    let sends = (0..40).map(|i| {
        let mut c = client.clone();
        tokio::spawn(async move { c.send(send_to(&["busy", &format!("x{i}")])).await.unwrap().into_inner() })
    });
    let responses = futures::future::join_all(sends).await;
    let ids: HashSet<String> = responses
        .into_iter()
        .map(|r| r.unwrap().deliveries[0].notification_id.clone())
        .collect();
    assert_eq!(ids.len(), 40);
    let mut c = client.clone();
    let count = c
        .get_unread_count(pb::GetUnreadCountRequest {
            member_id: "busy".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(count.unread_count, 40);
    assert_eq!(h.stream_messages().await, 80);

    // Many members in one call, in the order asked, unknown members included.
    let counts = c
        .get_unread_count(pb::GetUnreadCountRequest {
            member_ids: vec!["x3".into(), "busy".into(), "nobody".into(), "x3".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .unread_counts;
    assert_eq!(counts, [1, 40, 0, 1]);
}
