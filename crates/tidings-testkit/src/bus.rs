use std::time::Duration;

use tidings_bus::{Bus, NatsConfig, StreamSettings};

use crate::services::{Keepalive, services};

/// An isolated JetStream namespace for one test: a stream and subject prefix nobody else
/// uses, on the shared NATS server (or on a spawned one, [`TestBus::on`]). The stream is
/// created through [`Bus`], exactly as the roles create it, and deleted on drop.
#[derive(Debug)]
pub struct TestBus {
    /// Stream name `T_<hex>` and prefix `t_<hex>`; hand these to role configs.
    pub settings: StreamSettings,
    pub nats_url: String,
    pub bus: Bus,
    _services: Keepalive,
}

impl TestBus {
    /// A namespace on the shared NATS server.
    pub async fn new() -> Self {
        let (urls, keep) = services().await;
        Self::create(urls.nats_url, keep).await
    }

    /// A namespace on the shared NATS server whose stream has `partitions` live
    /// partitions (1,024 by default), so a test can make an edge need most of them.
    pub async fn partitioned(partitions: u16) -> Self {
        let (urls, keep) = services().await;
        let mut settings = namespace();
        settings.partitions = partitions;
        Self::create_with(urls.nats_url, settings, keep).await
    }

    /// A namespace on the given server(s), e.g. a [`crate::NatsServer`].
    pub async fn on(nats_url: impl Into<String>) -> Self {
        Self::create(nats_url.into(), None).await
    }

    /// Like [`TestBus::on`] with replicated storage, for a [`crate::NatsCluster`].
    pub async fn replicated(nats_url: impl Into<String>, replicas: u8) -> Self {
        let mut settings = namespace();
        settings.replicas = replicas;
        Self::create_with(nats_url.into(), settings, None).await
    }

    async fn create(nats_url: String, keep: Keepalive) -> Self {
        Self::create_with(nats_url, namespace(), keep).await
    }

    async fn create_with(nats_url: String, settings: StreamSettings, keep: Keepalive) -> Self {
        let config = NatsConfig::new(nats_url.clone());
        let bus = Bus::connect(&config, &settings, "tidings-test")
            .await
            .unwrap_or_else(|e| panic!("creating test stream {} at NATS_URL: {e}", settings.name));
        Self {
            settings,
            nats_url,
            bus,
            _services: keep,
        }
    }

    /// A role config pointing at this namespace's server.
    pub fn nats_config(&self) -> NatsConfig {
        NatsConfig::new(self.nats_url.clone())
    }
}

impl Drop for TestBus {
    fn drop(&mut self) {
        let (url, stream) = (self.nats_url.clone(), self.settings.name.clone());
        // The test's runtime may be single-threaded and is blocked in this drop: use a
        // connection and runtime of our own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let client = async_nats::ConnectOptions::new()
                    .connection_timeout(Duration::from_secs(2))
                    .connect(url.split(',').collect::<Vec<_>>().as_slice())
                    .await
                    .ok()?;
                let js = async_nats::jetstream::new(client);
                tokio::time::timeout(Duration::from_secs(5), js.delete_stream(&stream))
                    .await
                    .ok()?
                    .ok()
            })
        })
        .join();
    }
}

fn namespace() -> StreamSettings {
    let id = uuid::Uuid::new_v4().simple().to_string();
    StreamSettings {
        name: format!("T_{}", &id[..16]),
        prefix: format!("t_{}", &id[..16]),
        ..StreamSettings::default()
    }
}
