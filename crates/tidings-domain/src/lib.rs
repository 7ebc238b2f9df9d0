//! The pure core of Tidings: the validated names every other crate passes around.
//!
//! Nothing here does IO, spawns tasks or knows about gRPC, SQL, NATS or HTTP. Each type
//! is a newtype with a `parse` constructor, so a value that exists is a valid value:
//! a [`MemberId`] is 1..=256 bytes of UTF-8 without control characters, a [`Topic`]
//! matches `[A-Za-z0-9_-]{1,64}`, a [`SubjectToken`] is safe inside a NATS subject and
//! decodes back to exactly one member id, and an [`EventId`] names a position in one
//! incarnation of the JetStream stream.
//!
//! Layout:
//! - `member.rs`: [`MemberId`] and its injective NATS subject token.
//! - `topic.rs`: [`Topic`], a broadcast topic name.
//! - `kind.rs`: [`NotificationType`], e.g. `comment.created`.
//! - `event_id.rs`: [`EventId`], the SSE `id:` carrying stream sequence and incarnation.
//! - `last_event_id.rs`: [`LastEventId`], a connecting client's position (header or query).
//! - `data.rs`: [`compact_json`], a producer's `data_json` checked and kept exactly.
//! - `unread.rs`: [`UnreadCount`], a member's unread count with its counter's version.
//! - `secret.rs`: [`Secret`], a value whose `Debug` never shows it.
//! - `config_error.rs`: [`ConfigError`], a start-up error naming the bad variable.

mod config_error;
mod data;
mod event_id;
mod kind;
mod last_event_id;
mod member;
mod secret;
mod topic;
mod unread;

pub use config_error::ConfigError;
pub use data::{DataError, compact_json, json_holds_nul};
pub use event_id::{EventId, EventIdError, StreamEpoch};
pub use kind::{NotificationType, NotificationTypeError};
pub use last_event_id::LastEventId;
pub use member::{MemberId, MemberIdError, SubjectToken, SubjectTokenError};
pub use secret::Secret;
pub use topic::{Topic, TopicError};
pub use unread::UnreadCount;
