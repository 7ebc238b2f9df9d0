//! The cluster under test: `tidings api` and `tidings edge` as child processes of the
//! real binary, on a fresh database and a fresh stream, stopped and cleaned up at the end.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Parser as _;
use tidings_proto::v1::notification_service_client::NotificationServiceClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::servers::{self, Server};

/// The HS256 secret the spawned edges verify and the bench signs with.
pub(crate) const JWT_SECRET: &str = "tidings-bench-secret-0123456789abcdef";
const API_KEY: &str = "bench-key-0123456789";

#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ClusterArgs {
    /// Postgres server (a role that may create databases); a fresh database is used.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres",
        global = true
    )]
    database_url: String,
    /// NATS server with JetStream (>= 2.10); a fresh stream and prefix are used.
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222", global = true)]
    nats_url: String,
    /// The tidings binary (default: next to this one).
    #[arg(long, env = "TIDINGS_BIN", global = true)]
    tidings_bin: Option<PathBuf>,
    /// Edge nodes to start.
    #[arg(long, default_value_t = 1, global = true)]
    pub(crate) edges: usize,
}

/// A running cluster.
pub(crate) struct Cluster {
    pub(crate) api: Node,
    pub(crate) edges: Vec<Node>,
    database: String,
    admin_url: String,
    /// The cluster's own database, for checking what was stored.
    pub(crate) database_url: String,
    /// The JetStream stream and subject prefix every node of this cluster uses.
    stream: String,
    subject_prefix: String,
    nats_url: String,
}

/// One child process and where it listens.
pub(crate) struct Node {
    pub(crate) addr: SocketAddr,
    child: Child,
}

impl Node {
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }
}

pub(crate) type Client = NotificationServiceClient<InterceptedService<Channel, Bearer>>;

#[derive(Clone)]
pub(crate) struct Bearer(tonic::metadata::MetadataValue<tonic::metadata::Ascii>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut r: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        r.metadata_mut().insert("authorization", self.0.clone());
        Ok(r)
    }
}

impl Cluster {
    pub(crate) async fn start(args: &ClusterArgs, edge_env: &[(&str, String)]) -> anyhow::Result<Self> {
        let bin = match &args.tidings_bin {
            Some(b) => b.clone(),
            None => std::env::current_exe()?.with_file_name("tidings"),
        };
        if !bin.exists() {
            bail!(
                "no tidings binary at {} (build it: cargo build --release -p tidings)",
                bin.display()
            );
        }
        let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        let database = format!("tidings_bench_{id}");
        let url = url_with_database(&args.database_url, &database);
        let (stream, subject_prefix) = (format!("BENCH_{id}"), format!("bench_{id}"));
        let common = vec![
            ("DATABASE_URL", url),
            ("NATS_URL", args.nats_url.clone()),
            ("TIDINGS_STREAM", stream.clone()),
            ("TIDINGS_SUBJECT_PREFIX", subject_prefix.clone()),
            ("TIDINGS_LOG_FORMAT", "json".into()),
            ("RUST_LOG", "warn".into()),
        ];
        let api_port = free_port()?;
        let http_port = free_port()?;
        let mut api_env = common.clone();
        api_env.push(("TIDINGS_API_KEYS", format!("bench={API_KEY}")));
        api_env.push(("TIDINGS_API_LISTEN", format!("127.0.0.1:{api_port}")));
        api_env.push(("TIDINGS_API_HTTP_LISTEN", format!("127.0.0.1:{http_port}")));
        let api = spawn(&bin, "api", &api_env, SocketAddr::from(([127, 0, 0, 1], api_port)))?;
        wait_ready(SocketAddr::from(([127, 0, 0, 1], http_port)))
            .await
            .context("the api did not become ready")?;

        let mut edges = Vec::new();
        for _ in 0..args.edges {
            let port = free_port()?;
            let mut env = common.clone();
            env.retain(|(k, _)| *k != "DATABASE_URL");
            env.push(("TIDINGS_EDGE_LISTEN", format!("127.0.0.1:{port}")));
            env.push(("TIDINGS_API_URL", format!("http://127.0.0.1:{api_port}")));
            env.push(("TIDINGS_EDGE_API_KEY", API_KEY.into()));
            env.push(("TIDINGS_JWT_SECRET", JWT_SECRET.into()));
            env.push(("TIDINGS_MAX_CONNECTIONS", "200000".into()));
            env.extend(edge_env.iter().map(|(k, v)| (*k, v.clone())));
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let edge = spawn(&bin, "edge", &env, addr)?;
            wait_ready(addr).await.context("an edge did not become ready")?;
            edges.push(edge);
        }
        Ok(Self {
            api,
            edges,
            database_url: url_with_database(&args.database_url, &database),
            database,
            admin_url: args.database_url.clone(),
            stream,
            subject_prefix,
            nats_url: args.nats_url.clone(),
        })
    }

    /// A NATS connection to this cluster's stream, for publishing to it directly as the
    /// api does. Its stream settings are the nodes' own: the same environment (the
    /// nodes inherit ours, `TIDINGS_STREAM_*` included) with this cluster's stream name
    /// and prefix, so ensuring the stream changes nothing.
    pub(crate) async fn bus(&self) -> anyhow::Result<tidings_bus::Bus> {
        let settings = self.stream_settings()?;
        let nats = tidings_bus::NatsConfig::new(self.nats_url.clone());
        tidings_bus::Bus::connect(&nats, &settings, "tidings-bench")
            .await
            .context("connecting to the cluster's stream")
    }

    /// The stream settings the nodes run with: the same environment (the nodes inherit
    /// ours, `TIDINGS_STREAM_*` included) with this cluster's stream name and prefix.
    fn stream_settings(&self) -> anyhow::Result<tidings_bus::StreamSettings> {
        #[derive(clap::Parser)]
        struct FromEnv {
            #[command(flatten)]
            stream: tidings_bus::StreamSettings,
        }
        let mut settings = FromEnv::try_parse_from(["tidings-bench"])
            .context("reading TIDINGS_STREAM_* as the nodes do")?
            .stream;
        settings.name = self.stream.clone();
        settings.prefix = self.subject_prefix.clone();
        Ok(settings)
    }

    /// The member partitions of the cluster's stream (`TIDINGS_STREAM_PARTITIONS`).
    pub(crate) fn partitions(&self) -> anyhow::Result<u16> {
        Ok(self.stream_settings()?.partitions)
    }

    /// The nats-server this cluster's nodes use, found by the port of its URL (the
    /// bench does not start it), or why it cannot be found.
    pub(crate) fn nats_server(&self) -> Result<Server, String> {
        servers::find(&self.nats_url, 4222, "nats-server")
    }

    /// The Postgres server holding this cluster's database, found as
    /// [`nats_server`](Self::nats_server) is.
    pub(crate) fn postgres(&self) -> Result<Server, String> {
        servers::find(&self.admin_url, 5432, "postgres")
    }

    pub(crate) async fn client(&self) -> anyhow::Result<Client> {
        let channel = Channel::from_shared(format!("http://{}", self.api.addr))?
            .connect()
            .await?;
        let bearer = Bearer(format!("Bearer {API_KEY}").parse()?);
        Ok(NotificationServiceClient::with_interceptor(channel, bearer)
            .max_decoding_message_size(16 << 20)
            .max_encoding_message_size(16 << 20))
    }

    /// Brings the new database and the api to the state of a deployment in use before
    /// anything is measured: 2,000 rows (for members no stream holds), sent 20 Sends at
    /// a time, so the api's connection pool has grown to what a loaded api holds (a new
    /// Postgres connection took ~100 ms under load) and every connection has planned
    /// its statements against a table that is not empty. A plan a connection caches
    /// while the table is a page or two scans the table whole, and stays cached until
    /// autovacuum analyzes the table, a minute later; measured, the record statement
    /// then scanned `notification` once per batch.
    pub(crate) async fn warm_up_database(&self) -> anyhow::Result<()> {
        let client = self.client().await?;
        for round in 0..5 {
            let sends = (0..20).map(|i| {
                let mut client = client.clone();
                let request = tidings_proto::v1::SendRequest {
                    member_ids: (0..20).map(|m| format!("warm-up-{round}-{i}-{m}")).collect(),
                    r#type: "bench.warm-up".into(),
                    content: "warm-up".into(),
                    ..Default::default()
                };
                async move { client.send(request).await }
            });
            for sent in futures::future::join_all(sends).await {
                sent.context("warm-up send")?;
            }
        }
        Ok(())
    }

    /// Stops every process and drops the database.
    pub(crate) async fn stop(mut self) {
        for node in self.edges.iter_mut().chain(std::iter::once(&mut self.api)) {
            let _ = node.child.kill();
            let _ = node.child.wait();
        }
        if let Ok(pool) = sqlx::PgPool::connect(&self.admin_url).await {
            let sql = format!(r#"drop database if exists "{}" with (force)"#, self.database);
            let _ = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&pool).await;
        }
    }
}

fn spawn(bin: &PathBuf, role: &str, env: &[(&str, String)], addr: SocketAddr) -> anyhow::Result<Node> {
    let child = Command::new(bin)
        .arg(role)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        // The roles log JSON to stdout; BENCH_LOG=1 shows it (warnings and up).
        .stdout(if std::env::var_os("BENCH_LOG").is_some() {
            Stdio::inherit()
        } else {
            Stdio::null()
        })
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting tidings {role}"))?;
    Ok(Node { addr, child })
}

async fn wait_ready(http: SocketAddr) -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(mut s) = tokio::net::TcpStream::connect(http).await {
            let _ = s
                .write_all(b"GET /readyz HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n")
                .await;
            let mut buf = Vec::new();
            let _ = s.read_to_end(&mut buf).await;
            if buf.starts_with(b"HTTP/1.1 200") {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("{http} not ready within 60 s")
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// `url` with its database name replaced, keeping any `?options` (e.g. `sslmode`).
fn url_with_database(url: &str, database: &str) -> String {
    let (url, options) = match url.split_once('?') {
        Some((url, options)) => (url, format!("?{options}")),
        None => (url, String::new()),
    };
    match url.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{database}{options}"),
        None => format!("{url}/{database}{options}"),
    }
}
