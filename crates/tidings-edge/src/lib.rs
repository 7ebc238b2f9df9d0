//! The edge role: holds browsers' Server-Sent-Events connections, receives live messages
//! only for the members and topics connected to it, replays what a reconnecting browser
//! missed from JetStream by stream sequence, and serves the inbox REST API through the
//! api's gRPC.
//!
//! The role itself is not built yet: this crate holds its typed configuration, so
//! `tidings edge --help` documents the operator contract and start-up validates it.
//!
//! Layout:
//! - `config.rs`: [`EdgeConfig`].

mod config;

pub use config::EdgeConfig;
