//! The HTTP surface of an edge: the SSE stream, stream tickets, the inbox REST API,
//! health, and in dev mode the demo.

use std::sync::Arc;

use axum::Extension;
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use serde_json::json;
use tidings_domain::{LastEventId, Topic};
use tower_http::cors::{AllowOrigin, CorsLayer};
use utoipa::ToSchema;

use crate::affinity;
use crate::auth::{self, AuthError, Claims, Credential};
use crate::body::SseBody;
use crate::catch_up;
use crate::error::{EdgeError, ErrorBody};
use crate::hub::{Conn, Inbox, Refused};
use crate::kill_switch::KillSwitch;
use crate::state::EdgeState;
use crate::stream_query::StreamQuery;
use crate::{inbox, sse};

/// Most topics one stream may join.
const MAX_TOPICS: usize = 32;

pub(crate) fn router(state: Arc<EdgeState>, cors_origins: &[String], demo: bool) -> Router {
    let mut router = Router::new()
        .route("/v1/stream", get(stream))
        .route("/v1/stream/ticket", post(ticket))
        .route("/v1/notifications", get(inbox::list))
        .route("/v1/notifications/read", post(inbox::mark_read))
        .route("/v1/notifications/archive", post(inbox::archive))
        .route("/v1/notifications/delete", post(inbox::delete))
        .route("/v1/notifications/unread-count", get(inbox::unread_count))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state.clone());
    if demo {
        router = router.merge(crate::demo::router(state));
    }
    if cors_origins.is_empty() {
        return router;
    }
    let origins: Vec<HeaderValue> = cors_origins.iter().filter_map(|o| o.parse().ok()).collect();
    router.layer(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_credentials(true)
            .allow_methods([Method::GET, Method::POST])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                "last-event-id".parse().expect("valid"),
            ]),
    )
}

/// `POST /v1/stream/ticket`'s answer.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TicketReply {
    /// Open the stream with `?ticket=` once, within `expiresIn` seconds.
    ticket: String,
    expires_in: u64,
    /// The member's routing key: add it to the stream URL as `affinity`, so that a load
    /// balancer hashing on it routes the stream to the edge holding the member's
    /// partition (also set as the `tidings_affinity` cookie).
    #[schema(example = "517")]
    affinity: String,
}

/// Open the member's Server-Sent Events stream.
///
/// `text/event-stream`: the member's notifications, unread counts and the joined
/// topics' messages, resumable by `Last-Event-ID` on any edge. The events are listed in
/// the 200 response, each with its data's schema.
#[utoipa::path(
    get,
    path = "/v1/stream",
    tag = "stream",
    params(
        StreamQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "The id of the last event received: the stream resumes after it"),
    ),
    responses(
        (status = 200, description = sse::EVENTS, content_type = "text/event-stream", body = String, headers(
            ("Set-Cookie" = String, description = "On an authenticated stream: `tidings_affinity=<key>`, the member's routing key (see `affinity`)"),
        )),
        (status = 400, description = "A bad topic name or too many topics, or a bad query string", body = ErrorBody),
        (status = 401, description = "No credential (and not only public topics), or an invalid or expired one", body = ErrorBody),
        (status = 403, description = "The token does not allow a requested topic", body = ErrorBody),
        (status = 429, description = "Too many streams for this member on this node; retry after `Retry-After`", body = ErrorBody),
        (status = 503, description = "This node is draining or at its connection limit; retry (any edge) after `Retry-After`", body = ErrorBody),
    ),
    security((), ("bearer" = []), ("cookie" = [])),
)]

async fn stream(
    State(state): State<Arc<EdgeState>>,
    kill: Option<Extension<Arc<KillSwitch>>>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let opened = match StreamQuery::parse(uri.query()) {
        Ok(query) => open_stream(state.clone(), &headers, query, kill.map(|Extension(k)| k)).await,
        Err(e) => Err(e),
    };
    match opened {
        Ok(response) => response,
        Err(e) => {
            let reason = match &e {
                EdgeError::Unauthorized(_) => "unauthenticated",
                EdgeError::Forbidden(_) => "forbidden",
                EdgeError::BadRequest(_) | EdgeError::NotFound(_) => "bad_request",
                EdgeError::MemberLimit => "member_limit",
                EdgeError::Unavailable(_) if state.lifecycle.drain.is_cancelled() => "draining",
                EdgeError::Unavailable(_) => "node_limit",
                EdgeError::Internal(_) => "error",
            };
            state.metrics.refused.with_label_values(&[reason]).inc();
            tracing::info!(reason, "stream refused");
            e.into_response()
        }
    }
}

async fn open_stream(
    state: Arc<EdgeState>,
    headers: &HeaderMap,
    query: StreamQuery,
    kill: Option<Arc<KillSwitch>>,
) -> Result<Response, EdgeError> {
    if state.lifecycle.drain.is_cancelled() {
        return Err(EdgeError::Unavailable("this node is draining; reconnect".into()));
    }
    // A stream of public topics only may come without a credential: it is anonymous
    // and carries no inbox. Anything else authenticates first (401 before 400).
    let requested = requested_topics(query.topics.as_deref());
    let anonymous = auth::credential(headers, query.access_token.as_deref(), query.ticket.as_deref()).is_none()
        && requested
            .as_ref()
            .is_ok_and(|ts| !ts.is_empty() && ts.iter().all(|t| state.public_topics.contains(t)));
    let subscriber = if anonymous {
        None
    } else {
        Some(
            auth::authenticate(
                &state.verifier,
                &state.tickets,
                headers,
                query.access_token.as_deref(),
                query.ticket.as_deref(),
            )
            .await?,
        )
    };
    let mut topics = Vec::new();
    for topic in requested? {
        let allowed = state.public_topics.contains(&topic) || subscriber.as_ref().is_some_and(|s| s.may_join(&topic));
        if !allowed {
            return Err(EdgeError::Forbidden(format!(
                "topics: the token does not allow {topic}"
            )));
        }
        let mode = state.topic_modes.mode(&topic);
        topics.push((topic, mode));
    }
    let resume = LastEventId::of_request(
        headers.get("last-event-id").map(HeaderValue::as_bytes),
        query.last_event_id.as_deref(),
    );

    // The routing key: checked, never trusted (the credential decided the member).
    let mut affinity = None;
    let (inbox, expires_at) = match subscriber {
        Some(subscriber) => {
            let partition = state.bus.subjects().partition_of(&subscriber.member);
            let presented = affinity::presented(query.affinity.as_deref(), headers);
            affinity = Some((partition, affinity::mismatched(presented, partition)));
            let inbox = Inbox {
                partition,
                member: subscriber.member,
            };
            let expires_at = subscriber
                .expires_at
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs();
            (Some(inbox), expires_at)
        }
        // Nothing to expire: no `reauth`, no close at `exp`.
        None => (None, u64::MAX),
    };
    let conn = Conn::new(
        inbox,
        topics,
        expires_at,
        state.limits.queue_capacity,
        state.clock.now(),
        kill,
    );
    let fresh = matches!(resume, LastEventId::Fresh);
    let registered = match state.hub.register(
        &conn,
        fresh,
        state.limits.max_connections,
        state.limits.max_connections_per_member,
    ) {
        Ok(registered) => registered,
        Err(Refused::NodeFull) => return Err(EdgeError::Unavailable("this node is at its connection limit".into())),
        Err(Refused::MemberFull) => return Err(EdgeError::MemberLimit),
    };
    if let Some((partition, true)) = affinity {
        state.metrics.affinity_mismatches.inc();
        tracing::debug!(
            connection = conn.id,
            partition,
            "affinity key not the member's partition"
        );
    }
    // Per-stream lines are debug: at info, formatting and writing the opened and closed
    // lines cost about a tenth of the CPU a connection takes (BENCHMARKS.md);
    // the metrics count every stream and every close by reason.
    tracing::debug!(connection = conn.id, member = conn.who(), resume = ?resume, "stream opened");
    conn.delivery()
        .push_control(state.limits.retry.clone(), None, state.clock.now());
    let body = SseBody::new(conn.clone(), state.clone());
    match registered.live_at {
        // Queued before the response goes: the head, `retry:` and `connected` leave in
        // one write.
        Some(at) => catch_up::start_live(&state, conn, at),
        None => {
            let open = catch_up::open(state.clone(), conn, resume, registered.interests);
            state.lifecycle.streams.spawn(open);
        }
    }

    let mut response = Response::new(Body::new(body));
    // hyper keeps each connection's response header map for the next response: size
    // it for these headers, not the default.
    *response.headers_mut() = HeaderMap::with_capacity(4);
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    // Every authenticated stream hands out its key, right or not before: a browser
    // whose cookie was missing or stale lands on the right edge next time.
    if let Some((partition, _)) = affinity {
        h.insert(
            header::SET_COOKIE,
            affinity::set_cookie(partition, affinity::is_https(headers)),
        );
    }
    Ok(response)
}

/// The `topics` query parameter: distinct valid names, at most [`MAX_TOPICS`].
fn requested_topics(raw: Option<&str>) -> Result<Vec<Topic>, EdgeError> {
    let mut topics: Vec<Topic> = Vec::new();
    for raw in raw
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        let topic = Topic::parse(raw).map_err(|e| EdgeError::BadRequest(format!("topics: {e}")))?;
        if !topics.contains(&topic) {
            if topics.len() == MAX_TOPICS {
                return Err(EdgeError::BadRequest(format!("topics: at most {MAX_TOPICS}")));
            }
            topics.push(topic);
        }
    }
    Ok(topics)
}

/// Trade the token for a single-use stream ticket.
///
/// So a browser can open the stream with `?ticket=` instead of putting its token in a
/// URL. Only `Authorization: Bearer` or the cookie is accepted here.
#[utoipa::path(
    post,
    path = "/v1/stream/ticket",
    tag = "stream",
    responses(
        (status = 201, description = "A ticket for one stream", body = TicketReply, headers(
            ("Set-Cookie" = String, description = "`tidings_affinity=<key>`, the member's routing key"),
        )),
        (status = 401, description = "No token, or an invalid or expired one", body = ErrorBody),
        (status = 503, description = "The ticket store (NATS) is unavailable; retry after `Retry-After`", body = ErrorBody),
    ),
    security(("bearer" = []), ("cookie" = [])),
)]
async fn ticket(State(state): State<Arc<EdgeState>>, headers: HeaderMap) -> Result<Response, EdgeError> {
    let token = match auth::credential(&headers, None, None) {
        Some(Credential::Token(token)) => token,
        _ => return Err(AuthError::Missing.into()),
    };
    let subscriber = state.verifier.verify(token)?;
    let claims = Claims {
        sub: subscriber.member.to_string(),
        exp: subscriber
            .expires_at
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs(),
        topics: Some(subscriber.topics.iter().map(ToString::to_string).collect()),
    };
    let value = serde_json::to_vec(&claims).map_err(|e| EdgeError::Internal(e.to_string()))?;
    let id = state
        .tickets
        .issue(value.into())
        .await
        .map_err(|e| EdgeError::Unavailable(e.to_string()))?;
    let partition = state.bus.subjects().partition_of(&subscriber.member);
    let body = TicketReply {
        ticket: id,
        expires_in: tidings_bus::TICKET_TTL.as_secs(),
        affinity: affinity::key_of(partition),
    };
    let cookie = affinity::set_cookie(partition, affinity::is_https(&headers));
    Ok((StatusCode::CREATED, [(header::SET_COOKIE, cookie)], axum::Json(body)).into_response())
}

async fn readyz(State(state): State<Arc<EdgeState>>) -> Response {
    let draining = state.lifecycle.drain.is_cancelled();
    let nats = state.bus.is_connected();
    let live = !state.live.stopped().is_cancelled();
    let status = if nats && live && !draining {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({ "nats": nats, "live": live, "draining": draining, "connections": state.hub.connections() });
    (status, axum::Json(body)).into_response()
}

async fn metrics(State(state): State<Arc<EdgeState>>) -> Response {
    let m = &state.metrics;
    m.nats_reconnects
        .inc_by(state.bus.reconnects().saturating_sub(m.nats_reconnects.get()));
    let traffic = state.bus.traffic();
    let replays = state.bus.replay_counts();
    for (counter, total) in [
        (&m.replays_direct, replays.direct),
        (&m.replays_consumer, replays.consumer),
        (&m.replay_fallbacks, replays.fallbacks),
        (&m.replays_window, state.resumes.answered_from_window()),
        (&m.replay_passes, replays.scans),
        (&m.replay_pass_messages, replays.scanned_messages),
        (&m.nats_received_bytes, traffic.received_bytes),
        (&m.nats_sent_bytes, traffic.sent_bytes),
    ] {
        counter.inc_by(total.saturating_sub(counter.get()));
    }
    let (content_type, body) = tidings_telemetry::metrics::render(&m.registry);
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}
