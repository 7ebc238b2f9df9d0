//! The generated Rust side of `proto/tidings/v1`, the public gRPC contract.
//!
//! This is the only crate with generated code. Other crates convert between these
//! messages and the domain types at their boundary (the api crate for requests and
//! responses); nothing deeper in the system sees a protobuf type.

#![allow(missing_debug_implementations, unreachable_pub, clippy::all)]

/// `tidings.v1`: the NotificationService, its messages, client and server.
pub mod v1 {
    tonic::include_proto!("tidings.v1");
}

/// The encoded file descriptor set of every message and service above, for gRPC
/// server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("tidings_descriptor");
