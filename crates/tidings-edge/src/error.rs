use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::auth::AuthError;

/// Every way an edge request fails, mapped once to an HTTP response with the JSON body
/// `{"error": {"code", "message"}}`. Internal details are logged, not sent.
#[derive(Debug, thiserror::Error)]
pub(crate) enum EdgeError {
    #[error("{0}")]
    Unauthorized(AuthError),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("too many streams for this member on this node")]
    MemberLimit,
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error")]
    Internal(String),
}

impl From<AuthError> for EdgeError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::TicketsUnavailable(_) => Self::Unavailable(e.to_string()),
            e => Self::Unauthorized(e),
        }
    }
}

impl From<tonic::Status> for EdgeError {
    fn from(status: tonic::Status) -> Self {
        use tonic::Code;
        match status.code() {
            Code::InvalidArgument | Code::ResourceExhausted | Code::OutOfRange => {
                Self::BadRequest(status.message().to_owned())
            }
            Code::NotFound => Self::NotFound(status.message().to_owned()),
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => {
                Self::Unavailable("the inbox is unavailable; retry later".into())
            }
            _ => Self::Internal(format!("api: {status:?}")),
        }
    }
}

impl IntoResponse for EdgeError {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            Self::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthenticated"),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            Self::BadRequest(_) => (StatusCode::BAD_REQUEST, "invalid_argument"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Self::MemberLimit => (StatusCode::TOO_MANY_REQUESTS, "member_connection_limit"),
            Self::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            Self::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal")
            }
        };
        let body = Json(json!({ "error": { "code": code, "message": self.to_string() } }));
        let mut response = (status, body).into_response();
        if matches!(self, Self::Unavailable(_) | Self::MemberLimit) {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        response
    }
}
