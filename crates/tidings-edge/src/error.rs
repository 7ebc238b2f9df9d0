use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::AuthError;

/// The JSON body of every edge failure: `{"error":{"code","message"}}`, as on the api's
/// HTTP/JSON API.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ErrorBody {
    pub(crate) error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ErrorDetail {
    /// `unauthenticated`, `forbidden`, `invalid_argument`, `not_found`,
    /// `member_connection_limit`, `unavailable` or `internal`.
    #[schema(example = "unauthenticated")]
    pub(crate) code: &'static str,
    /// What went wrong, naming the parameter or field at fault.
    pub(crate) message: String,
}

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

/// A query string that does not fit its route's parameters: a value of the wrong type
/// (`limit=-1`, `unread_only=maybe`) or a parameter given twice. axum's own answer
/// would be a `400 text/plain`; the message keeps its cause, which names the parameter.
impl From<QueryRejection> for EdgeError {
    fn from(rejection: QueryRejection) -> Self {
        // axum's text is "Failed to deserialize query string: <cause>".
        let cause = std::error::Error::source(&rejection).map_or_else(|| rejection.body_text(), ToString::to_string);
        Self::BadRequest(format!("query string: {cause}"))
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
        let body = Json(ErrorBody {
            error: ErrorDetail {
                code,
                message: self.to_string(),
            },
        });
        let mut response = (status, body).into_response();
        if matches!(self, Self::Unavailable(_) | Self::MemberLimit) {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use axum::extract::Query;
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    struct Params {
        limit: Option<u32>,
        unread_only: Option<bool>,
        access_token: Option<String>,
    }

    #[tokio::test]
    async fn bad_query_strings_are_a_json_400_naming_the_parameter() {
        let parse = |query: &str| Query::<Params>::try_from_uri(&format!("/x?{query}").parse().unwrap());
        let Query(ok) = parse("limit=5&unread_only=true&access_token=t").unwrap();
        assert_eq!(
            (ok.limit, ok.unread_only, ok.access_token.as_deref()),
            (Some(5), Some(true), Some("t"))
        );
        for (query, parameter) in [
            ("limit=-1", "limit"),
            ("limit=4294967296", "limit"),
            ("unread_only=maybe", "unread_only"),
            ("access_token=a&access_token=b", "access_token"),
        ] {
            let response = EdgeError::from(parse(query).unwrap_err()).into_response();
            assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{query}");
            assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
            let body = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
            let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(json["error"]["code"], "invalid_argument", "{query}");
            let message = json["error"]["message"].as_str().unwrap();
            assert!(message.contains(parameter), "{query}: {message}");
        }
    }
}
