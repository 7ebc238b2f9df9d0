//! Prometheus plumbing shared by the roles: a registry per process (tests run several
//! roles in one process, each with its own) and the text exposition of `/metrics`.

use prometheus::{Encoder as _, Registry, TextEncoder};

/// A registry with the process collector (CPU seconds, resident memory, open file
/// descriptors) already in it.
pub fn registry() -> Registry {
    let registry = Registry::new();
    // Fails only on a platform without /proc; the role's own metrics still work.
    let _ = registry.register(Box::new(prometheus::process_collector::ProcessCollector::for_self()));
    registry
}

/// The registry in the Prometheus text format, with its content type.
pub fn render(registry: &Registry) -> (&'static str, String) {
    let mut buffer = Vec::new();
    let encoder = TextEncoder::new();
    if let Err(e) = encoder.encode(&registry.gather(), &mut buffer) {
        tracing::warn!(error = %e, "encoding metrics failed");
    }
    (
        "text/plain; version=0.0.4; charset=utf-8",
        String::from_utf8(buffer).unwrap_or_default(),
    )
}
