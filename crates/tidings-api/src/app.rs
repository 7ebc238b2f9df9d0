//! The api process: bind, serve gRPC and the HTTP/JSON API on one port and the health
//! endpoints on another, run the outbox relay, and stop in order on shutdown.
//!
//! The producer port (`TIDINGS_API_LISTEN`) serves both transports, so a producer needs
//! one address whichever it speaks: tonic's server accepts HTTP/1.1 as well as HTTP/2,
//! and one router sends gRPC's paths (`/tidings.v1.NotificationService/…`, health,
//! reflection) to the gRPC services and `/v1/…` to the JSON API (`rest.rs`); what
//! matches neither gets UNIMPLEMENTED if it is gRPC, a JSON 404 otherwise. tonic's own
//! server stays in charge of connections, so gRPC is served exactly as before: the same
//! HTTP/2 settings, [`StatusCodesLayer`] (which changes only answers that carry a
//! `grpc-status`, and deadlines only of calls that send `grpc-timeout`), graceful
//! shutdown. HTTP/1.1 connections get hyper's 30 s header-read timeout (tonic sets the
//! timer hyper needs to enforce it), the slowloris guard of the ops port. `/metrics`,
//! `/healthz` and `/readyz` stay on `TIDINGS_API_HTTP_LISTEN` only, for operators.
//!
//! [`App::build`] connects and binds and starts nothing; [`App::run`] starts every task
//! of the role on one `TaskTracker` — the relay, retention, the health endpoints, the group-commit
//! writers and their recorder, and one worker per SendStream call — and stops them:
//! readiness goes NOT_SERVING and the listeners close, in-flight calls finish
//! (SendStream calls end after their current batch), then the relay, retention and
//! health endpoints stop on the token, and the group-commit writers drain their queue once the
//! service is gone. Each of the two waits (calls, then tasks) is bounded by
//! `TIDINGS_SHUTDOWN_GRACE`, with a warning when it runs out.

use std::net::SocketAddr;

use anyhow::Context as _;
use tidings_bus::Bus;
use tidings_proto::v1::notification_service_server::NotificationServiceServer;
use tidings_store::Store;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::service::Routes;

use crate::auth::ApiKeys;
use crate::group_commit::GroupCommit;
use crate::relay::{self, RelaySettings};
use crate::retention::{self, RetentionRun};
use crate::send_stream::SendStreams;
use crate::service::Service;
use crate::state::ApiState;
use crate::status_codes::StatusCodesLayer;
use crate::{ApiConfig, http};
use crate::{openapi, rest};

/// Largest gRPC message the api decodes. A Send at every limit (1,000 member ids of 256
/// bytes, 4 KiB content, 16 KiB data) is about 280 KiB.
pub const MAX_REQUEST_BYTES: usize = 1024 * 1024;

/// How often the api reads the stream's incarnation when no publish has shown it
/// changing: the longest ids of a stream created anew could carry the old epoch.
const INCARNATION_CHECK: std::time::Duration = std::time::Duration::from_secs(2);

/// A bound, connected api node. [`App::build`] connects and binds; [`App::run`] serves.
#[derive(Debug)]
pub struct App {
    config: ApiConfig,
    grpc: TcpListener,
    http: TcpListener,
    state: ApiState,
    keys: ApiKeys,
    relay: RelaySettings,
}

impl App {
    /// Connects to Postgres (creating and migrating the database) and NATS (creating or
    /// updating the stream), and binds both listeners. `dev` allows running without API
    /// keys.
    pub async fn build(config: ApiConfig, dev: bool) -> anyhow::Result<Self> {
        config.validate(dev)?;
        let keys = config.api_keys(dev)?;
        if keys.is_empty() {
            tracing::warn!(
                "producer authentication is OFF: any client may send; set TIDINGS_API_KEYS outside development"
            );
        }
        let store = Store::connect(&config.db)
            .await
            .with_context(|| format!("connecting to Postgres at {}", config.db.redacted_url()))?;
        store.migrate().await.context("migrating the database")?;
        let bus = Bus::connect(&config.nats, &config.stream, "tidings-api")
            .await
            .context("connecting to NATS")?;
        let grpc = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding TIDINGS_API_LISTEN {}", config.listen))?;
        let http = TcpListener::bind(config.http_listen)
            .await
            .with_context(|| format!("binding TIDINGS_API_HTTP_LISTEN {}", config.http_listen))?;
        let state = ApiState::new(store, bus, config.publish_timeout);
        let relay = RelaySettings {
            poll: config.relay_poll,
            ..RelaySettings::default()
        };
        Ok(Self {
            config,
            grpc,
            http,
            state,
            keys,
            relay,
        })
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc
            .local_addr()
            .expect("invariant: a bound listener has an address")
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http
            .local_addr()
            .expect("invariant: a bound listener has an address")
    }

    /// One retention pass now, as the periodic task runs it (lock, batches, metrics,
    /// log line), for tests and operators' tools; [`App::run`] runs them on the
    /// schedule.
    pub async fn retention_pass(&self) -> Result<RetentionRun, crate::ApiError> {
        let never = CancellationToken::new();
        Ok(retention::pass(
            &self.state,
            self.config.retention,
            &self.config.retention_schedule,
            &never,
        )
        .await?)
    }

    /// Serves until `shutdown` is cancelled, then: reports NOT_SERVING, stops accepting,
    /// lets in-flight calls finish (at most `shutdown_grace`), then waits for the
    /// role's tasks to stop (at most `shutdown_grace` again).
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        tracing::info!(grpc = %self.grpc_addr(), http = %self.http_addr(), stream = %self.state.bus.stream_name(), "api serving");
        let Self {
            config,
            grpc,
            http,
            state,
            keys,
            relay,
        } = self;
        let tracker = TaskTracker::new();
        tracker.spawn(relay::run(state.clone(), relay, shutdown.clone()));
        tracker.spawn(retention::run(
            state.clone(),
            config.retention,
            config.retention_schedule,
            shutdown.clone(),
        ));
        tracker.spawn({
            // Sequences of a stream created anew must not get the old one's epoch.
            let (bus, shutdown) = (state.bus.clone(), shutdown.clone());
            async move {
                tokio::select! {
                    () = shutdown.cancelled() => {}
                    () = bus.watch_stream(INCARNATION_CHECK) => {}
                }
            }
        });
        tracker.spawn(http::serve(
            http,
            state.clone(),
            config.header_read_timeout,
            shutdown.clone(),
        ));
        // The service owns the only group-commit handle: its writers drain and stop
        // once the server has dropped it.
        let service = Service {
            group_commit: GroupCommit::start(state.clone(), &tracker),
            send_streams: SendStreams::new(state.clone(), tracker.clone(), shutdown.clone()),
            state,
            keys,
        };

        let (health, health_service) = tonic_health::server::health_reporter();
        health.set_serving::<NotificationServiceServer<Service>>().await;
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(tidings_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()
            .context("building gRPC reflection")?;
        let json_api = rest::router(service.clone(), MAX_REQUEST_BYTES);
        let notifications = NotificationServiceServer::new(service).max_decoding_message_size(MAX_REQUEST_BYTES);
        let routes = Routes::new(health_service)
            .add_service(reflection)
            .add_service(notifications)
            .into_axum_router()
            .merge(json_api)
            .route("/openapi.json", axum::routing::get(openapi::serve))
            .fallback(rest::fallback);

        let stopping = shutdown.clone();
        let readiness = health.clone();
        let server = tonic::transport::Server::builder()
            .accept_http1(true)
            .trace_fn(rest::server_span)
            .layer(StatusCodesLayer)
            .add_routes(Routes::from(routes))
            .serve_with_incoming_shutdown(TcpListenerStream::new(grpc), async move {
                stopping.cancelled().await;
                readiness.set_not_serving::<NotificationServiceServer<Service>>().await;
            });
        let served = tokio::select! {
            result = server => result.context("gRPC server failed"),
            () = async { shutdown.cancelled().await; tokio::time::sleep(config.shutdown_grace).await } => {
                tracing::warn!("in-flight calls outlived the shutdown grace; exiting anyway");
                Ok(())
            }
        };
        tracker.close();
        if tokio::time::timeout(config.shutdown_grace, tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("background tasks outlived the shutdown grace");
        }
        tracing::info!("api stopped");
        served
    }
}
