//! [`ApiError`], everything a call can fail with, and its mappings to the transports:
//! a gRPC status, and, derived from that status, the HTTP/JSON API's answer.
//!
//! The HTTP answer is made from the gRPC status, never beside it: the same message, its
//! code's name in snake case as `error.code`, and the HTTP status a REST client expects
//! for that code (README, "HTTP/JSON API"). One mapping to maintain, no way for the two
//! transports to disagree on what a failure is.

use std::sync::Arc;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tidings_bus::BusError;
use tidings_store::StoreError;

/// Everything a call can fail with, mapped once to a gRPC status. Internal details
/// (SQL, NATS errors) are logged here and never sent to the client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A request field breaks a rule; the message names the field.
    #[error("{0}")]
    InvalidArgument(String),
    /// A request or field is over a documented size or count limit.
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    NotFound(String),
    /// No or an unknown producer API key.
    #[error("{0}")]
    Unauthenticated(String),
    /// The idempotency key was used before for another request.
    #[error("{0}")]
    Conflict(String),
    /// Not attempted: an earlier request of the same batch had a conflicting
    /// idempotency key, and a batch stops there.
    #[error("not attempted: an earlier request of this batch had a conflicting idempotency_key")]
    Skipped,
    #[error("postgres is unavailable")]
    StoreUnavailable(#[source] StoreError),
    /// The transaction lost to a concurrent one (deadlock, serialization failure):
    /// nothing was written; the same request again succeeds.
    #[error("postgres aborted the transaction")]
    StoreAborted(#[source] StoreError),
    #[error("nats is unavailable")]
    BusUnavailable(String),
    /// The api is shutting down: a SendStream call ends between batches, and the
    /// requests after its last answer were not stored.
    #[error("the api is shutting down")]
    ShuttingDown,
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
    /// One failure answered to several callers (every Send of a group-commit batch
    /// whose transaction failed). It was logged once, by [`ApiError::shared`]; each copy
    /// maps to the same status without logging again.
    #[error(transparent)]
    Shared(Arc<ApiError>),
}

impl ApiError {
    pub(crate) fn invalid(field: &str, why: impl std::fmt::Display) -> Self {
        Self::InvalidArgument(format!("{field}: {why}"))
    }

    /// Whether Postgres or NATS is down: every request fails alike, whatever it holds.
    pub(crate) fn is_outage(&self) -> bool {
        match self {
            Self::StoreUnavailable(_) | Self::BusUnavailable(_) | Self::ShuttingDown => true,
            Self::Shared(e) => e.is_outage(),
            _ => false,
        }
    }

    /// Logs this failure once and makes it shareable: wrap each copy in
    /// [`ApiError::Shared`].
    pub(crate) fn shared(self) -> Arc<Self> {
        self.log();
        Arc::new(self)
    }

    /// Internal details go to the log, never to the client.
    fn log(&self) {
        match self {
            Self::StoreUnavailable(source) => tracing::warn!(error = %source, "postgres unavailable"),
            Self::StoreAborted(source) => tracing::warn!(error = %source, "transaction aborted for a concurrent one"),
            Self::BusUnavailable(source) => tracing::warn!(error = %source, "nats unavailable"),
            Self::Internal(source) => tracing::error!(error = ?source, "internal error"),
            _ => {}
        }
    }

    fn status(&self) -> tonic::Status {
        use tonic::Status;
        match self {
            Self::InvalidArgument(m) => Status::invalid_argument(m),
            Self::TooLarge(m) => Status::resource_exhausted(m),
            Self::NotFound(m) => Status::not_found(m),
            Self::Unauthenticated(m) => Status::unauthenticated(m),
            Self::Conflict(m) => Status::already_exists(m),
            e @ Self::Skipped => Status::aborted(e.to_string()),
            Self::StoreUnavailable(_) => {
                Status::unavailable("postgres is unavailable; retry with the same idempotency_key")
            }
            Self::StoreAborted(_) => Status::aborted(
                "the write conflicted with a concurrent one and was not stored; retry with the same idempotency_key",
            ),
            Self::BusUnavailable(_) => Status::unavailable("nats is unavailable; retry later"),
            Self::ShuttingDown => Status::unavailable(
                "the api is shutting down; requests after the last answer were not stored, send them again",
            ),
            Self::Internal(_) => Status::internal("internal error"),
            Self::Shared(e) => e.status(),
        }
    }
}

/// The JSON body of every HTTP/JSON API failure: `{"error":{"code","message"}}`, as on
/// the edge's REST.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct ErrorBody {
    pub(crate) error: ErrorDetail,
}

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct ErrorDetail {
    /// The gRPC code's name in snake case: `invalid_argument`, `unauthenticated`, ….
    #[schema(value_type = String, example = "invalid_argument")]
    pub(crate) code: &'static str,
    /// What went wrong, naming the field at fault.
    pub(crate) message: String,
}

/// How long a client should wait before retrying an outage (`Retry-After`, seconds):
/// about one Postgres acquire or publish timeout, short enough to recover quickly.
const RETRY_AFTER_SECS: &str = "2";

impl ApiError {
    /// The HTTP status and JSON body for this failure, logged like the gRPC mapping's.
    pub(crate) fn into_http(self) -> (StatusCode, ErrorBody) {
        let status = tonic::Status::from(self);
        let body = ErrorBody {
            error: ErrorDetail {
                code: code_name(status.code()),
                message: status.message().to_owned(),
            },
        };
        (http_status(status.code()), body)
    }
}

/// The HTTP status a REST client expects for a gRPC code. RESOURCE_EXHAUSTED is a size
/// or count over its limit here (the api has no rate limit), so 413, not 429; ABORTED
/// (a write that lost to a concurrent one, nothing stored) is 409 like a conflict, but
/// with `Retry-After`.
pub(crate) fn http_status(code: tonic::Code) -> StatusCode {
    use tonic::Code;
    match code {
        Code::Ok => StatusCode::OK,
        Code::InvalidArgument | Code::OutOfRange | Code::FailedPrecondition => StatusCode::BAD_REQUEST,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::ResourceExhausted => StatusCode::PAYLOAD_TOO_LARGE,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Cancelled | Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A gRPC code's name in snake case, the JSON `error.code`.
pub(crate) fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "cancelled",
        Code::Unknown => "unknown",
        Code::InvalidArgument => "invalid_argument",
        Code::DeadlineExceeded => "deadline_exceeded",
        Code::NotFound => "not_found",
        Code::AlreadyExists => "already_exists",
        Code::PermissionDenied => "permission_denied",
        Code::ResourceExhausted => "resource_exhausted",
        Code::FailedPrecondition => "failed_precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out_of_range",
        Code::Unimplemented => "unimplemented",
        Code::Internal => "internal",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data_loss",
        Code::Unauthenticated => "unauthenticated",
    }
}

/// A JSON error response; `Retry-After` on what is worth retrying as is (503, 409
/// aborted), `WWW-Authenticate` on 401.
pub(crate) fn error_response(status: StatusCode, body: ErrorBody) -> Response {
    let retry = status == StatusCode::SERVICE_UNAVAILABLE || body.error.code == "aborted";
    let unauthenticated = status == StatusCode::UNAUTHORIZED;
    let mut response = (status, axum::Json(body)).into_response();
    if retry {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECS));
    }
    if unauthenticated {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = self.into_http();
        error_response(status, body)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(_) => Self::StoreUnavailable(e),
            StoreError::Aborted(_) | StoreError::KeyContended => Self::StoreAborted(e),
            other => Self::Internal(other.into()),
        }
    }
}

impl From<BusError> for ApiError {
    fn from(e: BusError) -> Self {
        Self::BusUnavailable(e.to_string())
    }
}

impl From<ApiError> for tonic::Status {
    fn from(e: ApiError) -> Self {
        if !matches!(e, ApiError::Shared(_)) {
            e.log();
        }
        e.status()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shared_failure_maps_like_the_original() {
        let shared = ApiError::Internal(anyhow::anyhow!("disk on fire")).shared();
        let status = tonic::Status::from(ApiError::Shared(shared.clone()));
        assert_eq!(status.code(), tonic::Code::Internal);
        assert_eq!(status.message(), "internal error", "details stay in the log");
        let status = tonic::Status::from(ApiError::ShuttingDown);
        assert_eq!(status.code(), tonic::Code::Unavailable);
    }

    #[test]
    fn http_answers_carry_the_grpc_message_and_the_expected_status() {
        let cases = [
            (ApiError::invalid("type", "bad"), 400, "invalid_argument"),
            (ApiError::TooLarge("content: big".into()), 413, "resource_exhausted"),
            (
                ApiError::Unauthenticated("unknown api key".into()),
                401,
                "unauthenticated",
            ),
            (ApiError::NotFound("up_to: none".into()), 404, "not_found"),
            (
                ApiError::Conflict("idempotency_key: used".into()),
                409,
                "already_exists",
            ),
            (ApiError::BusUnavailable("down".into()), 503, "unavailable"),
            (ApiError::ShuttingDown, 503, "unavailable"),
            (ApiError::Internal(anyhow::anyhow!("secret detail")), 500, "internal"),
        ];
        for (error, http, code) in cases {
            let grpc_message = error.to_string();
            let (status, body) = error.into_http();
            assert_eq!((status.as_u16(), body.error.code), (http, code), "{grpc_message}");
            assert!(!body.error.message.contains("secret"), "details stay in the log");
        }
        let (status, body) = ApiError::invalid("member_ids[3]", "member id is empty").into_http();
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(
            body.error.message, "member_ids[3]: member id is empty",
            "the gRPC message"
        );
    }
}
