//! The hand-over from replay to live under fire: a producer sends continuously while
//! browsers drop and reconnect at random to random edges. Afterwards every browser must
//! have seen every notification of its member exactly once, in sequence order.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rand::Rng as _;
use tidings_testkit::TestCluster;

const MEMBERS: usize = 6;
const SENDS: usize = 150;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnecting_at_random_to_random_edges_loses_and_duplicates_nothing() {
    let cluster = std::sync::Arc::new(TestCluster::start(2).await);
    let members: Vec<String> = (0..MEMBERS).map(|i| format!("churn-{i}")).collect();

    // Each browser's first stream starts from "now" (no Last-Event-ID): the producer
    // waits until every one of them is connected, so none can precede it.
    let ready = std::sync::Arc::new(tokio::sync::Barrier::new(MEMBERS + 1));

    // The producer: SENDS notifications, each to one member in turn, as fast as it can.
    let producer = {
        let (cluster, members, ready) = (cluster.clone(), members.clone(), ready.clone());
        tokio::spawn(async move {
            ready.wait().await;
            let mut expected: HashMap<String, Vec<String>> = HashMap::new();
            for i in 0..SENDS {
                let member = &members[i % MEMBERS];
                let sent = cluster.send(&[member], &format!("{member}#{i}")).await;
                expected
                    .entry(member.clone())
                    .or_default()
                    .push(sent.deliveries[0].notification_id.clone());
            }
            expected
        })
    };

    // One browser per member: connect, read a random number of events, drop, resume
    // elsewhere with its Last-Event-ID, until the producer is done and it caught up.
    let browsers: Vec<_> = members
        .iter()
        .cloned()
        .map(|member| {
            let (cluster, ready) = (cluster.clone(), ready.clone());
            tokio::spawn(async move {
                let mut seen: Vec<(u64, String)> = Vec::new();
                let mut last: Option<String> = None;
                let deadline = Instant::now() + Duration::from_secs(60);
                let mut reconnects = 0;
                while Instant::now() < deadline {
                    let edge = rand::rng().random_range(0..2);
                    let mut s = cluster
                        .stream(edge, &member, "", last.as_deref())
                        .await
                        .expect("stream opens");
                    if reconnects == 0 {
                        s.next_named("connected").await;
                        ready.wait().await;
                    }
                    let take = rand::rng().random_range(1..8);
                    let mut taken = 0;
                    while taken < take {
                        let Some(e) = s.next_within(Duration::from_millis(1500)).await else {
                            break;
                        };
                        if e.event == "reset" {
                            panic!("{member}: unexpected reset {}", e.data);
                        }
                        if e.event == "notification" {
                            let seq = e.seq();
                            seen.push((seq, e.json()["id"].as_str().unwrap().to_owned()));
                            taken += 1;
                        }
                    }
                    last = s.last_event_id.clone().or(last);
                    s.close();
                    reconnects += 1;
                    if taken < take && seen.len() >= SENDS / MEMBERS {
                        break; // quiet and caught up
                    }
                }
                (member, seen, reconnects)
            })
        })
        .collect();

    let expected = producer.await.unwrap();
    for browser in browsers {
        let (member, seen, reconnects) = browser.await.unwrap();
        let ids: Vec<String> = seen.iter().map(|(_, id)| id.clone()).collect();
        assert!(
            seen.windows(2).all(|w| w[0].0 < w[1].0),
            "{member}: out of order or duplicated: {seen:?}"
        );
        assert_eq!(
            ids, expected[&member],
            "{member}: every notification exactly once, in order"
        );
        assert!(reconnects > 3, "{member} reconnected {reconnects} times");
    }
}
