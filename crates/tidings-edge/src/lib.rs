//! The edge role: holds browsers' Server-Sent-Events connections, receives live messages
//! only for the members (by partition) and topics connected to it, replays what a
//! reconnecting browser missed from JetStream by stream sequence, and serves the inbox
//! REST API through the api's gRPC.
//!
//! Layout, bottom-up (each file uses only files above it; `ARCHITECTURE.md` has the
//! layers):
//! - `sse.rs`: the SSE wire format and every event Tidings itself sends.
//! - `clock.rs`: the node's coarse clock. `kill_switch.rs`: closes an HTTP connection
//!   from outside its task. `topics.rs`: per-topic delivery modes, public topics.
//! - `cursor.rs`: where a connection is in the stream; the gap and late checks.
//! - `queue.rs`: one connection's bounded frame queue (slots, gathering, stalls).
//! - `delivery.rs`: one connection's delivery state machine: live, catching up, the
//!   hand-over (no task, no timer).
//! - `ready.rs`: the interest and position that let a fresh stream start live at once.
//! - `hub.rs`: which connections want which member and topic; interest refcounts; the
//!   catch-up queue.
//! - `accounting.rs`: which new subscriptions the hub may not count on yet.
//! - `auth.rs`: subscriber JWTs (HS256, RS256, ES256, EdDSA), credentials, tickets.
//! - `affinity.rs`: the member's routing key for load balancers: handed out, checked,
//!   never trusted.
//! - `api_client.rs`: the gRPC client of the api (inbox calls, unread counts; the
//!   demo's Send and Publish).
//! - `metrics.rs`: the Prometheus series of `/metrics`.
//! - `extent.rs`: the stream's extent, one STREAM.INFO shared by concurrent callers.
//! - `resumes.rs`: resumes read one by one, or in a reconnect storm in one pass.
//! - `unread.rs`: coalesced unread-count refreshes for `unread` events.
//! - `live.rs`: the node's live subscriptions, delivering to the hub in stream order.
//! - `config.rs`: [`EdgeConfig`], [`EdgeOptions`].
//! - `state.rs`: `EdgeState`, what handlers and tasks share: parts, limits, lifecycle.
//! - `catch_up.rs`: a stream's catch-up task: announce, replay, hand over to live;
//!   gap healing and resync; the catch-up queue's consumer.
//! - `body.rs`: the SSE response body that drains a connection's queue; its drop
//!   closes the books.
//! - `sweep.rs`: the shared timers: heartbeats, reauth, expiry, stalled sockets, drain.
//! - `incarnation.rs`: a stream deleted and created again: every open stream resets.
//! - `error.rs`: `EdgeError` and its one mapping to HTTP.
//! - `inbox.rs`: the inbox REST API over the api client.
//! - `demo.rs`: the dev demo page and its development endpoints (dev mode only).
//! - `routes.rs`: `GET /v1/stream`, `POST /v1/stream/ticket`, health, metrics; CORS.
//! - `openapi.rs`: the edge's OpenAPI 3.1 document, derived from `routes.rs`, `inbox.rs` and
//!   `sse.rs`; `GET /openapi.json`.
//! - `app.rs`: [`EdgeApp`]: build (connect, bind) and run (serve, drain, shutdown).

mod accounting;
mod affinity;
mod api_client;
mod app;
mod auth;
mod body;
mod catch_up;
mod clock;
mod config;
mod cursor;
mod delivery;
mod demo;
mod error;
mod extent;
mod hs256;
mod hub;
mod inbox;
mod incarnation;
mod kill_switch;
mod live;
mod metrics;
mod openapi;
mod queue;
mod ready;
mod resumes;
mod routes;
mod sse;
mod state;
mod stream_query;
mod sweep;
mod topics;
mod unread;

pub use app::{DEV_JWT_SECRET, EdgeApp, EdgeStats, StatsHandle};
pub use auth::{COOKIE, Claims, Verifier, expiry_in};
pub use config::{EdgeConfig, EdgeOptions};
pub use demo::RANKING_TOPIC;
pub use openapi::openapi_json;
pub use topics::{PublicTopics, TopicMode, TopicModes};
