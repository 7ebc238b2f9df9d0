use async_nats::jetstream;
use tidings_proto::v1 as pb;
use tidings_testkit::{TestApi, TestBus, TestDb, init_test_log};

/// A database, a JetStream namespace and an api over them.
pub(crate) struct Harness {
    pub(crate) db: TestDb,
    pub(crate) bus: TestBus,
    pub(crate) api: TestApi,
}

impl Harness {
    pub(crate) async fn start() -> Self {
        init_test_log();
        let db = TestDb::new().await;
        let bus = TestBus::new().await;
        let api = TestApi::start(TestApi::config(&db, &bus), false).await;
        Self { db, bus, api }
    }

    pub(crate) async fn stream_messages(&self) -> u64 {
        let mut stream = self
            .bus
            .bus
            .jetstream()
            .get_stream(&self.bus.settings.name)
            .await
            .unwrap();
        stream.info().await.unwrap().state.messages
    }

    /// A plain gRPC channel to the api, for clients other than the generated one.
    pub(crate) async fn channel(&self) -> tonic::transport::Channel {
        tonic::transport::Channel::from_shared(format!("http://{}", self.api.grpc_addr))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    /// Notification rows in the database.
    pub(crate) async fn notification_rows(&self) -> i64 {
        sqlx::query_scalar("select count(*) from notification")
            .fetch_one(&self.db.pool)
            .await
            .unwrap()
    }

    pub(crate) async fn stored(&self, seq: u64) -> jetstream::message::StreamMessage {
        let stream = self
            .bus
            .bus
            .jetstream()
            .get_stream(&self.bus.settings.name)
            .await
            .unwrap();
        stream.get_raw_message(seq).await.unwrap()
    }
}

pub(crate) fn send_to(members: &[&str]) -> pb::SendRequest {
    pb::SendRequest {
        member_ids: members.iter().map(|m| m.to_string()).collect(),
        r#type: "comment.created".into(),
        content: "Someone replied".into(),
        data_json: r#"{"post":7}"#.into(),
        group_id: "thread-7".into(),
        idempotency_key: String::new(),
    }
}
