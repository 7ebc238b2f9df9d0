//! Browsers: SSE clients that follow the WHATWG EventSource reconnection rules.
//!
//! A client keeps its last event id across connections (every event with an `id:`
//! sets it, `connected` and `reset` included), sends it as `Last-Event-ID` on each
//! reconnect, waits the reconnection time the server last set with `retry:` (longer
//! when a refusal says `Retry-After`), and picks a random edge each time, as a load
//! balancer would. Unlike a browser it also gives up on a stream that has been silent
//! for three heartbeats (the client library does the same), and in the soak it leaves
//! and comes back at random.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::Rng as _;
use tidings_testkit::TestEdge;
use tidings_testkit::sse::{ConnectError, Next, try_connect};
use tokio_util::sync::CancellationToken;

use crate::record::{Recorder, Seen};

/// The cluster's heartbeat is 5 s: three missed ones mean a dead stream.
const SILENCE: Duration = Duration::from_secs(15);
/// What a client waits before the server has said otherwise (WHATWG leaves it to the
/// user agent; browsers use a few seconds).
const DEFAULT_RETRY: Duration = Duration::from_secs(2);

/// Running clients; [`Clients::stop`] closes them.
#[derive(Debug)]
pub(crate) struct Clients {
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Clients {
    /// `per_member` clients for each of `members`, on random `edges`. With `churn`, each
    /// stream is closed by the client after a random time in that range.
    pub(crate) fn start(
        edges: &[SocketAddr],
        members: &[String],
        per_member: usize,
        churn: Option<(Duration, Duration)>,
        recorder: &Recorder,
    ) -> Self {
        let stop = CancellationToken::new();
        let mut tasks = Vec::new();
        for member in members {
            for _ in 0..per_member {
                let index = recorder.client(member);
                let client = Client {
                    index,
                    member: member.clone(),
                    edges: edges.to_vec(),
                    churn,
                    recorder: recorder.clone(),
                    stop: stop.clone(),
                };
                tasks.push(tokio::spawn(client.run()));
            }
        }
        Self { stop, tasks }
    }

    pub(crate) async fn stop(self) {
        self.stop.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

#[derive(Debug)]
struct Client {
    index: usize,
    member: String,
    edges: Vec<SocketAddr>,
    churn: Option<(Duration, Duration)>,
    recorder: Recorder,
    stop: CancellationToken,
}

impl Client {
    async fn run(self) {
        let token = TestEdge::token(&self.member, &[], Duration::from_secs(3600));
        let authorization = format!("Bearer {token}");
        let mut last_event_id: Option<String> = None;
        let mut retry = DEFAULT_RETRY;
        while !self.stop.is_cancelled() {
            let edge = self.edges[rand::rng().random_range(0..self.edges.len())];
            let mut headers = vec![("authorization", authorization.as_str())];
            if let Some(id) = &last_event_id {
                headers.push(("last-event-id", id.as_str()));
            }
            let connecting = tokio::time::timeout(Duration::from_secs(5), try_connect(edge, "/v1/stream", &headers));
            let mut wait = retry;
            match connecting.await {
                Err(_) => self.saw(Seen::Failed {
                    why: format!("{edge}: no answer within 5 s"),
                }),
                Ok(Err(ConnectError::Failed(why))) => self.saw(Seen::Failed { why }),
                Ok(Err(ConnectError::Refused(refusal))) => {
                    if let Some(after) = refusal
                        .headers
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
                    {
                        wait = wait.max(Duration::from_secs(after));
                    }
                    self.saw(Seen::Failed {
                        why: format!("{edge}: {} {}", refusal.status, refusal.body),
                    });
                }
                Ok(Ok(mut stream)) => {
                    let leave_at = self
                        .churn
                        .map(|(min, max)| Instant::now() + rand::rng().random_range(min..=max));
                    let mut heard = Instant::now();
                    let mut comments = stream.comments();
                    let why = loop {
                        let next = tokio::select! {
                            () = self.stop.cancelled() => break "stopped",
                            next = stream.next_or_closed(Duration::from_millis(500)) => next,
                        };
                        match next {
                            Next::Event(event) => {
                                heard = Instant::now();
                                if let Some(id) = &event.id {
                                    last_event_id = Some(id.clone());
                                }
                                self.record(event);
                            }
                            Next::Closed => break "closed",
                            Next::Quiet => {
                                if stream.comments() != comments {
                                    comments = stream.comments();
                                    heard = Instant::now();
                                }
                                if heard.elapsed() > SILENCE {
                                    break "silent";
                                }
                            }
                        }
                        if leave_at.is_some_and(|at| Instant::now() >= at) {
                            break "left";
                        }
                    };
                    if let Some(ms) = stream.retry {
                        retry = Duration::from_millis(ms);
                    }
                    wait = if why == "left" {
                        Duration::from_millis(50)
                    } else {
                        retry
                    };
                    stream.close();
                    self.saw(Seen::Closed { why });
                }
            }
            tokio::select! {
                () = self.stop.cancelled() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    fn record(&self, event: tidings_testkit::sse::SseEvent) {
        let seen = match event.event.as_str() {
            "connected" => {
                let body = event.json();
                Seen::Connected {
                    id: event.id.unwrap_or_default(),
                    node: body["node"].as_str().unwrap_or_default().to_owned(),
                    resumed: body["resumed"].as_bool().unwrap_or_default(),
                }
            }
            "notification" => {
                let body = event.json();
                Seen::Notification {
                    id: event.id.unwrap_or_default(),
                    notification_id: body["id"].as_str().unwrap_or_default().to_owned(),
                    content: body["content"].as_str().unwrap_or_default().to_owned(),
                }
            }
            "reset" => Seen::Reset {
                reason: event.json()["reason"].as_str().unwrap_or_default().to_owned(),
                id: event.id,
            },
            // `unread`, `resumed`, `reauth`: nothing the checker judges.
            _ => return,
        };
        self.saw(seen);
    }

    fn saw(&self, seen: Seen) {
        self.recorder.saw(self.index, seen);
    }
}
