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

pub(crate) async fn serve(listener: TcpListener, state: ApiState, shutdown: CancellationToken) {
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state);
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
    {
        tracing::error!(error = %e, "health endpoint failed");
    }
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
