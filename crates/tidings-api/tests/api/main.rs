//! The api role against real Postgres and NATS JetStream, over real gRPC.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod codes;
mod faults;
mod inbox;
mod lifecycle;
mod rest;
mod send;
mod send_stream;
mod support;
