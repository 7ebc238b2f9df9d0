//! Live delivery and resume across edges: the everyday life of a browser.

use std::time::Duration;

use tidings_domain::MemberId;
use tidings_testkit::TestCluster;

#[tokio::test]
async fn every_tab_of_a_member_on_both_edges_gets_it_live_and_nobody_else_does() {
    let cluster = TestCluster::start(2).await;
    let mut tabs = Vec::new();
    for edge in [0, 0, 1] {
        let mut tab = cluster.stream(edge, "alice", "", None).await.unwrap();
        assert_eq!(tab.headers["content-type"], "text/event-stream");
        assert_eq!(tab.headers["cache-control"], "no-cache");
        assert_eq!(tab.headers["x-accel-buffering"], "no");
        let connected = tab.next().await;
        assert_eq!(connected.event, "connected");
        assert_eq!(connected.json()["memberId"], "alice");
        assert!(tab.retry.is_some(), "retry: comes first");
        tabs.push(tab);
    }
    // Bob tries to widen his stream with query parameters and headers of his own.
    let mut bob = cluster
        .stream(1, "bob", "?member=alice&topics=", Some("garbage"))
        .await
        .unwrap();
    assert_eq!(bob.next().await.event, "connected");
    assert_eq!(bob.next_named("reset").await.json()["reason"], "malformed_id");

    let sent = cluster.send(&["alice"], "for alice").await;
    let id = &sent.deliveries[0].notification_id;
    for tab in &mut tabs {
        let event = tab.next_named("notification").await;
        assert_eq!(event.json()["id"], id.as_str());
        assert_eq!(event.json()["content"], "for alice");
        assert_eq!(event.id.as_deref(), Some(sent.deliveries[0].event_id.as_str()));
    }
    // Bob sees nothing of it: his next notification is his own, sent after.
    cluster.send(&["bob"], "for bob").await;
    let next = bob.next_named("notification").await;
    assert_eq!(next.json()["content"], "for bob", "bob received {next:?}");
}

#[tokio::test]
async fn a_browser_resumes_on_the_other_edge_with_exactly_what_it_missed() {
    let cluster = TestCluster::start(2).await;
    let mut first = cluster.stream(0, "carol", "", None).await.unwrap();
    first.next_named("connected").await;
    cluster.send(&["carol"], "before").await;
    let before = first.next_named("notification").await;
    let last = first.last_event_id.clone().unwrap();
    assert_eq!(last, before.id.clone().unwrap());
    first.close();

    let mut missed = Vec::new();
    for i in 0..5 {
        cluster.send(&["carol", "someone-else"], &format!("missed {i}")).await;
        missed.push(format!("missed {i}"));
    }
    let mut second = cluster.stream(1, "carol", "", Some(&last)).await.unwrap();
    let connected = second.next_named("connected").await;
    assert_eq!(connected.json()["resumed"], true);
    let mut got = Vec::new();
    let mut seqs = Vec::new();
    while got.len() < 5 {
        let e = second.next_named("notification").await;
        seqs.push(e.seq());
        got.push(e.json()["content"].as_str().unwrap().to_owned());
    }
    assert_eq!(got, missed, "exactly the missed ones, in order");
    assert!(seqs.windows(2).all(|w| w[0] < w[1]));
    // The replay is over: the marker a client shows "resumed, 5 missed" from.
    assert_eq!(second.next_named("resumed").await.json()["missed"], 5);
    cluster.send(&["carol"], "live again").await;
    assert_eq!(
        second.next_named("notification").await.json()["content"],
        "live again",
        "no duplicate before it"
    );
}

/// A release of a live interest that cannot be queued (the live task's command channel
/// full, in a storm of closes) is not lost: the live task sweeps what it holds, and the
/// node stops receiving what nobody on it wants.
#[tokio::test]
async fn a_lost_release_does_not_leave_a_subscription_behind() {
    let cluster = TestCluster::start(1).await;
    let mut s = cluster.stream(0, "once-here", "", None).await.unwrap();
    s.next_named("connected").await;
    assert_eq!(cluster.edges[0].stats().interests, 1);
    cluster.edges[0].stats_handle().lose_next_release();
    s.close();
    tidings_testkit::eventually("the edge to drop the interest all the same", || async {
        (cluster.edges[0].stats().interests == 0).then_some(())
    })
    .await;
}

#[tokio::test]
async fn an_edge_receives_only_the_traffic_of_what_is_connected_to_it() {
    let cluster = TestCluster::start(2).await;
    let partitions = cluster.bus.bus.subjects().partitions();
    let partition = |m: &str| MemberId::parse(m).unwrap().partition(partitions);
    // Three members in three different partitions.
    let here = "member-here";
    let mut others = (0..1000)
        .map(|i| format!("member-{i}"))
        .filter(|m| partition(m) != partition(here));
    let witness = others.next().unwrap();
    let elsewhere = others.find(|m| partition(m) != partition(&witness)).unwrap();

    assert_eq!(cluster.edges[0].stats().interests, 0, "nothing connected: no interest");
    let mut stream = cluster.stream(0, here, "", None).await.unwrap();
    stream.next_named("connected").await;
    let mut watch = cluster.stream(0, &witness, "", None).await.unwrap();
    watch.next_named("connected").await;
    assert_eq!(cluster.edges[0].stats().interests, 2);

    let before = cluster.edges[0].stats().live_received;
    for _ in 0..20 {
        cluster.send(&[&elsewhere], "not for this edge").await;
    }
    cluster.send(&[here], "for this edge").await;
    assert_eq!(
        stream.next_named("notification").await.json()["content"],
        "for this edge"
    );
    assert_eq!(
        cluster.edges[0].stats().live_received - before,
        1,
        "not the 20 messages of an unconnected member"
    );
    assert_eq!(
        cluster.edges[1].stats().live_received,
        0,
        "edge 1 has no connections and no traffic"
    );

    // A second tab shares the interest; after the last tab leaves it is dropped.
    let mut tab2 = cluster.stream(0, here, "", None).await.unwrap();
    tab2.next_named("connected").await;
    assert_eq!(cluster.edges[0].stats().interests, 2);
    stream.close();
    tab2.close();
    tidings_testkit::eventually("the edge to drop the member's interest", || async {
        (cluster.edges[0].stats().interests == 1).then_some(())
    })
    .await;
    let before = cluster.edges[0].stats().live_received;
    cluster.send(&[here], "nobody listening here").await;
    cluster.send(&[&witness], "witness").await;
    // Live messages arrive in stream order: once the witness's is in, the other one
    // would have been too.
    assert_eq!(watch.next_named("notification").await.json()["content"], "witness");
    assert_eq!(
        cluster.edges[0].stats().live_received - before,
        1,
        "only the witness's message came in"
    );
}

/// The switch to one subscription for every member partition (taken once most
/// partitions are needed) is undone when NATS cannot confirm it: otherwise the node
/// would hold both, receive every message twice, and never finish the switch.
#[tokio::test]
async fn a_switch_to_all_members_that_nats_cannot_confirm_is_undone() {
    let cluster = TestCluster::start_partitioned(1, 4).await;
    // Members of three different partitions of four: the third reaches 3/4.
    let mut members: Vec<String> = Vec::new();
    for i in 0..1000 {
        let m = format!("switch-{i}");
        let p = MemberId::parse(&m).unwrap().partition(4);
        if members.iter().all(|o| MemberId::parse(o).unwrap().partition(4) != p) {
            members.push(m);
        }
        if members.len() == 3 {
            break;
        }
    }
    let mut streams = Vec::new();
    for m in &members[..2] {
        let mut s = cluster.stream(0, m, "", None).await.unwrap();
        s.next_named("connected").await;
        streams.push(s);
    }
    assert_eq!(cluster.edges[0].stats().interests, 2);

    // The third member's connect takes the switch, which NATS does not confirm.
    cluster.edges[0].stats_handle().fail_next_live_confirm();
    // Without live interest the stream cannot open: refused, or closed at once.
    if let Ok(mut failed) = cluster.stream(0, &members[2], "", None).await {
        let events = failed.until_closed(Duration::from_secs(10)).await;
        let events = events.expect("the stream is closed");
        assert!(events.iter().all(|e| e.event != "notification"), "{events:?}");
    }

    // Again: the switch completes, and the node holds one subscription, not the two
    // partitions' plus one to every partition.
    let mut third = cluster.stream(0, &members[2], "", None).await.unwrap();
    third.next_named("connected").await;
    assert_eq!(cluster.edges[0].stats().interests, 1);
    cluster.send(&[&members[2]], "once").await;
    assert_eq!(third.next_named("notification").await.json()["content"], "once");
    assert_eq!(cluster.edges[0].stats().live_received, 1, "received once, not twice");
}
