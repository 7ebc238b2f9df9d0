use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tidings_bus::{NatsConfig, StreamSettings};
use tidings_domain::{ConfigError, Secret};

use crate::topics::{PublicTopics, TopicModes};

/// Configuration of an edge node. Every field is a flag and an environment variable;
/// `tidings edge --help` is the reference.
#[derive(Debug, Clone, clap::Args)]
pub struct EdgeConfig {
    #[command(flatten)]
    pub options: EdgeOptions,

    #[command(flatten)]
    pub nats: NatsConfig,

    #[command(flatten)]
    pub stream: StreamSettings,
}

/// The edge's own settings (NATS and the stream are shared with the api, so `tidings
/// dev` can take both roles' options at once).
#[derive(Debug, Clone, clap::Args)]
pub struct EdgeOptions {
    /// Address of the HTTP server (SSE stream, inbox REST, health, metrics).
    #[arg(
        id = "edge_listen",
        long = "edge-listen",
        env = "TIDINGS_EDGE_LISTEN",
        default_value = "0.0.0.0:8080"
    )]
    pub listen: SocketAddr,

    /// Name of this node in `connected` events and logs (default: the host name).
    #[arg(long = "node-name", env = "TIDINGS_NODE_NAME")]
    pub node_name: Option<String>,

    /// How the edge reaches the api's gRPC server (inbox REST calls go there).
    #[arg(long = "api-url", env = "TIDINGS_API_URL", default_value = "http://127.0.0.1:50051")]
    pub api_url: String,

    /// Producer API key the edge presents to the api, when the api requires keys.
    #[arg(long = "api-key", env = "TIDINGS_EDGE_API_KEY", hide_env_values = true)]
    pub api_key: Option<Secret<String>>,

    /// HS256 secret that subscriber tokens are signed with (at least 32 bytes).
    #[arg(long = "jwt-secret", env = "TIDINGS_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<Secret<String>>,

    /// PEM file with the public key subscriber tokens are signed with: RSA (RS256),
    /// P-256 (ES256) or Ed25519 (EdDSA).
    #[arg(long = "jwt-public-key", env = "TIDINGS_JWT_PUBLIC_KEY")]
    pub jwt_public_key: Option<PathBuf>,

    /// Topic delivery modes by name pattern, first match wins: `latest` sends only the
    /// newest message on connect or resume (and conflates for slow readers), `all`
    /// replays every missed one. Patterns may end in `*`.
    #[arg(long = "topic-modes", env = "TIDINGS_TOPIC_MODES", default_value = "*=all")]
    pub topic_modes: String,

    /// Topics anyone may join without a token, comma-separated names or `prefix*`: a
    /// stream of only such topics needs no credential and carries no inbox. Default none.
    #[arg(long = "public-topics", env = "TIDINGS_PUBLIC_TOPICS", default_value = "")]
    pub public_topics: String,

    /// Serve the demo page and its development endpoints (which mint tokens for any
    /// member): only `tidings dev` turns this on.
    #[arg(skip)]
    pub demo: bool,

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

    /// Events queued for one connection before it counts as a slow reader and is
    /// closed (it resumes by Last-Event-ID).
    #[arg(long = "connection-queue", env = "TIDINGS_CONNECTION_QUEUE", default_value_t = 1024,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub connection_queue: u32,

    /// Most open streams on this node; beyond it new ones get 503 with Retry-After.
    #[arg(
        id = "edge_max_connections",
        long = "max-connections",
        env = "TIDINGS_MAX_CONNECTIONS",
        default_value_t = 100_000
    )]
    pub max_connections: u32,

    /// Most open streams of one member on this node (tabs, devices).
    #[arg(
        long = "max-connections-per-member",
        env = "TIDINGS_MAX_CONNECTIONS_PER_MEMBER",
        default_value_t = 16
    )]
    pub max_connections_per_member: u32,

    /// How long before a token's `exp` the stream sends `event: reauth`.
    #[arg(long = "reauth-before", env = "TIDINGS_REAUTH_BEFORE", default_value = "60s",
          value_parser = humantime::parse_duration)]
    pub reauth_before: Duration,

    /// Window over which open streams are closed after SIGTERM, spread evenly.
    #[arg(long = "drain-window", env = "TIDINGS_DRAIN_WINDOW", default_value = "20s",
          value_parser = humantime::parse_duration)]
    pub drain_window: Duration,

    /// The `retry:` a stream announces first (browsers reconnect after it).
    #[arg(long = "retry", env = "TIDINGS_RETRY", default_value = "3s",
          value_parser = humantime::parse_duration)]
    pub retry: Duration,

    /// After the drain window, how long the edge waits for connections and tasks to
    /// finish before exiting anyway (with a warning). The api reads the same variable.
    #[arg(
        id = "edge_shutdown_grace",
        long = "edge-shutdown-grace",
        env = "TIDINGS_SHUTDOWN_GRACE",
        default_value = "10s",
        value_parser = humantime::parse_duration
    )]
    pub shutdown_grace: Duration,
}

impl EdgeConfig {
    /// A config for tests and embedding: the given NATS and stream, an OS-chosen port,
    /// the given HS256 secret.
    pub fn new(nats: NatsConfig, stream: StreamSettings, api_url: String, jwt_secret: String) -> Self {
        Self {
            options: EdgeOptions::new(api_url, jwt_secret),
            nats,
            stream,
        }
    }

    /// Checks what clap's types cannot, naming the variable at fault. `dev` allows no
    /// key at all (the dev command uses a fixed development secret).
    pub fn validate(&self, dev: bool) -> Result<(), ConfigError> {
        self.nats.validate()?;
        self.stream.validate()?;
        self.options.validate(dev)?;
        let per_subject = u64::try_from(self.stream.max_msgs_per_subject).ok().filter(|n| *n > 0);
        replay_limit_fits(self.options.replay_limit, per_subject)
    }
}

/// A resume may not miss more than the stream keeps of one subject: were more than
/// `max_msgs_per_subject` messages sent to a member since its last id, the oldest would
/// be trimmed, and only a replay limit below that bound turns such a resume into a
/// `reset` (it then finds more than the limit) instead of a silent hole.
pub(crate) fn replay_limit_fits(replay_limit: u32, max_msgs_per_subject: Option<u64>) -> Result<(), ConfigError> {
    match max_msgs_per_subject {
        Some(max) if u64::from(replay_limit) >= max => Err(ConfigError::new(
            "TIDINGS_REPLAY_LIMIT",
            format!(
                "{replay_limit} must be below the stream's max messages per subject ({max}, \
                 TIDINGS_STREAM_MAX_MSGS_PER_SUBJECT): a resume could otherwise miss trimmed messages without a reset"
            ),
        )),
        _ => Ok(()),
    }
}

impl EdgeOptions {
    /// Defaults for tests and embedding: an OS-chosen loopback port, the given api and
    /// HS256 secret.
    pub fn new(api_url: String, jwt_secret: String) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            node_name: None,
            api_url,
            api_key: None,
            jwt_secret: Some(Secret::new(jwt_secret)),
            jwt_public_key: None,
            topic_modes: "*=all".into(),
            public_topics: String::new(),
            demo: false,
            cors_origins: Vec::new(),
            heartbeat: Duration::from_secs(15),
            replay_limit: 1000,
            connection_queue: 1024,
            max_connections: 100_000,
            max_connections_per_member: 16,
            reauth_before: Duration::from_secs(60),
            drain_window: Duration::from_secs(20),
            retry: Duration::from_secs(3),
            shutdown_grace: Duration::from_secs(10),
        }
    }

    /// This node's name: `TIDINGS_NODE_NAME`, else the host name (`HOSTNAME`, which
    /// Kubernetes sets to the pod's name), else `edge`.
    pub fn node_name(&self) -> String {
        self.node_name
            .clone()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| "edge".into())
    }

    pub fn validate(&self, dev: bool) -> Result<(), ConfigError> {
        let api = url::Url::parse(&self.api_url)
            .map_err(|e| ConfigError::new("TIDINGS_API_URL", format!("not a URL ({e})")))?;
        if !matches!(api.scheme(), "http" | "https") {
            return Err(ConfigError::new(
                "TIDINGS_API_URL",
                "scheme must be http:// or https://",
            ));
        }
        match (&self.jwt_secret, &self.jwt_public_key) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::new(
                    "TIDINGS_JWT_SECRET",
                    "set either TIDINGS_JWT_SECRET or TIDINGS_JWT_PUBLIC_KEY, not both",
                ));
            }
            (None, None) if !dev => {
                return Err(ConfigError::new(
                    "TIDINGS_JWT_SECRET",
                    "subscriber tokens need a key: set TIDINGS_JWT_SECRET or TIDINGS_JWT_PUBLIC_KEY",
                ));
            }
            _ => {}
        }
        if let Some(secret) = &self.jwt_secret
            && secret.expose().len() < 32
        {
            return Err(ConfigError::new("TIDINGS_JWT_SECRET", "must be at least 32 bytes"));
        }
        if let Some(path) = &self.jwt_public_key {
            crate::auth::Verifier::from_public_key_file(path)?;
        }
        TopicModes::parse(&self.topic_modes)?;
        PublicTopics::parse(&self.public_topics)?;
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
        if self.max_connections == 0 {
            return Err(ConfigError::new("TIDINGS_MAX_CONNECTIONS", "must be at least 1"));
        }
        if self.max_connections_per_member == 0 {
            return Err(ConfigError::new(
                "TIDINGS_MAX_CONNECTIONS_PER_MEMBER",
                "must be at least 1",
            ));
        }
        Ok(())
    }
}
