use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tidings_bus::{NatsConfig, StreamSettings};
use tidings_domain::{ConfigError, Secret};

/// Configuration of an edge node. Every field is a flag and an environment variable;
/// `tidings edge --help` is the reference.
#[derive(Debug, Clone, clap::Args)]
pub struct EdgeConfig {
    /// Address of the HTTP server (SSE stream, inbox REST, health, metrics).
    #[arg(long = "listen", env = "TIDINGS_EDGE_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,

    /// How the edge reaches the api's gRPC server (inbox REST calls go there).
    #[arg(long = "api-url", env = "TIDINGS_API_URL", default_value = "http://127.0.0.1:50051")]
    pub api_url: String,

    /// Producer API key the edge presents to the api, when the api requires keys.
    #[arg(long = "api-key", env = "TIDINGS_EDGE_API_KEY", hide_env_values = true)]
    pub api_key: Option<Secret<String>>,

    /// HS256 secret that subscriber tokens are signed with.
    #[arg(long = "jwt-secret", env = "TIDINGS_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<Secret<String>>,

    /// PEM file with the public key (RS256, ES256 or EdDSA) subscriber tokens are
    /// signed with.
    #[arg(long = "jwt-public-key", env = "TIDINGS_JWT_PUBLIC_KEY")]
    pub jwt_public_key: Option<PathBuf>,

    /// Topic delivery modes by name pattern, first match wins: `latest` sends only the
    /// newest message on connect or resume, `all` replays every missed one.
    #[arg(long = "topic-modes", env = "TIDINGS_TOPIC_MODES", default_value = "*=all")]
    pub topic_modes: String,

    /// Browser origins allowed to connect, comma-separated (credentials allowed).
    #[arg(long = "cors-origins", env = "TIDINGS_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,

    /// Comment heartbeat interval on idle streams.
    #[arg(long = "heartbeat", env = "TIDINGS_HEARTBEAT", default_value = "15s",
          value_parser = humantime::parse_duration)]
    pub heartbeat: Duration,

    /// Most events one reconnect replays; beyond it the client gets `event: reset`.
    #[arg(long = "replay-limit", env = "TIDINGS_REPLAY_LIMIT", default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub replay_limit: u32,

    /// Window over which open streams are closed after SIGTERM.
    #[arg(long = "drain-window", env = "TIDINGS_DRAIN_WINDOW", default_value = "20s",
          value_parser = humantime::parse_duration)]
    pub drain_window: Duration,

    #[command(flatten)]
    pub nats: NatsConfig,

    #[command(flatten)]
    pub stream: StreamSettings,
}

impl EdgeConfig {
    /// Checks what clap's types cannot, naming the variable at fault.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.nats.server_urls()?;
        self.stream.validate()?;
        let api = url::Url::parse(&self.api_url)
            .map_err(|e| ConfigError::new("TIDINGS_API_URL", format!("not a URL ({e})")))?;
        if !matches!(api.scheme(), "http" | "https") {
            return Err(ConfigError::new(
                "TIDINGS_API_URL",
                "scheme must be http:// or https://",
            ));
        }
        if self.jwt_secret.is_some() && self.jwt_public_key.is_some() {
            return Err(ConfigError::new(
                "TIDINGS_JWT_SECRET",
                "set either TIDINGS_JWT_SECRET or TIDINGS_JWT_PUBLIC_KEY, not both",
            ));
        }
        if let Some(secret) = &self.jwt_secret
            && secret.expose().len() < 32
        {
            return Err(ConfigError::new("TIDINGS_JWT_SECRET", "must be at least 32 bytes"));
        }
        for origin in &self.cors_origins {
            let ok = url::Url::parse(origin).is_ok_and(|u| matches!(u.scheme(), "http" | "https"));
            if !ok || origin.ends_with('/') {
                return Err(ConfigError::new(
                    "TIDINGS_CORS_ORIGINS",
                    format!("{origin:?} is not an origin like https://app.example.com"),
                ));
            }
        }
        if self.heartbeat < Duration::from_secs(1) {
            return Err(ConfigError::new("TIDINGS_HEARTBEAT", "must be at least 1s"));
        }
        Ok(())
    }
}
