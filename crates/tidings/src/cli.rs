use anyhow::Context as _;
use clap::{CommandFactory as _, FromArgMatches as _};
use tidings_api::ApiConfig;
use tidings_domain::ConfigError;
use tidings_edge::{EdgeConfig, EdgeOptions};
use tidings_store::{DbConfig, Store};
use tidings_telemetry::TelemetryConfig;

/// Tidings: a horizontally scaled notification cluster. Backend services send
/// notifications over gRPC; browsers receive them over Server-Sent Events and resume
/// with Last-Event-ID on any edge.
///
/// Every option is also an environment variable (shown in each command's --help).
#[derive(Debug, clap::Parser)]
#[command(name = "tidings", version, propagate_version = true)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,

    #[command(flatten)]
    pub(crate) telemetry: TelemetryConfig,
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Serve the gRPC NotificationService: store in Postgres, publish to JetStream, and
    /// run the outbox relay.
    Api(Box<ApiConfig>),
    /// Serve Server-Sent Events to browsers, with Last-Event-ID replay, and the inbox
    /// REST API.
    Edge(Box<EdgeConfig>),
    /// Run api, edge and outbox relay in one process: a whole cluster on a laptop.
    /// Without TIDINGS_API_KEYS and TIDINGS_JWT_SECRET it runs unauthenticated and with
    /// a public development secret, and says so.
    Dev(Box<DevConfig>),
    /// Apply the Postgres migrations and exit (a Kubernetes Job before a rollout).
    Migrate(DbConfig),
    /// Send a notification, or publish to a topic, through a running api.
    Send(SendArgs),
    /// Print a subscriber token (a JWT) signed with the configured key, for development
    /// and tests.
    Token(TokenArgs),
}

#[derive(Debug, clap::Args)]
pub(crate) struct SendArgs {
    /// The api's gRPC address.
    #[arg(long = "api-url", env = "TIDINGS_API_URL", default_value = "http://127.0.0.1:50051")]
    pub(crate) api_url: String,
    /// The producer API key to present (one of the api's TIDINGS_API_KEYS).
    #[arg(long = "api-key", env = "TIDINGS_API_KEY", hide_env_values = true)]
    pub(crate) api_key: Option<tidings_domain::Secret<String>>,
    /// Recipient member ids (repeat the flag or separate with commas).
    #[arg(long = "member", value_delimiter = ',')]
    pub(crate) members: Vec<String>,
    /// Publish to this broadcast topic instead of notifying members.
    #[arg(long, conflicts_with = "members")]
    pub(crate) topic: Option<String>,
    /// Notification type, e.g. `comment.created`.
    #[arg(long = "type", default_value = "message")]
    pub(crate) kind: String,
    /// Human-readable text.
    #[arg(long, default_value = "")]
    pub(crate) content: String,
    /// Structured data as a JSON value (for --topic: the message itself).
    #[arg(long)]
    pub(crate) data: Option<String>,
    /// Grouping key, e.g. a thread id.
    #[arg(long)]
    pub(crate) group: Option<String>,
    /// Makes a retry of this command deliver once.
    #[arg(long = "idempotency-key")]
    pub(crate) idempotency_key: Option<String>,
    /// SSE event name for --topic (default: the topic).
    #[arg(long, requires = "topic")]
    pub(crate) event: Option<String>,
}

/// Both roles' options; NATS and the stream are shared.
#[derive(Debug, clap::Args)]
pub(crate) struct DevConfig {
    #[command(flatten)]
    pub(crate) api: ApiConfig,
    #[command(flatten)]
    pub(crate) edge: EdgeOptions,
}

#[derive(Debug, clap::Args)]
pub(crate) struct TokenArgs {
    /// The HS256 secret to sign with (the edge's TIDINGS_JWT_SECRET). Unset: the
    /// public development secret `tidings dev` uses.
    #[arg(long = "jwt-secret", env = "TIDINGS_JWT_SECRET", hide_env_values = true)]
    pub(crate) jwt_secret: Option<tidings_domain::Secret<String>>,
    /// The member the token is for (its `sub`).
    #[arg(long)]
    pub(crate) member: String,
    /// Topics the token may join, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub(crate) topics: Vec<String>,
    /// How long the token is valid.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub(crate) ttl: std::time::Duration,
}

impl Cli {
    /// Parses the command line and environment. Every value is named after its
    /// environment variable (`--listen <TIDINGS_API_LISTEN>`), so a parse error names
    /// the variable to fix even when the bad value came from the environment.
    pub(crate) fn try_parse() -> Result<Self, clap::Error> {
        let mut command = name_values_after_env(Self::command());
        let matches = command.try_get_matches_from_mut(std::env::args_os())?;
        Self::from_arg_matches(&matches).map_err(|e| e.format(&mut command))
    }
}

fn name_values_after_env(mut command: clap::Command) -> clap::Command {
    let named: Vec<(clap::Id, String)> = command
        .get_arguments()
        .filter_map(|a| Some((a.get_id().clone(), a.get_env()?.to_string_lossy().into_owned())))
        .collect();
    for (id, env) in named {
        command = command.mut_arg(id, |a| a.value_name(env));
    }
    let subcommands: Vec<String> = command.get_subcommands().map(|s| s.get_name().to_owned()).collect();
    for name in subcommands {
        command = command.mut_subcommand(name, name_values_after_env);
    }
    command
}

impl Command {
    /// The service name this command reports in logs and traces.
    pub(crate) fn role(&self) -> &'static str {
        match self {
            Self::Api(_) => "api",
            Self::Edge(_) => "edge",
            Self::Dev(_) => "dev",
            Self::Migrate(_) => "migrate",
            Self::Send(_) => "send",
            Self::Token(_) => "token",
        }
    }

    /// Start-up validation: a bad variable stops the process before anything binds.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        match self {
            Self::Api(c) => c.validate(false),
            Self::Dev(c) => c.api.validate(true).and_then(|()| c.edge.validate(true)),
            Self::Edge(c) => c.validate(false),
            Self::Migrate(db) => db.connect_options().map(drop),
            Self::Send(_) | Self::Token(_) => Ok(()),
        }
    }
}

/// Runs a command to completion. Roles run until SIGTERM/SIGINT.
pub(crate) async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Api(config) => run_api(*config, false).await,
        Command::Edge(config) => {
            let shutdown = crate::signal::shutdown_token();
            tidings_edge::EdgeApp::build(*config, false).await?.run(shutdown).await
        }
        Command::Dev(config) => run_dev(*config).await,
        Command::Migrate(db) => migrate(&db).await,
        Command::Send(args) => crate::send::run(args).await,
        Command::Token(args) => crate::token::run(&args),
    }
}

/// api, relay and edge in one process; the edge reaches the api over loopback gRPC.
async fn run_dev(config: DevConfig) -> anyhow::Result<()> {
    let shutdown = crate::signal::shutdown_token();
    let DevConfig { api, mut edge } = config;
    let edge_key = api.api_keys(true)?.first_key();
    let nats = api.nats.clone();
    let stream = api.stream.clone();
    let api = tidings_api::App::build(api, true).await?;
    edge.api_url = format!("http://{}", api.grpc_addr());
    edge.api_key = edge_key;
    let edge = tidings_edge::EdgeApp::build(
        EdgeConfig {
            options: edge,
            nats,
            stream,
        },
        true,
    )
    .await?;
    tracing::info!(
        stream = %format!("http://{}/v1/stream", edge.local_addr()),
        grpc = %api.grpc_addr(),
        "dev cluster ready: mint a token with `tidings token --member <id>`"
    );
    let (a, e) = tokio::join!(api.run(shutdown.clone()), edge.run(shutdown));
    a.and(e)
}

async fn run_api(config: ApiConfig, dev: bool) -> anyhow::Result<()> {
    let shutdown = crate::signal::shutdown_token();
    let app = tidings_api::App::build(config, dev).await?;
    app.run(shutdown).await
}

async fn migrate(db: &DbConfig) -> anyhow::Result<()> {
    let store = Store::connect(db)
        .await
        .with_context(|| format!("connecting to {}", db.redacted_url()))?;
    store.migrate().await.context("applying migrations")?;
    tracing::info!(url = %db.redacted_url(), "database is migrated");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        name_values_after_env(Cli::command()).debug_assert();
    }
}
