//! A reconnect storm: every browser of a deployment comes back at the same moment (an
//! edge restart, a network blip), each with a `Last-Event-ID` and a few missed
//! notifications. Each must get exactly what it missed, once, in order, without a
//! `reset`, and then carry on live; the edges must neither fail nor fall back.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use tidings_domain::EventId;
use tidings_testkit::TestCluster;
use tidings_testkit::sse::{SseStream, http_request};

/// More browsers than one replay batch of an edge (64 at once) many times over.
const MEMBERS: usize = 1200;
const MISSED: usize = 3;
/// Members per Send (the contract allows 1..=1000).
const PER_SEND: usize = 600;

fn seq(id: &str) -> u64 {
    EventId::parse(id).expect("a valid id").seq
}

/// Sends one notification to every member; returns each member's notification id.
async fn send_to_all(cluster: &TestCluster, members: &[String], content: &str) -> HashMap<String, String> {
    let mut ids = HashMap::new();
    for chunk in members.chunks(PER_SEND) {
        let chunk: Vec<&str> = chunk.iter().map(String::as_str).collect();
        for d in cluster.send(&chunk, content).await.deliveries {
            ids.insert(d.member_id, d.notification_id);
        }
    }
    ids
}

/// The next `notification` on `stream`; panics on a `reset` or a replayed sequence.
async fn next_notification(member: &str, stream: &mut SseStream, after: &mut u64) -> String {
    loop {
        let event = stream.next().await;
        match event.event.as_str() {
            "reset" => panic!("{member}: unexpected reset {}", event.data),
            "notification" => {
                let s = event.seq();
                assert!(
                    s > *after,
                    "{member}: sequence {s} after {after}: out of order or twice"
                );
                *after = s;
                return event.json()["id"].as_str().expect("an id").to_owned();
            }
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_storm_replays_exactly_what_each_of_1200_browsers_missed() {
    let cluster = Arc::new(TestCluster::start(2).await);
    let members: Vec<String> = (0..MEMBERS).map(|i| format!("storm-{i}")).collect();

    // Where a browser connected now stands: the `connected` id, kept as its
    // Last-Event-ID. Every member's browser holds this same id until something is sent.
    let mut first = cluster.stream(0, &members[0], "", None).await.expect("stream opens");
    first.next_named("connected").await;
    let last = first.last_event_id.clone().expect("connected carries an id");
    first.close();

    // Then each member gets a few notifications its browser misses.
    let mut missed: HashMap<String, Vec<String>> = HashMap::new();
    for round in 0..MISSED {
        for (member, id) in send_to_all(&cluster, &members, &format!("missed {round}")).await {
            missed.entry(member).or_default().push(id);
        }
    }

    // All come back at once, spread over both edges, and read what they missed.
    let started = Instant::now();
    let resumed: Vec<(String, SseStream, u64)> =
        futures::future::join_all(members.iter().enumerate().map(|(i, member)| {
            let (cluster, member, last) = (cluster.clone(), member.clone(), last.clone());
            let expected = missed[&member].clone();
            tokio::spawn(async move {
                let mut s = cluster
                    .stream(i % 2, &member, "", Some(&last))
                    .await
                    .expect("stream opens");
                let connected = s.next_named("connected").await;
                assert_eq!(connected.json()["resumed"], true, "{member}");
                let mut after = seq(&last);
                let mut got = Vec::new();
                while got.len() < expected.len() {
                    got.push(next_notification(&member, &mut s, &mut after).await);
                }
                assert_eq!(got, expected, "{member}: exactly the missed ones, in order");
                (member, s, after)
            })
        }))
        .await
        .into_iter()
        .map(|r| r.expect("a browser panicked"))
        .collect();
    let caught_up = started.elapsed();

    // Live again: the next notification of every browser is the new one, so nothing
    // was replayed twice at the hand-over.
    let live = send_to_all(&cluster, &members, "live").await;
    futures::future::join_all(resumed.into_iter().map(|(member, mut s, mut after)| {
        let id = live[&member].clone();
        tokio::spawn(async move {
            assert_eq!(next_notification(&member, &mut s, &mut after).await, id, "{member}");
        })
    }))
    .await
    .into_iter()
    .for_each(|r| r.expect("a browser panicked"));

    // The edges replayed by Direct Get, one by one or from a window read in one pass,
    // never fell back, and report no resets and no streams closed on an error.
    for edge in &cluster.edges {
        let stats = edge.stats();
        let replays = stats.replays;
        assert!(
            replays.direct + stats.replays_from_window >= (MEMBERS / 2) as u64,
            "{stats:?}"
        );
        assert_eq!((replays.consumer, replays.fallbacks), (0, 0), "{replays:?}");
        let (_, metrics) = http_request(edge.addr, "GET", "/metrics", &[], None).await;
        for line in metrics.lines().filter(|l| !l.starts_with('#')) {
            assert!(!line.starts_with("tidings_edge_resets_total"), "{line}");
            if line.starts_with("tidings_edge_replay_fallbacks_total ") {
                assert!(line.ends_with(" 0"), "{line}");
            }
            assert!(!line.contains("reason=\"error\""), "{line}");
        }
    }
    tracing::info!(?caught_up, members = MEMBERS, "reconnect storm caught up");
}

/// An edge that loses NATS resyncs every stream it holds at once when it is back: that
/// is a reconnect storm of its own, and it takes the storm path (the waiting resyncs
/// answered from one pass over the stream), never one replay per stream — nor a `reset`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_node_resync_after_a_nats_blip_is_read_in_one_pass() {
    use tidings_testkit::{TestEdge, eventually};

    const VIEWERS: usize = 300;
    let (cluster, proxy) = TestCluster::start_behind_proxy(|_| {}).await;
    let (edge, mut client) = (&cluster.edges[0], cluster.client.clone());
    let members: Vec<String> = (0..VIEWERS).map(|i| format!("blip-{i}")).collect();
    let mut streams = Vec::new();
    for member in &members {
        let token = TestEdge::token(member, &[], std::time::Duration::from_secs(600));
        let auth = format!("Bearer {token}");
        let mut s = tidings_testkit::sse::connect(edge.addr, "/v1/stream", &[("authorization", &auth)])
            .await
            .unwrap();
        s.next_named("connected").await;
        streams.push(s);
    }

    // Fresh interest replays once more 250 ms later (`live::PROPAGATION`): let those
    // go by, and count the resync's reads alone.
    tokio::time::sleep(tidings_bus::INTEREST_PROPAGATION * 2).await;
    let before = edge.stats();
    proxy.cut();
    eventually("every stream to hold live delivery", || async {
        (edge.stats().catching_up == VIEWERS).then_some(())
    })
    .await;
    let request = tidings_proto::v1::SendRequest {
        member_ids: members.clone(),
        r#type: "test.event".into(),
        content: "during the blip".into(),
        ..Default::default()
    };
    let sent = client.send(request).await.unwrap().into_inner().deliveries;
    proxy.restore();

    for (s, member) in streams.iter_mut().zip(&members) {
        let mut after = 0;
        let id = next_notification(member, s, &mut after).await;
        let expected = sent.iter().find(|d| &d.member_id == member).unwrap();
        assert_eq!(id, expected.notification_id, "{member}");
    }
    let stats = edge.stats();
    let from_window = stats.replays_from_window - before.replays_from_window;
    let direct = stats.replays.direct - before.replays.direct;
    assert!(
        from_window >= (VIEWERS / 2) as u64 && direct < (VIEWERS / 6) as u64,
        "most resyncs answered from one pass ({from_window}), few read one by one ({direct}): {stats:?}"
    );
}
