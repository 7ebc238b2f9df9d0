//! Postgres for Tidings: the only crate that holds SQL and migrations.
//!
//! The api role owns Postgres (edges reach it only through the api's gRPC). This crate
//! gives it a connection pool built from [`DbConfig`], the embedded [`MIGRATOR`] run by
//! `tidings migrate` and at api start-up, and the queries of the notification, outbox
//! and idempotency tables.
//!
//! Layout:
//! - `config.rs`: [`DbConfig`] (`DATABASE_URL` and pool limits).
//! - `pool.rs`: [`Store`]: connect (creating the database if missing) and migrate.
//! - `error.rs`: [`StoreError`].

mod config;
mod error;
mod pool;

pub use config::{DEFAULT_DATABASE_URL, DbConfig};
pub use error::StoreError;
pub use pool::{MIGRATOR, Store};
