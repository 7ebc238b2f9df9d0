//! Producers: steady Sends, each with an idempotency key of its own, to either api —
//! unary calls, or (the first `streaming` producers) requests on a SendStream call held
//! open on one api.
//!
//! A call that fails with a code the README calls safe to retry (UNAVAILABLE, ABORTED,
//! DEADLINE_EXCEEDED, and what a broken connection looks like: CANCELLED, UNKNOWN) is
//! retried with the same key against a randomly chosen api, as a careful producer
//! does, within a bound of attempts and time. The notification's `content` is
//! `<key>|<members>`, so the checker can tell whose it is and which Send it came from
//! even when it arrives under an id no producer was told. A SendStream that breaks (its
//! api killed mid-call) is dropped; the request it did not answer is retried with its
//! key as unary calls, and the next one opens a new stream.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::Rng as _;
use tidings_proto::v1::notification_service_client::NotificationServiceClient;
use tidings_proto::v1::{SendRequest, SendResponse, SendStreamRequest, SendStreamResponse};
use tidings_testkit::BearerKey;
use tokio_util::sync::CancellationToken;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::cluster::API_KEY;
use crate::record::{Ack, Recorder};

type Client = NotificationServiceClient<InterceptedService<Channel, BearerKey>>;

/// At most this many calls per Send, and this long in all.
const MAX_ATTEMPTS: u32 = 40;
const MAX_RETRYING: Duration = Duration::from_secs(40);
/// One call's deadline (`grpc-timeout`).
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Running producers; [`Producers::stop`] ends them after their Sends in flight.
#[derive(Debug)]
pub(crate) struct Producers {
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Producers {
    /// `count` producers, each sending every `period` to one member (every fifth Send
    /// to two) of `members`; the first `streaming` of them over SendStream.
    pub(crate) fn start(
        apis: &[SocketAddr],
        members: &[String],
        (count, streaming): (usize, usize),
        period: Duration,
        recorder: &Recorder,
    ) -> Self {
        let clients: Vec<Client> = apis.iter().map(|addr| client(*addr)).collect();
        let stop = CancellationToken::new();
        let tasks = (0..count)
            .map(|p| {
                let (clients, members, recorder, stop) =
                    (clients.clone(), members.to_vec(), recorder.clone(), stop.clone());
                tokio::spawn(async move {
                    let mut tick = tokio::time::interval(period);
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    let mut open: Option<OpenStream> = None;
                    for n in 0u64.. {
                        tokio::select! {
                            () = stop.cancelled() => return,
                            _ = tick.tick() => {}
                        }
                        let key = format!("p{p}-{n}");
                        let targets = pick_members(&members, n);
                        if p < streaming {
                            stream_send(&clients, &mut open, key, targets, &recorder).await;
                        } else {
                            send(&clients, key, targets, &recorder).await;
                        }
                    }
                })
            })
            .collect();
        Self { stop, tasks }
    }

    /// Stops sending; waits for the Sends in flight (each is bounded).
    pub(crate) async fn stop(self) {
        self.stop.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

fn client(addr: SocketAddr) -> Client {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .expect("invariant: a socket address makes a URI")
        .connect_timeout(Duration::from_secs(1))
        .connect_lazy();
    NotificationServiceClient::with_interceptor(channel, BearerKey(Some(API_KEY.into())))
}

fn pick_members(members: &[String], n: u64) -> Vec<String> {
    let mut rng = rand::rng();
    let first = rng.random_range(0..members.len());
    let mut picked = vec![members[first].clone()];
    if n % 5 == 4 && members.len() > 1 {
        let second = (first + rng.random_range(1..members.len())) % members.len();
        picked.push(members[second].clone());
    }
    picked
}

fn request(key: &str, members: &[String]) -> SendRequest {
    SendRequest {
        member_ids: members.to_vec(),
        r#type: "chaos.test".into(),
        content: format!("{key}|{}", members.join(",")),
        idempotency_key: key.to_owned(),
        ..Default::default()
    }
}

fn record(recorder: &Recorder, key: &str, response: SendResponse, started: Instant, attempts: u32) {
    let acked = Instant::now();
    for delivery in response.deliveries {
        recorder.ack(Ack {
            key: key.to_owned(),
            member: delivery.member_id,
            notification_id: delivery.notification_id,
            event_id: delivery.event_id,
            started,
            acked,
            attempts,
        });
    }
}

/// A SendStream call held open on one api: requests go in one by one, each answered
/// in order before the next is sent.
struct OpenStream {
    requests: tokio::sync::mpsc::Sender<SendStreamRequest>,
    responses: tonic::Streaming<SendStreamResponse>,
}

async fn open_stream(clients: &[Client]) -> Option<OpenStream> {
    let which = rand::rng().random_range(0..clients.len());
    let (requests, queue) = tokio::sync::mpsc::channel(1);
    let call = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(queue));
    let opened = tokio::time::timeout(CALL_TIMEOUT, clients[which].clone().send_stream(call)).await;
    let responses = opened.ok()?.ok()?.into_inner();
    Some(OpenStream { requests, responses })
}

/// One Send as the next request of the producer's open SendStream (opened first when
/// there is none). A stream that fails or stops answering is dropped, and the request
/// is retried with its key as unary calls: it may have been committed before the api
/// died, and the key makes that harmless.
async fn stream_send(
    clients: &[Client],
    open: &mut Option<OpenStream>,
    key: String,
    members: Vec<String>,
    recorder: &Recorder,
) {
    let started = Instant::now();
    if open.is_none() {
        *open = open_stream(clients).await;
    }
    if let Some(stream) = open.as_mut() {
        let answered = async {
            stream.requests.send(request(&key, &members).into()).await.ok()?;
            stream.responses.message().await.ok().flatten().map(SendResponse::from)
        };
        if let Ok(Some(response)) = tokio::time::timeout(CALL_TIMEOUT, answered).await {
            record(recorder, &key, response, started, 1);
            return;
        }
        *open = None;
        recorder.retried();
    }
    send(clients, key, members, recorder).await;
}

/// One Send, retried with its key until it is acknowledged or a bound is reached.
async fn send(clients: &[Client], key: String, members: Vec<String>, recorder: &Recorder) {
    let request = request(&key, &members);
    let started = Instant::now();
    let mut last_error = String::new();
    for attempt in 1..=MAX_ATTEMPTS {
        if attempt > 1 {
            recorder.retried();
            let backoff = Duration::from_millis(100 * u64::from(attempt.min(10)));
            tokio::time::sleep(backoff).await;
        }
        let which = rand::rng().random_range(0..clients.len());
        let mut call = tonic::Request::new(request.clone());
        call.set_timeout(CALL_TIMEOUT);
        match clients[which].clone().send(call).await {
            Ok(response) => {
                record(recorder, &key, response.into_inner(), started, attempt);
                return;
            }
            Err(status) => {
                last_error = format!("{:?}: {}", status.code(), status.message());
                if !retryable(status.code()) {
                    break;
                }
            }
        }
        if started.elapsed() > MAX_RETRYING {
            break;
        }
    }
    recorder.unacked(key, last_error);
}

fn retryable(code: tonic::Code) -> bool {
    use tonic::Code::{Aborted, Cancelled, DeadlineExceeded, Unavailable, Unknown};
    matches!(code, Unavailable | Aborted | DeadlineExceeded | Cancelled | Unknown)
}
