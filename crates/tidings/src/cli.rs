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
#[command(name = "tidings", version = tidings_telemetry::build::LONG_VERSION, propagate_version = true)]
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
    Send(crate::send::SendArgs),
    /// Print a subscriber token (a JWT) signed with the configured key, for development
    /// and tests.
    Token(crate::token::TokenArgs),
    /// Print a role's OpenAPI 3.1 document (what it serves at /openapi.json), e.g. to
    /// regenerate docs/openapi/: `tidings openapi api > docs/openapi/api.json`.
    Openapi(OpenapiArgs),
}

/// Which role's HTTP API to describe.
#[derive(Debug, clap::Args)]
pub(crate) struct OpenapiArgs {
    /// `api` (the HTTP/JSON producer API) or `edge` (the SSE stream and the inbox).
    #[arg(value_enum)]
    pub(crate) role: OpenapiRole,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum OpenapiRole {
    Api,
    Edge,
}

/// Both roles' options; NATS and the stream are shared.
#[derive(Debug, clap::Args)]
pub(crate) struct DevConfig {
    #[command(flatten)]
    pub(crate) api: ApiConfig,
    #[command(flatten)]
    pub(crate) edge: EdgeOptions,
    /// Do not serve the demo page (`/demo/`) and its development endpoints, which mint
    /// tokens for any member.
    #[arg(long = "no-demo", env = "TIDINGS_NO_DEMO")]
    pub(crate) no_demo: bool,
}

impl Cli {
    /// Parses the command line and environment. Every value is named after its
    /// environment variable (`--listen <TIDINGS_API_LISTEN>`), so a parse error names
    /// the variable to fix even when the bad value came from the environment.
    pub(crate) fn try_parse() -> Result<Self, clap::Error> {
        let mut command = name_values_after_env(Self::command());
        let matches = command.try_get_matches_from_mut(std::env::args_os())?;
        let mut cli = Self::from_arg_matches(&matches).map_err(|e| e.format(&mut command))?;
        if let (Command::Dev(dev), Some(("dev", args))) = (&mut cli.command, matches.subcommand()) {
            dev.listen_on_loopback_by_default(args);
        }
        Ok(cli)
    }
}

impl DevConfig {
    /// `tidings dev` runs without API keys, with a public JWT secret and a demo that
    /// mints tokens for anyone: its listeners stay on loopback unless an address was
    /// given (flag or variable).
    fn listen_on_loopback_by_default(&mut self, args: &clap::ArgMatches) {
        let defaulted = |id: &str| args.value_source(id) == Some(clap::parser::ValueSource::DefaultValue);
        let loopback = std::net::IpAddr::from([127, 0, 0, 1]);
        for (id, addr) in [
            ("listen", &mut self.api.listen),
            ("http_listen", &mut self.api.http_listen),
            ("edge_listen", &mut self.edge.listen),
        ] {
            if defaulted(id) {
                addr.set_ip(loopback);
            }
        }
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
            Self::Openapi(_) => "openapi",
        }
    }

    /// A role that runs until stopped (or, `migrate`, changes the database): its first
    /// log line names the build.
    pub(crate) fn serves(&self) -> bool {
        matches!(self, Self::Api(_) | Self::Edge(_) | Self::Dev(_) | Self::Migrate(_))
    }

    /// Start-up validation: a bad variable stops the process before anything binds.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        match self {
            Self::Api(c) => c.validate(false),
            Self::Dev(c) => c.api.validate(true).and_then(|()| c.edge.validate(true)),
            Self::Edge(c) => c.validate(false),
            Self::Migrate(db) => db.connect_options().map(drop),
            Self::Send(_) | Self::Token(_) | Self::Openapi(_) => Ok(()),
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
        Command::Openapi(args) => {
            let document = match args.role {
                OpenapiRole::Api => tidings_api::openapi_json(),
                OpenapiRole::Edge => tidings_edge::openapi_json(),
            };
            print!("{document}");
            Ok(())
        }
    }
}

/// api, relay and edge in one process; the edge reaches the api over loopback gRPC.
async fn run_dev(config: DevConfig) -> anyhow::Result<()> {
    let shutdown = crate::signal::shutdown_token();
    let DevConfig { api, mut edge, no_demo } = config;
    if !no_demo {
        edge.demo = true;
        // The demo's ranking board is watched without signing in.
        if edge.public_topics.is_empty() {
            edge.public_topics = tidings_edge::RANKING_TOPIC.into();
        }
        if edge.topic_modes == "*=all" {
            edge.topic_modes = format!("{}=latest,*=all", tidings_edge::RANKING_TOPIC);
        }
    }
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
    if edge.local_addr().ip().is_loopback() && api.grpc_addr().ip().is_loopback() {
        tracing::info!(
            "dev mode listens on 127.0.0.1 only; give --edge-listen / TIDINGS_EDGE_LISTEN (and the api's) to open it"
        );
    } else {
        tracing::warn!("dev mode listens beyond loopback, without API keys and with a public JWT secret");
    }
    if !no_demo {
        // Printed, not only logged: this is the line a new user looks for.
        println!("Tidings demo: http://{}/demo/", edge.local_addr());
    }
    // Either role ending before shutdown was asked for is a failure of the process:
    // the other drains and stops, and the exit is non-zero.
    let api = api.run(shutdown.clone());
    let edge = edge.run(shutdown.clone());
    tokio::pin!(api, edge);
    let (api, edge, early) = tokio::select! {
        api = &mut api => {
            let early = (!shutdown.is_cancelled()).then_some("api");
            shutdown.cancel();
            (api, edge.await, early)
        }
        edge = &mut edge => {
            let early = (!shutdown.is_cancelled()).then_some("edge");
            shutdown.cancel();
            (api.await, edge, early)
        }
    };
    api.and(edge)?;
    match early {
        Some(role) => anyhow::bail!("the {role} role stopped on its own"),
        None => Ok(()),
    }
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

    fn dev_listeners(args: &[&str]) -> [String; 3] {
        let argv = ["tidings", "dev"].into_iter().chain(args.iter().copied());
        let matches = Cli::command().get_matches_from(argv);
        let cli = Cli::from_arg_matches(&matches).unwrap();
        let Command::Dev(mut dev) = cli.command else {
            panic!("not the dev command")
        };
        dev.listen_on_loopback_by_default(matches.subcommand_matches("dev").unwrap());
        [dev.api.listen, dev.api.http_listen, dev.edge.listen].map(|a| a.to_string())
    }

    #[test]
    fn dev_listens_on_loopback_unless_told_otherwise() {
        assert_eq!(
            dev_listeners(&[]),
            ["127.0.0.1:50051", "127.0.0.1:9090", "127.0.0.1:8080"]
        );
        assert_eq!(
            dev_listeners(&["--edge-listen", "0.0.0.0:8081"])[2],
            "0.0.0.0:8081",
            "an address given is kept"
        );
    }
}
