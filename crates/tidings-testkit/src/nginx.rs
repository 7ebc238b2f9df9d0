use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use crate::eventually;

/// A real nginx in front of edges, configured with the project's own
/// `deploy/nginx/tidings.conf` (its upstream servers and listen address swapped for
/// loopback ones). Stopped on drop, workers included: nginx runs in a process group of
/// its own, and the whole group is stopped.
#[derive(Debug)]
pub struct Nginx {
    pub addr: SocketAddr,
    dir: tempfile::TempDir,
    child: Child,
}

impl Nginx {
    /// The binary: `TIDINGS_NGINX`, else `nginx` on `PATH`, else `/usr/sbin/nginx`.
    pub fn binary() -> PathBuf {
        if let Some(path) = std::env::var_os("TIDINGS_NGINX") {
            return PathBuf::from(path);
        }
        for candidate in ["nginx", "/usr/sbin/nginx"] {
            if Command::new(candidate).arg("-v").stderr(Stdio::null()).status().is_ok() {
                return PathBuf::from(candidate);
            }
        }
        panic!(
            "nginx is needed for this test: `apt-get install nginx-light` (scripts/test does it), or set TIDINGS_NGINX"
        );
    }

    /// Starts nginx with `deploy/nginx/tidings.conf`, proxying to `edges`. The file
    /// lists two (`edge-1`, `edge-2`, as docker-compose.yml has); a third edge and more
    /// get a `server` line like the last one's.
    pub async fn start(edges: &[SocketAddr]) -> Self {
        let conf_path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/nginx/tidings.conf");
        let mut conf =
            std::fs::read_to_string(&conf_path).unwrap_or_else(|e| panic!("reading {}: {e}", conf_path.display()));
        for i in 2..edges.len() {
            let name = format!("server edge-{i}:8080");
            if conf.contains(&format!("server edge-{}:8080", i + 1)) {
                continue;
            }
            let line = conf
                .lines()
                .find(|l| l.trim_start().starts_with(&name))
                .unwrap_or_else(|| panic!("{} must list `{name}`", conf_path.display()))
                .to_owned();
            let next = line.replace(&format!("edge-{i}:"), &format!("edge-{}:", i + 1));
            conf = conf.replacen(&line, &format!("{line}\n{next}"), 1);
        }
        for (i, edge) in edges.iter().enumerate() {
            let name = format!("server edge-{}:8080", i + 1);
            assert!(conf.contains(&name), "{} must list `{name}`", conf_path.display());
            conf = conf.replace(&name, &format!("server {edge}"));
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        assert!(conf.contains("listen 80;"), "{} must `listen 80;`", conf_path.display());
        conf = conf.replace("listen 80;", &format!("listen 127.0.0.1:{port};"));

        let dir = tempfile::Builder::new()
            .prefix("tidings-nginx-")
            .tempdir()
            .expect("a temporary directory");
        // nginx's workers may run as another user: let them use the directory.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777))
            .expect("chmod of our own directory");
        let p = dir.path().display().to_string();
        conf = conf.replace("/var/log/nginx/", &format!("{p}/"));
        let main = format!(
            "worker_processes 1;\ndaemon off;\npid {p}/nginx.pid;\nerror_log {p}/error.log info;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n  access_log {p}/access.log;\n  client_body_temp_path {p}/body;\n  proxy_temp_path {p}/proxy;\n\
               fastcgi_temp_path {p}/fastcgi;\n  uwsgi_temp_path {p}/uwsgi;\n  scgi_temp_path {p}/scgi;\n\
               include {p}/tidings.conf;\n}}\n"
        );
        std::fs::write(dir.path().join("tidings.conf"), conf).expect("writing the nginx config");
        std::fs::write(dir.path().join("nginx.conf"), main).expect("writing the nginx config");
        let child = Command::new(Self::binary())
            .args(["-p", &p, "-c", &format!("{p}/nginx.conf")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("starting nginx: {e}"));
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let log = dir.path().join("error.log");
        eventually("nginx to listen", || {
            let log = log.clone();
            async move {
                if tokio::net::TcpStream::connect(addr).await.is_ok() {
                    return Some(());
                }
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                assert!(!text.contains("[emerg]"), "nginx failed:\n{text}");
                None
            }
        })
        .await;
        Self { addr, dir, child }
    }

    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    /// SIGTERM to the group (nginx's fast shutdown: the master stops its workers), a
    /// bounded wait, then SIGKILL to whatever of the group is left. Killing the master
    /// alone would orphan its workers, which keep running.
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let signal = |name: &str| {
            let _ = Command::new("kill")
                .args([name, "--", &group])
                .stderr(Stdio::null())
                .status();
        };
        signal("-TERM");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while matches!(self.child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        signal("-KILL");
        let _ = self.child.wait();
    }
}
