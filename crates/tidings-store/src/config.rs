use std::time::Duration;

use sqlx::ConnectOptions as _;
use sqlx::postgres::PgConnectOptions;
use tidings_domain::{ConfigError, Secret};

pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/tidings";

/// How to reach Postgres.
#[derive(Debug, Clone, clap::Args)]
pub struct DbConfig {
    /// Postgres URL. The database is created if it does not exist.
    #[arg(
        id = "database_url",
        long = "database-url",
        env = "DATABASE_URL",
        default_value = DEFAULT_DATABASE_URL,
        hide_env_values = true,
        hide_default_value = false
    )]
    pub url: Secret<String>,

    /// Most connections this process opens to Postgres.
    #[arg(long = "db-max-connections", env = "TIDINGS_DB_MAX_CONNECTIONS", default_value_t = 16,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub max_connections: u32,

    /// How long to wait for a connection (to connect, or from a busy pool) before the
    /// request fails with UNAVAILABLE instead of hanging.
    #[arg(long = "db-acquire-timeout", env = "TIDINGS_DB_ACQUIRE_TIMEOUT", default_value = "5s",
          value_parser = humantime::parse_duration)]
    pub acquire_timeout: Duration,
}

impl DbConfig {
    /// A config for `url` with the default pool settings.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: Secret::new(url.into()),
            max_connections: 16,
            acquire_timeout: Duration::from_secs(5),
        }
    }

    /// Parses `DATABASE_URL` without ever echoing it (it may hold a password).
    pub fn connect_options(&self) -> Result<PgConnectOptions, ConfigError> {
        let url: url::Url = self
            .url
            .expose()
            .parse()
            .map_err(|e: url::ParseError| ConfigError::new("DATABASE_URL", format!("not a URL ({e})")))?;
        if !matches!(url.scheme(), "postgres" | "postgresql") {
            return Err(ConfigError::new(
                "DATABASE_URL",
                format!("scheme must be postgres:// (got {}://)", url.scheme()),
            ));
        }
        if url.path().trim_start_matches('/').is_empty() {
            return Err(ConfigError::new("DATABASE_URL", "no database name in the path"));
        }
        PgConnectOptions::from_url(&url).map_err(|e| {
            ConfigError::new(
                "DATABASE_URL",
                format!("unusable: {}", redact(&e.to_string(), self.url.expose())),
            )
        })
    }

    /// The URL with any password replaced, for log lines.
    pub fn redacted_url(&self) -> String {
        match url::Url::parse(self.url.expose()) {
            Ok(mut url) => {
                if url.password().is_some() {
                    let _ = url.set_password(Some("redacted"));
                }
                url.to_string()
            }
            Err(_) => "[unparseable]".into(),
        }
    }
}

fn redact(message: &str, secret: &str) -> String {
    message.replace(secret, "[redacted]")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_variable_and_hides_the_password() {
        for bad in ["not a url", "mysql://u:hunter2@h/db", "postgres://u:hunter2@h/"] {
            let err = DbConfig::new(bad).connect_options().unwrap_err();
            assert_eq!(err.variable, "DATABASE_URL");
            assert!(!err.to_string().contains("hunter2"), "{err}");
        }
        assert!(DbConfig::new(DEFAULT_DATABASE_URL).connect_options().is_ok());
    }

    #[test]
    fn debug_and_logs_never_show_the_password() {
        let cfg = DbConfig::new("postgres://app:hunter2@db:5432/tidings");
        assert!(!format!("{cfg:?}").contains("hunter2"));
        assert_eq!(cfg.redacted_url(), "postgres://app:redacted@db:5432/tidings");
    }
}
