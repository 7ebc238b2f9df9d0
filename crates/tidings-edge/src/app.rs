//! The edge process: connect, bind, serve, and drain on shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tidings_bus::Bus;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::Verifier;
use crate::extent::Extents;
use crate::hub::Hub;
use crate::inbox::ApiClient;
use crate::live::{Live, Node};
use crate::metrics::EdgeMetrics;
use crate::resumes::{REPLAY_CONCURRENCY, Resumes};
use crate::state::EdgeState;
use crate::sweep::{self, Clock};
use crate::topics::TopicModes;
use crate::unread::Unread;
use crate::{EdgeConfig, connection, routes};

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
        let bus = Bus::connect(&config.nats, &config.stream, "tidings-edge")
            .await
            .context("connecting to NATS")?;
        let tickets = bus.tickets().await.context("opening the ticket bucket")?;
        let listener = TcpListener::bind(o.listen)
            .await
            .with_context(|| format!("binding TIDINGS_EDGE_LISTEN {}", o.listen))?;
        let api = ApiClient::new(&o.api_url, o.api_key.as_ref()).context("TIDINGS_API_URL")?;

        let background = TaskTracker::new();
        let shutdown = CancellationToken::new();
        let hub = Arc::new(Hub::default());
        let metrics = EdgeMetrics::new();
        metrics.max_connections.set(i64::from(o.max_connections));
        let clock = Arc::new(Clock::default());
        let unread = Unread::spawn(api.clone(), hub.clone(), clock.clone(), shutdown.clone(), &background);
        let (catch_ups, mut catch_up_requests) = tokio::sync::mpsc::unbounded_channel();
        let live = Live::spawn(
            Node {
                bus: bus.clone(),
                hub: hub.clone(),
                metrics: metrics.clone(),
                unread: unread.clone(),
                clock: clock.clone(),
                catch_ups,
            },
            shutdown.clone(),
            &background,
        );
        let node = o
            .node_name
            .clone()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| "edge".into());
        let replays = Arc::new(tokio::sync::Semaphore::new(REPLAY_CONCURRENCY));
        let resumes = Resumes::spawn(
            bus.clone(),
            replays.clone(),
            o.replay_limit,
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
            node,
            retry: o.retry,
            heartbeat: o.heartbeat,
            replay_limit: o.replay_limit,
            queue_capacity: o.connection_queue as usize,
            max_connections: o.max_connections as usize,
            max_connections_per_member: o.max_connections_per_member as usize,
            reauth_before: o.reauth_before,
            drain_window: o.drain_window,
            write_timeout: (o.heartbeat * 2).max(Duration::from_secs(10)),
            drain: CancellationToken::new(),
            replays,
            resumes,
            shutdown,
            tracker: TaskTracker::new(),
        });
        background.spawn(sweep::run(state.clone()));
        background.spawn(sweep::drain(state.clone()));
        background.spawn({
            let state = state.clone();
            async move {
                while let Some(conn) = catch_up_requests.recv().await {
                    state.tracker.spawn(connection::catch_up(state.clone(), conn));
                }
            }
        });
        let router = routes::router(state.clone(), &o.cors_origins);
        Ok(Self {
            listener,
            state,
            router,
            background,
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
    /// window.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let state = self.state.clone();
        tracing::info!(addr = %self.local_addr(), node = %state.node, "edge serving");
        // On shutdown: drain at once (not ready; new streams refused with 503; open
        // streams close over the window), and stop accepting once every stream is gone
        // or the window is over.
        let stop_accepting = {
            let (shutdown, state) = (shutdown.clone(), state.clone());
            async move {
                shutdown.cancelled().await;
                tracing::info!(connections = state.hub.connections(), window = ?state.drain_window, "draining");
                state.drain.cancel();
                let deadline = tokio::time::Instant::now() + state.drain_window;
                while state.hub.connections() > 0 && tokio::time::Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        let window = state.drain_window;
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        let accepting = serve_http1(self.listener, self.router, &graceful, stop_accepting);
        let served = tokio::select! {
            result = accepting => result,
            () = async { shutdown.cancelled().await; tokio::time::sleep(window).await } => Ok(()),
        };
        // The listener is closed; idle keep-alive connections are told to finish.
        let _ = tokio::time::timeout(Duration::from_secs(1), graceful.shutdown()).await;
        // Whatever is still open at the end of the window ends now.
        state.shutdown.cancel();
        state.tracker.close();
        let _ = tokio::time::timeout(Duration::from_secs(2), state.tracker.wait()).await;
        self.background.close();
        let _ = tokio::time::timeout(Duration::from_secs(2), self.background.wait()).await;
        tracing::info!("edge stopped");
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

    pub fn get(&self) -> EdgeStats {
        EdgeStats {
            connections: self.0.hub.connections(),
            live_received: self.0.metrics.live_received.get(),
            interests: usize::try_from(self.0.metrics.interests.get()).unwrap_or(0),
            replays: self.0.bus.replay_counts(),
            replays_from_window: self.0.resumes.answered_from_window(),
        }
    }
}

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
        let _ = tcp.set_nodelay(true);
        let mut builder = hyper::server::conn::http1::Builder::new();
        // One buffer, no vectored-write queue; a client that never finishes its request
        // head is dropped rather than holding a connection open.
        // hyper buffers at most 64 KiB of a response before writing it out.
        builder
            .writev(false)
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

/// Closes one HTTP connection from outside its task: a slow reader whose socket no
/// longer drains never polls its response again, so ending the stream is not enough.
#[derive(Debug, Default)]
pub(crate) struct KillSwitch {
    fired: std::sync::atomic::AtomicBool,
    waker: futures::task::AtomicWaker,
}

impl KillSwitch {
    pub(crate) fn fire(&self) {
        self.fired.store(true, std::sync::atomic::Ordering::Release);
        self.waker.wake();
    }

    /// Whether the switch has fired; if not, `cx` is woken when it does.
    fn fired(&self, cx: &std::task::Context<'_>) -> bool {
        self.waker.register(cx.waker());
        self.fired.load(std::sync::atomic::Ordering::Acquire)
    }
}
