//! The chaos suite (issue 15, part B): the production topology as real processes — a
//! 3-node nats-server cluster with an R3 stream, the local Postgres, 2 `tidings api`
//! and 3 `tidings edge` — under steady Sends and SSE clients, with one fault per
//! scenario. Everything producers had acknowledged and every event each client received
//! is recorded; afterwards a checker judges the record against DESIGN §7 and prints its
//! counts (acked, delivered, duplicates, misordered, lost, cross-member, resets, max
//! recovery time).
//!
//! Every scenario runs with the workspace's tests (about 5 minutes; each takes the
//! machine to itself, `.config/nextest.toml`); alone:
//! `cargo nextest run -p tidings --test chaos` (`TIDINGS_CHAOS_SOAK_SECS` lengthens the
//! soak). Needs `DATABASE_URL` (Postgres on 127.0.0.1:5432) and `TIDINGS_NATS_SERVER`
//! (or nats-server ≥ 2.10 on PATH), as `scripts/test` sets them.
//!
//! Layout: `process.rs` (a role as a guarded child process), `cluster.rs` (the
//! topology, its proxies and faults), `record.rs`, `producer.rs`, `client.rs` (WHATWG
//! reconnecting SSE clients), `checker.rs`, `run.rs` (one scenario's life), and
//! `scenarios/` (`roles.rs`, `nats.rs`, `soak.rs`).

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

// A test binary's root resolves `mod x;` beside itself; its modules live in `chaos/`.

#[path = "chaos/checker.rs"]
mod checker;
#[path = "chaos/client.rs"]
mod client;
#[path = "chaos/cluster.rs"]
mod cluster;
#[path = "chaos/process.rs"]
mod process;
#[path = "chaos/producer.rs"]
mod producer;
#[path = "chaos/record.rs"]
mod record;
#[path = "chaos/run.rs"]
mod run;
#[path = "chaos/scenarios.rs"]
mod scenarios;
