//! Hostile requests to an edge over real HTTP: crafted tokens, resume positions that
//! are not text, garbage query strings. Each gets a clean answer (a JSON error before
//! any stream, or a `reset` on it) and the node keeps serving.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};
use tidings_edge::{Verifier, expiry_in};
use tidings_testkit::sse::{connect, connect_raw, http_request};
use tidings_testkit::{TEST_JWT_SECRET, TestCluster, TestEdge};

/// A token signed with the test edges' secret carrying exactly `claims`: what a buggy
/// or careless issuer could mint.
fn signed(claims: &Value) -> String {
    Verifier::hs256(TEST_JWT_SECRET.as_bytes())
        .sign(claims)
        .expect("invariant: HS256 signs")
}

/// The `(code, message)` of a JSON error answer; panics on anything else.
fn json_error(status: u16, body: &str) -> (String, String) {
    let json: Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{status}: the body is not JSON ({e}): {body}"));
    let field = |name: &str| json["error"][name].as_str().unwrap_or_default().to_owned();
    (field("code"), field("message"))
}

/// `GET path`, expected to be refused: its status, content type and JSON error.
async fn refused(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> (u16, String, String, String) {
    let refusal = match connect(addr, path, headers).await {
        Ok(_) => panic!("GET {path}: answered 200"),
        Err(refusal) => refusal,
    };
    let content_type = refusal
        .headers
        .get("content-type")
        .map(|v| v.to_str().unwrap_or_default().to_owned())
        .unwrap_or_default();
    let (code, message) = json_error(refusal.status, &refusal.body);
    (refusal.status, content_type, code, message)
}

/// Every way `token` can reach an edge: the stream (by header and by query), the
/// inbox, and the ticket exchange. Each must be a JSON 401 whose message contains `why`.
async fn assert_refused_everywhere(addr: SocketAddr, token: &str, why: &str) {
    let auth = format!("Bearer {token}");
    for (path, headers) in [
        ("/v1/stream".to_owned(), vec![("authorization", auth.as_str())]),
        (format!("/v1/stream?access_token={token}"), vec![]),
        ("/v1/notifications".to_owned(), vec![("authorization", auth.as_str())]),
    ] {
        let (status, _, code, message) = refused(addr, &path, &headers).await;
        assert_eq!((status, code.as_str()), (401, "unauthenticated"), "{path}: {message}");
        assert!(message.contains(why), "{path}: {message}");
    }
    let (status, body) = http_request(addr, "POST", "/v1/stream/ticket", &[("authorization", &auth)], None).await;
    let (code, message) = json_error(status, &body);
    assert_eq!((status, code.as_str()), (401, "unauthenticated"), "ticket: {message}");
    assert!(message.contains(why), "ticket: {message}");
}

#[tokio::test]
async fn an_exp_beyond_what_the_clock_holds_is_a_json_401_not_a_dropped_connection() {
    let cluster = TestCluster::start(1).await;
    let addr = cluster.edges[0].addr;
    for exp in [u64::MAX, 1 << 63] {
        let token = signed(&json!({ "sub": "ivan", "exp": exp }));
        assert_refused_everywhere(addr, &token, "exp").await;
    }
    // The node still serves.
    let mut s = cluster.stream(0, "ivan", "", None).await.unwrap();
    assert_eq!(s.next().await.event, "connected");
}

/// Tokens an attacker or a careless issuer could present: `alg: none` (no signature at
/// all), a signature by another algorithm's name, no `sub`, an empty `sub`, no `exp`.
/// Each is a JSON 401 everywhere, and the node keeps serving.
#[tokio::test]
async fn unsigned_and_incomplete_tokens_are_a_json_401() {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    let cluster = TestCluster::start(1).await;
    let addr = cluster.edges[0].addr;
    let now = expiry_in(Duration::ZERO);
    let part = |v: Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let claims = json!({ "sub": "mallory", "exp": now + 600 });
    let unsigned = format!(
        "{}.{}.",
        part(json!({ "alg": "none", "typ": "JWT" })),
        part(claims.clone())
    );
    // A valid HS256 signature under a header that names another algorithm.
    let valid = signed(&claims);
    let signature = valid.rsplit('.').next().unwrap();
    let relabelled = format!(
        "{}.{}.{signature}",
        part(json!({ "alg": "HS512", "typ": "JWT" })),
        part(claims)
    );
    for token in [unsigned, relabelled] {
        assert_refused_everywhere(addr, &token, "invalid").await;
    }
    for claims in [
        json!({ "exp": now + 600 }),
        json!({ "sub": "", "exp": now + 600 }),
        json!({ "sub": "mallory" }),
    ] {
        assert_refused_everywhere(addr, &signed(&claims), "invalid").await;
    }
    let mut s = cluster.stream(0, "mallory", "", None).await.unwrap();
    assert_eq!(s.next().await.event, "connected");
}

#[tokio::test]
async fn a_token_before_its_nbf_is_a_json_401_and_after_it_opens_the_stream() {
    let cluster = TestCluster::start(1).await;
    let addr = cluster.edges[0].addr;
    let now = expiry_in(Duration::ZERO);
    let early = signed(&json!({ "sub": "judy", "exp": now + 7200, "nbf": now + 3600 }));
    assert_refused_everywhere(addr, &early, "not yet valid").await;

    let valid = signed(&json!({ "sub": "judy", "exp": now + 7200, "nbf": now - 60 }));
    let auth = format!("Bearer {valid}");
    let mut s = connect(addr, "/v1/stream", &[("authorization", &auth)]).await.unwrap();
    assert_eq!(s.next().await.json()["memberId"], "judy");
    let (status, body) = http_request(addr, "GET", "/v1/notifications", &[("authorization", &auth)], None).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_last_event_id_header_that_is_not_ascii_gets_a_reset_as_by_query() {
    let cluster = TestCluster::start(1).await;
    let addr = cluster.edges[0].addr;
    let token = TestEdge::token("kim", &[], Duration::from_secs(3600));
    let auth = format!("Bearer {token}");
    // UTF-8 "é", Latin-1 "é", a valid id with a stray byte.
    for raw in [&b"\xc3\xa9"[..], b"\xe9", b"ab-1\xff"] {
        let mut by_header = connect_raw(
            addr,
            "/v1/stream",
            &[("authorization", auth.as_bytes()), ("last-event-id", raw)],
        )
        .await
        .unwrap();
        let mut by_query = connect(
            addr,
            &format!("/v1/stream?lastEventId={}", percent_encoded(raw)),
            &[("authorization", &auth)],
        )
        .await
        .unwrap();
        for (how, s) in [("header", &mut by_header), ("query", &mut by_query)] {
            let connected = s.next_named("connected").await;
            assert_eq!(connected.json()["resumed"], false, "{how} {raw:?}");
            let next = s.next().await;
            assert_eq!(next.event, "reset", "{how} {raw:?}: {next:?}");
            assert_eq!(next.json()["reason"], "malformed_id", "{how} {raw:?}");
        }
    }
    // Live events follow a reset.
    let mut s = connect_raw(
        addr,
        "/v1/stream",
        &[("authorization", auth.as_bytes()), ("last-event-id", b"\xff")],
    )
    .await
    .unwrap();
    s.next_named("reset").await;
    cluster.send(&["kim"], "after the reset").await;
    assert_eq!(s.next_named("notification").await.json()["content"], "after the reset");
}

fn percent_encoded(raw: &[u8]) -> String {
    raw.iter().map(|b| format!("%{b:02X}")).collect()
}

#[tokio::test]
async fn bad_query_strings_get_a_json_400_naming_the_parameter() {
    let cluster = TestCluster::start(1).await;
    let addr = cluster.edges[0].addr;
    let token = TestEdge::token("lena", &[], Duration::from_secs(3600));
    let auth = format!("Bearer {token}");
    let cases = [
        ("/v1/notifications?limit=-1".to_owned(), "limit"),
        ("/v1/notifications?limit=4294967296".to_owned(), "limit"),
        ("/v1/notifications?unread_only=maybe".to_owned(), "unread_only"),
        ("/v1/notifications?cursor=a&cursor=b".to_owned(), "cursor"),
        (
            format!("/v1/stream?access_token={token}&access_token={token}"),
            "access_token",
        ),
        ("/v1/stream?topics=a&topics=b".to_owned(), "topics"),
        ("/v1/stream?lastEventId=x&lastEventId=y".to_owned(), "lastEventId"),
    ];
    for (path, parameter) in cases {
        let (status, content_type, code, message) = refused(addr, &path, &[("authorization", &auth)]).await;
        assert_eq!((status, code.as_str()), (400, "invalid_argument"), "{path}: {message}");
        assert_eq!(content_type, "application/json", "{path}");
        assert!(message.contains(parameter), "{path}: {message}");
    }
    // Good query strings still work.
    let (status, body) = http_request(
        addr,
        "GET",
        "/v1/notifications?limit=5&unread_only=true",
        &[("authorization", &auth)],
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

/// Floods in one request — hundreds of headers, a huge header, a huge query string, a
/// query repeating one parameter thousands of times — are answered with a 4xx or a
/// closed connection, and the node keeps serving everyone else.
#[tokio::test]
async fn header_and_query_floods_are_refused_and_the_node_keeps_serving() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    let cluster = TestCluster::start(1).await;
    let addr = cluster.edges[0].addr;
    let many_headers: String = (0..500).map(|i| format!("x-flood-{i}: {i}\r\n")).collect();
    let huge_header = format!("x-huge: {}\r\n", "a".repeat(1 << 20));
    let huge_query = format!("/v1/stream?topics={}", "t,".repeat(40_000));
    let repeated = format!("/v1/stream?{}", "access_token=x&".repeat(5_000));
    let requests = [
        format!("GET /v1/stream HTTP/1.1\r\nHost: e\r\n{many_headers}\r\n"),
        format!("GET /v1/stream HTTP/1.1\r\nHost: e\r\n{huge_header}\r\n"),
        format!("GET {huge_query} HTTP/1.1\r\nHost: e\r\n\r\n"),
        format!("GET {repeated} HTTP/1.1\r\nHost: e\r\n\r\n"),
    ];
    for request in &requests {
        let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
        // The server may stop reading (and close) before the whole flood is written.
        let _ = socket.write_all(request.as_bytes()).await;
        let mut answer = vec![0u8; 512];
        let read = tokio::time::timeout(Duration::from_secs(10), socket.read(&mut answer))
            .await
            .expect("an answer or a close within 10 s");
        if let Ok(n) = read
            && n > 0
        {
            let status = String::from_utf8_lossy(&answer[..n]);
            assert!(status.starts_with("HTTP/1.1 4"), "{request:.80}: {status:.80}");
        }
    }
    let mut s = cluster.stream(0, "flooded", "", None).await.unwrap();
    assert_eq!(s.next().await.event, "connected");
}

/// A request head far larger than the edge's initial 1 KiB read buffer, trickled in
/// small writes (20 KiB of cookies, as a browser behind a busy domain may send), still
/// opens the member's stream: the buffer grows for the head and shrinks back after.
#[tokio::test]
async fn a_large_request_head_in_small_pieces_still_opens_the_stream() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    let cluster = TestCluster::start(1).await;
    let token = TestEdge::token("crumbs", &[], Duration::from_secs(600));
    let cookies: String = (0..220).map(|i| format!("c{i:03}={}; ", "x".repeat(90))).collect();
    let head = format!(
        "GET /v1/stream HTTP/1.1\r\nHost: e\r\nAccept: text/event-stream\r\n\
         Authorization: Bearer {token}\r\nCookie: {cookies}\r\n\r\n"
    );
    assert!(head.len() > 20_000, "{}", head.len());
    let mut socket = tokio::net::TcpStream::connect(cluster.edges[0].addr).await.unwrap();
    socket.set_nodelay(true).unwrap();
    for piece in head.as_bytes().chunks(700) {
        socket.write_all(piece).await.unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mut answer = Vec::new();
    let mut buf = vec![0u8; 4096];
    let read_until_connected = async {
        while !String::from_utf8_lossy(&answer).contains("event: connected") {
            let n = socket.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed: {}", String::from_utf8_lossy(&answer));
            answer.extend_from_slice(&buf[..n]);
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read_until_connected)
        .await
        .expect("the stream opens within 10 s");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:.200}");
    // And the stream is live: a notification sent now arrives on it.
    cluster.send(&["crumbs"], "after a long head").await;
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), async {
        while !String::from_utf8_lossy(&rest).contains("after a long head") {
            let n = socket.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed before the notification");
            rest.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("the notification arrives within 10 s");
}

/// One member's token never reaches another member's notifications: not on its stream,
/// not by resuming from a position between the other's events, not in its inbox, not
/// by marking the other's notifications read (by id or as an `up_to` position).
#[tokio::test]
async fn one_members_token_never_reads_or_changes_anothers_notifications() {
    let cluster = TestCluster::start(1).await;
    let addr = cluster.edges[0].addr;
    let first = cluster.send(&["alice"], "alice 1").await.deliveries[0].clone();
    let bobs = cluster.send(&["bob"], "for bob only").await.deliveries[0].clone();
    cluster.send(&["alice"], "alice 2").await;

    // Resuming from before bob's event replays alice's only; live, bob's never comes.
    let mut s = cluster.stream(0, "alice", "", Some(&first.event_id)).await.unwrap();
    assert_eq!(s.next_named("notification").await.json()["content"], "alice 2");
    cluster.send(&["bob"], "bob live").await;
    cluster.send(&["alice"], "sentinel").await;
    assert_eq!(s.next_named("notification").await.json()["content"], "sentinel");

    let auth = format!("Bearer {}", TestEdge::token("alice", &[], Duration::from_secs(600)));
    let (status, body) = http_request(addr, "GET", "/v1/notifications", &[("authorization", &auth)], None).await;
    assert_eq!(status, 200, "{body}");
    let listed: Vec<String> = serde_json::from_str::<Value>(&body).unwrap()["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["content"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(listed, ["sentinel", "alice 2", "alice 1"]);

    let by_id = json!({ "ids": [bobs.notification_id] }).to_string();
    let (status, body) = http_request(
        addr,
        "POST",
        "/v1/notifications/read",
        &[("authorization", &auth)],
        Some(by_id),
    )
    .await;
    assert_eq!(
        (
            status,
            serde_json::from_str::<Value>(&body).unwrap()["unreadCount"].clone()
        ),
        (200, json!(3)),
        "{body}"
    );
    let up_to = json!({ "up_to": bobs.notification_id }).to_string();
    let (status, body) = http_request(
        addr,
        "POST",
        "/v1/notifications/read",
        &[("authorization", &auth)],
        Some(up_to),
    )
    .await;
    assert_eq!(
        status, 404,
        "bob's notification is no position in alice's inbox: {body}"
    );
    assert_eq!(json_error(status, &body).0, "not_found", "{body}");
    let unread = |member: &str| {
        let mut client = cluster.client.clone();
        let member = member.to_owned();
        async move {
            client
                .get_unread_count(tidings_proto::v1::GetUnreadCountRequest {
                    member_id: member,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
                .unread_count
        }
    };
    assert_eq!((unread("bob").await, unread("alice").await), (2, 3), "nothing changed");
}

/// Every hostile request of this file and of the api's tests, thrown at one running
/// cluster together, panics no task (a panicking request task would only drop its
/// connection, so panics are counted), and leaves every node ready and serving: a
/// member streams, a producer sends, the notification arrives.
#[tokio::test]
async fn a_hostile_barrage_leaves_every_node_ready_and_serving() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    // Under nextest each test runs in its own process: the hook sees this test's panics.
    static PANICS: AtomicUsize = AtomicUsize::new(0);
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.fetch_add(1, Ordering::SeqCst);
        default_hook(info);
    }));

    let cluster = TestCluster::start(2).await;
    let mut producer = cluster.client.clone();
    let mut half_sent = Vec::new();
    let now = expiry_in(Duration::from_secs(600));
    let tokens = [
        signed(&json!({ "sub": "mallory", "exp": u64::MAX })),
        signed(&json!({ "sub": "mallory", "exp": now, "nbf": now + 3600 })),
        signed(&json!({ "sub": "", "exp": now })),
        signed(&json!({ "exp": now })),
        "not.a.token".to_owned(),
        "a".repeat(64 * 1024),
    ];
    for edge in &cluster.edges {
        for token in &tokens {
            let auth = format!("Bearer {token}");
            let _ = connect(edge.addr, "/v1/stream", &[("authorization", &auth)]).await;
            let _ = http_request(
                edge.addr,
                "GET",
                "/v1/notifications?limit=-1",
                &[("authorization", &auth)],
                None,
            )
            .await;
        }
        let good = TestEdge::token("mallory", &[], Duration::from_secs(600));
        let auth = format!("Bearer {good}");
        for id in [
            "",
            "x",
            "ffffffffffffffff-18446744073709551615",
            "0-0",
            &"9".repeat(10_000),
        ] {
            let _ = connect(
                edge.addr,
                "/v1/stream",
                &[("authorization", &auth), ("last-event-id", id)],
            )
            .await;
        }
        let not_text: &[u8] = b"\xff\xfe";
        let _ = connect_raw(
            edge.addr,
            "/v1/stream",
            &[("authorization", auth.as_bytes()), ("last-event-id", not_text)],
        )
        .await;
        for body in [
            "{",
            "null",
            &format!("{{\"ids\":[{}]}}", "\"x\",".repeat(5000) + "\"x\""),
            &"[".repeat(100_000),
        ] {
            let _ = http_request(
                edge.addr,
                "POST",
                "/v1/notifications/read",
                &[("authorization", &auth)],
                Some(body.to_owned()),
            )
            .await;
        }
        // Half-sent requests, left open.
        for _ in 0..20 {
            let mut socket = tokio::net::TcpStream::connect(edge.addr).await.unwrap();
            socket
                .write_all(b"GET /v1/stream HTTP/1.1\r\nHost: e\r\nX-Slow: ")
                .await
                .unwrap();
            half_sent.push(socket);
        }
        let mut socket = tokio::net::TcpStream::connect(edge.addr).await.unwrap();
        let _ = socket.write_all(&vec![0xffu8; 1 << 16]).await;
        let _ = tokio::time::timeout(Duration::from_secs(5), socket.read(&mut [0u8; 64])).await;
    }
    for request in [
        tidings_proto::v1::SendRequest {
            member_ids: (0..10_000).map(|i| format!("m{i}")).collect(),
            r#type: "t".into(),
            content: "c".into(),
            ..Default::default()
        },
        tidings_proto::v1::SendRequest {
            member_ids: vec!["m".into()],
            r#type: "t".into(),
            content: "x".repeat(10 << 20),
            ..Default::default()
        },
        tidings_proto::v1::SendRequest {
            member_ids: vec!["m".into()],
            r#type: "t".into(),
            data_json: format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)),
            ..Default::default()
        },
        tidings_proto::v1::SendRequest {
            member_ids: vec!["m\0".into(), ">".into(), "*".into()],
            r#type: "t".into(),
            content: "nul \0".into(),
            ..Default::default()
        },
    ] {
        let status = producer.send(request).await.expect_err("refused");
        assert!(
            matches!(
                status.code(),
                tonic::Code::InvalidArgument | tonic::Code::ResourceExhausted
            ),
            "{status:?}"
        );
    }

    for edge in &cluster.edges {
        let (status, body) = http_request(edge.addr, "GET", "/readyz", &[], None).await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, _) = http_request(cluster.api.http_addr, "GET", "/readyz", &[], None).await;
    assert_eq!(status, 200);
    let mut streams = Vec::new();
    for edge in 0..cluster.edges.len() {
        let mut s = cluster.stream(edge, "survivor", "", None).await.unwrap();
        s.next_named("connected").await;
        streams.push(s);
    }
    cluster.send(&["survivor"], "still here").await;
    for s in &mut streams {
        assert_eq!(s.next_named("notification").await.json()["content"], "still here");
    }
    drop(half_sent);
    assert_eq!(PANICS.load(Ordering::SeqCst), 0, "no task panicked");
}
