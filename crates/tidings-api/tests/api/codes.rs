//! The status codes a gRPC client expects where tonic would answer otherwise, and the
//! HTTP port's guard against clients that never finish a request.

use std::time::{Duration, Instant};

use bytes::{Buf as _, BufMut as _};
use tidings_proto::v1 as pb;
use tidings_testkit::{TestApi, TestBus, TestDb};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tonic::Code;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

use crate::support::{Harness, send_to};

/// Bytes as they are, in and out: requests that are not protobuf at all.
#[derive(Debug, Clone, Copy, Default)]
struct Raw;

impl Codec for Raw {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Raw;
    type Decoder = Raw;

    fn encoder(&mut self) -> Raw {
        Raw
    }

    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl Encoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
    }
}

fn raw_request<T>(h: &Harness, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    let key = h.api.api_key.as_deref().unwrap();
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {key}").parse().unwrap());
    request
}

/// Bytes that are not a SendRequest are the caller's fault: INVALID_ARGUMENT, on a
/// unary Send and inside a SendStream, and nothing is stored.
#[tokio::test]
async fn a_request_that_is_not_protobuf_is_invalid_argument() {
    let h = Harness::start().await;
    let channel = h.channel().await;
    let mut grpc = tonic::client::Grpc::new(channel);
    let garbage = vec![0xff, 0xff, 0xff, 0xff];

    // Not protobuf at all; and a member id (field 1) that is not UTF-8.
    let not_utf8 = vec![0x0a, 0x02, 0xff, 0xfe];
    for bytes in [garbage.clone(), not_utf8] {
        grpc.ready().await.unwrap();
        let send = http::uri::PathAndQuery::from_static("/tidings.v1.NotificationService/Send");
        let status = grpc.unary(raw_request(&h, bytes.clone()), send, Raw).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{bytes:?}: {status:?}");
        assert!(status.message().contains("failed to decode"), "{}", status.message());
    }

    grpc.ready().await.unwrap();
    let stream = http::uri::PathAndQuery::from_static("/tidings.v1.NotificationService/SendStream");
    let messages = futures::stream::iter(vec![garbage]);
    let mut answers = grpc
        .streaming(raw_request(&h, messages), stream, Raw)
        .await
        .unwrap()
        .into_inner();
    let status = answers.message().await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");

    assert_eq!(h.notification_rows().await, 0);
}

/// A SendStream message above the size limit gets RESOURCE_EXHAUSTED, as a unary Send
/// does, after the answers to the messages before it.
#[tokio::test]
async fn an_oversized_send_stream_message_is_resource_exhausted() {
    let h = Harness::start().await;
    let mut client = h.api.client().await;
    let huge = pb::SendRequest {
        content: "x".repeat(10 * 1024 * 1024),
        ..send_to(&["b"])
    };
    let mut answers = client
        .send_stream(futures::stream::iter(vec![
            pb::SendStreamRequest::from(send_to(&["a"])),
            huge.into(),
        ]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answers.message().await.unwrap().unwrap().deliveries[0].member_id, "a");
    let status = answers.message().await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains("larger than the api accepts"),
        "{}",
        status.message()
    );
    let members: Vec<String> = sqlx::query_scalar("select member_id from notification")
        .fetch_all(&h.db.pool)
        .await
        .unwrap();
    assert_eq!(members, ["a"]);
}

/// A Send over a bare HTTP/2 client that, unlike tonic's, does not enforce the
/// `grpc-timeout` it sends: the status it reports is the api's own. Returns the
/// `grpc-status` and when it arrived.
async fn send_with_deadline(h: &Harness, request: pb::SendRequest, grpc_timeout: &str) -> (i32, Duration) {
    let tcp = tokio::net::TcpStream::connect(h.api.grpc_addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    let message = prost::Message::encode_to_vec(&request);
    let mut frame = vec![0u8];
    frame.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
    frame.extend_from_slice(&message);
    let call = http::Request::post(format!(
        "http://{}/tidings.v1.NotificationService/Send",
        h.api.grpc_addr
    ))
    .header("content-type", "application/grpc")
    .header("te", "trailers")
    .header("grpc-timeout", grpc_timeout)
    .header("authorization", format!("Bearer {}", h.api.api_key.as_deref().unwrap()))
    .body(())
    .unwrap();
    let started = Instant::now();
    let (response, mut body) = client.send_request(call, false).unwrap();
    body.send_data(frame.into(), true).unwrap();
    let response = response.await.unwrap();
    let code = |headers: &http::HeaderMap| {
        headers
            .get("grpc-status")
            .map(|v| v.to_str().unwrap().parse::<i32>().unwrap())
    };
    if let Some(status) = code(response.headers()) {
        return (status, started.elapsed()); // trailers-only
    }
    let mut body = response.into_body();
    while let Some(chunk) = body.data().await {
        chunk.unwrap();
    }
    let trailers = body.trailers().await.unwrap().expect("trailers");
    (code(&trailers).expect("grpc-status"), started.elapsed())
}

/// A Send still waiting when its client's deadline (`grpc-timeout`) passes answers
/// DEADLINE_EXCEEDED, the code clients retry, not CANCELLED.
#[tokio::test]
async fn a_send_past_its_deadline_is_deadline_exceeded() {
    let h = Harness::start().await;
    // The Send's insert waits behind this lock until the deadline has passed.
    let mut lock = h.db.pool.begin().await.unwrap();
    sqlx::query("lock table notification in access exclusive mode")
        .execute(&mut *lock)
        .await
        .unwrap();
    let (status, after) = send_with_deadline(&h, send_to(&["late"]), "300m").await;
    assert_eq!(status, Code::DeadlineExceeded as i32, "after {after:?}");
    assert!(
        after >= Duration::from_millis(250),
        "answered after {after:?}: before the deadline"
    );
    lock.rollback().await.unwrap();
    // The api is fine afterwards, and a deadline that is long enough is no obstacle.
    let (status, _) = send_with_deadline(&h, send_to(&["on-time"]), "10S").await;
    assert_eq!(status, Code::Ok as i32);
}

/// A client of the HTTP port (`/healthz`, `/readyz`, `/metrics`) that never finishes its
/// request head is dropped after the header-read timeout; complete requests are served.
#[tokio::test]
async fn the_http_port_drops_a_client_that_never_finishes_its_request() {
    let db = TestDb::new().await;
    let bus = TestBus::new().await;
    let mut config = TestApi::config(&db, &bus);
    config.header_read_timeout = Duration::from_secs(1);
    let api = TestApi::start(config, false).await;

    let mut slow = tokio::net::TcpStream::connect(api.http_addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: api\r\n").await.unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 256];
    let read = tokio::time::timeout(Duration::from_secs(10), slow.read(&mut buf))
        .await
        .expect("the half-sent request is still open after 10 s");
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "the connection was answered, not closed: {read:?}"
    );
    assert!(started.elapsed() >= Duration::from_millis(500), "closed at once");

    let mut whole = tokio::net::TcpStream::connect(api.http_addr).await.unwrap();
    whole
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    whole.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}
