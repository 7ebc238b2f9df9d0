//! Member affinity: the edge hands each member its routing key (the cookie, `connected`,
//! the ticket) and checks but never trusts a key presented back. (Behind the project's
//! nginx config, where the key routes members: `nginx.rs`.)

use std::net::SocketAddr;
use std::time::Duration;

use tidings_domain::MemberId;
use tidings_testkit::http_call;
use tidings_testkit::sse::{SseStream, connect, http_request};
use tidings_testkit::{TestCluster, TestEdge};

use super::observability::metric;

pub(super) fn bearer(member: &str) -> String {
    format!("Bearer {}", TestEdge::token(member, &[], Duration::from_secs(600)))
}

pub(super) async fn scrape(edge: SocketAddr, series: &str) -> f64 {
    metric(&http_request(edge, "GET", "/metrics", &[], None).await.1, series)
}

pub(super) fn set_cookie(s: &SseStream) -> Option<String> {
    s.headers.get("set-cookie").map(|v| v.to_str().unwrap().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_hands_out_the_members_key_and_serves_a_wrong_one_anyway() {
    let cluster = TestCluster::start_with(1, |c| c.options.public_topics = "ranking".into()).await;
    let edge = cluster.edges[0].addr;
    let partitions = cluster.bus.bus.subjects().partitions();
    let partition = MemberId::parse("ava").unwrap().partition(partitions);
    let key = partition.to_string();
    let other = ((partition + 1) % partitions).to_string();
    let auth = bearer("ava");
    let mismatches = || scrape(edge, "tidings_edge_affinity_mismatches_total");
    let cookie = format!("tidings_affinity={key}; Path=/; Max-Age=31536000; SameSite=Lax; HttpOnly");

    // A first connect has no key: it is told its own, in `connected` and the cookie.
    let mut s = connect(edge, "/v1/stream", &[("authorization", &auth)]).await.unwrap();
    let connected = s.next_named("connected").await.json();
    assert_eq!(
        (connected["memberId"].as_str(), connected["affinity"].as_str()),
        (Some("ava"), Some(key.as_str()))
    );
    assert_eq!(set_cookie(&s).as_deref(), Some(cookie.as_str()));
    // The right key, by query or by cookie, is no mismatch.
    let by_query = format!("/v1/stream?affinity={key}");
    let mut s = connect(edge, &by_query, &[("authorization", &auth)]).await.unwrap();
    s.next_named("connected").await;
    let jar = format!("theme=dark; tidings_affinity={key}");
    let mut s = connect(edge, "/v1/stream", &[("authorization", &auth), ("cookie", &jar)])
        .await
        .unwrap();
    s.next_named("connected").await;
    assert_eq!(mismatches().await, 0.0);

    // Another partition's key, a malformed one (the query winning over a right cookie),
    // or a stale cookie: each is served as the token says, counted, and corrected.
    let wrong = [
        (format!("/v1/stream?affinity={other}"), None),
        (
            "/v1/stream?affinity=0x1f".to_owned(),
            Some(format!("tidings_affinity={key}")),
        ),
        ("/v1/stream".to_owned(), Some(format!("tidings_affinity={other}"))),
    ];
    for (n, (path, jar)) in wrong.iter().enumerate() {
        let mut headers = vec![("authorization", auth.as_str())];
        if let Some(jar) = jar {
            headers.push(("cookie", jar.as_str()));
        }
        let mut s = connect(edge, path, &headers).await.unwrap();
        let connected = s.next_named("connected").await.json();
        assert_eq!(connected["memberId"], "ava", "{path}: the token decides the member");
        assert_eq!(connected["affinity"], key.as_str(), "{path}");
        assert_eq!(set_cookie(&s).as_deref(), Some(cookie.as_str()), "{path}");
        cluster.send(&["ava"], &format!("to ava {n}")).await;
        assert_eq!(
            s.next_named("notification").await.json()["content"],
            format!("to ava {n}")
        );
        assert_eq!(mismatches().await, (n + 1) as f64, "{path}");
    }

    // Over https (as the proxy in front says) the cookie is Secure.
    let mut s = connect(
        edge,
        "/v1/stream",
        &[("authorization", &auth), ("x-forwarded-proto", "https")],
    )
    .await
    .unwrap();
    s.next_named("connected").await;
    assert_eq!(set_cookie(&s), Some(format!("{cookie}; Secure")));

    // A ticket carries the key too, for a client to put in the stream URL at once.
    let ticket = http_call(edge, "POST", "/v1/stream/ticket", &[("authorization", &auth)], "").await;
    assert_eq!(ticket.status, 201, "{}", ticket.body);
    assert_eq!(ticket.json()["affinity"], key.as_str());
    assert_eq!(ticket.header("set-cookie"), Some(cookie.as_str()));
    let path = format!(
        "/v1/stream?ticket={}&affinity={key}",
        ticket.json()["ticket"].as_str().unwrap()
    );
    let mut s = connect(edge, &path, &[]).await.unwrap();
    assert_eq!(s.next_named("connected").await.json()["affinity"], key.as_str());

    // An anonymous stream of public topics has no member: no key, none counted.
    let mut s = connect(edge, &format!("/v1/stream?topics=ranking&affinity={other}"), &[])
        .await
        .unwrap();
    let connected = s.next_named("connected").await.json();
    assert!(connected["memberId"].is_null());
    assert!(connected.get("affinity").is_none(), "{connected}");
    assert_eq!(set_cookie(&s), None);
    assert_eq!(mismatches().await, 3.0);
}
