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
//! - `bus.rs`: [`Bus`]: connect, create or update the stream, learn its epoch.
//! - `publish.rs`: [`Bus::publish_all`]: pipelined publishes with Tidings' headers.
//! - `event.rs`: [`BusEvent`]: a live or stored message decoded once; the reserved
//!   SSE event names.
//! - `live.rs`: [`Bus::subscribe_live`] ([`LiveSubscription`]), [`Bus::flush`],
//!   [`Bus::barrier`]: the edge's live subscriptions and their round trips.
//! - `ticket.rs`: [`Tickets`]: single-use stream tickets in a key-value bucket.
//! - `replay.rs`: [`Bus::replay`], [`Bus::latest`], [`Bus::extent`]: reading back by
//!   sequence; the ordered-consumer path.
//! - `direct.rs`: the batch Direct Get path of [`Bus::replay`] (nats-server >= 2.11).
//! - `scan.rs`: [`Bus::read_range`]: a range of the stream in one pass, for the many
//!   resumes of a reconnect storm.
//! - `stored.rs`: [`Bus::find_stored`]: messages the stream holds by `Nats-Msg-Id`, for
//!   a re-publish past the duplicate window.
//! - `error.rs`: [`BusError`].

mod bus;
mod config;
mod direct;
mod error;
mod event;
mod live;
mod publish;
mod replay;
mod scan;
mod stored;
mod subject;
mod ticket;

pub use bus::{BATCH_DIRECT_GET_VERSION, Bus, MIN_SERVER_VERSION, Traffic};
pub use config::{NatsConfig, StreamSettings};
pub use error::BusError;
pub use event::{BusEvent, EventKind, RESERVED_EVENT_NAMES, UNREAD_EVENT};
pub use live::{INTEREST_PROPAGATION, LiveSubscription, LiveTarget};
pub use publish::{EVENT, Outgoing, PUBLISHED_AT, Stored, TRACEPARENT, UNREAD};
pub use replay::{Replay, ReplayCounts, ReplayError, ReplayRange, StreamExtent};
pub use subject::{SubjectTarget, Subjects};
pub use ticket::{TICKET_TTL, TicketError, Tickets};
