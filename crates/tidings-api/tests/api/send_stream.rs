use tidings_proto::v1 as pb;
use tonic::Code;

use crate::support::{Harness, send_to};

#[tokio::test]
async fn send_stream_answers_each_request_in_order_and_commits_in_batches() {
    let h = Harness::start().await;
    let mut client = h.api.client().await;
    let n = 3000;
    let requests: Vec<pb::SendStreamRequest> = (0..n).map(|i| send_to(&[&format!("m{i}")]).into()).collect();
    let mut responses = client
        .send_stream(futures::stream::iter(requests))
        .await
        .unwrap()
        .into_inner();
    let mut i = 0;
    while let Some(response) = responses.message().await.unwrap() {
        assert_eq!(
            response.deliveries[0].member_id,
            format!("m{i}"),
            "response {i} answers request {i}"
        );
        assert!(!response.deliveries[0].event_id.is_empty());
        i += 1;
    }
    assert_eq!(i, n);
    assert_eq!(h.stream_messages().await, n as u64);

    // Rows written by one transaction share its xmin: far fewer transactions than requests.
    let transactions: i64 = sqlx::query_scalar("select count(distinct xmin::text) from notification")
        .fetch_one(&h.db.pool)
        .await
        .unwrap();
    assert!(
        transactions < n as i64 / 4,
        "{transactions} transactions for {n} requests"
    );
}

#[tokio::test]
async fn a_bad_request_ends_the_stream_after_the_answers_before_it() {
    let h = Harness::start().await;
    let mut client = h.api.client().await;
    let requests: Vec<pb::SendStreamRequest> = [send_to(&["a"]), send_to(&["b"]), send_to(&[]), send_to(&["c"])]
        .into_iter()
        .map(Into::into)
        .collect();
    let mut responses = client
        .send_stream(futures::stream::iter(requests))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(responses.message().await.unwrap().unwrap().deliveries[0].member_id, "a");
    assert_eq!(responses.message().await.unwrap().unwrap().deliveries[0].member_id, "b");
    let status = responses.message().await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().starts_with("member_ids"), "{}", status.message());
    let members: Vec<String> = sqlx::query_scalar("select member_id from notification order by id")
        .fetch_all(&h.db.pool)
        .await
        .unwrap();
    assert_eq!(members, ["a", "b"], "nothing after the bad request is stored");
}

#[tokio::test]
async fn shutdown_ends_an_open_send_stream_after_its_answers_and_does_not_wait_for_it() {
    let Harness {
        db: _db,
        bus: _bus,
        api,
    } = Harness::start().await;
    let mut client = api.client().await;
    // The client keeps its side open: it may send more at any time.
    let (requests, inbound) = tokio::sync::mpsc::channel(4);
    requests
        .send(pb::SendStreamRequest::from(send_to(&["a"])))
        .await
        .unwrap();
    let mut responses = client
        .send_stream(tokio_stream::wrappers::ReceiverStream::new(inbound))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(responses.message().await.unwrap().unwrap().deliveries[0].member_id, "a");

    let started = std::time::Instant::now();
    api.stop().await.unwrap();
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "the api took {:?} to stop; an open SendStream must not hold it for the 10 s grace",
        started.elapsed()
    );
    let status = responses.message().await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(status.message().contains("shutting down"), "{}", status.message());
    drop(requests);
}
