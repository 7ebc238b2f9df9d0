//! The api's Prometheus metrics.

use std::time::Instant;

use prometheus::{Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

#[derive(Debug, Clone)]
pub(crate) struct ApiMetrics {
    pub(crate) registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
    pub(crate) stored: IntCounter,
    pub(crate) published_inline: IntCounter,
    pub(crate) published_relay: IntCounter,
    pub(crate) deferred: IntCounter,
    pub(crate) outbox_backlog: IntGauge,
    pub(crate) outbox_oldest_age: prometheus::Gauge,
    pub(crate) nats_reconnects: IntCounter,
    /// Where a Send's time goes before its answer: waiting for a group-commit writer
    /// (per unary Send), storing and publishing (per batch).
    pub(crate) stage_queued: Histogram,
    pub(crate) stage_stored: Histogram,
    pub(crate) stage_published: Histogram,
    /// Retention (`retention.rs`): rows deleted, runs by outcome, and how long runs take.
    pub(crate) retention_deleted: IntCounter,
    pub(crate) retention_done: IntCounter,
    pub(crate) retention_busy: IntCounter,
    pub(crate) retention_failed: IntCounter,
    pub(crate) retention_duration: Histogram,
}

/// Latency buckets (seconds) shared by the api's histograms.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

impl ApiMetrics {
    pub(crate) fn new() -> Self {
        let registry = tidings_telemetry::metrics::registry();
        let register =
            |c: Box<dyn prometheus::core::Collector>| registry.register(c).expect("invariant: registered once");
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("invariant: valid metric");
            register(Box::new(c.clone()));
            c
        };
        let requests = IntCounterVec::new(
            Opts::new(
                "tidings_api_grpc_requests_total",
                "gRPC calls, by method and status code",
            ),
            &["method", "code"],
        )
        .expect("invariant: valid metric");
        register(Box::new(requests.clone()));
        let latency = |name: &str, help: &str, label: &str| {
            let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(BUCKETS.to_vec()), &[label])
                .expect("invariant: valid metric");
            register(Box::new(h.clone()));
            h
        };
        let duration = latency(
            "tidings_api_grpc_request_duration_seconds",
            "gRPC call latency, by method",
            "method",
        );
        let http_requests = IntCounterVec::new(
            Opts::new(
                "tidings_api_http_requests_total",
                "HTTP/JSON API requests, by operation (the gRPC method's name) and HTTP status",
            ),
            &["operation", "status"],
        )
        .expect("invariant: valid metric");
        register(Box::new(http_requests.clone()));
        let http_duration = latency(
            "tidings_api_http_request_duration_seconds",
            "HTTP/JSON API request latency, by operation",
            "operation",
        );
        let stages = latency(
            "tidings_api_send_stage_seconds",
            "Where Sends spend their time: queued (a unary Send waiting for a group-commit writer), stored (a batch's insert and commit), published (a batch's JetStream publish until acknowledged)",
            "stage",
        );
        let published = IntCounterVec::new(
            Opts::new(
                "tidings_api_notifications_published_total",
                "Notifications acknowledged by JetStream, by path (inline, relay)",
            ),
            &["path"],
        )
        .expect("invariant: valid metric");
        register(Box::new(published.clone()));
        let outbox_backlog = IntGauge::new(
            "tidings_api_outbox_backlog",
            "Notifications committed but not yet published",
        )
        .expect("invariant: valid metric");
        register(Box::new(outbox_backlog.clone()));
        let outbox_oldest_age = prometheus::Gauge::new(
            "tidings_api_outbox_oldest_age_seconds",
            "Age of the oldest unpublished notification",
        )
        .expect("invariant: valid metric");
        register(Box::new(outbox_oldest_age.clone()));
        let retention_runs = IntCounterVec::new(
            Opts::new(
                "tidings_api_retention_runs_total",
                "Retention runs of this replica, by outcome: done, busy (another replica held the lock), failed",
            ),
            &["outcome"],
        )
        .expect("invariant: valid metric");
        register(Box::new(retention_runs.clone()));
        let retention_duration = Histogram::with_opts(
            HistogramOpts::new(
                "tidings_api_retention_run_duration_seconds",
                "How long this replica's retention runs took (done or failed), pauses included",
            )
            .buckets(vec![0.01, 0.1, 1.0, 10.0, 60.0, 300.0, 900.0, 3600.0]),
        )
        .expect("invariant: valid metric");
        register(Box::new(retention_duration.clone()));
        Self {
            requests,
            duration,
            http_requests,
            http_duration,
            stored: counter(
                "tidings_api_notifications_stored_total",
                "Notification rows committed to Postgres",
            ),
            published_inline: published.with_label_values(&["inline"]),
            published_relay: published.with_label_values(&["relay"]),
            deferred: counter(
                "tidings_api_publish_deferred_total",
                "Notifications left to the outbox relay at Send time",
            ),
            outbox_backlog,
            outbox_oldest_age,
            nats_reconnects: counter("tidings_api_nats_reconnects_total", "Reconnections to NATS"),
            stage_queued: stages.with_label_values(&["queued"]),
            stage_stored: stages.with_label_values(&["stored"]),
            stage_published: stages.with_label_values(&["published"]),
            retention_deleted: counter(
                "tidings_api_retention_deleted_total",
                "Notifications deleted by retention (older than TIDINGS_RETENTION)",
            ),
            retention_done: retention_runs.with_label_values(&["done"]),
            retention_busy: retention_runs.with_label_values(&["busy"]),
            retention_failed: retention_runs.with_label_values(&["failed"]),
            retention_duration,
            registry,
        }
    }

    /// Records one call's status code and latency.
    pub(crate) fn observe(&self, method: &str, started: Instant, code: tonic::Code) {
        self.requests.with_label_values(&[method, code_name(code)]).inc();
        self.duration
            .with_label_values(&[method])
            .observe(started.elapsed().as_secs_f64());
    }
}

impl ApiMetrics {
    /// Records one HTTP/JSON API request's status and latency.
    pub(crate) fn observe_http(&self, operation: &str, started: Instant, status: u16) {
        self.http_requests
            .with_label_values(&[operation, &status.to_string()])
            .inc();
        self.http_duration
            .with_label_values(&[operation])
            .observe(started.elapsed().as_secs_f64());
    }
}

fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}
