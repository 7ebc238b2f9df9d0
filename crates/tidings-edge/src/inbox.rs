//! The inbox REST API on the edge, served through the api's gRPC (the api alone owns
//! Postgres): list, mark read, unread count — for the member of the caller's token.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use serde::Deserialize;
use serde_json::{Value, json};
use tidings_domain::{MemberId, Secret};
use tidings_proto::v1 as pb;
use tidings_proto::v1::notification_service_client::NotificationServiceClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use crate::error::EdgeError;
use crate::routes::authenticate;
use crate::state::EdgeState;

/// A lazily connected gRPC client of the api, presenting the edge's API key.
#[derive(Debug, Clone)]
pub(crate) struct ApiClient {
    inner: NotificationServiceClient<InterceptedService<Channel, Bearer>>,
}

#[derive(Debug, Clone)]
pub(crate) struct Bearer(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request.metadata_mut().insert("authorization", value.clone());
        }
        Ok(request)
    }
}

impl ApiClient {
    /// Never fails for an unreachable api: calls fail (UNAVAILABLE) until it is back.
    pub(crate) fn new(url: &str, key: Option<&Secret<String>>) -> anyhow::Result<Self> {
        let channel = Endpoint::from_shared(url.to_owned())?
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(10))
            .connect_lazy();
        let bearer = key.map(|k| format!("Bearer {}", k.expose()).parse()).transpose()?;
        Ok(Self {
            inner: NotificationServiceClient::with_interceptor(channel, Bearer(bearer)),
        })
    }

    /// The unread counts of `members`, in their order (at most 500: the api's bound).
    pub(crate) async fn unread_counts(&self, members: &[MemberId]) -> Result<Vec<u64>, tonic::Status> {
        let request = pb::GetUnreadCountRequest {
            member_ids: members.iter().map(MemberId::to_string).collect(),
            ..Default::default()
        };
        let counts = self
            .inner
            .clone()
            .get_unread_count(request)
            .await?
            .into_inner()
            .unread_counts;
        if counts.len() != members.len() {
            return Err(tonic::Status::internal(format!(
                "{} unread counts for {} members",
                counts.len(),
                members.len()
            )));
        }
        Ok(counts)
    }

    pub(crate) async fn unread_count(&self, member: &MemberId) -> Result<u64, tonic::Status> {
        let request = pb::GetUnreadCountRequest {
            member_id: member.to_string(),
            ..Default::default()
        };
        Ok(self
            .inner
            .clone()
            .get_unread_count(request)
            .await?
            .into_inner()
            .unread_count)
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct ListQuery {
    cursor: Option<String>,
    limit: Option<u32>,
    unread_only: Option<bool>,
}

pub(crate) async fn list(
    State(state): State<Arc<EdgeState>>,
    headers: HeaderMap,
    Query(query): Query<ListQuery>,
) -> Result<Json<Value>, EdgeError> {
    let subscriber = authenticate(&state, &headers, None, None).await?;
    let request = pb::ListNotificationsRequest {
        member_id: subscriber.member.to_string(),
        cursor: query.cursor.unwrap_or_default(),
        limit: query.limit.unwrap_or(0),
        unread_only: query.unread_only.unwrap_or(false),
    };
    let page = state.api.inner.clone().list_notifications(request).await?.into_inner();
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
    let subscriber = authenticate(&state, &headers, None, None).await?;
    let Json(body) = body.map_err(|e| EdgeError::BadRequest(format!("body: {}", e.body_text())))?;
    let request = pb::MarkReadRequest {
        member_id: subscriber.member.to_string(),
        ids: body.ids.unwrap_or_default(),
        up_to: body.up_to.unwrap_or_default(),
    };
    let response = state.api.inner.clone().mark_read(request).await?.into_inner();
    Ok(Json(json!({ "unreadCount": response.unread_count })))
}

pub(crate) async fn unread_count(
    State(state): State<Arc<EdgeState>>,
    headers: HeaderMap,
) -> Result<Json<Value>, EdgeError> {
    let subscriber = authenticate(&state, &headers, None, None).await?;
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
