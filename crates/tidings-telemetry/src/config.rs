/// How a process logs and exports traces.
#[derive(Debug, Clone, clap::Args)]
pub struct TelemetryConfig {
    /// Log line format: `pretty` for people, `json` for log collectors.
    #[arg(
        long = "log-format",
        env = "TIDINGS_LOG_FORMAT",
        default_value = "pretty",
        global = true
    )]
    pub log_format: LogFormat,

    /// Which logs to keep, in `tracing` env-filter syntax (e.g. `info,tidings_edge=debug`).
    #[arg(long = "log", env = "RUST_LOG", default_value = "info", global = true)]
    pub log_filter: String,

    /// OTLP/gRPC collector for traces (e.g. `http://otel-collector:4317`). Unset: no
    /// export. The other standard `OTEL_EXPORTER_OTLP_*` variables are honoured too.
    #[arg(long = "otlp-endpoint", env = "OTEL_EXPORTER_OTLP_ENDPOINT", global = true)]
    pub otlp_endpoint: Option<String>,

    /// Overrides the service name reported with traces (default: `tidings-<role>`).
    #[arg(long = "otel-service-name", env = "OTEL_SERVICE_NAME", global = true)]
    pub service_name: Option<String>,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            log_format: LogFormat::Pretty,
            log_filter: "info".into(),
            otlp_endpoint: None,
            service_name: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Pretty,
    Json,
}
