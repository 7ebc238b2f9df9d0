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
