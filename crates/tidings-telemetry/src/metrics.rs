//! Prometheus plumbing shared by the roles: a registry per process (tests run several
//! roles in one process, each with its own) and the text exposition of `/metrics`.

use prometheus::{Encoder as _, IntGauge, Opts, Registry, TextEncoder};

/// A registry with the process collector (CPU seconds, resident memory, open file
/// descriptors) and `tidings_build_info` already in it.
pub fn registry() -> Registry {
    let registry = Registry::new();
    // Fails only on a platform without /proc; the role's own metrics still work.
    let _ = registry.register(Box::new(prometheus::process_collector::ProcessCollector::for_self()));
    let _ = registry.register(Box::new(build_info()));
    registry
}

/// Always 1; the labels say which build runs (`version`, `commit`), so dashboards can
/// tell the replicas of a rolling upgrade apart.
fn build_info() -> IntGauge {
    let opts = Opts::new(
        "tidings_build_info",
        "The running build: always 1, labelled with version and commit",
    )
    .const_label("version", crate::build::VERSION)
    .const_label("commit", crate::build::COMMIT);
    // The name and labels are literals that Prometheus accepts.
    let gauge = IntGauge::with_opts(opts).expect("a valid metric");
    gauge.set(1);
    gauge
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_registry_names_the_build() {
        let (_, text) = render(&registry());
        let line = format!(
            "tidings_build_info{{commit=\"{}\",version=\"{}\"}} 1",
            crate::build::COMMIT,
            crate::build::VERSION
        );
        assert!(text.lines().any(|l| l == line), "no `{line}` in\n{text}");
    }
}
