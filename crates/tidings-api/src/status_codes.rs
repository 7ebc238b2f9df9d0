//! gRPC's status-code spec answers a request above the server's message size limit
//! with RESOURCE_EXHAUSTED; tonic answers OUT_OF_RANGE. This rewrites that one case on
//! trailers-only responses (every unary call), so clients see the documented code.

use http::HeaderValue;

/// tonic's message for a request over `max_decoding_message_size`.
const TONIC_OVERSIZE: &str = "Error, decoded message length too large";

pub(crate) fn resource_exhausted_for_oversize<B>(mut response: http::Response<B>) -> http::Response<B> {
    let headers = response.headers_mut();
    let out_of_range = headers.get("grpc-status").is_some_and(|v| v == "11");
    let oversize = headers
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|m| m.replace("%20", " ").starts_with(TONIC_OVERSIZE));
    if out_of_range && oversize {
        headers.insert("grpc-status", HeaderValue::from_static("8"));
        headers.insert(
            "grpc-message",
            HeaderValue::from_static("request%20is%20larger%20than%20the%20api%20accepts%20(1%20MiB)"),
        );
    }
    response
}
