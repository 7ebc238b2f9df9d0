//! The HTTP/JSON API's OpenAPI 3.1 document, derived from the handlers (`rest.rs`,
//! `#[utoipa::path]`) and their bodies (`rest_body.rs`, `error.rs`, `ToSchema`), and
//! served at `GET /openapi.json` on the producer port.
//!
//! - Generated, never written by hand: the copy committed as `docs/openapi/api.json`
//!   is checked against it by a test (`the_committed_document_is_the_generated_one`)
//!   and regenerated with `cargo run -p tidings -- openapi api > docs/openapi/api.json`.
//! - `info.version` is the crate's version, so a release regenerates the copy.
//! - The document is rendered once per process; serving it costs a clone of bytes.

use std::sync::LazyLock;

use axum::http::header;
use axum::response::IntoResponse;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::{rest, rest_body};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Tidings api: HTTP/JSON producer API",
        description = "The gRPC NotificationService's operations for producers that do not speak gRPC, \
            on the same port, with the same API keys, validation and limits. \
            Every failure is `{\"error\":{\"code\",\"message\"}}`; `code` is the gRPC code's name in snake case.",
    ),
    paths(
        rest::send,
        rest::send_batch,
        rest::publish,
        rest::list,
        rest::unread_count,
        rest::mark_read,
        rest::archive,
        rest::delete
    ),
    // Schemas only parameters refer to (utoipa collects those of bodies by itself).
    components(schemas(rest_body::ArchivedFilter)),
    modifiers(&BearerKey),
    tags((name = "producer", description = "Sending, publishing, and the producer side of the inbox")),
)]
struct Document;

/// `Authorization: Bearer <key>`, one of `TIDINGS_API_KEYS`.
struct BearerKey;

impl Modify for BearerKey {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("A producer API key, one of TIDINGS_API_KEYS"))
                    .build(),
            ),
        );
    }
}

static JSON: LazyLock<String> = LazyLock::new(|| {
    let mut text = Document::openapi()
        .to_pretty_json()
        .expect("invariant: an OpenAPI document serializes");
    text.push('\n');
    text
});

/// The document as pretty JSON with a final newline, as committed.
pub fn openapi_json() -> String {
    JSON.clone()
}

/// `GET /openapi.json`: no authentication (it describes the API, it holds no data).
pub(crate) async fn serve() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], JSON.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_document_is_the_generated_one() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi/api.json");
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        let committed: serde_json::Value = serde_json::from_str(&committed).unwrap_or_default();
        let generated: serde_json::Value = serde_json::from_str(&openapi_json()).unwrap();
        assert!(
            committed == generated,
            "docs/openapi/api.json is not the document the code generates; regenerate it with\n    \
             cargo run -p tidings -- openapi api > docs/openapi/api.json"
        );
    }

    #[test]
    fn every_route_is_documented_with_its_errors() {
        let doc: serde_json::Value = serde_json::from_str(&openapi_json()).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
        let paths = doc["paths"].as_object().unwrap();
        for route in [
            rest::SEND,
            rest::SEND_BATCH,
            rest::PUBLISH,
            rest::LIST,
            rest::UNREAD_COUNT,
            rest::MARK_READ,
            rest::ARCHIVE,
            rest::DELETE,
        ] {
            let operations = paths[route].as_object().unwrap();
            for (method, operation) in operations {
                for status in ["200", "400", "401", "503"] {
                    assert!(operation["responses"][status].is_object(), "{method} {route}: {status}");
                }
                assert_eq!(operation["security"][0]["bearer"], serde_json::json!([]), "{route}");
            }
        }
        assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    }
}
