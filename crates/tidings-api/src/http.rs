//! `/healthz` (the process is alive) and `/readyz` (it can do its job: Postgres answers
//! and NATS is connected) for load balancers and Kubernetes probes.

use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::state::ApiState;

/// How long readiness waits for Postgres before calling it down.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Serves until `shutdown`. A client that has not sent its whole request head within
/// `header_read_timeout` is dropped (slowloris), as on the edge and the gRPC port.
pub(crate) async fn serve(
    listener: TcpListener,
    state: ApiState,
    header_read_timeout: Duration,
    shutdown: CancellationToken,
) {
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state);
    // hyper's HTTP/1.1 builder directly: `axum::serve` has no header-read timeout.
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let tcp = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!(error = %e, "health endpoint: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(header_read_timeout);
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let connection = builder.serve_connection(hyper_util::rt::TokioIo::new(tcp), service);
        tokio::spawn(graceful.watch(connection));
    }
    // Scrapes and probes in flight finish; nothing here runs long.
    let _ = tokio::time::timeout(Duration::from_secs(5), graceful.shutdown()).await;
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(state): State<ApiState>) -> (StatusCode, Json<Value>) {
    let postgres = matches!(
        tokio::time::timeout(PROBE_TIMEOUT, state.store.ping()).await,
        Ok(Ok(()))
    );
    let nats = state.bus.is_connected();
    let status = if postgres && nats {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(json!({ "postgres": postgres, "nats": nats })))
}

/// Prometheus metrics; the outbox gauges are read from Postgres at scrape time, so they
/// are exact whichever replica's relay did the work.
async fn metrics(State(state): State<ApiState>) -> impl axum::response::IntoResponse {
    let m = &state.metrics;
    if let Ok(Ok(backlog)) = tokio::time::timeout(PROBE_TIMEOUT, state.store.outbox_backlog()).await {
        m.outbox_backlog.set(i64::try_from(backlog.entries).unwrap_or(i64::MAX));
        let age = backlog
            .oldest
            .map_or(0.0, |t| (chrono::Utc::now() - t).as_seconds_f64().max(0.0));
        m.outbox_oldest_age.set(age);
    }
    m.nats_reconnects
        .inc_by(state.bus.reconnects().saturating_sub(m.nats_reconnects.get()));
    let (content_type, body) = tidings_telemetry::metrics::render(&m.registry);
    ([(axum::http::header::CONTENT_TYPE, content_type)], body)
}
