//! Postgres for Tidings: the only crate that holds SQL and migrations.
//!
//! The api role owns Postgres (edges reach it only through the api's gRPC). This crate
//! gives it a connection pool built from [`DbConfig`], the embedded [`MIGRATOR`] run by
//! `tidings migrate` and at api start-up, and the queries of the notification, outbox
//! and idempotency tables. Queries are checked at run time against a real database by
//! this crate's tests, each of which gets a fresh database.
//!
//! Layout:
//! - `config.rs`: [`DbConfig`] (`DATABASE_URL` and pool limits).
//! - `pool.rs`: [`Store`]: connect (creating the database if missing) and migrate.
//! - `held.rs`: [`Held`]: a connection one busy worker keeps between statements.
//! - `send.rs`: the write path: rows, outbox entries and idempotency in one transaction.
//! - `inbox.rs`: paging (with the archive filter), unread count (`member_unread`, the
//!   counters triggers keep), mark read; `Selection`
//!   (ids or up to an id), shared by mark read, archive and delete.
//! - `lifecycle.rs`: archive and delete, each with the new unread count.
//! - `retention.rs`: the retention lock and the batch that deletes expired notifications.
//! - `outbox.rs`: the relay's lease / published / retry queries.
//! - `error.rs`: [`StoreError`].

mod config;
mod error;
mod held;
mod inbox;
mod lifecycle;
mod outbox;
mod pool;
mod retention;
mod send;

pub use config::{DEFAULT_DATABASE_URL, DbConfig};
pub use error::StoreError;
pub use held::{Held, IDLE as HELD_IDLE};
pub use inbox::{Archived, InboxItem, Selection};
pub use lifecycle::{Archive, Changed};
pub use outbox::{NotificationKey, OutboxBacklog, PendingPublish};
pub use pool::{MIGRATOR, Store};
pub use retention::{Expired, RETENTION_LOCK, RetentionRun};
pub use send::{NewSend, RowState, SendOutcome, StoredRow};
