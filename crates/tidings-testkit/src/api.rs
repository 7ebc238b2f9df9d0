use std::net::SocketAddr;

use tidings_api::{ApiConfig, App};
use tidings_proto::v1::notification_service_client::NotificationServiceClient;
use tokio_util::sync::CancellationToken;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::{TestBus, TestDb};

/// A real api node in this process on ports the OS chose, stopped on drop.
#[derive(Debug)]
pub struct TestApi {
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    /// The key [`TestApi::client`] presents; `None` when the api runs without keys.
    pub api_key: Option<String>,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

/// A NotificationService client that presents the test's API key.
pub type ApiClient = NotificationServiceClient<InterceptedService<Channel, BearerKey>>;

impl TestApi {
    /// The default test config for this database and namespace: ports chosen by the OS,
    /// one producer key `test=test-key-0123456789`, quick relay polling.
    pub fn config(db: &TestDb, bus: &TestBus) -> ApiConfig {
        let mut config = ApiConfig::new(db.config(), bus.nats_config(), bus.settings.clone());
        config.api_keys = Some("test=test-key-0123456789".to_owned().into());
        config.relay_poll = std::time::Duration::from_millis(50);
        config
    }

    /// Builds and runs an api with `config` (`dev` = keys optional).
    pub async fn start(config: ApiConfig, dev: bool) -> Self {
        let api_key = config.api_keys.as_ref().and_then(|k| {
            k.expose()
                .split(',')
                .next()
                .and_then(|p| p.split_once('='))
                .map(|(_, key)| key.to_owned())
        });
        let app = App::build(config, dev)
            .await
            .unwrap_or_else(|e| panic!("starting the api: {e:#}"));
        let (grpc_addr, http_addr) = (app.grpc_addr(), app.http_addr());
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(app.run(shutdown.clone()));
        Self {
            grpc_addr,
            http_addr,
            api_key,
            shutdown,
            task: Some(task),
        }
    }

    /// A client presenting this api's key.
    pub async fn client(&self) -> ApiClient {
        self.client_with_key(self.api_key.clone()).await
    }

    /// A client presenting `key` (or none).
    pub async fn client_with_key(&self, key: Option<String>) -> ApiClient {
        let channel = Channel::from_shared(format!("http://{}", self.grpc_addr))
            .expect("invariant: a socket address makes a URI")
            .connect()
            .await
            .unwrap_or_else(|e| panic!("connecting to the test api: {e}"));
        NotificationServiceClient::with_interceptor(channel, BearerKey(key))
            .max_decoding_message_size(64 * 1024 * 1024)
            .max_encoding_message_size(64 * 1024 * 1024)
    }

    /// Stops the api as SIGTERM would and waits for it.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        match self.task.take() {
            Some(task) => task.await?,
            None => Ok(()),
        }
    }
}

impl Drop for TestApi {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Adds `authorization: Bearer <key>` to every call.
#[derive(Debug, Clone)]
pub struct BearerKey(pub Option<String>);

impl tonic::service::Interceptor for BearerKey {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(key) = &self.0 {
            let value = format!("Bearer {key}")
                .parse()
                .map_err(|_| tonic::Status::internal("bad test key"))?;
            request.metadata_mut().insert("authorization", value);
        }
        Ok(request)
    }
}
