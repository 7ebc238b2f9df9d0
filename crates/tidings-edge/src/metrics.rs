//! The edge's Prometheus metrics. Hot-path series (`live`/`replay` deliveries, latency)
//! are resolved once here, not per event.

use prometheus::{Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

#[derive(Debug, Clone)]
pub(crate) struct EdgeMetrics {
    pub(crate) registry: Registry,
    pub(crate) connections: IntGauge,
    pub(crate) max_connections: IntGauge,
    pub(crate) opened: IntCounter,
    pub(crate) started_live: IntCounter,
    pub(crate) closed: IntCounterVec,
    pub(crate) refused: IntCounterVec,
    pub(crate) delivered_live: IntCounter,
    pub(crate) delivered_replay: IntCounter,
    pub(crate) resets: IntCounterVec,
    pub(crate) replay_size: Histogram,
    pub(crate) latency_live: Histogram,
    pub(crate) latency_replay: Histogram,
    pub(crate) live_received: IntCounter,
    pub(crate) interests: IntGauge,
    pub(crate) live_partitions: IntGauge,
    pub(crate) affinity_mismatches: IntCounter,
    pub(crate) nats_reconnects: IntCounter,
    /// Copied from the bus's connection statistics when scraped.
    pub(crate) nats_received_bytes: IntCounter,
    pub(crate) nats_sent_bytes: IntCounter,
    /// Copied from the bus's counters when scraped.
    pub(crate) replays_direct: IntCounter,
    pub(crate) replays_consumer: IntCounter,
    pub(crate) replay_fallbacks: IntCounter,
    pub(crate) replays_window: IntCounter,
    pub(crate) replay_passes: IntCounter,
    pub(crate) replay_pass_messages: IntCounter,
    /// Unread counts shown, by where they came from: carried by the message
    /// (`Tidings-Unread`) or fetched from the api.
    pub(crate) unread_carried: IntCounter,
    pub(crate) unread_fetched: IntCounter,
}

impl EdgeMetrics {
    pub(crate) fn new() -> Self {
        let registry = tidings_telemetry::metrics::registry();
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("invariant: valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("invariant: registered once");
            c
        };
        let counter_vec = |name: &str, help: &str, label: &str| {
            let c = IntCounterVec::new(Opts::new(name, help), &[label]).expect("invariant: valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("invariant: registered once");
            c
        };
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("invariant: valid metric");
            registry
                .register(Box::new(g.clone()))
                .expect("invariant: registered once");
            g
        };
        let delivered = counter_vec(
            "tidings_edge_events_delivered_total",
            "SSE events written, by path (live, replay)",
            "path",
        );
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "tidings_edge_delivery_latency_seconds",
                "From the publisher's Tidings-Published-At to the SSE write, by path",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 30.0,
            ]),
            &["path"],
        )
        .expect("invariant: valid metric");
        registry
            .register(Box::new(latency.clone()))
            .expect("invariant: registered once");
        let replay_size = Histogram::with_opts(
            HistogramOpts::new("tidings_edge_replay_events", "Events replayed per resume")
                .buckets(vec![0.0, 1.0, 5.0, 10.0, 50.0, 100.0, 500.0, 1000.0, 5000.0]),
        )
        .expect("invariant: valid metric");
        registry
            .register(Box::new(replay_size.clone()))
            .expect("invariant: registered once");
        let replays = counter_vec(
            "tidings_edge_replays_total",
            "Replays (resumes and gap fetches) by how the stream was read (direct_get, consumer, window)",
            "method",
        );
        let unread = counter_vec(
            "tidings_edge_unread_counts_total",
            "Unread counts handed to this node's streams, by source: carried (in the message that changed the count) or fetched (GetUnreadCount: at connect, and for messages without a count)",
            "source",
        );
        Self {
            unread_carried: unread.with_label_values(&["carried"]),
            unread_fetched: unread.with_label_values(&["fetched"]),
            replays_direct: replays.with_label_values(&["direct_get"]),
            replays_consumer: replays.with_label_values(&["consumer"]),
            replays_window: replays.with_label_values(&["window"]),
            replay_passes: counter(
                "tidings_edge_replay_passes_total",
                "Ranges of the stream read in one pass to answer a reconnect storm's resumes",
            ),
            replay_pass_messages: counter(
                "tidings_edge_replay_pass_messages_total",
                "Stream messages those passes read",
            ),
            replay_fallbacks: counter(
                "tidings_edge_replay_fallbacks_total",
                "Direct Get replays that gave up (a replica behind, an error) and used a consumer",
            ),
            connections: gauge("tidings_edge_connections", "Open SSE streams on this node"),
            max_connections: gauge(
                "tidings_edge_max_connections",
                "The node's stream limit (TIDINGS_MAX_CONNECTIONS)",
            ),
            opened: counter("tidings_edge_connections_opened_total", "SSE streams opened"),
            started_live: counter(
                "tidings_edge_connections_started_live_total",
                "Fresh SSE streams that started live at once, without a catch-up: the node already held and had accounted for their interest",
            ),
            closed: counter_vec(
                "tidings_edge_connections_closed_total",
                "SSE streams closed, by reason (client_gone, slow_consumer, drain, token_expired, stream_replaced, error)",
                "reason",
            ),
            refused: counter_vec(
                "tidings_edge_connections_refused_total",
                "Stream requests refused, by reason (unauthenticated, forbidden, bad_request, node_limit, member_limit, draining)",
                "reason",
            ),
            delivered_live: delivered.with_label_values(&["live"]),
            delivered_replay: delivered.with_label_values(&["replay"]),
            resets: counter_vec("tidings_edge_resets_total", "reset events sent, by reason", "reason"),
            replay_size,
            latency_live: latency.with_label_values(&["live"]),
            latency_replay: latency.with_label_values(&["replay"]),
            live_received: counter(
                "tidings_edge_live_messages_received_total",
                "Live messages received from NATS",
            ),
            interests: gauge(
                "tidings_edge_nats_interests",
                "NATS subscriptions held (member partitions and topics)",
            ),
            live_partitions: gauge(
                "tidings_edge_live_partitions",
                "Member partitions whose live messages this node receives: those its connections live in, or every partition while it holds one subscription to all of them",
            ),
            affinity_mismatches: counter(
                "tidings_edge_affinity_mismatches_total",
                "Authenticated streams that presented an affinity key (?affinity= or the tidings_affinity cookie) other than their member's partition; served anyway, and given the right cookie",
            ),
            nats_reconnects: counter("tidings_edge_nats_reconnects_total", "Reconnections to NATS"),
            nats_received_bytes: counter(
                "tidings_edge_nats_received_bytes_total",
                "Bytes read from this node's NATS connection (live messages, replays, protocol)",
            ),
            nats_sent_bytes: counter(
                "tidings_edge_nats_sent_bytes_total",
                "Bytes written to this node's NATS connection",
            ),
            registry,
        }
    }
}
