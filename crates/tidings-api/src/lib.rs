//! The api role: producers call the gRPC `NotificationService`; the api stores each
//! notification in Postgres with an outbox entry in one transaction, publishes it to
//! JetStream (`Nats-Msg-Id` = notification id), records the stream sequence, and runs
//! the outbox relay that publishes whatever the inline step missed.
//!
//! Layout:
//! - `config.rs`: [`ApiConfig`].
//! - `app.rs`: [`App`]: build (connect, migrate, bind) and run (serve, relay, shutdown).
//! - `service.rs`: the tonic service; SendStream's batching.
//! - `send.rs`: [`Sender`], the write path shared by Send and SendStream.
//! - `group_commit.rs`: unary Sends that arrive together share one transaction.
//! - `relay.rs`: the outbox relay.
//! - `convert.rs`: request validation and protobuf conversion, with the limits.
//! - `payload.rs`: the JSON a notification carries on the stream (the SSE event data).
//! - `auth.rs`: producer API keys.
//! - `http.rs`: `/healthz`, `/readyz`, `/metrics`.
//! - `metrics.rs`: the Prometheus series.
//! - `oversize.rs`: RESOURCE_EXHAUSTED (not tonic's OUT_OF_RANGE) for oversized requests.
//! - `error.rs`: [`ApiError`] and its one mapping to `tonic::Status`.

mod app;
mod auth;
mod config;
mod convert;
mod error;
mod group_commit;
mod http;
mod metrics;
mod oversize;
pub mod payload;
mod relay;
mod send;
mod service;

pub use app::{App, MAX_REQUEST_BYTES};
pub use auth::{ANONYMOUS, ApiKeys, Producer};
pub use config::ApiConfig;
pub use error::ApiError;
pub use send::Sender;
