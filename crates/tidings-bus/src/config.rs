use std::time::Duration;

use tidings_domain::{ConfigError, Secret};

/// How to reach NATS.
#[derive(Debug, Clone, clap::Args)]
pub struct NatsConfig {
    /// NATS server URL(s), comma-separated. Credentials in the URL are never logged.
    #[arg(
        id = "nats_url",
        long = "nats-url",
        env = "NATS_URL",
        default_value = "nats://127.0.0.1:4222",
        hide_env_values = true
    )]
    pub url: Secret<String>,

    /// How long to wait for NATS to answer (connect, publish acknowledgement, stream
    /// API calls) before the operation fails instead of hanging.
    #[arg(long = "nats-timeout", env = "TIDINGS_NATS_TIMEOUT", default_value = "5s",
          value_parser = humantime::parse_duration)]
    pub timeout: Duration,

    /// How often the client pings its server. A server that misses three pings in a
    /// row (a paused process, a silent network partition) counts as gone: the client
    /// reconnects, possibly to another server, and `/readyz` turns 503 meanwhile. The
    /// dead connection is therefore noticed within about three intervals (NATS clients
    /// default to a minute, so about three minutes).
    #[arg(long = "nats-ping-interval", env = "TIDINGS_NATS_PING_INTERVAL", default_value = "3s",
          value_parser = humantime::parse_duration)]
    pub ping_interval: Duration,
}

impl NatsConfig {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: Secret::new(url.into()),
            timeout: Duration::from_secs(5),
            ping_interval: Duration::from_secs(3),
        }
    }

    /// Checks the URLs and the ping interval, naming the variable at fault.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.server_urls()?;
        if self.ping_interval < Duration::from_millis(100) {
            return Err(ConfigError::new("TIDINGS_NATS_PING_INTERVAL", "must be at least 100ms"));
        }
        Ok(())
    }

    /// The server URLs, validated. Errors name `NATS_URL` and never echo it.
    pub fn server_urls(&self) -> Result<Vec<String>, ConfigError> {
        let urls: Vec<String> = self
            .url
            .expose()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        if urls.is_empty() {
            return Err(ConfigError::new("NATS_URL", "no server URL given"));
        }
        for (i, u) in urls.iter().enumerate() {
            let parsed = url::Url::parse(u)
                .map_err(|e| ConfigError::new("NATS_URL", format!("entry {} is not a URL ({e})", i + 1)))?;
            if !matches!(parsed.scheme(), "nats" | "tls" | "ws" | "wss") {
                return Err(ConfigError::new(
                    "NATS_URL",
                    format!(
                        "entry {} has scheme {}://; use nats://, tls://, ws:// or wss://",
                        i + 1,
                        parsed.scheme()
                    ),
                ));
            }
            if parsed.host_str().is_none_or(str::is_empty) {
                return Err(ConfigError::new("NATS_URL", format!("entry {} has no host", i + 1)));
            }
        }
        Ok(urls)
    }
}

/// The JetStream stream Tidings writes to and replays from.
#[derive(Debug, Clone, clap::Args)]
pub struct StreamSettings {
    /// Name of the JetStream stream.
    #[arg(
        id = "stream_name",
        long = "stream",
        env = "TIDINGS_STREAM",
        default_value = "TIDINGS"
    )]
    pub name: String,

    /// First token of every subject Tidings uses; lets several deployments share NATS.
    #[arg(long = "subject-prefix", env = "TIDINGS_SUBJECT_PREFIX", default_value = "tidings")]
    pub prefix: String,

    /// How long the stream keeps messages: the oldest gap a reconnecting browser can
    /// still replay.
    #[arg(long = "stream-max-age", env = "TIDINGS_STREAM_MAX_AGE", default_value = "7days",
          value_parser = humantime::parse_duration)]
    pub max_age: Duration,

    /// Messages kept per member or topic subject. Older ones are discarded first.
    #[arg(long = "stream-max-msgs-per-subject", env = "TIDINGS_STREAM_MAX_MSGS_PER_SUBJECT",
          default_value_t = 10_000, value_parser = clap::value_parser!(i64).range(1..))]
    pub max_msgs_per_subject: i64,

    /// Window in which JetStream drops a second publish with the same `Nats-Msg-Id`
    /// (the notification id), so outbox retries never duplicate.
    #[arg(long = "stream-duplicate-window", env = "TIDINGS_STREAM_DUPLICATE_WINDOW", default_value = "2m",
          value_parser = humantime::parse_duration)]
    pub duplicate_window: Duration,

    /// Live-delivery partitions of member subjects, fixed when the stream is created
    /// (stored in its metadata; an existing stream's value wins). Edges take NATS
    /// interest per partition their connections live in.
    #[arg(long = "stream-partitions", env = "TIDINGS_STREAM_PARTITIONS", default_value_t = 1024,
          value_parser = clap::value_parser!(u16).range(1..))]
    pub partitions: u16,

    /// Stream replicas: 1 for a single NATS server, 3 for a production cluster.
    #[arg(long = "stream-replicas", env = "TIDINGS_STREAM_REPLICAS", default_value_t = 1,
          value_parser = clap::value_parser!(u8).range(1..=5))]
    pub replicas: u8,
}

impl Default for StreamSettings {
    fn default() -> Self {
        Self {
            name: "TIDINGS".into(),
            prefix: "tidings".into(),
            max_age: Duration::from_secs(7 * 24 * 3600),
            max_msgs_per_subject: 10_000,
            duplicate_window: Duration::from_secs(120),
            partitions: 1024,
            replicas: 1,
        }
    }
}

impl StreamSettings {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let token_ok = |s: &str, max: usize| {
            !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        };
        if !token_ok(&self.name, 64) {
            return Err(ConfigError::new(
                "TIDINGS_STREAM",
                "must be 1..=64 characters of A-Z, a-z, 0-9, '_' or '-'",
            ));
        }
        if !token_ok(&self.prefix, 64) {
            return Err(ConfigError::new(
                "TIDINGS_SUBJECT_PREFIX",
                "must be one subject token: 1..=64 characters of A-Z, a-z, 0-9, '_' or '-'",
            ));
        }
        if self.max_age < Duration::from_secs(60) {
            return Err(ConfigError::new("TIDINGS_STREAM_MAX_AGE", "must be at least 1m"));
        }
        if self.duplicate_window.is_zero() || self.duplicate_window > self.max_age {
            return Err(ConfigError::new(
                "TIDINGS_STREAM_DUPLICATE_WINDOW",
                "must be above zero and at most TIDINGS_STREAM_MAX_AGE",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nats_urls_are_validated_without_echoing_them() {
        assert_eq!(
            NatsConfig::new("nats://a:4222, nats://b:4222")
                .server_urls()
                .unwrap()
                .len(),
            2
        );
        for bad in ["", " , ", "http://u:hunter2@x:4222", "nats://", "hunter2"] {
            let err = NatsConfig::new(bad).server_urls().unwrap_err();
            assert_eq!(err.variable, "NATS_URL", "{bad}");
            assert!(!err.to_string().contains("hunter2"), "{err}");
        }
    }

    #[test]
    fn stream_settings_name_the_bad_variable() {
        assert!(StreamSettings::default().validate().is_ok());
        let bad = |f: fn(&mut StreamSettings)| {
            let mut s = StreamSettings::default();
            f(&mut s);
            s.validate().unwrap_err().variable
        };
        assert_eq!(bad(|s| s.name = "A.B".into()), "TIDINGS_STREAM");
        assert_eq!(bad(|s| s.prefix = "a.b".into()), "TIDINGS_SUBJECT_PREFIX");
        assert_eq!(bad(|s| s.prefix = "*".into()), "TIDINGS_SUBJECT_PREFIX");
        assert_eq!(bad(|s| s.max_age = Duration::from_secs(1)), "TIDINGS_STREAM_MAX_AGE");
        assert_eq!(
            bad(|s| s.duplicate_window = Duration::ZERO),
            "TIDINGS_STREAM_DUPLICATE_WINDOW"
        );
    }
}
