//! The scenarios, one `#[tokio::test]` each, grouped by what they break: the tidings
//! roles and Postgres (`roles.rs`), NATS (`nats.rs`), and time (`soak.rs`). Each is
//! bounded: fixed fault and steady phases, a bounded settle, clients and producers
//! that stop on their own.

#[path = "scenarios/nats.rs"]
mod nats;
#[path = "scenarios/roles.rs"]
mod roles;
#[path = "scenarios/soak.rs"]
mod soak;
