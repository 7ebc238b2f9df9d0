//! The HTTP/JSON producer API: the gRPC operations for producers that do not speak gRPC,
//! served on the gRPC port (HTTP/1.1 or h2c; `app.rs` routes by path: gRPC's
//! `/tidings.v1.NotificationService/…` to tonic, `/v1/…` here).
//!
//! Each handler authenticates (the same API keys, `Authorization: Bearer <key>`),
//! turns its JSON into the protobuf request (`rest_body.rs`), calls the same operation
//! as the gRPC handler (`Service::handle_*` in `service.rs`: validation, limits, group
//! commit, outbox, publish), and turns the answer back into JSON. There is no second
//! write path and no second set of rules; failures are [`ApiError`]s mapped by
//! `error.rs` from their gRPC status.
//!
//! - Authentication comes first, before the body is read: an unknown caller cannot
//!   make the api buffer a megabyte.
//! - A body is read up to [`crate::MAX_REQUEST_BYTES`] and no further: a larger
//!   `Content-Length` is refused at once, a chunked body as soon as it passes the limit
//!   (413 either way).
//! - A body that is not JSON, or has an unknown or mistyped field, is a 400 naming it.
//! - A batch is many Sends answered in order, each through group commit as concurrent
//!   unary Sends are (they are submitted together, so they share transactions); an
//!   invalid item fails alone. Only when every item failed for an outage is the whole
//!   request answered with it (503): nothing was stored, so a retry is the answer.
//! - There is no deadline header over HTTP: each call is bounded by the configured
//!   timeouts (`TIDINGS_DB_ACQUIRE_TIMEOUT`, `TIDINGS_PUBLISH_TIMEOUT`).

use std::time::Instant;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use serde::de::DeserializeOwned;
use tidings_proto::v1 as pb;

use crate::ApiError;
use crate::auth::Producer;
use crate::error::{ErrorBody, ErrorDetail, error_response};
use crate::rest_body::{
    ArchiveReply, BatchBody, BatchReply, BatchResult, DeleteReply, ListQuery, ListReply, MarkReadBody, PublishBody,
    PublishReply, SelectionBody, SendBody, SendReply, UnreadReply,
};
use crate::send::MAX_BATCH_REQUESTS;
use crate::service::Service;
use crate::status_codes::OVERSIZE_MESSAGE;

/// The routes; each is counted under the gRPC method it is the HTTP form of (the
/// `operation` label of `tidings_api_http_requests_total`).
pub(crate) const SEND: &str = "/v1/notifications";
pub(crate) const SEND_BATCH: &str = "/v1/notifications/batch";
pub(crate) const PUBLISH: &str = "/v1/topics/{topic}/messages";
pub(crate) const LIST: &str = "/v1/members/{member}/notifications";
pub(crate) const UNREAD_COUNT: &str = "/v1/members/{member}/unread-count";
pub(crate) const MARK_READ: &str = "/v1/members/{member}/notifications/read";
pub(crate) const ARCHIVE: &str = "/v1/members/{member}/notifications/archive";
pub(crate) const DELETE: &str = "/v1/members/{member}/notifications/delete";

/// The JSON API's routes over the gRPC service's operations; bodies up to `max_body`.
pub(crate) fn router(service: Service, max_body: usize) -> Router {
    let observed = |operation: &'static str, route: MethodRouter<Service>| {
        route
            .route_layer(middleware::from_fn_with_state(max_body, declared_length))
            .route_layer(middleware::from_fn_with_state((service.clone(), operation), observed))
    };
    Router::new()
        .route(SEND, observed("Send", post(send)))
        .route(SEND_BATCH, observed("SendBatch", post(send_batch)))
        .route(PUBLISH, observed("Publish", post(publish)))
        .route(LIST, observed("ListNotifications", get(list)))
        .route(UNREAD_COUNT, observed("GetUnreadCount", get(unread_count)))
        .route(MARK_READ, observed("MarkRead", post(mark_read)))
        .route(ARCHIVE, observed("ArchiveNotifications", post(archive)))
        .route(DELETE, observed("DeleteNotifications", post(delete)))
        .layer(DefaultBodyLimit::max(max_body))
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(service)
}

/// What the combined router answers for a path neither transport has: gRPC's
/// UNIMPLEMENTED to a gRPC client (what tonic's router answers), a JSON 404 to others.
pub(crate) async fn fallback(request: Request) -> Response {
    if is_grpc(request.headers()) {
        return tonic::Status::unimplemented("").into_http::<axum::body::Body>();
    }
    ApiError::NotFound(format!("no route {} {}", request.method(), request.uri().path())).into_response()
}

/// The span of one request on the shared port: `grpc.request` for gRPC, as before the
/// HTTP API existed, `http.request` for the rest; both continue the caller's
/// `traceparent`.
pub(crate) fn server_span(request: &http::Request<()>) -> tracing::Span {
    if is_grpc(request.headers()) {
        return tidings_telemetry::propagation::grpc_server_span(request);
    }
    let span = tracing::info_span!(
        "http.request",
        otel.kind = "server",
        http.request.method = %request.method(),
        http.route = %request.uri().path(),
    );
    let traceparent = request.headers().get("traceparent").and_then(|v| v.to_str().ok());
    tidings_telemetry::propagation::set_remote_parent(&span, traceparent);
    span
}

fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

/// The authenticated producer, from `Authorization: Bearer <key>`; extracted before
/// the body, so an unauthenticated request is refused unread.
struct Caller(Producer);

impl FromRequestParts<Service> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, service: &Service) -> Result<Self, ApiError> {
        let authorization = parts.headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        service.keys.authenticate(authorization).map(Caller)
    }
}

/// Send a notification to members.
///
/// Stores one notification per distinct member and publishes each to its member's
/// stream: gRPC `Send`. A retry with the same `Idempotency-Key` answers the first
/// call's ids and stores nothing more.
#[utoipa::path(
    post,
    path = SEND,
    tag = "producer",
    request_body = SendBody,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes a retry safe: the same key answers the same ids (or give `idempotencyKey` in the body, not both)")),
    responses(
        (status = 200, description = "Stored; one delivery per member", body = SendReply),
        (status = 400, description = "A field breaks a rule, or the body is not the JSON described; the message names the field", body = ErrorBody),
        (status = 401, description = "No API key, or an unknown one", body = ErrorBody),
        (status = 409, description = "The idempotency key was used before for another request, or the write lost to a concurrent one (`aborted`, with `Retry-After`)", body = ErrorBody),
        (status = 413, description = "The body, or a field, is over its documented limit", body = ErrorBody),
        (status = 503, description = "Postgres or NATS is unavailable, or the api is shutting down: nothing was stored; retry (with the same idempotency key) after `Retry-After`", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
async fn send(
    State(service): State<Service>,
    Caller(producer): Caller,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<SendReply>, ApiError> {
    let mut body: SendBody = json(body)?;
    if let Some(key) = headers.get("idempotency-key") {
        if body.idempotency_key.is_some() {
            return Err(ApiError::invalid(
                "idempotency_key",
                "give it in the Idempotency-Key header or in the body, not both",
            ));
        }
        let key = std::str::from_utf8(key.as_bytes())
            .map_err(|_| ApiError::invalid("idempotency_key", "the Idempotency-Key header is not UTF-8"))?;
        body.idempotency_key = Some(key.to_owned());
    }
    let response = service
        .handle_send(body.into_request(), &producer, traceparent(&headers))
        .await?;
    Ok(Json(response.into()))
}

/// Send many notifications in one request.
///
/// Each item is a Send, answered in order by a delivery or its own error (an invalid
/// item fails alone); items share group-commit transactions like concurrent Sends.
/// Only when every item failed for an outage is the whole request a 503.
#[utoipa::path(
    post,
    path = SEND_BATCH,
    tag = "producer",
    request_body = BatchBody,
    responses(
        (status = 200, description = "One result per item, in order: a `SendReply` or an `ErrorBody`", body = BatchReply),
        (status = 400, description = "A field breaks a rule, or the body is not the JSON described; the message names the field", body = ErrorBody),
        (status = 401, description = "No API key, or an unknown one", body = ErrorBody),
        (status = 413, description = "The body, or a field, is over its documented limit", body = ErrorBody),
        (status = 503, description = "Postgres or NATS is unavailable, or the api is shutting down: nothing was stored; retry (with the same idempotency key) after `Retry-After`", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
async fn send_batch(
    State(service): State<Service>,
    Caller(producer): Caller,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<BatchReply>, ApiError> {
    let body: BatchBody = json(body)?;
    let n = body.notifications.len();
    if n == 0 {
        return Err(ApiError::invalid(
            "notifications",
            "at least one notification is required",
        ));
    }
    if n > MAX_BATCH_REQUESTS {
        return Err(ApiError::TooLarge(format!(
            "notifications: {n} given; at most {MAX_BATCH_REQUESTS} per request"
        )));
    }
    let trace = traceparent(&headers);
    // Polled together, so every valid item is queued for the group-commit writers
    // before any of them is answered: they share transactions like concurrent Sends.
    let calls = body
        .notifications
        .into_iter()
        .map(|item| service.handle_send(item.into_request(), &producer, trace.clone()));
    let answers = futures::future::join_all(calls).await;
    if answers.iter().all(|a| a.as_ref().is_err_and(ApiError::is_outage)) {
        let first = answers.into_iter().find_map(Result::err);
        return Err(first.unwrap_or_else(|| ApiError::Internal(anyhow::anyhow!("invariant: a batch is not empty"))));
    }
    let results = answers
        .into_iter()
        .map(|answer| match answer {
            Ok(response) => BatchResult::Sent(response.into()),
            Err(e) => BatchResult::Failed(e.into_http().1),
        })
        .collect();
    Ok(Json(BatchReply { results }))
}

/// Publish a message to a topic.
///
/// Every stream joined to the topic receives it as an SSE event named `event` (the
/// topic when absent): gRPC `Publish`. Topic messages are not stored in Postgres.
#[utoipa::path(
    post,
    path = PUBLISH,
    tag = "producer",
    request_body = PublishBody,
    params(("topic" = String, Path, description = "The topic name")),
    responses(
        (status = 200, description = "Published", body = PublishReply),
        (status = 400, description = "A field breaks a rule, or the body is not the JSON described; the message names the field", body = ErrorBody),
        (status = 401, description = "No API key, or an unknown one", body = ErrorBody),
        (status = 413, description = "The body, or a field, is over its documented limit", body = ErrorBody),
        (status = 503, description = "Postgres or NATS is unavailable, or the api is shutting down: nothing was stored; retry (with the same idempotency key) after `Retry-After`", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
async fn publish(
    State(service): State<Service>,
    Caller(_): Caller,
    headers: HeaderMap,
    topic: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<PublishReply>, ApiError> {
    let Path(topic) = topic.map_err(path_error)?;
    let body: PublishBody = json(body)?;
    let response = service
        .handle_publish(body.into_request(topic), traceparent(&headers))
        .await?;
    Ok(Json(PublishReply {
        event_id: response.event_id,
    }))
}

/// List a member's inbox, newest first.
///
/// gRPC `ListNotifications`: a page of notifications and the cursor of the next one.
#[utoipa::path(
    get,
    path = LIST,
    tag = "producer",
    params(("member" = String, Path, description = "The member id"), ListQuery),
    responses(
        (status = 200, description = "A page of the inbox", body = ListReply),
        (status = 400, description = "A field breaks a rule, or the body is not the JSON described; the message names the field", body = ErrorBody),
        (status = 401, description = "No API key, or an unknown one", body = ErrorBody),
        (status = 413, description = "The body, or a field, is over its documented limit", body = ErrorBody),
        (status = 503, description = "Postgres or NATS is unavailable, or the api is shutting down: nothing was stored; retry (with the same idempotency key) after `Retry-After`", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
async fn list(
    State(service): State<Service>,
    Caller(_): Caller,
    member: Result<Path<String>, PathRejection>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<ListReply>, ApiError> {
    let Path(member_id) = member.map_err(path_error)?;
    let Query(query) = query.map_err(query_error)?;
    let request = pb::ListNotificationsRequest {
        member_id,
        cursor: query.cursor.unwrap_or_default(),
        limit: query.limit.unwrap_or(0),
        unread_only: query.unread_only.unwrap_or(false),
        archived: pb::ArchivedFilter::from(query.archived.unwrap_or_default()).into(),
    };
    Ok(Json(service.handle_list(request).await?.into()))
}

/// A member's unread count.
///
/// gRPC `GetUnreadCount`.
#[utoipa::path(
    get,
    path = UNREAD_COUNT,
    tag = "producer",
    params(("member" = String, Path, description = "The member id")),
    responses(
        (status = 200, description = "The unread count", body = UnreadReply),
        (status = 400, description = "A field breaks a rule, or the body is not the JSON described; the message names the field", body = ErrorBody),
        (status = 401, description = "No API key, or an unknown one", body = ErrorBody),
        (status = 413, description = "The body, or a field, is over its documented limit", body = ErrorBody),
        (status = 503, description = "Postgres or NATS is unavailable, or the api is shutting down: nothing was stored; retry (with the same idempotency key) after `Retry-After`", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
async fn unread_count(
    State(service): State<Service>,
    Caller(_): Caller,
    member: Result<Path<String>, PathRejection>,
) -> Result<Json<UnreadReply>, ApiError> {
    let Path(member_id) = member.map_err(path_error)?;
    let request = pb::GetUnreadCountRequest {
        member_id,
        member_ids: Vec::new(),
    };
    let response = service.handle_unread_count(request).await?;
    Ok(Json(UnreadReply {
        unread_count: response.unread_count,
    }))
}

/// Mark a member's notifications read.
///
/// gRPC `MarkRead`: by `ids`, or everything up to and including `upTo`; answers the
/// new unread count, which every stream of the member also receives as `unread`.
#[utoipa::path(
    post,
    path = MARK_READ,
    tag = "producer",
    request_body = MarkReadBody,
    params(("member" = String, Path, description = "The member id")),
    responses(
        (status = 200, description = "Marked; the new unread count", body = UnreadReply),
        (status = 400, description = "A field breaks a rule, or the body is not the JSON described; the message names the field", body = ErrorBody),
        (status = 401, description = "No API key, or an unknown one", body = ErrorBody),
        (status = 404, description = "`upTo` names no notification of this member", body = ErrorBody),
        (status = 413, description = "The body, or a field, is over its documented limit", body = ErrorBody),
        (status = 503, description = "Postgres or NATS is unavailable, or the api is shutting down: nothing was stored; retry (with the same idempotency key) after `Retry-After`", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
async fn mark_read(
    State(service): State<Service>,
    Caller(_): Caller,
    member: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<UnreadReply>, ApiError> {
    let Path(member_id) = member.map_err(path_error)?;
    let body: MarkReadBody = json(body)?;
    let response = service.handle_mark_read(body.into_request(member_id)).await?;
    Ok(Json(UnreadReply {
        unread_count: response.unread_count,
    }))
}

/// Archive a member's notifications.
///
/// gRPC `ArchiveNotifications`: by `ids`, or everything up to and including `upTo`.
/// Archived notifications leave the default list and the unread count (list them with
/// `archived=only|include`). All or nothing: an id that is not the member's archives
/// nothing (404). A retry changes nothing. Every stream of the member receives the new
/// unread count as `unread`.
#[utoipa::path(
    post,
    path = ARCHIVE,
    tag = "producer",
    request_body = SelectionBody,
    params(("member" = String, Path, description = "The member id")),
    responses(
        (status = 200, description = "Archived; the new unread count", body = ArchiveReply),
        (status = 400, description = "A field breaks a rule, or the body is not the JSON described; the message names the field", body = ErrorBody),
        (status = 401, description = "No API key, or an unknown one", body = ErrorBody),
        (status = 404, description = "An id, or `upTo`, names no notification of this member; nothing was archived", body = ErrorBody),
        (status = 413, description = "The body, or a field, is over its documented limit", body = ErrorBody),
        (status = 503, description = "Postgres is unavailable, or the api is shutting down: nothing changed; retry after `Retry-After`", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
async fn archive(
    State(service): State<Service>,
    Caller(_): Caller,
    member: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ArchiveReply>, ApiError> {
    let Path(member_id) = member.map_err(path_error)?;
    let body: SelectionBody = json(body)?;
    let response = service.handle_archive(body.into_archive(member_id)).await?;
    Ok(Json(ArchiveReply {
        unread_count: response.unread_count,
        archived: response.archived,
    }))
}

/// Delete a member's notifications.
///
/// gRPC `DeleteNotifications`: by `ids`, or everything up to and including `upTo`; they
/// are gone from Postgres. Ids the member does not have are skipped and `upTo` needs no
/// notification at that id, so a retry succeeds (`deleted` says how many went). Every
/// stream of the member receives the new unread count as `unread`.
#[utoipa::path(
    post,
    path = DELETE,
    tag = "producer",
    request_body = SelectionBody,
    params(("member" = String, Path, description = "The member id")),
    responses(
        (status = 200, description = "Deleted; the new unread count", body = DeleteReply),
        (status = 400, description = "A field breaks a rule, or the body is not the JSON described; the message names the field", body = ErrorBody),
        (status = 401, description = "No API key, or an unknown one", body = ErrorBody),
        (status = 413, description = "The body, or a field, is over its documented limit", body = ErrorBody),
        (status = 503, description = "Postgres is unavailable, or the api is shutting down: nothing changed; retry after `Retry-After`", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
async fn delete(
    State(service): State<Service>,
    Caller(_): Caller,
    member: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<DeleteReply>, ApiError> {
    let Path(member_id) = member.map_err(path_error)?;
    let body: SelectionBody = json(body)?;
    let response = service.handle_delete(body.into_delete(member_id)).await?;
    Ok(Json(DeleteReply {
        unread_count: response.unread_count,
        deleted: response.deleted,
    }))
}

/// A body read within the limit and parsed as `T`; serde's message names the field at
/// fault (`unknown field `groupID``, `invalid type: string "a", expected a sequence`).
fn json<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> Result<T, ApiError> {
    let bytes = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge(OVERSIZE_MESSAGE.into())
        } else {
            ApiError::invalid("body", rejection.body_text())
        }
    })?;
    serde_json::from_slice(&bytes).map_err(|e| ApiError::invalid("body", e))
}

fn path_error(rejection: PathRejection) -> ApiError {
    ApiError::invalid("path", rejection.body_text())
}

/// axum's text is "Failed to deserialize query string: <cause>"; the cause names the
/// parameter.
fn query_error(rejection: QueryRejection) -> ApiError {
    let cause = std::error::Error::source(&rejection).map_or_else(|| rejection.body_text(), ToString::to_string);
    ApiError::invalid("query string", cause)
}

fn traceparent(headers: &HeaderMap) -> Option<String> {
    headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(tidings_telemetry::propagation::canonical_traceparent)
}

async fn method_not_allowed(request: Request) -> Response {
    let message = format!("{} is not allowed on {}", request.method(), request.uri().path());
    let body = ErrorBody {
        error: ErrorDetail {
            code: "unimplemented",
            message,
        },
    };
    error_response(StatusCode::METHOD_NOT_ALLOWED, body)
}

/// Refuses a body whose `Content-Length` is over `max_body` before reading any of it
/// (the body limit alone would read up to the limit first, and a client that sends
/// nothing more would hold the request open).
async fn declared_length(State(max_body): State<usize>, request: Request, next: Next) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max_body as u64) {
        return ApiError::TooLarge(OVERSIZE_MESSAGE.into()).into_response();
    }
    next.run(request).await
}

/// Counts and times every answer of a route, refusals included, by operation and
/// HTTP status.
async fn observed(
    State((service, operation)): State<(Service, &'static str)>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let response = next.run(request).await;
    service
        .state
        .metrics
        .observe_http(operation, started, response.status().as_u16());
    response
}
