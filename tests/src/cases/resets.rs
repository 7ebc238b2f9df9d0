//! `reset` instead of a silent hole: every way a resume position can be unusable, and
//! a live gap healed from the stream.

use tidings_domain::{EventId, StreamEpoch};
use tidings_testkit::TestCluster;

async fn reset_reason(cluster: &TestCluster, last_event_id: &str) -> (String, Option<String>) {
    let mut stream = cluster.stream(0, "dora", "", Some(last_event_id)).await.unwrap();
    stream.next_named("connected").await;
    let reset = stream.next_named("reset").await;
    (reset.json()["reason"].as_str().unwrap().to_owned(), reset.id)
}

#[tokio::test]
async fn unusable_positions_get_a_reset_then_live_events() {
    let cluster = TestCluster::start_with(1, |c| c.options.replay_limit = 5).await;
    let epoch = cluster.bus.bus.epoch();
    let first = cluster.send(&["dora"], "one").await.deliveries[0].event_id.clone();
    let first = EventId::parse(&first).unwrap();

    for (id, reason) in [
        ("not-an-id".to_owned(), "malformed_id"),
        (
            EventId::new(StreamEpoch(epoch.0 ^ 1), first.seq).to_string(),
            "other_incarnation",
        ),
        (EventId::new(epoch, first.seq + 1000).to_string(), "unknown_position"),
    ] {
        let (got, id_after) = reset_reason(&cluster, &id).await;
        assert_eq!(got, reason, "{id}");
        assert!(id_after.is_some(), "the reset moves the client's position to now");
    }

    // More missed than the bound (5).
    for i in 0..8 {
        cluster.send(&["dora"], &format!("n{i}")).await;
    }
    let mut stream = cluster.stream(0, "dora", "", Some(&first.to_string())).await.unwrap();
    assert_eq!(stream.next_named("connected").await.json()["resumed"], true);
    assert_eq!(stream.next_named("reset").await.json()["reason"], "too_many_missed");
    cluster.send(&["dora"], "live after the reset").await;
    loop {
        let e = stream.next().await;
        assert_ne!(e.event, "resumed", "a reset is no resume: {e:?}");
        if e.event == "notification" {
            break;
        }
    }

    // After a reset, live events follow.
    let mut stream = cluster.stream(0, "dora", "", Some("forged")).await.unwrap();
    stream.next_named("reset").await;
    cluster.send(&["dora"], "after reset").await;
    assert_eq!(stream.next_named("notification").await.json()["content"], "after reset");
}

#[tokio::test]
async fn history_older_than_the_stream_holds_is_a_reset() {
    let cluster = TestCluster::start(1).await;
    let old = cluster.send(&["erin"], "old").await.deliveries[0].event_id.clone();
    cluster.send(&["erin"], "lost to retention").await;
    let newest = cluster.send(&["erin"], "newest").await.deliveries[0].event_id.clone();
    // Retention removes the oldest messages: here everything before the newest.
    let stream = cluster
        .bus
        .bus
        .jetstream()
        .get_stream(&cluster.bus.settings.name)
        .await
        .unwrap();
    stream
        .purge()
        .sequence(EventId::parse(&newest).unwrap().seq)
        .await
        .unwrap();
    let mut s = cluster.stream(0, "erin", "", Some(&old)).await.unwrap();
    s.next_named("connected").await;
    assert_eq!(s.next_named("reset").await.json()["reason"], "history_trimmed");
}

/// A live message that never reaches the edge (dropped by a test hook, as a NATS hiccup
/// would) is fetched from the stream before the next one is delivered.
#[tokio::test]
async fn a_live_gap_is_healed_from_the_stream() {
    let cluster = TestCluster::start(1).await;
    let mut s = cluster.stream(0, "fred", "", None).await.unwrap();
    s.next_named("connected").await;
    cluster.send(&["fred"], "one").await;
    assert_eq!(s.next_named("notification").await.json()["content"], "one");

    cluster.edges[0].stats_handle().drop_next_live_message();
    cluster.send(&["fred"], "two (dropped live)").await;
    cluster.send(&["fred"], "three").await;
    let two = s.next_named("notification").await;
    assert_eq!(two.json()["content"], "two (dropped live)");
    let three = s.next_named("notification").await;
    assert_eq!(three.json()["content"], "three");
    assert!(two.seq() < three.seq());
    // No duplicate: the next notification is one sent after them.
    cluster.send(&["fred"], "sentinel").await;
    assert_eq!(s.next_named("notification").await.json()["content"], "sentinel");
}

/// A read of the stream that fails for a passing reason (here: the next two reads time
/// out, by a test hook, as they do while a stream leader is being elected) is retried,
/// for a resume and for a live gap alike: nothing is gone, so no `reset`.
#[tokio::test]
async fn reads_that_fail_for_a_while_are_retried_never_a_reset() {
    let cluster = TestCluster::start(1).await;
    let edge = cluster.edges[0].stats_handle();
    let mut s = cluster.stream(0, "gail", "", None).await.unwrap();
    s.next_named("connected").await;
    cluster.send(&["gail"], "one").await;
    let one = s.next_named("notification").await;
    drop(s);
    for content in ["two", "three"] {
        cluster.send(&["gail"], content).await;
    }

    // A resume whose replay fails twice.
    edge.fail_next_stream_reads(2);
    let mut s = cluster.stream(0, "gail", "", one.id.as_deref()).await.unwrap();
    assert_eq!(
        notifications(&mut s, 2).await,
        ["two", "three"],
        "exactly what was missed, in order"
    );

    // A live gap whose fetch fails twice.
    edge.fail_next_stream_reads(2);
    edge.drop_next_live_message();
    cluster.send(&["gail"], "four (dropped live)").await;
    cluster.send(&["gail"], "five").await;
    assert_eq!(notifications(&mut s, 2).await, ["four (dropped live)", "five"]);
}

/// The contents of the next `n` notifications; no `reset` may come before them.
async fn notifications(s: &mut tidings_testkit::sse::SseStream, n: usize) -> Vec<String> {
    let mut seen = Vec::new();
    while seen.len() < n {
        let event = s.next().await;
        assert_ne!(event.event, "reset", "{:?}", event.data);
        if event.event == "notification" {
            seen.push(event.json()["content"].as_str().unwrap().to_owned());
        }
    }
    seen
}

/// A live gap whose missing message is no longer in the stream when the edge fetches it
/// (trimmed by the stream's limits, or deleted) cannot be healed: the client gets
/// `reset` (`live_gap`) and reloads, never the next event as if nothing were missing.
#[tokio::test]
async fn a_live_gap_whose_message_is_gone_is_a_reset_not_a_silent_hole() {
    let cluster = TestCluster::start(1).await;
    let edge = cluster.edges[0].stats_handle();
    let mut s = cluster.stream(0, "hana", "", None).await.unwrap();
    s.next_named("connected").await;
    cluster.send(&["hana"], "one").await;
    assert_eq!(notifications(&mut s, 1).await, ["one"]);

    edge.drop_next_live_message();
    let gone = cluster.send(&["hana"], "two (dropped live, then deleted)").await;
    let gone = EventId::parse(&gone.deliveries[0].event_id).unwrap();
    // "three" shows the gap; the edge's fetch of "two" fails twice (about 300 ms of
    // retries), and meanwhile "two" leaves the stream.
    edge.fail_next_stream_reads(2);
    cluster.send(&["hana"], "three").await;
    let stream = cluster
        .bus
        .bus
        .jetstream()
        .get_stream(&cluster.bus.settings.name)
        .await
        .unwrap();
    assert!(stream.delete_message(gone.seq).await.unwrap());

    let next = loop {
        let event = s.next().await;
        if event.event != "unread" {
            break event;
        }
    };
    assert_eq!(next.event, "reset", "{:?}", next.data);
    assert_eq!(next.json()["reason"], "live_gap");
    cluster.send(&["hana"], "four").await;
    assert_eq!(notifications(&mut s, 1).await, ["four"], "live again after the reset");
}
