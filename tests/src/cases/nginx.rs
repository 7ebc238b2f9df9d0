//! The nginx config users copy (`deploy/nginx/tidings.conf`), with the real nginx in
//! front of two real edges: events pass through at once, a browser resumes through
//! nginx after its edge stopped, and both edges take traffic.

use std::collections::HashSet;
use std::time::Duration;

use tidings_testkit::sse::connect;
use tidings_testkit::{Nginx, TestApi, TestBus, TestDb, TestEdge, init_test_log};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_passes_events_at_once_balances_and_lets_browsers_resume() {
    init_test_log();
    let db = TestDb::new().await;
    let bus = TestBus::new().await;
    let api = TestApi::start(TestApi::config(&db, &bus), false).await;
    let mut edges = Vec::new();
    for name in ["edge-a", "edge-b"] {
        let mut config = TestEdge::config(&bus, &api);
        config.options.node_name = Some(name.into());
        edges.push(Some(TestEdge::start(config).await));
    }
    let addrs: Vec<_> = edges.iter().map(|e| e.as_ref().unwrap().addr).collect();
    let nginx = Nginx::start(&addrs).await;
    let client = api.client().await;
    let send = |member: &'static str, content: &'static str| {
        let mut client = client.clone();
        async move {
            let request = tidings_proto::v1::SendRequest {
                member_ids: vec![member.into()],
                r#type: "t".into(),
                content: content.into(),
                ..Default::default()
            };
            client.send(request).await.unwrap().into_inner()
        }
    };
    let open = |member: &'static str, last: Option<String>| {
        let addr = nginx.addr;
        async move {
            let token = TestEdge::token(member, &[], Duration::from_secs(600));
            let auth = format!("Bearer {token}");
            let mut headers = vec![("authorization", auth.as_str())];
            if let Some(last) = &last {
                headers.push(("last-event-id", last.as_str()));
            }
            connect(addr, "/v1/stream", &headers).await.unwrap()
        }
    };

    // Both edges serve: round-robin over a few connections reaches each.
    let mut nodes = HashSet::new();
    let mut streams = Vec::new();
    for _ in 0..4 {
        let mut s = open("wes", None).await;
        nodes.insert(
            s.next_named("connected").await.json()["node"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
        streams.push(s);
    }
    assert_eq!(nodes.len(), 2, "both edges take traffic: {nodes:?}");
    drop(streams);

    // A small event passes at once (a buffering proxy would hold it back).
    let mut s = open("xena", None).await;
    let node = s.next_named("connected").await.json()["node"]
        .as_str()
        .unwrap()
        .to_owned();
    send("xena", "through nginx").await;
    let event = s.next_within(Duration::from_secs(5)).await;
    let event = match event {
        Some(e) if e.event == "unread" => s.next_within(Duration::from_secs(5)).await,
        other => other,
    };
    assert_eq!(
        event.map(|e| e.event),
        Some("notification".to_owned()),
        "not held in a proxy buffer"
    );
    let last = s.last_event_id.clone().unwrap();

    // Its edge stops; the browser resumes through nginx on the other one.
    let index = if node == "edge-a" { 0 } else { 1 };
    edges[index].take().unwrap().terminate().await;
    drop(s);
    send("xena", "missed while moving").await;
    let mut resumed = open("xena", Some(last)).await;
    let connected = resumed.next_named("connected").await.json();
    assert_ne!(connected["node"], node.as_str());
    assert_eq!(connected["resumed"], true);
    assert_eq!(
        resumed.next_named("notification").await.json()["content"],
        "missed while moving"
    );
    assert!(nginx.access_log().contains("/v1/stream"), "requests went through nginx");
}
