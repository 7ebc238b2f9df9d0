use std::net::SocketAddr;
use std::time::Duration;

use tidings_bus::{NatsConfig, StreamSettings};
use tidings_domain::{ConfigError, Secret};
use tidings_store::DbConfig;

use crate::auth::ApiKeys;
use crate::retention::{Retention, RetentionSchedule};

const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Configuration of an api node. Every field is a flag and an environment variable;
/// `tidings api --help` is the reference.
#[derive(Debug, Clone, clap::Args)]
pub struct ApiConfig {
    /// Address producers call: the gRPC server and the HTTP/JSON API, on one port.
    #[arg(long = "listen", env = "TIDINGS_API_LISTEN", default_value = "0.0.0.0:50051")]
    pub listen: SocketAddr,

    /// Address of `/healthz` and `/readyz`.
    #[arg(
        long = "http-listen",
        env = "TIDINGS_API_HTTP_LISTEN",
        default_value = "0.0.0.0:9090"
    )]
    pub http_listen: SocketAddr,

    /// Producer API keys, comma-separated `name=key` pairs (keys of at least 16
    /// characters), or the path of a file with one pair per line. The name scopes
    /// idempotency keys and appears in logs; the key never does. Required by `tidings
    /// api`; `tidings dev` runs without it, unauthenticated.
    #[arg(long = "api-keys", env = "TIDINGS_API_KEYS", hide_env_values = true)]
    pub api_keys: Option<Secret<String>>,

    /// How long a Send waits for JetStream to acknowledge its publish before returning
    /// anyway (the notification is committed; the outbox relay publishes it).
    #[arg(long = "publish-timeout", env = "TIDINGS_PUBLISH_TIMEOUT", default_value = "2s",
          value_parser = humantime::parse_duration)]
    pub publish_timeout: Duration,

    /// How often the outbox relay looks for notifications whose publish is pending.
    #[arg(long = "relay-poll", env = "TIDINGS_RELAY_POLL", default_value = "500ms",
          value_parser = humantime::parse_duration)]
    pub relay_poll: Duration,

    /// How long in-flight calls may take to finish after SIGTERM.
    #[arg(long = "shutdown-grace", env = "TIDINGS_SHUTDOWN_GRACE", default_value = "10s",
          value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,

    /// How long notifications are kept: older ones are deleted from Postgres (their
    /// inbox), in bounded batches, by one api replica at a time, hourly. A duration of
    /// at least 1h (`90d`, `720h`), or `0` to keep everything forever.
    #[arg(long = "retention", env = "TIDINGS_RETENTION", default_value = "90d",
          value_parser = Retention::parse)]
    pub retention: Retention,

    /// When and how retention runs (not options: hourly, 1,000 rows per statement;
    /// tests shorten it).
    #[arg(skip)]
    pub retention_schedule: RetentionSchedule,

    /// How long a client of the HTTP port may take to send its request head before it
    /// is dropped (slowloris). Not an option: 30 s, as on the edge; tests shorten it.
    #[arg(skip = HEADER_READ_TIMEOUT)]
    pub header_read_timeout: Duration,

    #[command(flatten)]
    pub db: DbConfig,

    #[command(flatten)]
    pub nats: NatsConfig,

    #[command(flatten)]
    pub stream: StreamSettings,
}

impl ApiConfig {
    /// A config for tests and embedding: the given services, ports chosen by the OS,
    /// no API keys.
    pub fn new(db: DbConfig, nats: NatsConfig, stream: StreamSettings) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            http_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            api_keys: None,
            publish_timeout: Duration::from_secs(2),
            relay_poll: Duration::from_millis(500),
            shutdown_grace: Duration::from_secs(10),
            header_read_timeout: HEADER_READ_TIMEOUT,
            retention: Retention::default(),
            retention_schedule: RetentionSchedule::default(),
            db,
            nats,
            stream,
        }
    }

    /// Checks what clap's types cannot, naming the variable at fault. Without keys the
    /// api would accept anyone: only `dev` (`keys_optional`) may run so.
    pub fn validate(&self, keys_optional: bool) -> Result<(), ConfigError> {
        self.db.connect_options()?;
        self.nats.validate()?;
        self.stream.validate()?;
        self.api_keys(keys_optional)?;
        if self.publish_timeout.is_zero() || self.publish_timeout > Duration::from_secs(60) {
            return Err(ConfigError::new(
                "TIDINGS_PUBLISH_TIMEOUT",
                "must be above 0 and at most 1m",
            ));
        }
        self.retention.validate()?;
        if self.relay_poll < Duration::from_millis(10) {
            return Err(ConfigError::new("TIDINGS_RELAY_POLL", "must be at least 10ms"));
        }
        // A Send the inline publish may have stored is relayed 2 × the publish timeout
        // after its commit; that retry must fall well inside the window in which
        // JetStream drops it as a duplicate (later ones look in the stream first).
        let relayed_within = (self.publish_timeout * 2 + self.relay_poll) * 2;
        if self.stream.duplicate_window < relayed_within {
            return Err(ConfigError::new(
                "TIDINGS_STREAM_DUPLICATE_WINDOW",
                format!(
                    "must be at least twice (2 × TIDINGS_PUBLISH_TIMEOUT + TIDINGS_RELAY_POLL), here {}",
                    humantime::format_duration(relayed_within)
                ),
            ));
        }
        Ok(())
    }

    /// The configured keys; empty only when `keys_optional` and none are set.
    pub fn api_keys(&self, keys_optional: bool) -> Result<ApiKeys, ConfigError> {
        match &self.api_keys {
            Some(spec) => ApiKeys::parse(spec.expose()),
            None if keys_optional => Ok(ApiKeys::default()),
            None => Err(ConfigError::new(
                "TIDINGS_API_KEYS",
                "is required: producers authenticate with these keys (only `tidings dev` runs without)",
            )),
        }
    }
}
