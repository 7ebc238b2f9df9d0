//! What an operator sees: one trace from the producer's call to the SSE write, metrics
//! that move with what happens, readiness that follows the dependencies.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{InMemorySpanExporterBuilder, SdkTracerProvider};
use tidings_proto::v1 as pb;
use tidings_testkit::sse::http_request;
use tidings_testkit::{NatsServer, TestApi, TestBus, TestCluster, TestDb, TestEdge, eventually};
use tracing_subscriber::layer::SubscriberExt as _;

/// Sends with an explicit `traceparent`, as an instrumented producer does.
async fn send_traced(cluster: &TestCluster, member: &str, trace_id: &str) -> pb::SendResponse {
    let mut request = tonic::Request::new(pb::SendRequest {
        member_ids: vec![member.into()],
        r#type: "traced".into(),
        content: trace_id.into(),
        ..Default::default()
    });
    let traceparent = format!("00-{trace_id}-00f067aa0ba902b7-01");
    request
        .metadata_mut()
        .insert("traceparent", traceparent.parse().unwrap());
    cluster.client.clone().send(request).await.unwrap().into_inner()
}

/// The api, the JetStream hop and the edge all report into one trace, for a live
/// delivery and for a replayed one. (Single-threaded runtime: the test's subscriber is
/// the default on the one thread every task runs on.)
#[tokio::test]
async fn one_trace_follows_a_notification_from_grpc_to_the_sse_write() {
    opentelemetry::global::set_text_map_propagator(opentelemetry_sdk::propagation::TraceContextPropagator::new());
    let exporter = InMemorySpanExporterBuilder::new().build();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")))
        .with(tracing_subscriber::filter::LevelFilter::INFO);
    let _guard = tracing::subscriber::set_default(subscriber);

    let cluster = TestCluster::start(2).await;
    let live_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let replay_trace = "a1b2c3d4e5f60718293a4b5c6d7e8f90";

    let mut stream = cluster.stream(0, "tess", "", None).await.unwrap();
    stream.next_named("connected").await;
    send_traced(&cluster, "tess", live_trace).await;
    stream.next_named("notification").await;
    let last = stream.last_event_id.clone().unwrap();
    stream.close();
    send_traced(&cluster, "tess", replay_trace).await;
    let mut resumed = cluster.stream(1, "tess", "", Some(&last)).await.unwrap();
    assert_eq!(resumed.next_named("notification").await.json()["content"], replay_trace);

    let spans = eventually("the delivery spans to end", || {
        let exporter = exporter.clone();
        async move {
            let spans = exporter.get_finished_spans().ok()?;
            let delivered = spans.iter().filter(|s| s.name == "sse.deliver").count();
            (delivered >= 2).then_some(spans)
        }
    })
    .await;
    for (trace, path) in [(live_trace, "live"), (replay_trace, "replay")] {
        let in_trace: Vec<_> = spans
            .iter()
            .filter(|s| s.span_context.trace_id().to_string() == trace)
            .collect();
        let names: Vec<&str> = in_trace.iter().map(|s| s.name.as_ref()).collect();
        for expected in ["grpc.request", "postgres.insert_sends", "nats.publish", "sse.deliver"] {
            assert!(
                names.contains(&expected),
                "{path}: {expected} missing from trace {trace}: {names:?}"
            );
        }
        let deliver = in_trace.iter().find(|s| s.name == "sse.deliver").unwrap();
        let path_attr = deliver
            .attributes
            .iter()
            .find(|kv| kv.key.as_str() == "path")
            .map(|kv| kv.value.to_string());
        assert_eq!(path_attr.as_deref(), Some(path));
        let publish = in_trace.iter().find(|s| s.name == "nats.publish").unwrap();
        assert_eq!(
            deliver.parent_span_id,
            publish.span_context.span_id(),
            "the SSE write is a child of the publish"
        );
    }
    drop(provider);
}

pub(crate) fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no series {series} in:\n{text}"))
}

#[tokio::test]
async fn metrics_move_with_what_happens() {
    let cluster = TestCluster::start(1).await;
    let edge = cluster.edges[0].addr;
    let scrape = |addr| async move { http_request(addr, "GET", "/metrics", &[], None).await.1 };

    let mut s = cluster.stream(0, "uma", "", None).await.unwrap();
    s.next_named("connected").await;
    cluster.send(&["uma"], "live").await;
    s.next_named("notification").await;
    let last = s.last_event_id.clone().unwrap();
    s.close();
    cluster.send(&["uma"], "missed").await;
    let mut r = cluster.stream(0, "uma", "", Some(&last)).await.unwrap();
    r.next_named("notification").await;
    let mut bad = cluster.stream(0, "uma", "", Some("forged")).await.unwrap();
    bad.next_named("reset").await;
    let refused = http_request(edge, "GET", "/v1/stream", &[], None).await.0;
    assert_eq!(refused, 401);

    let text = eventually("the first stream's close to be counted", || async {
        let text = scrape(edge).await;
        (metric(&text, r#"tidings_edge_connections_closed_total{reason="client_gone"}"#) >= 1.0).then_some(text)
    })
    .await;
    assert_eq!(metric(&text, "tidings_edge_connections"), 2.0);
    assert_eq!(metric(&text, "tidings_edge_max_connections"), 100_000.0);
    assert_eq!(metric(&text, "tidings_edge_connections_opened_total"), 3.0);
    assert_eq!(
        metric(&text, r#"tidings_edge_events_delivered_total{path="live"}"#),
        1.0
    );
    assert_eq!(
        metric(&text, r#"tidings_edge_events_delivered_total{path="replay"}"#),
        1.0
    );
    assert_eq!(
        metric(&text, r#"tidings_edge_resets_total{reason="malformed_id"}"#),
        1.0
    );
    assert_eq!(
        metric(
            &text,
            r#"tidings_edge_connections_refused_total{reason="unauthenticated"}"#
        ),
        1.0
    );
    assert_eq!(metric(&text, "tidings_edge_replay_events_count"), 1.0);
    assert_eq!(
        metric(&text, r#"tidings_edge_delivery_latency_seconds_count{path="live"}"#),
        1.0
    );
    assert!(metric(&text, "tidings_edge_live_messages_received_total") >= 1.0);
    assert_eq!(metric(&text, "tidings_edge_nats_interests"), 1.0);
    assert_eq!(metric(&text, "tidings_edge_nats_reconnects_total"), 0.0);
    assert!(metric(&text, "process_resident_memory_bytes") > 0.0);

    let api = scrape(cluster.api.http_addr).await;
    assert_eq!(
        metric(&api, r#"tidings_api_grpc_requests_total{code="OK",method="Send"}"#),
        2.0
    );
    assert_eq!(
        metric(
            &api,
            r#"tidings_api_grpc_request_duration_seconds_count{method="Send"}"#
        ),
        2.0
    );
    assert_eq!(metric(&api, "tidings_api_notifications_stored_total"), 2.0);
    assert_eq!(
        metric(&api, r#"tidings_api_notifications_published_total{path="inline"}"#),
        2.0
    );
    for stage in ["queued", "stored", "published"] {
        let count = metric(
            &api,
            &format!(r#"tidings_api_send_stage_seconds_count{{stage="{stage}"}}"#),
        );
        assert!((1.0..=2.0).contains(&count), "{stage}: {count}");
    }
    assert_eq!(metric(&api, "tidings_api_outbox_backlog"), 0.0);
    assert_eq!(metric(&api, "tidings_api_outbox_oldest_age_seconds"), 0.0);
    // An invalid request is counted under its code.
    let _ = cluster.client.clone().send(pb::SendRequest::default()).await;
    let api = scrape(cluster.api.http_addr).await;
    assert_eq!(
        metric(
            &api,
            r#"tidings_api_grpc_requests_total{code="INVALID_ARGUMENT",method="Send"}"#
        ),
        1.0
    );
}

#[tokio::test]
async fn readiness_follows_nats_and_comes_back() {
    let db = TestDb::new().await;
    let mut nats = NatsServer::start().await;
    let bus = TestBus::on(nats.url()).await;
    let api = TestApi::start(TestApi::config(&db, &bus), false).await;
    let edge = TestEdge::start(TestEdge::config(&bus, &api)).await;
    let ready = |addr| async move { http_request(addr, "GET", "/readyz", &[], None).await };
    let health = |addr| async move { http_request(addr, "GET", "/healthz", &[], None).await.0 };
    assert_eq!(ready(api.http_addr).await.0, 200);
    assert_eq!(ready(edge.addr).await.0, 200);

    nats.kill();
    for addr in [api.http_addr, edge.addr] {
        let (_, body) = eventually("not ready without NATS", || async move {
            let (status, body) = ready(addr).await;
            (status == 503).then_some((status, body))
        })
        .await;
        assert!(body.contains(r#""nats":false"#), "{body}");
        assert_eq!(health(addr).await, 200, "alive all the same");
    }
    nats.restart().await;
    for addr in [api.http_addr, edge.addr] {
        eventually(
            "ready again",
            || async move { (ready(addr).await.0 == 200).then_some(()) },
        )
        .await;
    }
}

/// A NATS server that stops answering without closing its sockets (a hung process, a
/// silent partition) is noticed by the roles' pings within a few intervals: both turn
/// not-ready, and ready again once it answers.
#[tokio::test]
async fn readiness_notices_a_nats_server_that_stops_answering() {
    let db = TestDb::new().await;
    let nats = NatsServer::start().await;
    let bus = TestBus::on(nats.url()).await;
    let ping = std::time::Duration::from_secs(1);
    let mut api_config = TestApi::config(&db, &bus);
    api_config.nats.ping_interval = ping;
    let api = TestApi::start(api_config, false).await;
    let mut edge_config = TestEdge::config(&bus, &api);
    edge_config.nats.ping_interval = ping;
    let edge = TestEdge::start(edge_config).await;
    let ready = |addr| async move { http_request(addr, "GET", "/readyz", &[], None).await.0 };
    assert_eq!(ready(api.http_addr).await, 200);
    assert_eq!(ready(edge.addr).await, 200);

    // Noticed within about three pings; with a client's default interval (a minute)
    // this would outlast the test's patience (20 s) by minutes.
    nats.pause();
    for addr in [api.http_addr, edge.addr] {
        eventually("not ready while NATS does not answer", || async move {
            (ready(addr).await == 503).then_some(())
        })
        .await;
    }
    nats.resume();
    for addr in [api.http_addr, edge.addr] {
        eventually(
            "ready again",
            || async move { (ready(addr).await == 200).then_some(()) },
        )
        .await;
    }
}
