//! The inbox REST API on the edge, served through the api's gRPC (the api alone owns
//! Postgres): list, mark read, archive, delete, unread count — for the member of the
//! caller's token, never another.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tidings_proto::v1 as pb;
use utoipa::{IntoParams, ToSchema};

use crate::auth::Subscriber;
use crate::error::{EdgeError, ErrorBody};
use crate::state::EdgeState;

/// `GET /v1/notifications?cursor=&limit=&unread_only=&archived=`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// The previous page's `nextCursor`; absent for the first page.
    cursor: Option<String>,
    /// Items per page (default and maximum as the api's ListNotifications).
    limit: Option<u32>,
    /// Only unread items (never archived ones: those the unread count counts).
    unread_only: Option<bool>,
    /// Archived items: `exclude` (the default), `include`, or `only`.
    archived: Option<ArchivedFilter>,
}

/// Which items a list shows by archive state.
#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ArchivedFilter {
    /// Only items not archived: the inbox proper.
    #[default]
    Exclude,
    /// Archived or not.
    Include,
    /// Only archived items.
    Only,
}

impl From<ArchivedFilter> for pb::ArchivedFilter {
    fn from(filter: ArchivedFilter) -> Self {
        match filter {
            ArchivedFilter::Exclude => Self::Exclude,
            ArchivedFilter::Include => Self::Include,
            ArchivedFilter::Only => Self::Only,
        }
    }
}

/// A page of the caller's inbox, newest first.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct InboxPage {
    notifications: Vec<InboxItem>,
    /// The next page's cursor; empty on the last page.
    next_cursor: String,
}

/// An inbox item: the SSE `notification` fields plus read state and event id.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct InboxItem {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    content: String,
    /// The producer's JSON as stored; `null` when none.
    #[schema(value_type = Option<serde_json::Value>)]
    data: Value,
    group_id: Option<String>,
    /// RFC 3339, milliseconds, UTC.
    created_at: Option<String>,
    /// When it was read; `null` while unread.
    read_at: Option<String>,
    /// The SSE id it carried; `null` while the api's relay still has to publish it.
    event_id: Option<String>,
    /// When it was archived; `null` while not archived.
    archived_at: Option<String>,
}

/// The caller's unread count (after the change, for mark read).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct UnreadCount {
    unread_count: u64,
}

/// List the caller's inbox, newest first.
#[utoipa::path(
    get,
    path = "/v1/notifications",
    tag = "inbox",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of the inbox", body = InboxPage),
        (status = 400, description = "A parameter or field breaks a rule; the message names it", body = ErrorBody),
        (status = 401, description = "No credential, or an invalid or expired one", body = ErrorBody),
        (status = 503, description = "The inbox (the api) or the ticket store is unavailable; retry after `Retry-After`", body = ErrorBody),
    ),
    security(("bearer" = []), ("cookie" = [])),
)]
pub(crate) async fn list(
    State(state): State<Arc<EdgeState>>,
    headers: HeaderMap,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<InboxPage>, EdgeError> {
    let Query(query) = query?;
    let subscriber = authenticate(&state, &headers).await?;
    let page = state
        .api
        .list(
            &subscriber.member,
            query.cursor.unwrap_or_default(),
            query.limit.unwrap_or(0),
            query.unread_only.unwrap_or(false),
            query.archived.unwrap_or_default().into(),
        )
        .await?;
    Ok(Json(InboxPage {
        notifications: page.notifications.into_iter().map(item).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// `POST /v1/notifications/read`: `ids`, or everything up to and including `up_to`.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct MarkReadBody {
    /// Notification ids to mark read.
    ids: Option<Vec<String>>,
    /// Marks read this notification and every older one.
    up_to: Option<String>,
}

/// Mark the caller's notifications read.
///
/// Answers the new unread count, which every stream of the member also receives as
/// an `unread` event.
#[utoipa::path(
    post,
    path = "/v1/notifications/read",
    tag = "inbox",
    request_body = MarkReadBody,
    responses(
        (status = 200, description = "Marked; the new unread count", body = UnreadCount),
        (status = 400, description = "A parameter or field breaks a rule; the message names it", body = ErrorBody),
        (status = 401, description = "No credential, or an invalid or expired one", body = ErrorBody),
        (status = 404, description = "`up_to` names no notification of the caller", body = ErrorBody),
        (status = 503, description = "The inbox (the api) or the ticket store is unavailable; retry after `Retry-After`", body = ErrorBody),
    ),
    security(("bearer" = []), ("cookie" = [])),
)]
pub(crate) async fn mark_read(
    State(state): State<Arc<EdgeState>>,
    headers: HeaderMap,
    body: Result<Json<MarkReadBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<UnreadCount>, EdgeError> {
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
    Ok(Json(UnreadCount { unread_count: unread }))
}

/// `POST /v1/notifications/archive` and `/delete`: `ids`, or everything up to and
/// including `up_to`.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct SelectionBody {
    /// Notification ids (at most 1000).
    ids: Option<Vec<String>>,
    /// This notification and every older one.
    up_to: Option<String>,
}

/// What an archive did.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Archived {
    /// The caller's unread count after the change.
    unread_count: u64,
    /// How many this call archived (not counting those archived before).
    archived: u64,
}

/// What a delete did.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Deleted {
    /// The caller's unread count after the change.
    unread_count: u64,
    /// How many this call deleted (ids the caller does not have are skipped).
    deleted: u64,
}

/// Archive the caller's notifications.
///
/// Archived notifications leave the default list and the unread count; list them with
/// `archived=only` or `archived=include`. All or nothing: an id that is not the
/// caller's archives nothing (404). A retry changes nothing. Every stream of the member
/// receives the new unread count as an `unread` event.
#[utoipa::path(
    post,
    path = "/v1/notifications/archive",
    tag = "inbox",
    request_body = SelectionBody,
    responses(
        (status = 200, description = "Archived; the new unread count", body = Archived),
        (status = 400, description = "A parameter or field breaks a rule; the message names it", body = ErrorBody),
        (status = 401, description = "No credential, or an invalid or expired one", body = ErrorBody),
        (status = 404, description = "An id, or `up_to`, names no notification of the caller; nothing was archived", body = ErrorBody),
        (status = 503, description = "The inbox (the api) or the ticket store is unavailable; retry after `Retry-After`", body = ErrorBody),
    ),
    security(("bearer" = []), ("cookie" = [])),
)]
pub(crate) async fn archive(
    State(state): State<Arc<EdgeState>>,
    headers: HeaderMap,
    body: Result<Json<SelectionBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Archived>, EdgeError> {
    let subscriber = authenticate(&state, &headers).await?;
    let Json(body) = body.map_err(|e| EdgeError::BadRequest(format!("body: {}", e.body_text())))?;
    let done = state
        .api
        .archive(
            &subscriber.member,
            body.ids.unwrap_or_default(),
            body.up_to.unwrap_or_default(),
        )
        .await?;
    Ok(Json(Archived {
        unread_count: done.unread_count,
        archived: done.archived,
    }))
}

/// Delete the caller's notifications.
///
/// They are gone from the inbox for good. Ids the caller does not have are skipped and
/// `up_to` needs no notification at that id, so a retry succeeds (`deleted` says how
/// many went). Every stream of the member receives the new unread count as an
/// `unread` event.
#[utoipa::path(
    post,
    path = "/v1/notifications/delete",
    tag = "inbox",
    request_body = SelectionBody,
    responses(
        (status = 200, description = "Deleted; the new unread count", body = Deleted),
        (status = 400, description = "A parameter or field breaks a rule; the message names it", body = ErrorBody),
        (status = 401, description = "No credential, or an invalid or expired one", body = ErrorBody),
        (status = 503, description = "The inbox (the api) or the ticket store is unavailable; retry after `Retry-After`", body = ErrorBody),
    ),
    security(("bearer" = []), ("cookie" = [])),
)]
pub(crate) async fn delete(
    State(state): State<Arc<EdgeState>>,
    headers: HeaderMap,
    body: Result<Json<SelectionBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Deleted>, EdgeError> {
    let subscriber = authenticate(&state, &headers).await?;
    let Json(body) = body.map_err(|e| EdgeError::BadRequest(format!("body: {}", e.body_text())))?;
    let done = state
        .api
        .delete(
            &subscriber.member,
            body.ids.unwrap_or_default(),
            body.up_to.unwrap_or_default(),
        )
        .await?;
    Ok(Json(Deleted {
        unread_count: done.unread_count,
        deleted: done.deleted,
    }))
}

/// The caller's unread count.
#[utoipa::path(
    get,
    path = "/v1/notifications/unread-count",
    tag = "inbox",
    responses(
        (status = 200, description = "The unread count", body = UnreadCount),
        (status = 401, description = "No credential, or an invalid or expired one", body = ErrorBody),
        (status = 503, description = "The inbox (the api) or the ticket store is unavailable; retry after `Retry-After`", body = ErrorBody),
    ),
    security(("bearer" = []), ("cookie" = [])),
)]
pub(crate) async fn unread_count(
    State(state): State<Arc<EdgeState>>,
    headers: HeaderMap,
) -> Result<Json<UnreadCount>, EdgeError> {
    let subscriber = authenticate(&state, &headers).await?;
    let count = state.api.unread_count(&subscriber.member).await?;
    Ok(Json(UnreadCount { unread_count: count }))
}

/// The REST shape of an inbox item.
fn item(n: pb::Notification) -> InboxItem {
    let data: Value = if n.data_json.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&n.data_json).unwrap_or(Value::Null)
    };
    let non_empty = |text: String| (!text.is_empty()).then_some(text);
    InboxItem {
        id: n.id,
        kind: n.r#type,
        content: n.content,
        data,
        group_id: non_empty(n.group_id),
        created_at: n.created_at.map(rfc3339),
        read_at: n.read_at.map(rfc3339),
        event_id: non_empty(n.event_id),
        archived_at: n.archived_at.map(rfc3339),
    }
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
