//! Badges from carried counts: a notification the api published and a MarkRead's
//! announcement carry the member's count with its version (`Tidings-Unread`), and the
//! edge shows each at once, never an older count after a newer one.

use futures::future::join_all;
use tidings_testkit::TestCluster;
use tidings_testkit::sse::{SseStream, http_request};

/// The `unread` counts a tab shows until (and including) the first equal to `until`.
async fn counts_until(tab: &mut SseStream, until: u64) -> Vec<u64> {
    let mut shown = Vec::new();
    loop {
        let count = tab.next_named("unread").await.json()["unreadCount"].as_u64().unwrap();
        shown.push(count);
        if count == until {
            return shown;
        }
    }
}

/// Fifty Sends to one member at once, from concurrent calls: the badge climbs to
/// exactly fifty, never back, and no call to the api was needed for it.
#[tokio::test]
async fn a_burst_of_sends_shows_counts_that_only_climb_to_the_exact_total() {
    let cluster = TestCluster::start(1).await;
    let mut tab = cluster.stream(0, "burst", "", None).await.unwrap();
    tab.next_named("connected").await;
    assert_eq!(tab.next_named("unread").await.json()["unreadCount"], 0);

    let contents: Vec<String> = (0..50).map(|i| format!("n{i}")).collect();
    join_all(contents.iter().map(|c| cluster.send(&["burst"], c))).await;
    let shown = counts_until(&mut tab, 50).await;
    assert!(
        shown.windows(2).all(|w| w[0] < w[1]),
        "each count newer than the one before: {shown:?}"
    );
    // Anything older still on its way would come before the next one.
    cluster.send(&["burst"], "one more").await;
    assert_eq!(tab.next_named("unread").await.json()["unreadCount"], 51);

    let (_, metrics) = http_request(cluster.edges[0].addr, "GET", "/metrics", &[], None).await;
    let carried = metric(&metrics, "tidings_edge_unread_counts_total{source=\"carried\"}");
    assert!(carried >= shown.len() as f64, "{carried} carried:\n{metrics}");
}

/// A MarkRead racing a Send, again and again: whichever commits first, the badge ends
/// at the member's exact count, and an older count never follows a newer one.
#[tokio::test]
async fn a_mark_read_racing_a_send_ends_at_the_exact_count() {
    let cluster = TestCluster::start(1).await;
    let mut tab = cluster.stream(0, "racer", "", None).await.unwrap();
    tab.next_named("connected").await;
    assert_eq!(tab.next_named("unread").await.json()["unreadCount"], 0);

    for round in 0..10_u64 {
        let first = cluster.send(&["racer"], "before").await.deliveries[0].clone();
        // This one, and from the second round on the one left unread by the last.
        counts_until(&mut tab, if round == 0 { 1 } else { 2 }).await;
        let mark = tidings_proto::v1::MarkReadRequest {
            member_id: "racer".into(),
            up_to: first.notification_id.clone(),
            ..Default::default()
        };
        let mut client = cluster.client.clone();
        let (sent, marked) = tokio::join!(cluster.send(&["racer"], "racing"), client.mark_read(mark));
        assert_eq!(sent.deliveries.len(), 1);
        marked.unwrap();
        // Everything up to `first` is read; what the racing Send wrote (newer) is not.
        let exact = cluster
            .client
            .clone()
            .get_unread_count(tidings_proto::v1::GetUnreadCountRequest {
                member_id: "racer".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .unread_count;
        assert_eq!(exact, 1);
        let shown = counts_until(&mut tab, exact).await;
        // Then one more change: nothing stale may come between.
        cluster.send(&["racer"], "after").await;
        let next = tab.next_named("unread").await.json()["unreadCount"].as_u64().unwrap();
        assert_eq!(next, exact + 1, "round {round}: shown {shown:?}, then {next}");
        // Leave one unread for the next round: mark the racing one read.
        let read = cluster
            .client
            .clone()
            .mark_read(tidings_proto::v1::MarkReadRequest {
                member_id: "racer".into(),
                ids: vec![sent.deliveries[0].notification_id.clone()],
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .unread_count;
        assert_eq!(read, exact);
        counts_until(&mut tab, exact).await;
    }
}

fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}
