//! The edge process: connect, bind, serve, and drain on shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tidings_bus::Bus;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api_client::ApiClient;
use crate::auth::Verifier;
use crate::catch_up::CatchUps;
use crate::clock::Clock;
use crate::config::EdgeConfig;
use crate::extent::Extents;
use crate::hub::Hub;
use crate::kill_switch::KillSwitch;
use crate::live::{Live, LiveDeps};
use crate::metrics::EdgeMetrics;
use crate::resumes::{REPLAY_CONCURRENCY, Resumes};
use crate::state::{EdgeState, Lifecycle, Limits};
use crate::topics::{PublicTopics, TopicModes};
use crate::unread::Unread;
use crate::{openapi, routes, sse, sweep};

/// The HS256 secret `tidings dev` uses when none is configured. Public, so never for
/// anything but a laptop.
pub const DEV_JWT_SECRET: &str = "tidings-dev-secret-not-for-production-use";

/// A bound, connected edge node. [`EdgeApp::build`] connects and binds;
/// [`EdgeApp::run`] serves.
#[derive(Debug)]
pub struct EdgeApp {
    listener: TcpListener,
    state: Arc<EdgeState>,
    router: axum::Router,
    background: TaskTracker,
    /// How long the node waits, after the drain window, for connections and tasks to
    /// finish before it exits anyway.
    shutdown_grace: Duration,
}

/// What an edge node is doing, for tests and operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EdgeStats {
    pub connections: usize,
    /// Live messages received from NATS since start.
    pub live_received: u64,
    /// NATS subscriptions held (member partitions plus topics).
    pub interests: usize,
    /// How this node's replays read the stream (Direct Get or a consumer).
    pub replays: tidings_bus::ReplayCounts,
    /// Resumes answered from a window read in one pass (a reconnect storm).
    pub replays_from_window: u64,
    /// Open streams whose live events wait for a catch-up (a replay, a gap, a resync
    /// after NATS may have lost messages).
    pub catching_up: usize,
}

impl EdgeApp {
    /// Connects to NATS (creating or updating the stream), opens the ticket bucket, and
    /// binds the listener. `dev` allows running without a configured key (it then uses
    /// [`DEV_JWT_SECRET`]).
    pub async fn build(config: EdgeConfig, dev: bool) -> anyhow::Result<Self> {
        config.validate(dev)?;
        let o = &config.options;
        let verifier = match (&o.jwt_secret, &o.jwt_public_key) {
            (Some(secret), _) => Verifier::hs256(secret.expose().as_bytes()),
            (None, Some(path)) => Verifier::from_public_key_file(path)?,
            (None, None) => {
                tracing::warn!("TIDINGS_JWT_SECRET is not set: using the public development secret");
                Verifier::hs256(DEV_JWT_SECRET.as_bytes())
            }
        };
        let bus = Bus::attach(&config.nats, &config.stream, "tidings-edge")
            .await
            .context("connecting to NATS")?;
        // The stream as the server holds it may keep fewer per subject than configured.
        crate::config::replay_limit_fits(o.replay_limit, bus.max_msgs_per_subject())?;
        // Without the bucket only tickets fail (503); tokens still open streams.
        let tickets = bus.tickets();
        if let Err(e) = tickets.open().await {
            tracing::warn!(error = %e, "stream tickets are unavailable until their bucket can be opened");
        }
        let listener = listen(o.listen).with_context(|| format!("binding TIDINGS_EDGE_LISTEN {}", o.listen))?;
        let api = ApiClient::new(&o.api_url, o.api_key.as_ref()).context("TIDINGS_API_URL")?;

        let background = TaskTracker::new();
        let lifecycle = Lifecycle::default();
        let hub = Arc::new(Hub::default());
        let metrics = EdgeMetrics::new();
        metrics.max_connections.set(i64::from(o.max_connections));
        let clock = Arc::new(Clock::default());
        let shutdown = &lifecycle.shutdown;
        let unread = Unread::spawn(
            api.clone(),
            hub.clone(),
            clock.clone(),
            metrics.unread_fetched.clone(),
            shutdown.clone(),
            &background,
        );
        let (catch_up_queue, catch_ups) = CatchUps::new(o.max_connections as usize);
        let live = Live::spawn(
            LiveDeps {
                bus: bus.clone(),
                hub: hub.clone(),
                metrics: metrics.clone(),
                unread: unread.clone(),
                clock: clock.clone(),
                catch_ups: catch_up_queue,
                #[cfg(feature = "fault-injection")]
                drop_next: Arc::default(),
                #[cfg(feature = "fault-injection")]
                fail_next_confirm: Arc::default(),
                #[cfg(feature = "fault-injection")]
                blind_for_ms: Arc::default(),
                #[cfg(feature = "fault-injection")]
                blinded: Arc::default(),
            },
            shutdown.clone(),
            &background,
        );
        let replays = Arc::new(tokio::sync::Semaphore::new(REPLAY_CONCURRENCY));
        let resumes = Resumes::spawn(
            bus.clone(),
            replays.clone(),
            o.replay_limit,
            o.max_connections as usize,
            shutdown.clone(),
            &background,
        );
        let state = Arc::new(EdgeState {
            extents: Extents::new(bus.clone()),
            bus,
            hub,
            live,
            unread,
            metrics,
            clock,
            api,
            tickets,
            verifier,
            topic_modes: TopicModes::parse(&o.topic_modes)?,
            public_topics: PublicTopics::parse(&o.public_topics)?,
            node: o.node_name(),
            replays,
            resumes,
            limits: Limits {
                retry: sse::retry(o.retry),
                heartbeat: o.heartbeat,
                replay_limit: o.replay_limit,
                queue_capacity: o.connection_queue as usize,
                max_connections: o.max_connections as usize,
                max_connections_per_member: o.max_connections_per_member as usize,
                reauth_before: o.reauth_before,
                drain_window: o.drain_window,
                write_timeout: (o.heartbeat * 2).max(Duration::from_secs(10)),
            },
            lifecycle,
            #[cfg(feature = "fault-injection")]
            fail_reads: std::sync::atomic::AtomicU64::new(0),
        });
        background.spawn(sweep::run(state.clone()));
        background.spawn(sweep::drain(state.clone()));
        background.spawn(catch_ups.run(state.clone()));
        background.spawn({
            let (bus, shutdown) = (state.bus.clone(), state.lifecycle.shutdown.clone());
            async move {
                tokio::select! {
                    () = shutdown.cancelled() => {}
                    () = bus.watch_stream(crate::incarnation::CHECK_EVERY) => {}
                }
            }
        });
        let router = routes::router(state.clone(), &o.cors_origins, o.demo)
            .route("/openapi.json", axum::routing::get(openapi::serve));
        Ok(Self {
            listener,
            state,
            router,
            background,
            shutdown_grace: o.shutdown_grace,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("invariant: a bound listener has an address")
    }

    /// A handle to this node's counters that stays valid while it runs.
    pub fn stats_handle(&self) -> StatsHandle {
        StatsHandle(self.state.clone())
    }

    /// Serves until `shutdown` is cancelled, then drains: `/readyz` turns 503, the
    /// listener stops accepting, open streams close spread over the drain window (each
    /// told to come back after a randomized `retry:`), and the node exits within the
    /// window plus the shutdown grace (a warning says what overran it).
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let state = self.state.clone();
        let lifecycle = &state.lifecycle;
        // A live task that stopped drains and stops the node as SIGTERM would (its
        // clients resume elsewhere by Last-Event-ID), and `run` then fails, so the
        // process exits and is restarted.
        let live_stopped = state.live.stopped().clone();
        let shutdown = {
            let either = shutdown.child_token();
            let (either2, stopped) = (either.clone(), live_stopped.clone());
            tokio::spawn(async move {
                tokio::select! {
                    () = stopped.cancelled() => either2.cancel(),
                    () = either2.cancelled() => {}
                }
            });
            either
        };
        tracing::info!(addr = %self.local_addr(), node = %state.node, "edge serving");
        let window = state.limits.drain_window;
        // On shutdown: drain at once (not ready; new streams refused with 503; open
        // streams close over the window), and stop accepting once every stream is gone
        // or the window is over.
        let stop_accepting = {
            let (shutdown, state) = (shutdown.clone(), state.clone());
            async move {
                shutdown.cancelled().await;
                tracing::info!(connections = state.hub.connections(), window = ?window, "draining");
                state.lifecycle.drain.cancel();
                let deadline = tokio::time::Instant::now() + window;
                loop {
                    // Registered before the count is read: a close in between leaves a
                    // permit, so none is missed.
                    let closed = state.lifecycle.stream_closed.notified();
                    if state.hub.connections() == 0 {
                        break;
                    }
                    tokio::select! {
                        () = closed => {}
                        () = tokio::time::sleep_until(deadline) => break,
                    }
                }
            }
        };
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        let accepting = serve_http1(self.listener, self.router, &graceful, stop_accepting);
        let served = tokio::select! {
            result = accepting => result,
            () = async { shutdown.cancelled().await; tokio::time::sleep(window).await } => Ok(()),
        };
        // The listener is closed; whatever is still open at the end of the window ends
        // now, and idle keep-alive connections are told to finish.
        lifecycle.shutdown.cancel();
        let grace = tokio::time::Instant::now() + self.shutdown_grace;
        if tokio::time::timeout_at(grace, graceful.shutdown()).await.is_err() {
            tracing::warn!(grace = ?self.shutdown_grace, "HTTP connections outlived the shutdown grace");
        }
        lifecycle.streams.close();
        self.background.close();
        let tasks = async {
            lifecycle.streams.wait().await;
            self.background.wait().await;
        };
        if tokio::time::timeout_at(grace, tasks).await.is_err() {
            tracing::warn!(
                grace = ?self.shutdown_grace,
                streams = lifecycle.streams.len(),
                background = self.background.len(),
                "tasks outlived the shutdown grace; exiting anyway"
            );
        }
        tracing::info!("edge stopped");
        if live_stopped.is_cancelled() {
            anyhow::bail!("the live task stopped (see the error above): the edge drained and exited");
        }
        served
    }
}

/// Reads an edge node's counters.
#[derive(Debug, Clone)]
pub struct StatsHandle(Arc<EdgeState>);

impl StatsHandle {
    /// Test hook: the next live message this node receives is dropped, as if NATS had
    /// lost it, so tests can prove gaps are healed.
    #[cfg(feature = "fault-injection")]
    pub fn drop_next_live_message(&self) {
        self.0.live.drop_next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Test hook: live messages of an interest this node subscribed less than
    /// `blind_for` ago are dropped, as when the stream leader sits on another server of
    /// a cluster that has not learned of the interest yet. Returns how many it dropped
    /// so far (`Duration::ZERO` leaves the window as it is).
    #[cfg(feature = "fault-injection")]
    pub fn blind_new_interest(&self, blind_for: Duration) -> u64 {
        use std::sync::atomic::Ordering;
        if !blind_for.is_zero() {
            let ms = u64::try_from(blind_for.as_millis()).unwrap_or(u64::MAX);
            self.0.live.blind_for_ms.store(ms, Ordering::Relaxed);
        }
        self.0.live.blinded.load(Ordering::Relaxed)
    }

    /// Test hook: the next release of a live interest is lost, as on a full command
    /// channel.
    #[cfg(feature = "fault-injection")]
    pub fn lose_next_release(&self) {
        self.0
            .live
            .lose_next_release
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Test hook: the next confirmation of the switch to (or from) one subscription
    /// for every member partition fails, as when NATS times out.
    #[cfg(feature = "fault-injection")]
    pub fn fail_next_live_confirm(&self) {
        self.0
            .live
            .fail_next_confirm
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Test hook: the live task panics, as a bug in it would.
    #[cfg(feature = "fault-injection")]
    pub fn crash_live_task(&self) {
        self.0.live.crash();
    }

    /// Test hook: the next `n` reads of the stream that catch-ups make (resumes, gap
    /// fetches, resyncs) fail as if NATS had timed out, so tests can prove such failures
    /// are retried, never answered with `reset`.
    #[cfg(feature = "fault-injection")]
    pub fn fail_next_stream_reads(&self, n: u64) {
        self.0.fail_reads.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn get(&self) -> EdgeStats {
        EdgeStats {
            connections: self.0.hub.connections(),
            live_received: self.0.metrics.live_received.get(),
            interests: usize::try_from(self.0.metrics.interests.get()).unwrap_or(0),
            replays: self.0.bus.replay_counts(),
            replays_from_window: self.0.resumes.answered_from_window(),
            catching_up: self.0.hub.all().iter().filter(|c| c.delivery().catching_up()).count(),
        }
    }
}

/// The edge's listening socket, as `TcpListener::bind` makes it (address reuse, a
/// backlog of 1,024) and with `TCP_NODELAY`, which Linux copies to every accepted
/// socket: one system call at start instead of one per connection.
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.set_nodelay(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// An event must leave when it is written, not wait for the client's acknowledgement
/// of the one before (Nagle's algorithm). On Linux the socket has it from the listener.
fn without_nagle(tcp: &tokio::net::TcpStream) {
    #[cfg(not(target_os = "linux"))]
    let _ = tcp.set_nodelay(true);
    #[cfg(target_os = "linux")]
    let _ = tcp;
}

/// Where each connection's read and write buffers start (hyper's default is 8 KiB). An
/// SSE event or a request head larger than this grows the buffer; an idle stream keeps
/// only this much of each.
const INITIAL_BUF_SIZE: usize = 1024;

/// Accepts connections until `stop` completes, serving each with hyper's HTTP/1.1
/// connection builder directly. Compared with `axum::serve` (hyper-util's auto builder,
/// which sniffs for HTTP/2 and keeps a 16 KiB read buffer per connection), this saves
/// about 8 KiB per idle SSE stream; browsers reach edges over HTTP/1.1 anyway (HTTP/2
/// ends at the TLS-terminating load balancer).
async fn serve_http1(
    listener: TcpListener,
    router: axum::Router,
    graceful: &hyper_util::server::graceful::GracefulShutdown,
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    use hyper_util::rt::TokioIo;
    tokio::pin!(stop);
    loop {
        let (tcp, _) = tokio::select! {
            () = &mut stop => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        without_nagle(&tcp);
        let mut builder = hyper::server::conn::http1::Builder::new();
        // One buffer, no vectored-write queue; a client that never finishes its request
        // head is dropped rather than holding a connection open.
        // hyper buffers at most 64 KiB of a response before writing it out. Both buffers
        // start at 1 KiB instead of hyper's 8 (a patched hyper, vendor/hyper/TIDINGS.md):
        // an idle stream keeps both, and they were half of its memory. A larger request
        // head grows the read buffer for as long as it needs.
        builder
            .writev(false)
            .initial_buf_size(INITIAL_BUF_SIZE)
            .max_buf_size(64 * 1024)
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(Duration::from_secs(30));
        // The switch rides in the request's extensions to the stream it opens, which
        // fires it to close a socket that stopped draining.
        let switch = Arc::new(KillSwitch::default());
        let service = {
            let (router, switch) = (router.clone(), switch.clone());
            hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(switch.clone());
                tower::ServiceExt::oneshot(router.clone(), request)
            })
        };
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(tcp), service));
        let task = UntilKilled { connection, switch };
        tokio::spawn(task);
    }
}

pin_project_lite::pin_project! {
    /// One HTTP connection's task: it ends with the connection or when its kill switch
    /// fires. A plain struct, not an `async` block: a block that moves the connection
    /// into a `select!` stores it twice, once as the captured value and once as the
    /// select's, and every idle stream would pay for both.
    struct UntilKilled<F> {
        #[pin]
        connection: F,
        switch: Arc<KillSwitch>,
    }
}

impl<F: std::future::Future> std::future::Future for UntilKilled<F> {
    type Output = ();

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        let this = self.project();
        if this.switch.fired(cx) {
            return std::task::Poll::Ready(());
        }
        this.connection.poll(cx).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn accepted_connections_do_not_wait_for_nagle() {
        let listener = listen(SocketAddr::from(([127, 0, 0, 1], 0))).expect("binds");
        let addr = listener.local_addr().expect("bound");
        let _client = tokio::net::TcpStream::connect(addr).await.expect("connects");
        let (accepted, _) = listener.accept().await.expect("accepts");
        without_nagle(&accepted);
        assert!(accepted.nodelay().expect("readable option"));
    }
}
