use std::time::Duration;

use tidings_proto::v1 as pb;

use crate::sse::{Refusal, SseStream};
use crate::{ApiClient, TcpProxy, TestApi, TestBus, TestDb, TestEdge, init_test_log};

/// A whole Tidings cluster in this process: a database, a JetStream namespace, one api
/// and `n` edges, all real.
#[derive(Debug)]
pub struct TestCluster {
    pub db: TestDb,
    pub bus: TestBus,
    pub api: TestApi,
    pub edges: Vec<TestEdge>,
    pub client: ApiClient,
}

impl TestCluster {
    pub async fn start(edges: usize) -> Self {
        Self::start_with(edges, |_| {}).await
    }

    /// Like [`TestCluster::start`], letting the caller adjust each edge's config.
    pub async fn start_with(edges: usize, adjust: impl Fn(&mut tidings_edge::EdgeConfig)) -> Self {
        init_test_log();
        Self::start_on(TestBus::new().await, edges, adjust).await
    }

    /// One edge whose NATS connection goes through a [`TcpProxy`] the test controls (the
    /// api reaches NATS directly): for an edge's NATS outages. `adjust` as in
    /// [`TestCluster::start_with`].
    pub async fn start_behind_proxy(adjust: impl Fn(&mut tidings_edge::EdgeConfig)) -> (Self, TcpProxy) {
        init_test_log();
        let bus = TestBus::new().await;
        let nats = bus
            .nats_url
            .trim_start_matches("nats://")
            .parse()
            .expect("invariant: the test NATS URL is one loopback address");
        let proxy = TcpProxy::start(nats).await;
        let url = format!("nats://{}", proxy.addr());
        let cluster = Self::start_on(bus, 1, |config| {
            config.nats.url = url.clone().into();
            adjust(config);
        })
        .await;
        (cluster, proxy)
    }

    /// Like [`TestCluster::start`] over a NATS cluster, with a stream replicated on each
    /// of its nodes (R3 on three).
    pub async fn start_replicated(nats: &crate::NatsCluster, edges: usize) -> Self {
        init_test_log();
        let replicas = u8::try_from(nats.nodes().len()).expect("invariant: a handful of nodes");
        Self::start_on(TestBus::replicated(nats.urls(), replicas).await, edges, |_| {}).await
    }

    /// Like [`TestCluster::start`] with a stream of `partitions` live partitions.
    pub async fn start_partitioned(edges: usize, partitions: u16) -> Self {
        init_test_log();
        Self::start_on(TestBus::partitioned(partitions).await, edges, |_| {}).await
    }

    async fn start_on(bus: TestBus, edges: usize, adjust: impl Fn(&mut tidings_edge::EdgeConfig)) -> Self {
        let db = TestDb::new().await;
        let api = TestApi::start(TestApi::config(&db, &bus), false).await;
        let mut nodes = Vec::new();
        for _ in 0..edges {
            let mut config = TestEdge::config(&bus, &api);
            adjust(&mut config);
            nodes.push(TestEdge::start(config).await);
        }
        let client = api.client().await;
        Self {
            db,
            bus,
            api,
            edges: nodes,
            client,
        }
    }

    /// Opens a stream on edge `edge` for `member` with a fresh token.
    pub async fn stream(
        &self,
        edge: usize,
        member: &str,
        query: &str,
        last_event_id: Option<&str>,
    ) -> Result<SseStream, Refusal> {
        let token = TestEdge::token(member, &["ranking", "news", "board"], Duration::from_secs(3600));
        let auth = format!("Bearer {token}");
        let mut headers = vec![("authorization", auth.as_str())];
        if let Some(id) = last_event_id {
            headers.push(("last-event-id", id));
        }
        crate::sse::connect(self.edges[edge].addr, &format!("/v1/stream{query}"), &headers).await
    }

    /// Sends a notification to `members`; returns the response.
    pub async fn send(&self, members: &[&str], content: &str) -> pb::SendResponse {
        let request = pb::SendRequest {
            member_ids: members.iter().map(|m| m.to_string()).collect(),
            r#type: "test.event".into(),
            content: content.into(),
            ..Default::default()
        };
        self.client
            .clone()
            .send(request)
            .await
            .unwrap_or_else(|e| panic!("send: {e}"))
            .into_inner()
    }

    /// Publishes `data` to `topic`; returns the event id.
    pub async fn publish(&self, topic: &str, data: &str) -> String {
        let request = pb::PublishRequest {
            topic: topic.into(),
            event: String::new(),
            data_json: data.into(),
        };
        self.client
            .clone()
            .publish(request)
            .await
            .unwrap_or_else(|e| panic!("publish: {e}"))
            .into_inner()
            .event_id
    }
}
