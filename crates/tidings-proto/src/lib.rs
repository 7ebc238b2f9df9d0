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

// SendStream has request and response types of its own (`buf lint`'s STANDARD rules
// want one pair per rpc) with exactly the fields of Send's, so a stream item and a unary
// Send are one message to everything past the transport. The conversions destructure
// every field: one added to a message but not converted is a compile error, and the
// test below fails when the two pairs' fields differ in the .proto.

impl From<v1::SendStreamRequest> for v1::SendRequest {
    fn from(request: v1::SendStreamRequest) -> Self {
        let v1::SendStreamRequest {
            member_ids,
            r#type,
            content,
            data_json,
            group_id,
            idempotency_key,
        } = request;
        Self {
            member_ids,
            r#type,
            content,
            data_json,
            group_id,
            idempotency_key,
        }
    }
}

impl From<v1::SendRequest> for v1::SendStreamRequest {
    fn from(request: v1::SendRequest) -> Self {
        let v1::SendRequest {
            member_ids,
            r#type,
            content,
            data_json,
            group_id,
            idempotency_key,
        } = request;
        Self {
            member_ids,
            r#type,
            content,
            data_json,
            group_id,
            idempotency_key,
        }
    }
}

impl From<v1::SendResponse> for v1::SendStreamResponse {
    fn from(response: v1::SendResponse) -> Self {
        let v1::SendResponse { deliveries } = response;
        Self { deliveries }
    }
}

impl From<v1::SendStreamResponse> for v1::SendResponse {
    fn from(response: v1::SendStreamResponse) -> Self {
        let v1::SendStreamResponse { deliveries } = response;
        Self { deliveries }
    }
}

#[cfg(test)]
mod tests {
    use prost::Message as _;
    use prost_types::{FileDescriptorSet, field_descriptor_proto::Label};

    use super::FILE_DESCRIPTOR_SET;

    /// Each field of `message` as (number, name, label, type, type name).
    fn fields(message: &str) -> Vec<(i32, String, Option<Label>, i32, String)> {
        let set = FileDescriptorSet::decode(FILE_DESCRIPTOR_SET).expect("invariant: the build's descriptor set");
        let descriptor = set
            .file
            .iter()
            .filter(|f| f.package() == "tidings.v1")
            .flat_map(|f| &f.message_type)
            .find(|m| m.name() == message)
            .unwrap_or_else(|| panic!("tidings.v1.{message} is in the descriptor set"));
        descriptor
            .field
            .iter()
            .map(|f| {
                (
                    f.number(),
                    f.name().to_owned(),
                    Label::try_from(f.label.unwrap_or_default()).ok(),
                    f.r#type.unwrap_or_default(),
                    f.type_name().to_owned(),
                )
            })
            .collect()
    }

    #[test]
    fn send_stream_messages_have_exactly_the_fields_of_send() {
        assert_eq!(fields("SendStreamRequest"), fields("SendRequest"));
        assert_eq!(fields("SendStreamResponse"), fields("SendResponse"));
        assert_eq!(fields("SendRequest").len(), 6, "the descriptors are read");
    }

    #[test]
    fn a_send_request_on_the_wire_is_a_send_stream_request() {
        let request = super::v1::SendRequest {
            member_ids: vec!["alice".into(), "bob".into()],
            r#type: "comment.created".into(),
            content: "hi".into(),
            data_json: "{}".into(),
            group_id: "g".into(),
            idempotency_key: "k".into(),
        };
        let bytes = request.encode_to_vec();
        let streamed = super::v1::SendStreamRequest::decode(bytes.as_slice()).unwrap();
        assert_eq!(streamed.encode_to_vec(), bytes);
        assert_eq!(super::v1::SendRequest::from(streamed), request);
    }
}
