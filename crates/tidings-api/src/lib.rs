//! The api role: producers call the gRPC `NotificationService`; the api stores each
//! notification in Postgres with an outbox entry, publishes it to JetStream, and runs the
//! outbox relay that publishes whatever the inline step missed.
//!
//! The role itself is not built yet: this crate holds its typed configuration, so
//! `tidings api --help` documents the operator contract and start-up validates it.
//!
//! Layout:
//! - `config.rs`: [`ApiConfig`].

mod config;

pub use config::ApiConfig;
