//! What every Tidings test stands on: real Postgres, real NATS JetStream, nothing mocked.
//!
//! - [`TestDb`]: a fresh database per test, created and migrated, dropped afterwards.
//! - [`TestBus`]: an isolated JetStream namespace (its own stream name and subject
//!   prefix) on the shared NATS server, deleted afterwards.
//! - [`NatsServer`] and [`NatsCluster`]: real `nats-server` child processes on free
//!   loopback ports, for tests that kill, restart or partition NATS; killed on drop.
//! - [`TestApi`]: a real api node in-process on OS-chosen ports, with a typed client.
//! - [`TestEdge`], [`TestCluster`]: real edges, and a whole cluster (db, namespace, api,
//!   edges); [`sse`]: an EventSource-like client over real HTTP; [`http_call`]: a plain
//!   HTTP/1.1 client for the REST APIs.
//! - [`Nginx`]: the project's nginx config in front of real edges.
//! - [`TcpProxy`]: a loopback proxy whose connections a test can cut, for outages;
//!   [`ReplyProxy`]: one that loses the server's answers only (asymmetric partition).
//! - [`eventually`]: the one way to wait for something; tests never sleep.
//!
//! Shared services come from `DATABASE_URL` and `NATS_URL`. When those are unset and a
//! Docker engine is reachable, Postgres and NATS containers are started instead
//! (testcontainers); otherwise the kit panics with a message saying how to provide them.
//! Spawned servers use the binary named by `TIDINGS_NATS_SERVER`, else `nats-server`
//! on `PATH`, and refuse one older than the version Tidings needs.
//!
//! Layout: `services.rs` (finding Postgres and NATS), `containers.rs` (the Docker
//! fallback), `db.rs`, `bus.rs`, `nats_server.rs`, `api.rs`, `edge.rs`, `cluster.rs`,
//! `sse.rs`, `rest_client.rs`, `nginx.rs`, `proxy.rs`, `reply_proxy.rs`, `eventually.rs`, `log.rs`.

mod api;
mod bus;
mod cluster;
#[cfg(feature = "containers")]
mod containers;
mod db;
mod edge;
mod eventually;
mod log;
mod nats_server;
mod nginx;
mod proxy;
mod reply_proxy;
mod rest_client;
mod services;
pub mod sse;

pub use api::{ApiClient, BearerKey, TestApi};
pub use bus::TestBus;
pub use cluster::TestCluster;
pub use db::TestDb;
pub use edge::{TEST_JWT_SECRET, TestEdge};
pub use eventually::{eventually, patience};
pub use log::init_test_log;
pub use nats_server::{NatsCluster, NatsServer, free_port, nats_server_binary};
pub use nginx::Nginx;
pub use proxy::TcpProxy;
pub use reply_proxy::ReplyProxy;
pub use rest_client::{HttpReply, http_call};
pub use services::{MissingService, ServiceUrls, locate_services};
