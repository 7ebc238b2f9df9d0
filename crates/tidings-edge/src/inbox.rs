//! The inbox REST API on the edge, served through the api's gRPC (the api alone owns
//! Postgres): list, mark read, unread count — for the member of the caller's token.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use serde::Deserialize;
use serde_json::{Value, json};
use tidings_proto::v1 as pb;

use crate::auth::Subscriber;
use crate::error::EdgeError;
use crate::state::EdgeState;

#[derive(Debug, Deserialize)]
pub(crate) struct ListQuery {
    cursor: Option<String>,
    limit: Option<u32>,
    unread_only: Option<bool>,
}

pub(crate) async fn list(
    State(state): State<Arc<EdgeState>>,
    headers: HeaderMap,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Value>, EdgeError> {
    let Query(query) = query?;
    let subscriber = authenticate(&state, &headers).await?;
    let page = state
        .api
        .list(
            &subscriber.member,
            query.cursor.unwrap_or_default(),
            query.limit.unwrap_or(0),
            query.unread_only.unwrap_or(false),
        )
        .await?;
    let items: Vec<Value> = page.notifications.into_iter().map(item).collect();
    Ok(Json(json!({ "notifications": items, "nextCursor": page.next_cursor })))
}

#[derive(Debug, Deserialize)]
pub(crate) struct MarkReadBody {
    ids: Option<Vec<String>>,
    up_to: Option<String>,
}

pub(crate) async fn mark_read(
    State(state): State<Arc<EdgeState>>,
    headers: HeaderMap,
    body: Result<Json<MarkReadBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Value>, EdgeError> {
    let subscriber = authenticate(&state, &headers).await?;
    let Json(body) = body.map_err(|e| EdgeError::BadRequest(format!("body: {}", e.body_text())))?;
    let unread = state
        .api
        .mark_read(
            &subscriber.member,
            body.ids.unwrap_or_default(),
            body.up_to.unwrap_or_default(),
        )
        .await?;
    Ok(Json(json!({ "unreadCount": unread })))
}

pub(crate) async fn unread_count(
    State(state): State<Arc<EdgeState>>,
    headers: HeaderMap,
) -> Result<Json<Value>, EdgeError> {
    let subscriber = authenticate(&state, &headers).await?;
    let count = state.api.unread_count(&subscriber.member).await?;
    Ok(Json(json!({ "unreadCount": count })))
}

/// The REST shape of an inbox item: the SSE `notification` fields plus read state.
fn item(n: pb::Notification) -> Value {
    let data: Value = if n.data_json.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&n.data_json).unwrap_or(Value::Null)
    };
    let time = |t: Option<prost_types::Timestamp>| t.map(rfc3339);
    json!({
        "id": n.id,
        "type": n.r#type,
        "content": n.content,
        "data": data,
        "groupId": if n.group_id.is_empty() { Value::Null } else { Value::String(n.group_id) },
        "createdAt": time(n.created_at),
        "readAt": time(n.read_at),
        "eventId": if n.event_id.is_empty() { Value::Null } else { Value::String(n.event_id) },
    })
}

fn rfc3339(t: prost_types::Timestamp) -> String {
    let nanos = u32::try_from(t.nanos).unwrap_or(0);
    chrono::DateTime::from_timestamp(t.seconds, nanos)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// The caller of an inbox route, from its header or cookie token (or a ticket).
async fn authenticate(state: &EdgeState, headers: &HeaderMap) -> Result<Subscriber, EdgeError> {
    Ok(crate::auth::authenticate(&state.verifier, &state.tickets, headers, None, None).await?)
}
