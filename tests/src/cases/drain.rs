//! SIGTERM on an edge: not ready, no new streams, open streams closed over the drain
//! window with a `retry:`, and its browsers resume on the other edge with nothing lost
//! and nothing duplicated.

use std::time::Duration;

use tidings_testkit::TestCluster;
use tidings_testkit::sse::http_request;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_edge_hands_its_browsers_to_the_other_edge_losing_nothing() {
    let mut cluster = TestCluster::start(2).await;
    let members: Vec<String> = (0..4).map(|i| format!("drain-{i}")).collect();
    let mut streams = Vec::new();
    for m in &members {
        let mut s = cluster.stream(0, m, "", None).await.unwrap();
        s.next_named("connected").await;
        streams.push(s);
    }
    let mut expected: Vec<Vec<String>> = vec![Vec::new(); members.len()];
    let mut seen: Vec<Vec<(u64, String)>> = vec![Vec::new(); members.len()];

    let draining = cluster.edges.remove(0);
    draining.begin_drain();
    let started = std::time::Instant::now();
    let (status, body) = http_request(draining.addr, "GET", "/readyz", &[], None).await;
    assert_eq!(status, 503, "not ready while draining: {body}");

    // Notifications keep coming during the drain.
    for round in 0..5 {
        for (i, m) in members.iter().enumerate() {
            let sent = cluster.send(&[m], &format!("round {round}")).await;
            expected[i].push(sent.deliveries[0].notification_id.clone());
        }
    }
    // Every stream ends within the window, having told the browser to come back.
    for (i, s) in streams.iter_mut().enumerate() {
        let events = s
            .until_closed(Duration::from_secs(5))
            .await
            .expect("closed within the window");
        for e in events.iter().filter(|e| e.event == "notification") {
            seen[i].push((e.seq(), e.json()["id"].as_str().unwrap().into()));
        }
        assert!(s.retry.is_some(), "a retry: hint before the end");
    }
    let exit = draining.terminate().await + started.elapsed();
    assert!(
        exit < Duration::from_secs(6),
        "the node exits within its window (2 s) plus slack: {exit:?}"
    );

    // Resume on the surviving edge (now index 0).
    for (i, (m, s)) in members.iter().zip(&streams).enumerate() {
        let mut resumed = cluster.stream(0, m, "", s.last_event_id.as_deref()).await.unwrap();
        while seen[i].len() < expected[i].len() {
            let e = resumed.next_named("notification").await;
            seen[i].push((e.seq(), e.json()["id"].as_str().unwrap().into()));
        }
        let ids: Vec<String> = seen[i].iter().map(|(_, id)| id.clone()).collect();
        assert_eq!(ids, expected[i], "{m}: all, once, in order");
        // Nothing more: the next notification is one sent now.
        let sentinel = cluster.send(&[m], "sentinel").await.deliveries[0]
            .notification_id
            .clone();
        assert_eq!(resumed.next_named("notification").await.json()["id"], sentinel.as_str());
    }
}

/// The live task dying (a panic) leaves an edge that would deliver nothing: it turns
/// not ready at once, drains its streams so their browsers resume on another edge
/// with nothing lost, and stops with an error, so the process exits and is restarted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_whose_live_task_dies_drains_and_exits_and_its_browser_resumes_elsewhere() {
    let mut cluster = TestCluster::start(2).await;
    let mut s = cluster.stream(0, "orphan", "", None).await.unwrap();
    s.next_named("connected").await;
    cluster.send(&["orphan"], "before").await;
    let before = s.next_named("notification").await;

    cluster.edges[0].stats_handle().crash_live_task();
    let addr = cluster.edges[0].addr;
    tidings_testkit::eventually("the edge to turn not ready", || async move {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        // Not listening any more (drained already) counts as not ready too.
        let Ok(mut socket) = tokio::net::TcpStream::connect(addr).await else {
            return Some(());
        };
        let request = b"GET /readyz HTTP/1.1\r\nHost: edge\r\nConnection: close\r\n\r\n";
        let mut answer = String::new();
        if socket.write_all(request).await.is_err() || socket.read_to_string(&mut answer).await.is_err() {
            return Some(());
        }
        (answer.starts_with("HTTP/1.1 503") && answer.contains(r#""live":false"#)).then_some(())
    })
    .await;
    cluster.send(&["orphan"], "while it drains").await;
    let closed = s.until_closed(Duration::from_secs(10)).await;
    assert!(closed.is_some(), "the stream is closed within the drain window");

    let ended = cluster.edges[0].exited_within(Duration::from_secs(15)).await;
    let error = ended.expect("the edge stops by itself").expect_err("and says why");
    assert!(format!("{error:#}").contains("live task stopped"), "{error:#}");

    // The browser resumes on the other edge from its last id: nothing lost.
    let mut resumed = cluster.stream(1, "orphan", "", before.id.as_deref()).await.unwrap();
    resumed.next_named("connected").await;
    let missed = resumed.next_named("notification").await;
    assert_eq!(missed.json()["content"], "while it drains");
}
