//! The nginx config users copy (`deploy/nginx/tidings.conf`), with the real nginx in
//! front of real edges: events pass through at once, a browser resumes through nginx
//! after its edge stopped, every edge takes traffic, and members connecting with their
//! routing key split the partitions between the edges.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

use tidings_domain::MemberId;
use tidings_testkit::sse::connect;
use tidings_testkit::{Nginx, TestApi, TestBus, TestDb, TestEdge, eventually, init_test_log};

use super::affinity::{bearer, scrape, set_cookie};

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

    // Both edges serve: first connects (no routing key yet) spread at random; twenty
    // of them all on one edge would happen once in half a million runs.
    let mut nodes = HashSet::new();
    let mut streams = Vec::new();
    for i in 0..20 {
        let mut s = open(["wes", "wil", "wyn", "wen", "wim"][i % 5], None).await;
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

/// Each edge's count of live messages received from NATS.
async fn received(edges: &[SocketAddr]) -> Vec<f64> {
    let mut counts = Vec::new();
    for &edge in edges {
        counts.push(scrape(edge, "tidings_edge_live_messages_received_total").await);
    }
    counts
}

/// Three edges behind the real nginx with `deploy/nginx/tidings.conf`: first connects
/// spread at random; connecting again with the key handed out, every member of a
/// partition lands on the same edge, so the edges hold disjoint sets of partitions
/// (each edge's own gauge agrees) and each notification reaches one edge only and its
/// member once. When an edge goes, its members gather again one edge per partition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_nginx_members_with_their_key_split_the_partitions_between_edges() {
    init_test_log();
    let db = TestDb::new().await;
    let bus = TestBus::partitioned(64).await;
    let api = TestApi::start(TestApi::config(&db, &bus), false).await;
    let mut edges = Vec::new();
    for name in ["edge-a", "edge-b", "edge-c"] {
        let mut config = TestEdge::config(&bus, &api);
        config.options.node_name = Some(name.into());
        edges.push(Some(TestEdge::start(config).await));
    }
    let addrs: Vec<SocketAddr> = edges.iter().map(|e| e.as_ref().unwrap().addr).collect();
    let node_index = |node: &str| ["edge-a", "edge-b", "edge-c"].iter().position(|n| *n == node).unwrap();
    let nginx = Nginx::start(&addrs).await;
    let client = api.client().await;
    let members: Vec<String> = (0..48).map(|i| format!("member-{i}")).collect();
    let partition = |m: &str| MemberId::parse(m).unwrap().partition(64);

    // First connects carry no key: nginx spreads them; each learns its key.
    let mut keys = BTreeMap::new();
    for m in &members {
        let mut s = connect(nginx.addr, "/v1/stream", &[("authorization", &bearer(m))])
            .await
            .unwrap();
        let key = s.next_named("connected").await.json()["affinity"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(key, partition(m).to_string());
        assert!(set_cookie(&s).unwrap().starts_with(&format!("tidings_affinity={key};")));
        keys.insert(m.clone(), key);
    }
    for &edge in &addrs {
        eventually("the first connects' partitions released", || async move {
            (scrape(edge, "tidings_edge_live_partitions").await == 0.0).then_some(())
        })
        .await;
    }

    // Again with the key: by query, and for every third member a second tab with the
    // cookie alone, which must land beside it.
    let mut streams = Vec::new();
    let mut nodes_of: BTreeMap<u16, BTreeSet<String>> = BTreeMap::new();
    for (i, m) in members.iter().enumerate() {
        let auth = bearer(m);
        let key = &keys[m];
        let mut tabs = vec![
            connect(
                nginx.addr,
                &format!("/v1/stream?affinity={key}"),
                &[("authorization", &auth)],
            )
            .await
            .unwrap(),
        ];
        if i % 3 == 0 {
            let jar = format!("tidings_affinity={key}");
            tabs.push(
                connect(nginx.addr, "/v1/stream", &[("authorization", &auth), ("cookie", &jar)])
                    .await
                    .unwrap(),
            );
        }
        for tab in &mut tabs {
            let node = tab.next_named("connected").await.json()["node"]
                .as_str()
                .unwrap()
                .to_owned();
            nodes_of.entry(partition(m)).or_default().insert(node);
        }
        streams.push((m.clone(), tabs));
    }
    for (p, nodes) in &nodes_of {
        assert_eq!(nodes.len(), 1, "partition {p} is on one edge: {nodes:?}");
    }
    let mut held = [0usize; 3];
    for nodes in nodes_of.values() {
        held[node_index(nodes.first().unwrap())] += 1;
    }
    assert!(held.iter().all(|n| *n > 0), "every edge holds partitions: {held:?}");
    // Each edge's own view: the partitions it receives are its share, no more.
    for (i, &edge) in addrs.iter().enumerate() {
        let want = held[i] as f64;
        eventually("an edge's live partitions to be its share", || async move {
            (scrape(edge, "tidings_edge_live_partitions").await == want).then_some(())
        })
        .await;
        assert_eq!(scrape(edge, "tidings_edge_affinity_mismatches_total").await, 0.0);
    }

    // One notification to every member: each tab gets it once, and the edges together
    // received each member's message once (under round robin each would get them all).
    let before = received(&addrs).await;
    let send = |content: &'static str| {
        let (mut client, members) = (client.clone(), members.clone());
        async move {
            let request = tidings_proto::v1::SendRequest {
                member_ids: members,
                r#type: "t".into(),
                content: content.into(),
                ..Default::default()
            };
            client.send(request).await.unwrap();
        }
    };
    send("first").await;
    send("second").await;
    for (m, tabs) in &mut streams {
        for tab in tabs {
            // "second" right after "first": nothing repeated in between.
            assert_eq!(tab.next_named("notification").await.json()["content"], "first", "{m}");
            assert_eq!(tab.next_named("notification").await.json()["content"], "second", "{m}");
        }
    }
    let (addrs_ref, before_ref, want) = (&addrs, &before, 2.0 * members.len() as f64);
    let after = eventually("every message counted where it arrived", move || async move {
        let after = received(addrs_ref).await;
        let got: f64 = after.iter().zip(before_ref).map(|(a, b)| a - b).sum();
        (got >= want).then_some(after)
    })
    .await;
    for i in 0..3 {
        let on_edge = members
            .iter()
            .filter(|m| nodes_of[&partition(m)].contains(["edge-a", "edge-b", "edge-c"][i]))
            .count();
        assert_eq!(
            after[i] - before[i],
            2.0 * on_edge as f64,
            "edge {i} received its members' messages only"
        );
    }

    // The edge with the most partitions stops; its members reconnect with their key and
    // gather again, every partition on one live edge.
    let gone = held.iter().enumerate().max_by_key(|(_, n)| **n).unwrap().0;
    let gone_node = ["edge-a", "edge-b", "edge-c"][gone];
    let moving: Vec<String> = members
        .iter()
        .filter(|m| nodes_of[&partition(m)].contains(gone_node))
        .cloned()
        .collect();
    streams.clear();
    edges[gone].take().unwrap().terminate().await;
    let mut moved: BTreeMap<u16, BTreeSet<String>> = BTreeMap::new();
    let mut tabs = Vec::new();
    for m in &moving {
        let path = format!("/v1/stream?affinity={}", keys[m]);
        let mut s = connect(nginx.addr, &path, &[("authorization", &bearer(m))])
            .await
            .unwrap();
        let node = s.next_named("connected").await.json()["node"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_ne!(node, gone_node);
        moved.entry(partition(m)).or_default().insert(node);
        tabs.push(s);
    }
    for (p, nodes) in &moved {
        assert_eq!(nodes.len(), 1, "partition {p} moved to one edge: {nodes:?}");
    }
}
