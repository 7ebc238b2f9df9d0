use std::net::SocketAddr;
use std::time::Duration;

use tidings_edge::{Claims, EdgeApp, EdgeConfig, EdgeStats, StatsHandle, Verifier, expiry_in};
use tokio_util::sync::CancellationToken;

use crate::{TestApi, TestBus};

/// The HS256 secret test edges verify and [`TestEdge::token`] signs with.
pub const TEST_JWT_SECRET: &str = "test-jwt-secret-0123456789abcdef0123456789";

/// A real edge node in this process on an OS-chosen port.
#[derive(Debug)]
pub struct TestEdge {
    pub addr: SocketAddr,
    stats: StatsHandle,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl TestEdge {
    /// The default test config: the namespace's stream, the api's address and key,
    /// [`TEST_JWT_SECRET`], a short drain window.
    pub fn config(bus: &TestBus, api: &TestApi) -> EdgeConfig {
        let mut config = EdgeConfig::new(
            bus.nats_config(),
            bus.settings.clone(),
            format!("http://{}", api.grpc_addr),
            TEST_JWT_SECRET.into(),
        );
        config.options.api_key = api.api_key.clone().map(Into::into);
        config.options.drain_window = Duration::from_secs(2);
        config
    }

    pub async fn start(config: EdgeConfig) -> Self {
        let app = EdgeApp::build(config, false)
            .await
            .unwrap_or_else(|e| panic!("starting an edge: {e:#}"));
        let addr = app.local_addr();
        let stats = app.stats_handle();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(app.run(shutdown.clone()));
        Self {
            addr,
            stats,
            shutdown,
            task: Some(task),
        }
    }

    pub fn stats(&self) -> EdgeStats {
        self.stats.get()
    }

    pub fn stats_handle(&self) -> &StatsHandle {
        &self.stats
    }

    /// A subscriber token for `member`, valid for `ttl`, allowed to join `topics`.
    pub fn token(member: &str, topics: &[&str], ttl: Duration) -> String {
        let claims = Claims {
            sub: member.into(),
            exp: expiry_in(ttl),
            topics: (!topics.is_empty()).then(|| topics.iter().map(|t| t.to_string()).collect()),
        };
        Verifier::hs256(TEST_JWT_SECRET.as_bytes())
            .sign(&claims)
            .expect("invariant: HS256 signs")
    }

    /// SIGTERM: drain and wait for the node to exit; returns how long that took.
    pub async fn terminate(mut self) -> Duration {
        let started = std::time::Instant::now();
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        started.elapsed()
    }

    /// Waits up to `within` for the node to stop by itself (without a SIGTERM) and
    /// returns how `run` ended; `None` if it is still running.
    pub async fn exited_within(&mut self, within: Duration) -> Option<anyhow::Result<()>> {
        let task = self.task.as_mut()?;
        let ended = tokio::time::timeout(within, task).await.ok()?;
        self.task = None;
        Some(ended.unwrap_or_else(|e| Err(anyhow::anyhow!("the edge task panicked: {e}"))))
    }

    /// Starts the drain without waiting for it.
    pub fn begin_drain(&self) {
        self.shutdown.cancel();
    }
}

impl Drop for TestEdge {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
