//! Fresh streams on an edge that already holds their interest start live at once
//! (`ready.rs`: no catch-up task, no read of the stream) at the node's position — and
//! are owed exactly what comes after it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tidings_domain::MemberId;
use tidings_proto::v1 as pb;
use tidings_testkit::sse::http_request;
use tidings_testkit::{TestCluster, eventually};

use super::observability::metric;

/// Most notifications the background sender sends, whatever happens.
const MAX_SENDS: usize = 2_000;
/// Members, each with a fresh tab opened while the sender runs.
const TABS: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_tabs_on_a_warm_edge_start_live_with_every_notification_after_their_position() {
    let cluster = TestCluster::start(1).await;
    let edge = cluster.edges[0].addr;
    let started_live = || async move {
        let text = http_request(edge, "GET", "/metrics", &[], None).await.1;
        metric(&text, "tidings_edge_connections_started_live_total")
    };
    // Members of one partition: the edge holds it once the first connects.
    let subjects = cluster.bus.bus.subjects();
    let partition = subjects.partition_of(&MemberId::parse("warm-0").unwrap());
    let members: Vec<String> = (0..)
        .map(|i| format!("warm-{i}"))
        .filter(|m| subjects.partition_of(&MemberId::parse(m).unwrap()) == partition)
        .take(TABS)
        .collect();

    // A first tab per member stays open: it sees every notification of its member and
    // is the record of their sequences.
    let mut records = Vec::new();
    for m in &members {
        let mut s = cluster.stream(0, m, "", None).await.unwrap();
        s.next_named("connected").await;
        records.push(s);
    }
    // Once the node has accounted for the partition, a fresh tab starts live.
    eventually("a fresh tab starts live", || async {
        let mut probe = cluster.stream(0, &members[0], "", None).await.unwrap();
        probe.next_named("connected").await;
        probe.close();
        (started_live().await >= 1.0).then_some(())
    })
    .await;
    let before = started_live().await;

    // A sender notifies every member without pause while a second, fresh tab of each
    // opens, one after another, at whatever position the node has reached.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let sender = tokio::spawn({
        let (mut client, stop, sent, members) = (cluster.client.clone(), stop.clone(), sent.clone(), members.clone());
        async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) && n < MAX_SENDS {
                let request = pb::SendRequest {
                    member_ids: members.clone(),
                    r#type: "test.event".into(),
                    content: format!("n{n}"),
                    ..Default::default()
                };
                client.send(request).await.expect("send");
                n += 1;
                sent.store(n, Ordering::Relaxed);
            }
        }
    });
    let mut tabs = Vec::new();
    for m in &members {
        let from = sent.load(Ordering::Relaxed);
        eventually("another notification sent", || {
            let sent = sent.clone();
            async move { (sent.load(Ordering::Relaxed) > from).then_some(()) }
        })
        .await;
        let mut tab = cluster.stream(0, m, "", None).await.unwrap();
        let position = tab.next_named("connected").await.seq();
        tabs.push((position, tab));
    }
    stop.store(true, Ordering::Relaxed);
    sender.await.unwrap();
    assert!(
        started_live().await - before >= TABS as f64,
        "every fresh tab started live"
    );
    let members: Vec<&str> = members.iter().map(String::as_str).collect();
    cluster.send(&members, "last").await;

    // Every fresh tab got exactly its member's notifications after its position, in
    // order — and opened while they were flowing.
    for (mut record, (position, mut tab)) in records.into_iter().zip(tabs) {
        let all = read_until_last(&mut record).await;
        assert!(
            all.iter().any(|(seq, _)| *seq <= position) && all.iter().any(|(seq, _)| *seq > position),
            "the tab at {position} opened while notifications were flowing"
        );
        let expected: Vec<(u64, String)> = all.iter().filter(|(seq, _)| *seq > position).cloned().collect();
        assert_eq!(read_until_last(&mut tab).await, expected, "the tab at {position}");
    }
}

/// The notifications a stream receives (sequence, content) up to and including "last".
async fn read_until_last(s: &mut tidings_testkit::sse::SseStream) -> Vec<(u64, String)> {
    let mut got = Vec::new();
    loop {
        let e = s
            .next_within(Duration::from_secs(20))
            .await
            .expect("notifications keep coming until the last");
        assert_ne!(e.event, "reset", "no reset: {}", e.data);
        if e.event == "notification" {
            let content = e.json()["content"].as_str().unwrap().to_owned();
            got.push((e.seq(), content.clone()));
            if content == "last" {
                return got;
            }
        }
    }
}
