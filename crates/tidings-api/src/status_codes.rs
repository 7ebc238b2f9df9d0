//! gRPC status codes as clients expect them, where tonic answers otherwise:
//! - a request above the size limit: RESOURCE_EXHAUSTED (gRPC's status-code spec), not
//!   tonic's OUT_OF_RANGE;
//! - a request body that is not valid protobuf: INVALID_ARGUMENT (the caller's fault, so
//!   not worth retrying), not INTERNAL;
//! - a call whose deadline (`grpc-timeout`) passes: DEADLINE_EXCEEDED, which clients
//!   retry, not the CANCELLED "Timeout expired" of tonic's own timeout.
//!
//! Unary calls answer trailers-only, which [`StatusCodesLayer`] rewrites; SendStream's
//! inbound errors go through [`inbound`]. tonic enforces `grpc-timeout` in a layer
//! outside every user layer, so this layer enforces it a moment earlier itself.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::HeaderValue;
use tonic::{Code, Status};

/// tonic's message for a request over `max_decoding_message_size`.
const TONIC_OVERSIZE: &str = "Error, decoded message length too large";
/// prost's message for bytes that are not the expected protobuf message.
const PROST_DECODE: &str = "failed to decode Protobuf message";
/// How much earlier than tonic's own timeout this layer answers a passed deadline.
const DEADLINE_MARGIN: Duration = Duration::from_millis(2);
/// Also the HTTP/JSON API's message for a body over the limit (`rest.rs`).
pub(crate) const OVERSIZE_MESSAGE: &str = "request is larger than the api accepts (1 MiB)";

/// A status from SendStream's inbound stream, with the code a client expects.
pub(crate) fn inbound(status: Status) -> Status {
    match status.code() {
        Code::OutOfRange if status.message().starts_with(TONIC_OVERSIZE) => {
            Status::resource_exhausted(OVERSIZE_MESSAGE)
        }
        Code::Internal if status.message().starts_with(PROST_DECODE) => Status::invalid_argument(status.message()),
        _ => status,
    }
}

/// Rewrites the codes above on every gRPC call, and answers DEADLINE_EXCEEDED when the
/// call's `grpc-timeout` passes.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct StatusCodesLayer;

impl<S> tower::Layer<S> for StatusCodesLayer {
    type Service = StatusCodes<S>;

    fn layer(&self, inner: S) -> Self::Service {
        StatusCodes { inner }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct StatusCodes<S> {
    inner: S,
}

type Answer<E> = Pin<Box<dyn Future<Output = Result<http::Response<tonic::body::Body>, E>> + Send>>;

impl<S, B> tower::Service<http::Request<B>> for StatusCodes<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = Answer<S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let deadline = request
            .headers()
            .get("grpc-timeout")
            .and_then(grpc_timeout)
            .map(|timeout| timeout.saturating_sub(DEADLINE_MARGIN));
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = match deadline {
                None => response.await?,
                Some(deadline) => match tokio::time::timeout(deadline, response).await {
                    Ok(response) => response?,
                    Err(_) => return Ok(Status::deadline_exceeded("the call's deadline passed").into_http()),
                },
            };
            Ok(rewrite(response))
        })
    }
}

/// A trailers-only answer (every unary call's error) with the code a client expects.
fn rewrite<B>(mut response: http::Response<B>) -> http::Response<B> {
    let headers = response.headers_mut();
    let code = headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok());
    let message = headers
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .map(|m| m.replace("%20", " "))
        .unwrap_or_default();
    let oversize = code == Some(Code::OutOfRange as i32) && message.starts_with(TONIC_OVERSIZE);
    let undecodable = code == Some(Code::Internal as i32) && message.starts_with(PROST_DECODE);
    if oversize {
        headers.insert("grpc-status", HeaderValue::from(Code::ResourceExhausted as i32));
        headers.insert(
            "grpc-message",
            HeaderValue::from_static("request%20is%20larger%20than%20the%20api%20accepts%20(1%20MiB)"),
        );
    } else if undecodable {
        headers.insert("grpc-status", HeaderValue::from(Code::InvalidArgument as i32));
    }
    response
}

/// The `grpc-timeout` header: at most 8 digits and a unit (gRPC over HTTP/2).
fn grpc_timeout(value: &HeaderValue) -> Option<Duration> {
    let value = value.to_str().ok()?;
    let (digits, unit) = value.split_at_checked(value.len().checked_sub(1)?)?;
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse_as_the_spec_writes_them() {
        let parse = |s: &str| grpc_timeout(&HeaderValue::from_str(s).unwrap());
        assert_eq!(parse("5S"), Some(Duration::from_secs(5)));
        assert_eq!(parse("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse("99999999H"), Some(Duration::from_secs(99_999_999 * 3600)));
        assert_eq!(parse("7u"), Some(Duration::from_micros(7)));
        for bad in ["", "S", "5", "5s", "123456789S", "-5S", "5 S", "五S"] {
            assert_eq!(
                grpc_timeout(&HeaderValue::from_bytes(bad.as_bytes()).unwrap()),
                None,
                "{bad}"
            );
        }
    }

    #[test]
    fn stream_errors_get_the_codes_of_unary_calls() {
        let oversize = inbound(Status::out_of_range(format!("{TONIC_OVERSIZE}: found 10 bytes")));
        assert_eq!(oversize.code(), Code::ResourceExhausted);
        let garbage = inbound(Status::internal(format!("{PROST_DECODE}: invalid wire type")));
        assert_eq!(garbage.code(), Code::InvalidArgument);
        assert_eq!(inbound(Status::internal("database down")).code(), Code::Internal);
    }
}
