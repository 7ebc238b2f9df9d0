//! The api role: producers call the gRPC `NotificationService`; the api stores each
//! notification in Postgres with an outbox entry in one transaction, publishes it to
//! JetStream (`Nats-Msg-Id` = notification id), records the stream sequence, and runs
//! the outbox relay that publishes whatever the inline step missed.
//!
//! Layout, one line per file, in layers: each file's `use crate::` imports name only
//! files below it, so the module graph has no cycle.
//! - `lib.rs`: this map and the public surface.
//! - `app.rs`: [`App`]: build (connect, migrate, bind) and run (every task tracked, ordered shutdown).
//! - `openapi.rs`: the HTTP/JSON API's OpenAPI 3.1 document, derived from `rest.rs` and its bodies; `GET /openapi.json`.
//! - `rest.rs`: the HTTP/JSON producer API on the gRPC port: authenticate, JSON → protobuf, the same operations.
//! - `rest_body.rs`: the HTTP/JSON API's request and response bodies (camelCase, unknown fields refused).
//! - `service.rs`: the tonic `NotificationService`: authenticate, convert, call, convert back, timed;
//!   the operations both transports call (`handle_*`).
//! - `convert.rs`: protobuf ↔ the api's types: request validation with the contract's limits, responses.
//! - `group_commit.rs`: front-end for unary Sends: those that arrive together share one batch.
//! - `send_stream.rs`: front-end for SendStream: one worker per call, batches of what has arrived.
//! - `send.rs`: the write path both front-ends call: commit, publish, record; batch limits; receipts.
//! - `inbox.rs`: paging, mark read, archive, delete (each with the unread-change announcement), unread counts.
//! - `topic.rs`: Publish to a broadcast topic, straight to JetStream.
//! - `relay.rs`: the outbox relay: publishes what the inline publish missed.
//! - `retention.rs`: deletes notifications older than `TIDINGS_RETENTION`, one replica at a time.
//! - `payload.rs`: the message a notification travels in (subject, msg id, trace, JSON), for both publishers.
//! - `http.rs`: `/healthz`, `/readyz`, `/metrics`.
//! - `state.rs`: `ApiState`: store, bus, metrics and settings; every task of the role holds one.
//! - `metrics.rs`: the Prometheus series.
//! - `config.rs`: [`ApiConfig`], the role's flags and environment.
//! - `auth.rs`: producer API keys.
//! - `status_codes.rs`: the codes clients expect where tonic answers otherwise (oversize,
//!   undecodable request, passed deadline): a tower layer and SendStream's inbound errors.
//! - `error.rs`: [`ApiError`], its one mapping to `tonic::Status`, and the HTTP answer made from that status.

mod app;
mod auth;
mod config;
mod convert;
mod error;
mod group_commit;
mod http;
mod inbox;
mod metrics;
mod openapi;
pub mod payload;
mod relay;
mod rest;
mod rest_body;
mod retention;
mod send;
mod send_stream;
mod service;
mod state;
mod status_codes;
mod topic;

pub use app::{App, MAX_REQUEST_BYTES};
pub use auth::{ANONYMOUS, ApiKeys, Producer};
pub use config::ApiConfig;
pub use error::ApiError;
pub use openapi::openapi_json;
pub use retention::{Retention, RetentionReport, RetentionRun, RetentionSchedule};
