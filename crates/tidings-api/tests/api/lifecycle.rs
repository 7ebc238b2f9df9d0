//! The inbox lifecycle against real Postgres and NATS: ArchiveNotifications and
//! DeleteNotifications over gRPC and the HTTP/JSON API, and retention.

use std::time::Duration;

use chrono::{TimeDelta, Utc};
use serde_json::json;
use tidings_api::{App, Retention, RetentionRun, RetentionSchedule};
use tidings_proto::v1 as pb;
use tidings_testkit::{ApiClient, TestApi, TestBus, TestDb, eventually, http_call, init_test_log};
use tonic::Code;
use uuid::Uuid;

use crate::support::{Harness, send_to};

const KEY: &str = "Bearer test-key-0123456789";

async fn sent(client: &mut ApiClient, members: &[&str]) -> String {
    client.send(send_to(members)).await.unwrap().into_inner().deliveries[0]
        .notification_id
        .clone()
}

async fn listed(client: &mut ApiClient, member: &str, archived: pb::ArchivedFilter) -> Vec<String> {
    let request = pb::ListNotificationsRequest {
        member_id: member.into(),
        archived: archived.into(),
        ..Default::default()
    };
    let page = client.list_notifications(request).await.unwrap().into_inner();
    page.notifications.into_iter().map(|n| n.id).collect()
}

async fn unread(client: &mut ApiClient, member: &str) -> u64 {
    let request = pb::GetUnreadCountRequest {
        member_id: member.into(),
        ..Default::default()
    };
    client
        .get_unread_count(request)
        .await
        .unwrap()
        .into_inner()
        .unread_count
}

fn archive(ids: &[&String], up_to: &str) -> pb::ArchiveNotificationsRequest {
    pb::ArchiveNotificationsRequest {
        member_id: "m".into(),
        ids: ids.iter().map(|s| s.to_string()).collect(),
        up_to: up_to.into(),
    }
}

fn delete(ids: &[&String], up_to: &str) -> pb::DeleteNotificationsRequest {
    pb::DeleteNotificationsRequest {
        member_id: "m".into(),
        ids: ids.iter().map(|s| s.to_string()).collect(),
        up_to: up_to.into(),
    }
}

#[tokio::test]
async fn archive_and_delete_over_grpc_by_ids_and_up_to() {
    let h = Harness::start().await;
    let mut c = h.api.client().await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(sent(&mut c, &["m"]).await);
    }
    let foreign = sent(&mut c, &["other"]).await;

    let done = c
        .archive_notifications(archive(&[&ids[4]], ""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((done.unread_count, done.archived), (4, 1));
    assert!(
        !listed(&mut c, "m", pb::ArchivedFilter::Unspecified)
            .await
            .contains(&ids[4])
    );
    assert_eq!(listed(&mut c, "m", pb::ArchivedFilter::Only).await, [ids[4].clone()]);
    assert_eq!(listed(&mut c, "m", pb::ArchivedFilter::Include).await.len(), 5);
    assert_eq!(unread(&mut c, "m").await, 4);
    let archived_item = c
        .list_notifications(pb::ListNotificationsRequest {
            member_id: "m".into(),
            archived: pb::ArchivedFilter::Only.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .notifications
        .remove(0);
    assert!(archived_item.archived_at.is_some());
    let retry = c
        .archive_notifications(archive(&[&ids[4]], ""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((retry.unread_count, retry.archived), (4, 0), "idempotent");

    // Another member's id: NOT_FOUND, and nothing archived (ids[3] included).
    for request in [archive(&[&ids[3], &foreign], ""), archive(&[], &foreign)] {
        let status = c.archive_notifications(request).await.unwrap_err();
        assert_eq!(status.code(), Code::NotFound, "{status:?}");
        assert!(status.message().contains(&foreign), "{status:?}");
    }
    assert_eq!(listed(&mut c, "m", pb::ArchivedFilter::Only).await, [ids[4].clone()]);
    assert_eq!(
        listed(&mut c, "other", pb::ArchivedFilter::Exclude).await,
        std::slice::from_ref(&foreign)
    );

    let done = c
        .archive_notifications(archive(&[], &ids[1]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((done.unread_count, done.archived), (2, 2));

    // Delete: gone; another member's id is skipped; a retry succeeds.
    let done = c
        .delete_notifications(delete(&[&ids[2], &foreign], ""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((done.unread_count, done.deleted), (1, 1));
    let retry = c
        .delete_notifications(delete(&[&ids[2]], ""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((retry.unread_count, retry.deleted), (1, 0));
    assert_eq!(
        listed(&mut c, "other", pb::ArchivedFilter::Exclude).await,
        std::slice::from_ref(&foreign)
    );
    let done = c.delete_notifications(delete(&[], &ids[3])).await.unwrap().into_inner();
    assert_eq!(
        (done.unread_count, done.deleted),
        (0, 3),
        "ids[0], ids[1] (archived) and ids[3]"
    );
    assert_eq!(listed(&mut c, "m", pb::ArchivedFilter::Include).await, [ids[4].clone()]);
    assert_eq!(h.notification_rows().await, 2);

    // Bad requests say what is wrong.
    let id = ids[4].clone();
    let too_many: Vec<&String> = std::iter::repeat_n(&id, 1001).collect();
    for (request, code) in [
        (archive(&[&id], &id), Code::InvalidArgument),
        (archive(&[], ""), Code::InvalidArgument),
        (archive(&[&"nope".to_owned()], ""), Code::InvalidArgument),
        (archive(&too_many, ""), Code::ResourceExhausted),
    ] {
        assert_eq!(c.archive_notifications(request).await.unwrap_err().code(), code);
    }
    let mut bad_member = delete(&[&id], "");
    bad_member.member_id = String::new();
    let status = c.delete_notifications(bad_member).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().starts_with("member_id"), "{status:?}");
    let bad_filter = pb::ListNotificationsRequest {
        member_id: "m".into(),
        archived: 9,
        ..Default::default()
    };
    let status = c.list_notifications(bad_filter).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().starts_with("archived"), "{status:?}");
    let mut anonymous = h.api.client_with_key(None).await;
    let status = anonymous.delete_notifications(delete(&[&id], "")).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(h.notification_rows().await, 2, "refused calls changed nothing");
}

#[tokio::test]
async fn archive_and_delete_over_the_http_json_api() {
    let h = Harness::start().await;
    let addr = h.api.grpc_addr;
    let mut c = h.api.client().await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(sent(&mut c, &["m"]).await);
    }
    let foreign = sent(&mut c, &["other"]).await;
    let post = |path: &'static str, body: serde_json::Value| async move {
        http_call(addr, "POST", path, &[("authorization", KEY)], body.to_string()).await
    };
    let get = |path: &'static str| async move {
        http_call(addr, "GET", path, &[("authorization", KEY)], String::new()).await
    };

    let reply = post("/v1/members/m/notifications/archive", json!({ "ids": [ids[2]] })).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json(), json!({ "unreadCount": 2, "archived": 1 }));
    let only = get("/v1/members/m/notifications?archived=only").await.json();
    assert_eq!(only["notifications"][0]["id"], ids[2].as_str(), "{only}");
    assert!(only["notifications"][0]["archivedAt"].is_string(), "{only}");
    let default = get("/v1/members/m/notifications").await.json();
    assert_eq!(default["notifications"].as_array().unwrap().len(), 2, "{default}");
    assert!(default["notifications"][0]["archivedAt"].is_null(), "{default}");
    let include = get("/v1/members/m/notifications?archived=include").await.json();
    assert_eq!(include["notifications"].as_array().unwrap().len(), 3, "{include}");
    assert_eq!(get("/v1/members/m/unread-count").await.json()["unreadCount"], 2);

    let reply = post("/v1/members/m/notifications/archive", json!({ "ids": [foreign] })).await;
    assert_eq!(reply.status, 404, "{}", reply.body);
    assert_eq!(reply.json()["error"]["code"], "not_found");
    let reply = post("/v1/members/m/notifications/archive", json!({ "upTo": ids[1] })).await;
    assert_eq!(reply.json(), json!({ "unreadCount": 0, "archived": 2 }));

    let reply = post("/v1/members/m/notifications/delete", json!({ "up_to": ids[0] })).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json(), json!({ "unreadCount": 0, "deleted": 1 }));
    let reply = post(
        "/v1/members/m/notifications/delete",
        json!({ "ids": [ids[1], ids[2], foreign] }),
    )
    .await;
    assert_eq!(reply.json(), json!({ "unreadCount": 0, "deleted": 2 }));
    assert_eq!(h.notification_rows().await, 1, "only the other member's is left");

    for (method, path, body, status) in [
        ("POST", "/v1/members/m/notifications/delete", "{\"id\":[]}", 400),
        ("POST", "/v1/members/m/notifications/delete", "{}", 400),
        ("POST", "/v1/members/m/notifications/archive", "not json", 400),
        ("GET", "/v1/members/m/notifications?archived=maybe", "", 400),
        ("GET", "/v1/members/m/notifications/archive", "", 405),
    ] {
        let reply = http_call(addr, method, path, &[("authorization", KEY)], body.to_owned()).await;
        assert_eq!(reply.status, status, "{method} {path} {body}: {}", reply.body);
        assert!(reply.body.contains("\"error\""), "{}", reply.body);
    }
    let reply = http_call(
        addr,
        "POST",
        "/v1/members/other/notifications/delete",
        &[],
        json!({ "ids": [foreign] }).to_string(),
    )
    .await;
    assert_eq!(reply.status, 401);
    assert_eq!(h.notification_rows().await, 1);
}

/// Notifications for `members` created `age` ago, with UUIDv7 ids of their time, as
/// published Sends then would have stored them.
async fn old_rows(db: &TestDb, members: &[String], age: TimeDelta) {
    let start = Utc::now() - age;
    let times: Vec<_> = (0..members.len())
        .map(|i| start + TimeDelta::milliseconds(i as i64))
        .collect();
    let ids: Vec<Uuid> = times
        .iter()
        .map(|at| {
            let ts = uuid::Timestamp::from_unix(
                uuid::NoContext,
                at.timestamp().unsigned_abs(),
                at.timestamp_subsec_nanos(),
            );
            Uuid::new_v7(ts)
        })
        .collect();
    sqlx::query(
        "insert into notification (id, member_id, type, content, created_at, producer, stream_seq, stream_epoch)
         select id, m, 't', 'c', at, 'p', 1, 1 from unnest($1::uuid[], $2::text[], $3::timestamptz[]) as r(id, m, at)",
    )
    .bind(&ids)
    .bind(members)
    .bind(&times)
    .execute(&db.pool)
    .await
    .unwrap();
}

async fn rows(db: &TestDb) -> i64 {
    sqlx::query_scalar("select count(*) from notification")
        .fetch_one(&db.pool)
        .await
        .unwrap()
}

/// A schedule that never fires on its own within a test: passes are called directly.
fn by_hand(batch: u32, pause: Duration) -> RetentionSchedule {
    RetentionSchedule {
        first_after: Duration::from_secs(3600),
        batch,
        pause,
        ..RetentionSchedule::default()
    }
}

async fn metrics(http: std::net::SocketAddr) -> String {
    http_call(http, "GET", "/metrics", &[], String::new()).await.body
}

#[tokio::test]
async fn retention_runs_on_one_replica_at_a_time_in_batches_and_is_counted() {
    init_test_log();
    let db = TestDb::new().await;
    let bus = TestBus::new().await;
    let members: Vec<String> = (0..500).map(|i| format!("m{}", i % 7)).collect();
    old_rows(&db, &members, TimeDelta::days(91)).await;
    old_rows(&db, &vec!["m1".to_owned(); 4], TimeDelta::days(89)).await;
    let replica = || async {
        let mut config = TestApi::config(&db, &bus);
        config.retention_schedule = by_hand(100, Duration::from_millis(200));
        App::build(config, false).await.unwrap()
    };
    let (a, b) = (replica().await, replica().await);

    // Both at once: one takes the lock and deletes in batches of 100 with pauses (a
    // second and more), the other gives way.
    let (ra, rb) = tokio::join!(a.retention_pass(), b.retention_pass());
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    let (done, winner, loser) = match (ra, rb) {
        (RetentionRun::Done(report), RetentionRun::Busy) => (report, a, b),
        (RetentionRun::Busy, RetentionRun::Done(report)) => (report, b, a),
        other => panic!("exactly one replica runs retention: {other:?}"),
    };
    assert_eq!(done.deleted, 500);
    assert_eq!(done.batches, 6, "five full batches and one that found nothing more");
    assert!(!done.more);
    assert!(done.took >= Duration::from_millis(1000), "{done:?}");
    assert_eq!(rows(&db).await, 4, "the young ones are kept");

    let (winner_http, loser_http) = (winner.http_addr(), loser.http_addr());
    let stop = tokio_util::sync::CancellationToken::new();
    let runs = [
        tokio::spawn(winner.run(stop.clone())),
        tokio::spawn(loser.run(stop.clone())),
    ];
    let text = metrics(winner_http).await;
    assert!(text.contains("tidings_api_retention_deleted_total 500"), "{text}");
    assert!(
        text.contains("tidings_api_retention_runs_total{outcome=\"done\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("tidings_api_retention_run_duration_seconds_count 1"),
        "{text}"
    );
    let text = metrics(loser_http).await;
    assert!(
        text.contains("tidings_api_retention_runs_total{outcome=\"busy\"} 1"),
        "{text}"
    );
    assert!(text.contains("tidings_api_retention_deleted_total 0"), "{text}");
    stop.cancel();
    for run in runs {
        run.await.unwrap().unwrap();
    }
}

#[tokio::test]
async fn retention_zero_keeps_everything() {
    init_test_log();
    let db = TestDb::new().await;
    let bus = TestBus::new().await;
    old_rows(&db, &vec!["m".to_owned(); 20], TimeDelta::days(3650)).await;
    let mut config = TestApi::config(&db, &bus);
    config.retention = Retention::parse("0").unwrap();
    config.retention_schedule = by_hand(5, Duration::ZERO);
    let app = App::build(config, false).await.unwrap();
    assert_eq!(app.retention_pass().await.unwrap(), RetentionRun::Disabled);
    assert_eq!(rows(&db).await, 20);
}

/// The api runs retention on its own: at start-up (here at once) and then periodically.
#[tokio::test]
async fn the_api_runs_retention_on_its_schedule() {
    init_test_log();
    let db = TestDb::new().await;
    let bus = TestBus::new().await;
    old_rows(&db, &vec!["m".to_owned(); 30], TimeDelta::days(100)).await;
    let mut config = TestApi::config(&db, &bus);
    config.retention_schedule = RetentionSchedule {
        first_after: Duration::ZERO,
        every: Duration::from_millis(100),
        batch: 10,
        pause: Duration::ZERO,
        max_batches: 2,
    };
    let api = TestApi::start(config, false).await;
    eventually("retention to delete every expired row, 20 per run", || async {
        (rows(&db).await == 0).then_some(())
    })
    .await;
    // Rows that expire later go at a later run.
    old_rows(&db, &vec!["m".to_owned(); 3], TimeDelta::days(100)).await;
    let mut c = api.client().await;
    c.send(send_to(&["m"])).await.unwrap();
    eventually("the next run to delete the newly expired rows", || async {
        (rows(&db).await == 1).then_some(())
    })
    .await;
    let text = metrics(api.http_addr).await;
    assert!(text.contains("tidings_api_retention_deleted_total 33"), "{text}");
}

/// A run that stops at its bound with expired rows left is followed by the next run
/// after a pause, not after a period: a backlog larger than one run is worked off
/// whatever the period.
#[tokio::test]
async fn a_backlog_larger_than_a_run_is_worked_off_without_waiting_for_the_period() {
    init_test_log();
    let db = TestDb::new().await;
    let bus = TestBus::new().await;
    old_rows(&db, &vec!["m".to_owned(); 50], TimeDelta::days(100)).await;
    let mut config = TestApi::config(&db, &bus);
    config.retention_schedule = RetentionSchedule {
        first_after: Duration::ZERO,
        every: Duration::from_secs(3600),
        batch: 10,
        pause: Duration::from_millis(10),
        max_batches: 2,
    };
    let api = TestApi::start(config, false).await;
    eventually("three runs of 20 to delete the 50 expired rows", || async {
        (rows(&db).await == 0).then_some(())
    })
    .await;
    let text = metrics(api.http_addr).await;
    assert!(text.contains("tidings_api_retention_deleted_total 50"), "{text}");
}
