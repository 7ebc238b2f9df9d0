//! The demo page `tidings dev` serves at `/demo/`: a notification bell, a live inbox and
//! a ranking board, built on the browser client library (`clients/js`), and the
//! development endpoints it needs — a token for any member, a Send, a Publish. Those
//! endpoints hand out tokens to anyone, so only dev mode mounts them (`EdgeOptions::demo`
//! is not a flag of `tidings edge`).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use tidings_domain::MemberId;
use tidings_proto::v1 as pb;

use crate::auth::{Claims, expiry_in};
use crate::error::EdgeError;
use crate::state::EdgeState;

/// How long a demo token lives: long enough for a session, short enough to show
/// `reauth` when shortened by the page (`ttlSeconds`).
const TOKEN_TTL: Duration = Duration::from_secs(3600);

/// The ranking board's topic, public in dev mode so anonymous visitors see it.
pub const RANKING_TOPIC: &str = "ranking";

const INDEX: &str = include_str!("../demo/index.html");
const SCRIPT: &str = include_str!("../demo/demo.js");
const STYLE: &str = include_str!("../demo/demo.css");
const CLIENT: &str = include_str!("../../../clients/js/tidings.js");

pub(crate) fn router(state: Arc<EdgeState>) -> Router {
    Router::new()
        .route("/demo", get(|| async { Redirect::permanent("/demo/") }))
        .route("/demo/", get(|| async { asset("text/html; charset=utf-8", INDEX) }))
        .route("/demo/demo.js", get(|| async { asset("text/javascript", SCRIPT) }))
        .route("/demo/demo.css", get(|| async { asset("text/css", STYLE) }))
        .route("/demo/tidings.js", get(|| async { asset("text/javascript", CLIENT) }))
        .route("/demo/token", post(token))
        .route("/demo/send", post(send))
        .route("/demo/publish", post(publish))
        .with_state(state)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

fn body<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, EdgeError> {
    body.map(|Json(b)| b)
        .map_err(|e| EdgeError::BadRequest(format!("body: {}", e.body_text())))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TokenBody {
    member: String,
    /// A shorter life than [`TOKEN_TTL`], to watch `reauth` happen.
    ttl_seconds: Option<u64>,
}

/// A subscriber token for any member, signed with the dev secret.
async fn token(
    State(state): State<Arc<EdgeState>>,
    request: Result<Json<TokenBody>, JsonRejection>,
) -> Result<Response, EdgeError> {
    let request = body(request)?;
    let member = MemberId::parse(&request.member).map_err(|e| EdgeError::BadRequest(format!("member: {e}")))?;
    let ttl = request
        .ttl_seconds
        .map_or(TOKEN_TTL, Duration::from_secs)
        .clamp(Duration::from_secs(5), TOKEN_TTL);
    let claims = Claims {
        sub: member.to_string(),
        exp: expiry_in(ttl),
        topics: None,
    };
    let token = state
        .verifier
        .sign(&claims)
        .ok_or_else(|| EdgeError::Unavailable("tokens are verified with a public key here; cannot mint one".into()))?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "token": token, "member": member.as_str(), "expiresIn": ttl.as_secs() })),
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
struct SendBody {
    member: String,
    #[serde(rename = "type")]
    kind: Option<String>,
    content: String,
    data: Option<Value>,
}

/// Sends a notification through the api, as a producer would.
async fn send(
    State(state): State<Arc<EdgeState>>,
    request: Result<Json<SendBody>, JsonRejection>,
) -> Result<Json<Value>, EdgeError> {
    let request = body(request)?;
    let response = state
        .api
        .send(pb::SendRequest {
            member_ids: vec![request.member],
            r#type: request.kind.unwrap_or_else(|| "demo.message".into()),
            content: request.content,
            data_json: request.data.map(|d| d.to_string()).unwrap_or_default(),
            ..Default::default()
        })
        .await?;
    let deliveries: Vec<Value> = response
        .deliveries
        .into_iter()
        .map(|d| json!({ "memberId": d.member_id, "notificationId": d.notification_id, "eventId": d.event_id }))
        .collect();
    Ok(Json(json!({ "deliveries": deliveries })))
}

#[derive(Debug, Deserialize)]
struct PublishBody {
    topic: Option<String>,
    data: Value,
}

/// Publishes to a topic (the ranking board by default) through the api.
async fn publish(
    State(state): State<Arc<EdgeState>>,
    request: Result<Json<PublishBody>, JsonRejection>,
) -> Result<Json<Value>, EdgeError> {
    let request = body(request)?;
    let event_id = state
        .api
        .publish(pb::PublishRequest {
            topic: request.topic.unwrap_or_else(|| RANKING_TOPIC.into()),
            data_json: request.data.to_string(),
            ..Default::default()
        })
        .await?;
    Ok(Json(json!({ "eventId": event_id })))
}
