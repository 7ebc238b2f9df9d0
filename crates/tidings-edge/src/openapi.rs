//! The edge's OpenAPI 3.1 document, derived from its handlers (`routes.rs`, `inbox.rs`,
//! `#[utoipa::path]`) and the types they write (`inbox.rs`, `error.rs`, and `sse.rs`'s
//! event data), and served at `GET /openapi.json` on the edge's port.
//!
//! - Generated, never written by hand: the copy committed as `docs/openapi/edge.json`
//!   is checked against it by a test (`the_committed_document_is_the_generated_one`)
//!   and regenerated with `cargo run -p tidings -- openapi edge > docs/openapi/edge.json`.
//! - OpenAPI has no vocabulary for the events of an SSE stream: `GET /v1/stream` is a
//!   `text/event-stream` response whose description lists every event (`sse::EVENTS`),
//!   and each event's data is a schema of `components/schemas` (`Sse…`).
//! - The `notification` event's data is written by the api (`tidings_api::payload`) and
//!   passed through byte for byte; the edge does not depend on the api, so its schema is
//!   [`NotificationEvent`] here, kept equal by the e2e test of the document.
//! - Health, metrics and the dev demo are left out: they are for operators and
//!   developers, not API clients.

use std::sync::LazyLock;

use axum::http::header;
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use crate::sse::{Connected, Reauth, Reset, Resumed, Unread};
use crate::{inbox, routes};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Tidings edge: Server-Sent Events and the inbox REST API",
        description = "What browsers and apps call: the member's SSE stream (resumable by Last-Event-ID on any edge), \
            stream tickets, and the member's inbox. Every failure is `{\"error\":{\"code\",\"message\"}}`.",
    ),
    paths(
        routes::stream,
        routes::ticket,
        inbox::list,
        inbox::mark_read,
        inbox::archive,
        inbox::delete,
        inbox::unread_count
    ),
    components(schemas(
        Connected<'_>, Resumed, NotificationEvent, Unread, Reset<'_>, Reauth, TopicMessage,
        // Only a parameter refers to it (utoipa collects the schemas of bodies by itself).
        inbox::ArchivedFilter
    )),
    modifiers(&SubscriberToken),
    tags(
        (name = "stream", description = "The Server-Sent Events stream and its tickets"),
        (name = "inbox", description = "The caller's inbox"),
    ),
)]
struct Document;

/// The data of `notification`: the notification as stored, without read state (the
/// inbox REST's item has it).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = SseNotification)]
pub(crate) struct NotificationEvent {
    /// The notification id (a UUID).
    id: String,
    /// The producer's type, e.g. `comment.created`.
    #[serde(rename = "type")]
    kind: String,
    content: String,
    /// The producer's JSON as stored; `null` when none.
    #[schema(value_type = Option<serde_json::Value>)]
    data: (),
    group_id: Option<String>,
    /// RFC 3339, milliseconds, UTC.
    created_at: String,
}

/// The data of a topic message: the JSON its producer published, as published.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = SseTopicMessage, value_type = serde_json::Value)]
pub(crate) struct TopicMessage(());

/// A subscriber token (a JWT signed with the edge's key, `sub` = member id), as
/// `Authorization: Bearer` or the `tidings_token` cookie.
struct SubscriberToken;

impl Modify for SubscriberToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some("A subscriber token: a JWT whose `sub` is the member id"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                "tidings_token",
                "The subscriber token in a cookie",
            ))),
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
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi/edge.json");
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        let committed: serde_json::Value = serde_json::from_str(&committed).unwrap_or_default();
        let generated: serde_json::Value = serde_json::from_str(&openapi_json()).unwrap();
        assert!(
            committed == generated,
            "docs/openapi/edge.json is not the document the code generates; regenerate it with\n    \
             cargo run -p tidings -- openapi edge > docs/openapi/edge.json"
        );
    }

    #[test]
    fn the_stream_lists_every_event_with_a_schema() {
        let doc: serde_json::Value = serde_json::from_str(&openapi_json()).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
        let stream = &doc["paths"]["/v1/stream"]["get"]["responses"]["200"];
        assert!(stream["content"]["text/event-stream"].is_object(), "{stream}");
        let described = stream["description"].as_str().unwrap();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for (event, schema) in [
            ("connected", "SseConnected"),
            ("resumed", "SseResumed"),
            ("notification", "SseNotification"),
            ("unread", "SseUnread"),
            ("reset", "SseReset"),
            ("reauth", "SseReauth"),
            ("any other name", "SseTopicMessage"),
        ] {
            assert!(
                described.contains(&format!("- `{event}`")) || described.contains(&format!("- {event}")),
                "{event}"
            );
            assert!(described.contains(&format!("`{schema}`")), "{schema}");
            assert!(schemas.contains_key(schema), "{schema}");
        }
        for event in tidings_bus::RESERVED_EVENT_NAMES {
            assert!(described.contains(&format!("`{event}`")), "{event} is not described");
        }
    }

    /// The schemas are of what the edge writes: an event's data matches its schema's
    /// properties, names and all.
    #[test]
    fn each_event_schema_names_the_fields_written() {
        let doc: serde_json::Value = serde_json::from_str(&openapi_json()).unwrap();
        let schemas = &doc["components"]["schemas"];
        for (schema, frame) in [
            (
                "SseConnected",
                crate::sse::connected("a-1", 1, Some(("m", 517)), "edge", true),
            ),
            ("SseResumed", crate::sse::resumed(2)),
            ("SseUnread", crate::sse::unread(3)),
            ("SseReset", crate::sse::reset(None, "why")),
            ("SseReauth", crate::sse::reauth(4)),
        ] {
            let text = std::str::from_utf8(&frame).unwrap();
            let data = text.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
            let data: serde_json::Value = serde_json::from_str(data).unwrap();
            let mut written: Vec<&String> = data.as_object().unwrap().keys().collect();
            let mut described: Vec<&String> = schemas[schema]["properties"].as_object().unwrap().keys().collect();
            written.sort();
            described.sort();
            assert_eq!(written, described, "{schema}");
        }
    }
}
