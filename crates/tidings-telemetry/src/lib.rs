//! Logging and tracing for every Tidings process.
//!
//! [`init`] installs one `tracing` subscriber: an env-filter, a human (`pretty`) or
//! JSON (`json`) log layer, and an OpenTelemetry layer. An SDK tracer provider is always
//! installed, even without an exporter, so spans get real trace ids and an incoming
//! `traceparent` is continued and forwarded (gRPC → NATS headers → edge). Spans leave the
//! process only when `OTEL_EXPORTER_OTLP_ENDPOINT` is set; an unreachable collector costs
//! nothing but dropped batches and never reaches the log.
//!
//! Layout:
//! - `build.rs`: the version and commit this binary was built from.
//! - `config.rs`: [`TelemetryConfig`] (flags and `TIDINGS_LOG_*` / `OTEL_*` variables).
//! - `init.rs`: [`init`] and the [`TelemetryGuard`] that flushes spans on drop.
//! - `metrics.rs`: the Prometheus registry and `/metrics` rendering.
//! - `propagation.rs`: `traceparent` in and out of gRPC, NATS headers and the outbox.

pub mod build;
mod config;
mod init;
pub mod metrics;
pub mod propagation;

pub use config::{LogFormat, TelemetryConfig};
pub use init::{TelemetryError, TelemetryGuard, init, init_with_writer};
