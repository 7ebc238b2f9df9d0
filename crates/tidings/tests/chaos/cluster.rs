//! The production topology as child processes: a 3-node nats-server cluster with an R3
//! stream, the local Postgres, 2 `tidings api` and 3 `tidings edge` processes.
//!
//! Ports are chosen once and kept across restarts, so a restarted role is found where
//! it was. Three proxies the test controls sit in the paths a scenario may cut: Postgres
//! for both apis, and NATS for `api 0` and for `edge 0` (one proxy per node each; the
//! nats-servers do not advertise each other's addresses, so a role behind proxies cannot
//! route around a cut). Behind `api 0`'s proxies sit [`ReplyProxy`]s, which can lose
//! what the servers answer while its publishes still arrive. Everything else talks to
//! the servers directly.

use std::net::SocketAddr;
use std::time::Duration;

use tidings_testkit::{NatsCluster, ReplyProxy, TEST_JWT_SECRET, TcpProxy, TestBus, TestDb, free_port};

use crate::process::Proc;

/// The producer key of every api, and the key edges present to it.
pub(crate) const API_KEY: &str = "chaos-key-0123456789";

/// Settings a scenario may change before the cluster starts.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    /// `TIDINGS_STREAM_DUPLICATE_WINDOW` of the apis (they update the stream to it).
    pub(crate) duplicate_window: &'static str,
    /// `TIDINGS_PUBLISH_TIMEOUT` of the apis.
    pub(crate) publish_timeout: &'static str,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            duplicate_window: "2m",
            publish_timeout: "1s",
        }
    }
}

/// What a role is and where it listens.
#[derive(Debug)]
struct Role {
    name: String,
    command: &'static str,
    /// The port `/readyz` answers on.
    ready_port: u16,
    env: Vec<(String, String)>,
    proc: Option<Proc>,
}

/// The whole cluster. Fields drop in order: roles first, then the proxies, the stream,
/// the nats-servers and the database.
#[derive(Debug)]
pub(crate) struct Cluster {
    apis: Vec<Role>,
    edges: Vec<Role>,
    api_addrs: Vec<SocketAddr>,
    edge_addrs: Vec<SocketAddr>,
    /// Postgres for both apis.
    pub(crate) pg_proxy: TcpProxy,
    /// NATS for `api 0`, one per node, each in front of a [`ReplyProxy`].
    api0_nats: Vec<TcpProxy>,
    api0_replies: Vec<ReplyProxy>,
    /// NATS for `edge 0`, one per node.
    edge0_nats: Vec<TcpProxy>,
    pub(crate) bus: TestBus,
    pub(crate) nats: NatsCluster,
    pub(crate) db: TestDb,
    logs: tempfile::TempDir,
}

impl Cluster {
    pub(crate) async fn start(options: &Options) -> Self {
        let nats = NatsCluster::start_unadvertised(3).await;
        let bus = TestBus::replicated(nats.urls(), 3).await;
        let db = TestDb::new().await;
        let postgres = authority(&db.url);
        let upstream = std::net::ToSocketAddrs::to_socket_addrs(postgres)
            .ok()
            .and_then(|mut addrs| addrs.next())
            .unwrap_or_else(|| panic!("the database URL's host {postgres} has no address"));
        let pg_proxy = TcpProxy::start(upstream).await;
        let mut api0_nats = Vec::new();
        let mut api0_replies = Vec::new();
        let mut edge0_nats = Vec::new();
        for node in nats.nodes() {
            let replies = ReplyProxy::start(node.addr()).await;
            api0_nats.push(TcpProxy::start(replies.addr()).await);
            api0_replies.push(replies);
            edge0_nats.push(TcpProxy::start(node.addr()).await);
        }
        let proxied = |proxies: &[TcpProxy]| {
            proxies
                .iter()
                .map(|p| format!("nats://{}", p.addr()))
                .collect::<Vec<_>>()
                .join(",")
        };
        let db_url = db.url.replacen(postgres, &pg_proxy.addr().to_string(), 1);
        let logs = tempfile::Builder::new()
            .prefix("tidings-chaos-")
            .tempdir()
            .expect("a log directory");

        let common = |nats_url: String| -> Vec<(String, String)> {
            [
                ("NATS_URL", nats_url),
                ("TIDINGS_STREAM", bus.settings.name.clone()),
                ("TIDINGS_SUBJECT_PREFIX", bus.settings.prefix.clone()),
                ("TIDINGS_STREAM_REPLICAS", "3".into()),
                ("TIDINGS_NATS_PING_INTERVAL", "1s".into()),
                ("TIDINGS_SHUTDOWN_GRACE", "5s".into()),
                ("RUST_LOG", "info,tidings_edge=info".into()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect()
        };
        let mut apis = Vec::new();
        let mut api_addrs = Vec::new();
        for i in 0..2 {
            let (grpc, http) = (free_port(), free_port());
            let nats_url = if i == 0 { proxied(&api0_nats) } else { nats.urls() };
            let mut env = common(nats_url);
            env.extend(
                [
                    ("DATABASE_URL", db_url.clone()),
                    ("TIDINGS_API_KEYS", format!("chaos={API_KEY}")),
                    ("TIDINGS_API_LISTEN", format!("127.0.0.1:{grpc}")),
                    ("TIDINGS_API_HTTP_LISTEN", format!("127.0.0.1:{http}")),
                    ("TIDINGS_PUBLISH_TIMEOUT", options.publish_timeout.into()),
                    ("TIDINGS_STREAM_DUPLICATE_WINDOW", options.duplicate_window.into()),
                    ("TIDINGS_RELAY_POLL", "200ms".into()),
                    ("TIDINGS_DB_ACQUIRE_TIMEOUT", "2s".into()),
                ]
                .map(|(k, v)| (k.to_owned(), v)),
            );
            api_addrs.push(SocketAddr::from(([127, 0, 0, 1], grpc)));
            apis.push(Role {
                name: format!("api{i}"),
                command: "api",
                ready_port: http,
                env,
                proc: None,
            });
        }
        let mut edges = Vec::new();
        let mut edge_addrs = Vec::new();
        for i in 0..3 {
            let port = free_port();
            let nats_url = if i == 0 { proxied(&edge0_nats) } else { nats.urls() };
            let mut env = common(nats_url);
            env.extend(
                [
                    ("TIDINGS_EDGE_LISTEN", format!("127.0.0.1:{port}")),
                    ("TIDINGS_API_URL", format!("http://{}", api_addrs[i % 2])),
                    ("TIDINGS_EDGE_API_KEY", API_KEY.into()),
                    ("TIDINGS_JWT_SECRET", TEST_JWT_SECRET.into()),
                    ("TIDINGS_NODE_NAME", format!("edge{i}")),
                    ("TIDINGS_HEARTBEAT", "5s".into()),
                    ("TIDINGS_RETRY", "1s".into()),
                    ("TIDINGS_DRAIN_WINDOW", "2s".into()),
                ]
                .map(|(k, v)| (k.to_owned(), v)),
            );
            edge_addrs.push(SocketAddr::from(([127, 0, 0, 1], port)));
            edges.push(Role {
                name: format!("edge{i}"),
                command: "edge",
                ready_port: port,
                env,
                proc: None,
            });
        }
        let mut cluster = Self {
            apis,
            edges,
            api_addrs,
            edge_addrs,
            pg_proxy,
            api0_nats,
            api0_replies,
            edge0_nats,
            bus,
            nats,
            db,
            logs,
        };
        for i in 0..2 {
            cluster.start_api(i).await;
        }
        for i in 0..3 {
            cluster.start_edge(i).await;
        }
        cluster
    }

    pub(crate) fn api_addrs(&self) -> Vec<SocketAddr> {
        self.api_addrs.clone()
    }

    pub(crate) fn edge_addrs(&self) -> Vec<SocketAddr> {
        self.edge_addrs.clone()
    }

    /// Starts (or restarts) api `i` and waits until it is ready.
    pub(crate) async fn start_api(&mut self, i: usize) {
        let logs = self.logs.path().to_owned();
        start(&mut self.apis[i], &logs).await;
    }

    /// Starts (or restarts) edge `i` and waits until it is ready.
    pub(crate) async fn start_edge(&mut self, i: usize) {
        let logs = self.logs.path().to_owned();
        start(&mut self.edges[i], &logs).await;
    }

    /// SIGKILLs api `i`, checks it is dead, and forgets it (its port stays reserved).
    pub(crate) async fn kill_api(&mut self, i: usize) {
        kill(&mut self.apis[i]).await;
    }

    pub(crate) async fn kill_edge(&mut self, i: usize) {
        kill(&mut self.edges[i]).await;
    }

    /// SIGTERM to api `i`, as a rolling restart sends it; waits for it to exit.
    pub(crate) async fn terminate_api(&mut self, i: usize) {
        terminate(&mut self.apis[i]).await;
    }

    pub(crate) async fn terminate_edge(&mut self, i: usize) {
        terminate(&mut self.edges[i]).await;
    }

    /// Every running role with its resident memory, for the soak.
    pub(crate) fn rss(&self) -> Vec<(String, u64)> {
        self.apis
            .iter()
            .chain(&self.edges)
            .filter_map(|r| Some((r.name.clone(), r.proc.as_ref()?.rss()?)))
            .collect()
    }

    /// Cuts (or restores) every path between `edge 0` and NATS.
    pub(crate) fn partition_edge0(&self, cut: bool) {
        for proxy in &self.edge0_nats {
            if cut { proxy.cut() } else { proxy.restore() }
        }
    }

    /// Cuts (or restores) every path between `api 0` and NATS.
    pub(crate) fn partition_api0(&self, cut: bool) {
        for proxy in &self.api0_nats {
            if cut { proxy.cut() } else { proxy.restore() }
        }
    }

    /// Loses (or passes again) everything NATS answers `api 0`: its publishes are
    /// stored, their acknowledgements and the PONGs to its pings never arrive.
    pub(crate) fn mute_api0_replies(&self, muted: bool) {
        for proxy in &self.api0_replies {
            proxy.mute(muted);
        }
    }

    /// The server name of the stream's leader, once there is one.
    pub(crate) async fn stream_leader(&self) -> String {
        tidings_testkit::eventually("the stream to have a leader", || async {
            let js = self.bus.bus.jetstream();
            let mut stream = tokio::time::timeout(Duration::from_secs(2), js.get_stream(&self.bus.settings.name))
                .await
                .ok()?
                .ok()?;
            let info = tokio::time::timeout(Duration::from_secs(2), stream.info())
                .await
                .ok()?
                .ok()?;
            info.cluster.as_ref()?.leader.clone()
        })
        .await
    }

    /// Notification ids with the stream position their rows record, `None` while the
    /// row waits in the outbox: `(id, member, epoch, seq, idempotency key)`.
    pub(crate) async fn rows(&self) -> Vec<Row> {
        sqlx::query_as::<_, Row>(
            "select id::text, member_id, stream_epoch, stream_seq, idempotency_key from notification",
        )
        .fetch_all(&self.db.pool)
        .await
        .expect("reading the notification rows")
    }

    /// Entries still waiting for the relay.
    pub(crate) async fn outbox_len(&self) -> i64 {
        sqlx::query_scalar("select count(*) from outbox")
            .fetch_one(&self.db.pool)
            .await
            .expect("counting the outbox")
    }

    /// The last lines of every role's log, for a failure message.
    pub(crate) fn log_tails(&self, lines: usize) -> String {
        let mut out = String::new();
        for role in self.apis.iter().chain(&self.edges) {
            let path = self.logs.path().join(format!("{}.log", role.name));
            out.push_str(&format!(
                "--- {} ---\n{}\n",
                role.name,
                crate::process::tail(&path, lines)
            ));
        }
        out
    }
}

/// `host:port` of a `postgres://user@host:port/db` URL.
fn authority(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, rest)| rest);
    rest.split(['/', '?']).next().unwrap_or(rest)
}

/// A notification row: `(id, member, epoch, seq, idempotency key)`.
pub(crate) type Row = (String, String, Option<i64>, Option<i64>, Option<String>);

async fn start(role: &mut Role, logs: &std::path::Path) {
    role.proc = None;
    let log = logs.join(format!("{}.log", role.name));
    let proc = Proc::spawn(role.command, &role.env, &log);
    let port = role.ready_port;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        if proc.is_dead() {
            panic!("{} exited at start:\n{}", role.name, proc.log_tail(40));
        }
        if ready(port).await {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} not ready within 60 s:\n{}",
            role.name,
            proc.log_tail(40)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    role.proc = Some(proc);
}

async fn kill(role: &mut Role) {
    let proc = role
        .proc
        .take()
        .unwrap_or_else(|| panic!("{} is not running", role.name));
    proc.signal("KILL");
    assert!(
        proc.exited_within(Duration::from_secs(5)).await,
        "{} survived SIGKILL",
        role.name
    );
    drop(proc);
}

async fn terminate(role: &mut Role) {
    let proc = role
        .proc
        .take()
        .unwrap_or_else(|| panic!("{} is not running", role.name));
    proc.signal("TERM");
    assert!(
        proc.exited_within(Duration::from_secs(20)).await,
        "{} did not exit within 20 s of SIGTERM:\n{}",
        role.name,
        proc.log_tail(20)
    );
    drop(proc);
}

/// `GET /readyz` answered 200.
async fn ready(port: u16) -> bool {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let probe = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        stream
            .write_all(b"GET /readyz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .await
            .ok()?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.ok()?;
        Some(response.starts_with(b"HTTP/1.0 200") || response.starts_with(b"HTTP/1.1 200"))
    };
    tokio::time::timeout(Duration::from_secs(2), probe)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}
