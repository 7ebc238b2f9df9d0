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

/// An edge that loses NATS holds its streams' live delivery from the moment it notices
/// (not from the reconnect, whose first messages may come before the edge hears it is
/// connected again), and after the reconnect replays what was published meanwhile,
/// then live events follow: in order, nothing missed, no `reset` (nothing is gone).
#[tokio::test]
async fn a_nats_blip_holds_live_delivery_from_the_disconnect_and_never_resets() {
    use tidings_testkit::eventually;

    let (cluster, proxy) = TestCluster::start_behind_proxy(|_| {}).await;
    let (edge, client) = (&cluster.edges[0], cluster.client.clone());
    let send = |content: &'static str| send_to(&client, "hana", content);
    let mut s = open_stream(edge.addr, "hana").await;
    send("before").await;
    assert_eq!(notifications(&mut s, 1).await, ["before"]);
    assert_eq!(edge.stats().catching_up, 0, "live");

    proxy.cut();
    eventually("the stream to hold live delivery while NATS is away", || async {
        (edge.stats().catching_up == 1).then_some(())
    })
    .await;
    send("during").await;
    proxy.restore();
    send("after").await;
    assert_eq!(notifications(&mut s, 2).await, ["during", "after"]);
    eventually("the stream to be live again", || async {
        (edge.stats().catching_up == 0).then_some(())
    })
    .await;
}

/// A stream deleted and created again while the cluster runs starts its sequences
/// over. The edge notices (here: live sequences going backwards) and ends every open
/// stream with `reset` (`other_incarnation`) pointing at the new stream's start; the
/// api mints ids of the new incarnation; a browser resuming from the reset's id gets
/// exactly what the new stream holds. Without it, the new stream's live events were
/// dropped as duplicates of what the browser had, or carried ids of the old one.
#[tokio::test]
async fn a_stream_created_anew_resets_every_stream_and_ids_follow_the_new_one() {
    let cluster = TestCluster::start(1).await;
    let old = cluster.bus.bus.epoch();
    let mut s = cluster.stream(0, "ines", "", None).await.unwrap();
    s.next_named("connected").await;
    for content in ["old 1", "old 2", "old 3"] {
        cluster.send(&["ines"], content).await;
    }
    assert_eq!(notifications(&mut s, 3).await, ["old 1", "old 2", "old 3"]);

    // An operator deletes the stream and creates it again.
    let js = cluster.bus.bus.jetstream();
    js.delete_stream(&cluster.bus.settings.name).await.unwrap();
    let recreated = tidings_bus::Bus::connect(&cluster.bus.nats_config(), &cluster.bus.settings, "operator")
        .await
        .unwrap();
    let new = recreated.epoch();
    assert_ne!(new, old);

    let sent = cluster.send(&["ines"], "new 1").await.deliveries[0].event_id.clone();
    assert_eq!(
        EventId::parse(&sent).unwrap(),
        EventId::new(new, 1),
        "the api mints ids of the new incarnation"
    );
    let reset = s.next_named("reset").await;
    assert_eq!(reset.json()["reason"], "other_incarnation");
    assert_eq!(reset.id.as_deref(), Some(EventId::new(new, 0).to_string().as_str()));
    assert!(
        s.until_closed(std::time::Duration::from_secs(10)).await.is_some(),
        "the stream ends after the reset"
    );

    let mut back = cluster.stream(0, "ines", "", reset.id.as_deref()).await.unwrap();
    assert_eq!(back.next_named("connected").await.json()["resumed"], true);
    let replayed = back.next_named("notification").await;
    assert_eq!(replayed.json()["content"], "new 1");
    assert_eq!(replayed.id.as_deref(), Some(sent.as_str()));
}

/// A live message lost around a stream leader change (RePublish is done by the
/// leader, after it stores; a new leader does not re-publish what the old one may not
/// have) on a subject that gets no further message: no `Nats-Last-Sequence` will ever
/// reveal the gap, only the stream's leader-elected advisory can. The edge resyncs its
/// streams after each election, and the message arrives. (The loss is made by the
/// edge's fault hook, the election by a leader step-down on a 3-node cluster.)
#[tokio::test]
async fn a_message_lost_live_around_a_leader_election_arrives_after_it() {
    let nats = tidings_testkit::NatsCluster::start(3).await;
    let cluster = TestCluster::start_replicated(&nats, 1).await;
    let (edge, client, bus) = (&cluster.edges[0], cluster.client.clone(), &cluster.bus);
    let send = |content: &'static str| send_to(&client, "lior", content);
    let mut s = open_stream(edge.addr, "lior").await;
    send("one").await;
    assert_eq!(notifications(&mut s, 1).await, ["one"]);

    edge.stats_handle().drop_next_live_message();
    send("two (lost live)").await;
    let stepdown = format!("$JS.API.STREAM.LEADER.STEPDOWN.{}", bus.settings.name);
    let answer = bus.bus.client().request(stepdown, "".into()).await.unwrap();
    let answer: serde_json::Value = serde_json::from_slice(&answer.payload).unwrap();
    assert_eq!(answer["success"], true, "{answer}");
    assert_eq!(notifications(&mut s, 1).await, ["two (lost live)"]);
}

/// On a cluster the stream leader's server may learn of an edge's new live interest
/// only after it answered the STREAM.INFO the connection's catch-up read (routes are
/// pooled): a message stored in between is in no replay and never arrives live. Here,
/// on a 3-node cluster, the edge's fault hook plays that server (live messages of an
/// interest younger than 200 ms are dropped) and the message goes to a subject that
/// gets no further message, so no `Nats-Last-Sequence` gap reveals it: only the
/// connection's second replay, once its fresh interest has surely propagated, brings it.
#[tokio::test]
async fn a_message_stored_before_new_interest_reached_the_stream_leader_still_arrives() {
    let nats = tidings_testkit::NatsCluster::start(3).await;
    let cluster = TestCluster::start_replicated(&nats, 1).await;
    let (edge, client) = (&cluster.edges[0], cluster.client.clone());
    let hook = edge.stats_handle();
    hook.blind_new_interest(std::time::Duration::from_millis(200));
    // The edge's own connect to NATS resyncs every stream once more 250 ms later (the
    // same propagation argument); let that pass, so only the connection's own second
    // replay can bring the message.
    tokio::time::sleep(tidings_bus::INTEREST_PROPAGATION * 2).await;
    let mut s = open_stream(edge.addr, "nadia").await;
    send_to(&client, "nadia", "right after the connect").await;
    assert_eq!(notifications(&mut s, 1).await, ["right after the connect"]);
    assert!(
        hook.blind_new_interest(std::time::Duration::ZERO) >= 1,
        "the live copy was dropped: the fault happened"
    );
}

/// Sends `content` to `member` through `client`.
async fn send_to(client: &tidings_testkit::ApiClient, member: &str, content: &str) {
    let request = tidings_proto::v1::SendRequest {
        member_ids: vec![member.into()],
        r#type: "test.event".into(),
        content: content.into(),
        ..Default::default()
    };
    client.clone().send(request).await.unwrap();
}

/// `member`'s stream on the edge at `addr`, past its `connected` event.
async fn open_stream(addr: std::net::SocketAddr, member: &str) -> tidings_testkit::sse::SseStream {
    let token = tidings_testkit::TestEdge::token(member, &[], std::time::Duration::from_secs(600));
    let auth = format!("Bearer {token}");
    let mut s = tidings_testkit::sse::connect(addr, "/v1/stream", &[("authorization", &auth)])
        .await
        .unwrap();
    s.next_named("connected").await;
    s
}
