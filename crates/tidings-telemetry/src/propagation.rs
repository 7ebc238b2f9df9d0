//! W3C trace context across process boundaries: gRPC metadata in, `traceparent` into
//! NATS headers and the outbox, and back out of them on the edge and in the relay.

use std::collections::HashMap;

use opentelemetry::global;
use opentelemetry::propagation::{Extractor, Injector};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The current span's context as a `traceparent` value, when it has a valid one.
pub fn current_traceparent() -> Option<String> {
    let context = tracing::Span::current().context();
    let mut carrier = HashMap::new();
    global::get_text_map_propagator(|p| p.inject_context(&context, &mut MapCarrier(&mut carrier)));
    carrier.remove("traceparent")
}

/// A caller's `traceparent` in the W3C form, or `None` when it is not a valid one: what
/// is stored with each outbox row and travels in each NATS message is never the
/// caller's raw bytes (any length, any content), only a canonical 55-byte value.
pub fn canonical_traceparent(raw: &str) -> Option<String> {
    use opentelemetry::propagation::TextMapPropagator as _;
    use opentelemetry::trace::TraceContextExt as _;
    let propagator = opentelemetry_sdk::propagation::TraceContextPropagator::new();
    let mut carrier = HashMap::from([("traceparent".to_owned(), raw.to_owned())]);
    let context = propagator.extract(&MapCarrier(&mut carrier));
    if !context.span().span_context().is_valid() {
        return None;
    }
    let mut out = HashMap::new();
    propagator.inject_context(&context, &mut MapCarrier(&mut out));
    out.remove("traceparent")
}

/// Makes `span` a child of the remote context in `traceparent` (a publish, a stored
/// outbox entry). Call before the span is entered; a missing or bad value leaves it a
/// root.
pub fn set_remote_parent(span: &tracing::Span, traceparent: Option<&str>) {
    let Some(traceparent) = traceparent else { return };
    let mut carrier = HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
    let parent = global::get_text_map_propagator(|p| p.extract(&MapCarrier(&mut carrier)));
    let _ = span.set_parent(parent);
}

/// The span of one gRPC call, continuing the caller's `traceparent` (for tonic's
/// `Server::trace_fn`).
pub fn grpc_server_span(request: &http::Request<()>) -> tracing::Span {
    let span = tracing::info_span!(
        "grpc.request",
        otel.kind = "server",
        rpc.system = "grpc",
        rpc.method = %request.uri().path(),
    );
    let traceparent = request.headers().get("traceparent").and_then(|v| v.to_str().ok());
    set_remote_parent(&span, traceparent);
    span
}

struct MapCarrier<'a>(&'a mut HashMap<String, String>);

impl Injector for MapCarrier<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_owned(), value);
    }
}

impl Extractor for MapCarrier<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_valid_traceparents_are_kept_in_canonical_form() {
        let valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(canonical_traceparent(valid).as_deref(), Some(valid));
        let huge = format!("{valid}{}", "x".repeat(10_000));
        for bad in [
            "",
            "garbage",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            huge.as_str(),
        ] {
            assert_eq!(canonical_traceparent(bad), None, "{bad:.60}");
        }
    }
}
