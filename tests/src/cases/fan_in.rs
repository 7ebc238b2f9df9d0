//! The edge's NATS fan-in: a subscription per member partition while its connections
//! live in few of them, one subscription to every partition once they live in most,
//! and nothing lost or repeated while it switches either way.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tidings_domain::MemberId;
use tidings_proto::v1 as pb;
use tidings_testkit::sse::http_request;
use tidings_testkit::{TestCluster, eventually};

use super::observability::metric;

/// Most notifications the background sender sends, whatever happens.
const MAX_SENDS: usize = 2_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_needing_most_partitions_holds_one_subscription_and_switching_loses_nothing() {
    let cluster = TestCluster::start_partitioned(1, 8).await;
    let edge = cluster.edges[0].addr;
    // One member in each of the 8 partitions.
    let subjects = cluster.bus.bus.subjects();
    let members: Vec<String> = (0..8u16)
        .map(|p| {
            (0..)
                .map(|i| format!("p{p}-{i}"))
                .find(|m| subjects.partition_of(&MemberId::parse(m).unwrap()) == p)
                .unwrap()
        })
        .collect();
    let interests = || async move {
        let text = http_request(edge, "GET", "/metrics", &[], None).await.1;
        metric(&text, "tidings_edge_nats_interests")
    };

    // Three stay connected throughout: 3 of 8 partitions, a subscription each.
    let mut stay = Vec::new();
    for m in &members[..3] {
        let mut s = cluster.stream(0, m, "", None).await.unwrap();
        s.next_named("connected").await;
        stay.push(s);
    }
    assert_eq!(interests().await, 3.0);
    // Their interest is new: each replays once more after it has surely reached every
    // server of a cluster (`live::PROPAGATION`). Let that pass, so what follows is live
    // delivery alone.
    tokio::time::sleep(tidings_bus::INTEREST_PROPAGATION * 2).await;

    // They are notified without pause while three more come and go, twice; each step
    // waits until a few more notifications went out, so some are in flight at every
    // switch.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let sender = tokio::spawn({
        let (mut client, stop, sent) = (cluster.client.clone(), stop.clone(), sent.clone());
        let targets = members[..3].to_vec();
        async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) && n < MAX_SENDS {
                let request = pb::SendRequest {
                    member_ids: targets.clone(),
                    r#type: "test.event".into(),
                    content: format!("n{n}"),
                    ..Default::default()
                };
                client.send(request).await.expect("send");
                n += 1;
                sent.store(n, Ordering::Relaxed);
            }
            n
        }
    });
    let more_sent = || {
        let (sent, from) = (sent.clone(), sent.load(Ordering::Relaxed));
        eventually("a few more notifications sent", move || {
            let sent = sent.clone();
            async move { (sent.load(Ordering::Relaxed) >= from + 5).then_some(()) }
        })
    };
    for round in 0..2 {
        more_sent().await;
        let mut comers = Vec::new();
        for m in &members[3..6] {
            let mut s = cluster.stream(0, m, "", None).await.unwrap();
            s.next_named("connected").await;
            comers.push(s);
        }
        eventually("one subscription to every partition (6 of 8 needed)", || async {
            (interests().await == 1.0).then_some(())
        })
        .await;
        // The comers' second replay (fresh interest) is over before they are sent to.
        tokio::time::sleep(tidings_bus::INTEREST_PROPAGATION * 2).await;
        // A member that came meanwhile is reached through it.
        let content = format!("while all, round {round}");
        cluster.send(&[&members[5]], &content).await;
        assert_eq!(comers[2].next_named("notification").await.json()["content"], content);
        more_sent().await;
        for s in comers {
            s.close();
        }
        eventually("a subscription per partition again (3 of 8 needed)", || async {
            (interests().await == 3.0).then_some(())
        })
        .await;
    }
    more_sent().await;
    stop.store(true, Ordering::Relaxed);
    let sent = sender.await.unwrap();

    // Every stream that stayed got every notification, in order, once, with no reset.
    for (s, member) in stay.iter_mut().zip(&members) {
        let mut got = Vec::new();
        while got.len() < sent {
            let e = s.next().await;
            assert_ne!(e.event, "reset", "{member}: {e:?}");
            if e.event == "notification" {
                got.push(e.json()["content"].as_str().unwrap().to_owned());
            }
        }
        let want: Vec<String> = (0..sent).map(|i| format!("n{i}")).collect();
        assert_eq!(got, want, "{member}");
    }
    // And live delivery alone carried them: no gap had to be healed from the stream
    // (what the old subscriptions held was dispatched before they were dropped).
    let text = http_request(edge, "GET", "/metrics", &[], None).await.1;
    assert_eq!(
        metric(&text, r#"tidings_edge_events_delivered_total{path="replay"}"#),
        0.0
    );
}
