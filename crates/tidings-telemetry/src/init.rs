use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry::{KeyValue, global};
use opentelemetry_otlp::{SpanExporter, WithExportConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

use crate::{LogFormat, TelemetryConfig};

/// Noise kept out of the logs unless the filter names it: the exporter's own transport,
/// and the SDK's export errors when a collector is down (the contract is silence).
const QUIET: &[&str] = &[
    "opentelemetry=off",
    "opentelemetry_sdk=off",
    "opentelemetry_otlp=off",
    "h2=warn",
    "tower=warn",
];

/// Why telemetry could not start. Only a bad filter or a second `init` can cause it.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("invalid RUST_LOG filter: {0}")]
    Filter(#[from] tracing_subscriber::filter::ParseError),
    #[error("invalid OTEL_EXPORTER_OTLP_ENDPOINT: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
    #[error("a global tracing subscriber is already installed")]
    AlreadyInstalled,
}

/// Flushes and stops span export when dropped: keep it alive for the life of `main`.
#[must_use = "dropping the guard stops trace export"]
#[derive(Debug)]
pub struct TelemetryGuard {
    provider: SdkTracerProvider,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        // Bounded by the exporter timeout; errors (collector gone) are not worth a log line.
        let _ = self.provider.shutdown_with_timeout(Duration::from_secs(3));
    }
}

/// Installs the global subscriber, logging to stdout. `role` names the service
/// (`tidings-api`, `tidings-edge`, ...).
pub fn init(config: &TelemetryConfig, role: &str) -> Result<TelemetryGuard, TelemetryError> {
    init_with_writer(config, role, std::io::stdout)
}

/// [`init`] with the log lines going to `writer` (tests capture them).
pub fn init_with_writer<W>(config: &TelemetryConfig, role: &str, writer: W) -> Result<TelemetryGuard, TelemetryError>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    global::set_text_map_propagator(TraceContextPropagator::new());
    let service_name = config.service_name.clone().unwrap_or_else(|| format!("tidings-{role}"));
    let resource = Resource::builder()
        .with_service_name(service_name.clone())
        .with_attribute(KeyValue::new("service.version", crate::build::VERSION))
        .with_attribute(KeyValue::new("service.instance.id", instance_id()))
        .build();
    let mut builder = SdkTracerProvider::builder().with_resource(resource);
    if let Some(endpoint) = &config.otlp_endpoint {
        let exporter = SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint.clone())
            .with_timeout(Duration::from_secs(3))
            .build()?;
        builder = builder.with_batch_exporter(exporter);
    }
    let provider = builder.build();
    global::set_tracer_provider(provider.clone());

    let filter = log_filter(&config.log_filter)?;
    let fmt = tracing_subscriber::fmt::layer().with_writer(writer);
    let fmt = match config.log_format {
        LogFormat::Pretty => fmt.boxed(),
        LogFormat::Json => fmt.json().flatten_event(true).with_current_span(false).boxed(),
    };
    let otel = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer(service_name))
        .with_filter(otel_filter());
    tracing_subscriber::registry()
        .with(fmt.with_filter(filter))
        .with(otel)
        .try_init()
        .map_err(|_| TelemetryError::AlreadyInstalled)?;
    if let Some(endpoint) = &config.otlp_endpoint {
        tracing::info!(%endpoint, "exporting traces over OTLP");
    }
    Ok(TelemetryGuard { provider })
}

/// This process among its replicas: the pod (host) name and the process id.
fn instance_id() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into());
    format!("{host}-{}", std::process::id())
}

fn log_filter(spec: &str) -> Result<EnvFilter, TelemetryError> {
    let mut filter = EnvFilter::builder().parse(spec)?;
    for directive in QUIET {
        let target = directive.split('=').next().unwrap_or_default();
        if !spec.contains(target) {
            filter = filter.add_directive(directive.parse()?);
        }
    }
    Ok(filter)
}

/// Spans exported as traces: our own and the libraries' at info, never the exporter's
/// transport (telemetry about telemetry).
fn otel_filter() -> EnvFilter {
    let mut filter = EnvFilter::new("info");
    for directive in [
        "h2=off",
        "hyper=off",
        "tonic=off",
        "tower=off",
        "opentelemetry=off",
        "opentelemetry_sdk=off",
    ] {
        if let Ok(d) = directive.parse() {
            filter = filter.add_directive(d);
        }
    }
    filter
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_filters_are_reported() {
        assert!(log_filter("info,tidings=debug").is_ok());
        assert!(matches!(log_filter("info,[=nope"), Err(TelemetryError::Filter(_))));
    }
}
