//! NATS JetStream for Tidings: the only crate that knows subject names and stream config.
//!
//! Every notification and topic message is stored in one stream (default `TIDINGS`)
//! under `<prefix>.member.<member-token>` or `<prefix>.topic.<topic>`. The stream
//! re-publishes each stored message, with its stream sequence, to
//! `<prefix>.live.<same tail>` for edges to receive live; replay reads the stream itself.
//!
//! Layout:
//! - `config.rs`: [`NatsConfig`] (`NATS_URL`) and [`StreamSettings`] (name, prefix,
//!   retention).
//! - `subject.rs`: [`Subjects`], the subject grammar, built from one prefix.
//! - `stream.rs`: [`Bus`]: connect, create or update the stream, learn its epoch.
//! - `publish.rs`: [`Bus::publish_all`]: pipelined publishes with Tidings' headers.
//! - `error.rs`: [`BusError`].

mod config;
mod error;
mod publish;
mod stream;
mod subject;

pub use config::{NatsConfig, StreamSettings};
pub use error::BusError;
pub use publish::{EVENT, Outgoing, PUBLISHED_AT, Stored, TRACEPARENT};
pub use stream::{Bus, MIN_SERVER_VERSION};
pub use subject::{SubjectTarget, Subjects};
