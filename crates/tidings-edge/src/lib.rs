//! The edge role: holds browsers' Server-Sent-Events connections, receives live messages
//! only for the members (by partition) and topics connected to it, replays what a
//! reconnecting browser missed from JetStream by stream sequence, and serves the inbox
//! REST API through the api's gRPC.
//!
//! Layout:
//! - `config.rs`: [`EdgeConfig`], [`EdgeOptions`].
//! - `app.rs`: [`EdgeApp`]: build (connect, bind) and run (serve, drain).
//! - `routes.rs`: `GET /v1/stream`, `POST /v1/stream/ticket`, health; CORS.
//! - `connection.rs`: a stream's catch-up task: announce, replay, hand over to live;
//!   gap healing and resync.
//! - `resumes.rs`: resumes read one by one, or in a reconnect storm in one pass.
//! - `extent.rs`: the stream's extent, one STREAM.INFO shared by concurrent callers.
//! - `delivery.rs`: one connection's cursor and bounded frame queue (no task, no timer).
//! - `body.rs`: the SSE response body that drains that queue; its drop closes the books.
//! - `sweep.rs`: the shared timers: heartbeats, reauth, expiry, stalled sockets, drain.
//! - `hub.rs`: which connections want which member and topic; interest refcounts.
//! - `live.rs`: the node's NATS subscriptions, delivering to the hub in stream order.
//! - `auth.rs`: subscriber JWTs (HS256, RS256, ES256, EdDSA) and credentials.
//! - `inbox.rs`: the inbox REST API over the api's gRPC.
//! - `metrics.rs`: the Prometheus series of `/metrics`.
//! - `unread.rs`: coalesced unread-count refreshes for `unread` events.
//! - `topics.rs`: per-topic delivery modes.
//! - `sse.rs`: the SSE wire format.
//! - `error.rs`: `EdgeError` and its one mapping to HTTP.

mod app;
mod auth;
mod body;
mod config;
mod connection;
mod delivery;
mod error;
mod extent;
mod hub;
mod inbox;
mod live;
mod metrics;
mod resumes;
mod routes;
mod sse;
mod state;
mod sweep;
mod topics;
mod unread;

pub use app::{DEV_JWT_SECRET, EdgeApp, EdgeStats, StatsHandle};
pub use auth::{COOKIE, Claims, Verifier, expiry_in};
pub use config::{EdgeConfig, EdgeOptions};
pub use topics::{TopicMode, TopicModes};
