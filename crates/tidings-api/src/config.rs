use std::net::SocketAddr;
use std::time::Duration;

use tidings_bus::{NatsConfig, StreamSettings};
use tidings_domain::{ConfigError, Secret};
use tidings_store::DbConfig;

/// Configuration of an api node. Every field is a flag and an environment variable;
/// `tidings api --help` is the reference.
#[derive(Debug, Clone, clap::Args)]
pub struct ApiConfig {
    /// Address of the gRPC server.
    #[arg(long = "listen", env = "TIDINGS_API_LISTEN", default_value = "0.0.0.0:50051")]
    pub listen: SocketAddr,

    /// Address of `/healthz`, `/readyz` and `/metrics`.
    #[arg(
        long = "http-listen",
        env = "TIDINGS_API_HTTP_LISTEN",
        default_value = "0.0.0.0:9090"
    )]
    pub http_listen: SocketAddr,

    /// Producer API keys, comma-separated `name=key` pairs, or the path of a file with
    /// one pair per line. The name scopes idempotency keys and appears in logs; the key
    /// never does.
    #[arg(long = "api-keys", env = "TIDINGS_API_KEYS", hide_env_values = true)]
    pub api_keys: Option<Secret<String>>,

    /// How long in-flight calls may take to finish after SIGTERM.
    #[arg(long = "shutdown-grace", env = "TIDINGS_SHUTDOWN_GRACE", default_value = "10s",
          value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,

    #[command(flatten)]
    pub db: DbConfig,

    #[command(flatten)]
    pub nats: NatsConfig,

    #[command(flatten)]
    pub stream: StreamSettings,
}

impl ApiConfig {
    /// Checks what clap's types cannot, naming the variable at fault.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.db.connect_options()?;
        self.nats.server_urls()?;
        self.stream.validate()?;
        if let Some(keys) = &self.api_keys
            && keys.expose().trim().is_empty()
        {
            return Err(ConfigError::new("TIDINGS_API_KEYS", "is set but empty"));
        }
        Ok(())
    }
}
