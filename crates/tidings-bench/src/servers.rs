//! The servers a cluster uses but does not start — Postgres and nats-server — found on
//! this machine by the port their URL names, so the bench can read their CPU as it
//! reads its own children's.
//!
//! The listening socket is looked up in `/proc/net/tcp` and `/proc/net/tcp6`, and its
//! inode among the processes' open files (`/proc/<pid>/fd`). Where those files cannot
//! be read (another user's server, without root), the socket's owner stands in: the
//! one process of that user with the expected name whose parent is not of that name —
//! or, when there are several, the one whose command line names the port.
//! The process found must carry the expected name (a `docker-proxy` forwarding the port
//! is not Postgres). A server on another host, in another network namespace, or not
//! found without doubt is `Err` with the reason, and its CPU is reported as unknown,
//! never as someone else's.
//!
//! A server's CPU is its whole process tree's: the process found and every descendant
//! alive (Postgres' backends, WAL writer, checkpointer, autovacuum), plus what exited
//! children used (`cutime` + `cstime`), so a backend that ends inside the window still
//! counts. It is the server's, not the cluster's: anything else using the same server
//! meanwhile is in it too.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::time::Duration;

use crate::measure::{Stat, ticks};

/// A server process found on this machine.
#[derive(Debug, Clone)]
pub(crate) struct Server {
    /// The process that listens (the postmaster; nats-server itself).
    pub(crate) pid: u32,
    pub(crate) port: u16,
}

impl Server {
    /// CPU time used by the process and its descendants, exited ones included.
    pub(crate) fn cpu(&self) -> Duration {
        let processes: Vec<(u32, Stat)> = all_pids()
            .filter_map(|pid| {
                Some((
                    pid,
                    Stat::parse(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)?,
                ))
            })
            .collect();
        let parents: Vec<(u32, u32)> = processes.iter().map(|(pid, s)| (*pid, s.ppid)).collect();
        let tree = descendants(self.pid, &parents);
        ticks(
            processes
                .iter()
                .filter(|(pid, _)| tree.contains(pid))
                .map(|(_, s)| s.own_ticks + s.children_ticks)
                .sum(),
        )
    }
}

/// The process named `name` (its `comm`) listening on the port of `url` (`default_port`
/// when the URL names none), if the URL's host is this machine.
pub(crate) fn find(url: &str, default_port: u16, name: &str) -> Result<Server, String> {
    let (host, port) = host_port(url, default_port).ok_or_else(|| format!("no host and port in the {name} URL"))?;
    if !is_local(&host) {
        return Err(format!("{host} is not this machine"));
    }
    let mut sockets = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        sockets.extend(listening(&std::fs::read_to_string(table).unwrap_or_default(), port));
    }
    if sockets.is_empty() {
        return Err(format!("nothing listens on port {port} in this network namespace"));
    }
    let inodes: HashSet<u64> = sockets.iter().map(|s| s.inode).collect();
    let (mut owners, mut unreadable) = (HashSet::new(), false);
    for pid in all_pids() {
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            unreadable = true;
            continue;
        };
        let holds = fds.filter_map(Result::ok).any(|fd| {
            std::fs::read_link(fd.path())
                .ok()
                .and_then(|target| socket_inode(&target.to_string_lossy()))
                .is_some_and(|inode| inodes.contains(&inode))
        });
        if holds {
            owners.insert(pid);
        }
    }
    let pid = if owners.is_empty() && unreadable {
        // Without access to the server's files: its user's only process of that name.
        let uids: HashSet<u32> = sockets.iter().map(|s| s.uid).collect();
        let named: Vec<(u32, u32)> = all_pids()
            .filter(|pid| comm(*pid).as_deref() == Some(name) && uid(*pid).is_some_and(|u| uids.contains(&u)))
            .filter_map(|pid| Some((pid, parent(pid)?)))
            .collect();
        let roots: Vec<u32> = named
            .iter()
            .filter(|(_, ppid)| comm(*ppid).as_deref() != Some(name))
            .map(|(pid, _)| *pid)
            .collect();
        let naming: Vec<u32> = roots
            .iter()
            .copied()
            .filter(|pid| {
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                let args: Vec<String> = cmdline
                    .split(|b| *b == 0)
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect();
                names_port(&args, port)
            })
            .collect();
        match (&roots[..], &naming[..]) {
            ([pid], _) | (_, [pid]) => *pid,
            ([], _) => return Err(format!("no {name} process of the user listening on port {port}")),
            _ => return Err(format!("{} {name} processes could own port {port}", roots.len())),
        }
    } else {
        // Listeners in several processes (SO_REUSEPORT, or workers sharing the socket
        // with their parent): the one the others descend from.
        let parents: Vec<(u32, u32)> = owners.iter().filter_map(|pid| Some((*pid, parent(*pid)?))).collect();
        let roots: Vec<u32> = parents
            .iter()
            .filter(|(_, ppid)| !owners.contains(ppid))
            .map(|(pid, _)| *pid)
            .collect();
        match roots[..] {
            [pid] => pid,
            [] => return Err(format!("no process holds the socket listening on port {port}")),
            _ => return Err(format!("{} unrelated processes listen on port {port}", roots.len())),
        }
    };
    match comm(pid) {
        Some(c) if c == name => Ok(Server { pid, port }),
        other => Err(format!(
            "port {port} is held by process {pid} ({}), not {name}",
            other.unwrap_or_default()
        )),
    }
}

/// One listening socket from `/proc/net/tcp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Listener {
    uid: u32,
    inode: u64,
}

/// The sockets in a `/proc/net/tcp` or `tcp6` table listening on `port`, on any
/// address.
fn listening(table: &str, port: u16) -> Vec<Listener> {
    // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode …
    // local_address is HEXADDR:HEXPORT; st 0A is LISTEN.
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (_, local_port) = fields.get(1)?.rsplit_once(':')?;
            (u16::from_str_radix(local_port, 16).ok()? == port && *fields.get(3)? == "0A").then_some(())?;
            Some(Listener {
                uid: fields.get(7)?.parse().ok()?,
                inode: fields.get(9)?.parse().ok()?,
            })
        })
        .collect()
}

/// Whether a command line gives `port` as a listening port: `-p 4222`, `--port 4222`,
/// `-p4222`, `--port=4222`, or an address ending in `:4222`.
fn names_port(args: &[String], port: u16) -> bool {
    let port = port.to_string();
    args.iter().enumerate().any(|(i, arg)| {
        let flag = |f: &str| arg == f && args.get(i + 1) == Some(&port);
        flag("-p")
            || flag("--port")
            || arg.strip_prefix("-p") == Some(&port)
            || arg
                .strip_suffix(&port)
                .is_some_and(|a| a.ends_with('=') || a.ends_with(':'))
    })
}

/// The inode of an open file that is a socket (`socket:[1234]`).
fn socket_inode(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
}

/// `root` and every process below it, from (pid, parent pid) pairs.
fn descendants(root: u32, parents: &[(u32, u32)]) -> HashSet<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for (pid, ppid) in parents {
        children.entry(*ppid).or_default().push(*pid);
    }
    let (mut tree, mut todo) = (HashSet::from([root]), vec![root]);
    while let Some(pid) = todo.pop() {
        for child in children.get(&pid).into_iter().flatten() {
            if tree.insert(*child) {
                todo.push(*child);
            }
        }
    }
    tree
}

/// The host and port of a `scheme://[user[:password]@]host[:port][/path][?query]` URL;
/// of a NATS server list, the first.
fn host_port(url: &str, default_port: u16) -> Option<(String, u16)> {
    let url = url.split(',').next()?.trim();
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?']).next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    let (host, port) = if let Some(v6) = host_port.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        (host, after.strip_prefix(':'))
    } else {
        match host_port.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        }
    };
    if host.is_empty() {
        return None;
    }
    let port = match port {
        Some(p) => p.parse().ok()?,
        None => default_port,
    };
    Some((host.to_owned(), port))
}

/// Whether `host` names this machine as a loopback or unspecified address does.
fn is_local(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback() || ip.is_unspecified())
}

fn all_pids() -> impl Iterator<Item = u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
}

fn comm(pid: u32) -> Option<String> {
    Some(
        std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .ok()?
            .trim_end()
            .to_owned(),
    )
}

fn parent(pid: u32) -> Option<u32> {
    Some(Stat::parse(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)?.ppid)
}

/// The real user id of a process.
fn uid(pid: u32) -> Option<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1538 00000000:0000 0A 00000000:00000000 00:00000000 00000000   106        0 4865 1 00000000fa96bef8 100 0 0 10 0
   1: 0100007F:107E 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 7115 1 000000002d56867c 100 0 0 10 0
   2: 0100007F:1538 0100007F:C350 01 00000000:00000000 00:00000000 00000000   106        0 9999 1 0000000000000000 20 4 30 10 -1
   3: 0100007F:C350 0100007F:1538 01 00000000:00000000 00:00000000 00000000     0        0 9998 1 0000000000000000 20 4 30 10 -1
";
    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:1538 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000   106        0 4866 1 0000000000000000 100 0 0 10 0
";

    #[test]
    fn listening_sockets_by_port() {
        // 0x1538 = 5432, 0x107E = 4222; established connections (01) are not listeners.
        assert_eq!(listening(TCP, 5432), vec![Listener { uid: 106, inode: 4865 }]);
        assert_eq!(listening(TCP, 4222), vec![Listener { uid: 0, inode: 7115 }]);
        assert_eq!(listening(TCP6, 5432), vec![Listener { uid: 106, inode: 4866 }]);
        assert_eq!(listening(TCP, 50000), vec![]);
        assert_eq!(listening("", 5432), vec![]);
    }

    #[test]
    fn command_lines_naming_a_port() {
        let names = |line: &str, port| names_port(&line.split(' ').map(str::to_owned).collect::<Vec<_>>(), port);
        assert!(names("nats-server -a 127.0.0.1 -p 4222 -js", 4222));
        assert!(names("nats-server --port 4222", 4222));
        assert!(names("nats-server -p4222", 4222));
        assert!(names("nats-server --port=4222", 4222));
        assert!(names("nats-server --addr 127.0.0.1:4222", 4222));
        assert!(!names("nats-server -a 127.0.0.1 -p 47222 -js", 4222));
        assert!(!names("nats-server -p 4222", 422));
        assert!(!names("nats-server -m 8222 -js", 4222));
        assert!(!names("postgres -D /var/lib/postgresql/15/main", 5432));
        assert!(!names("nats-server -p", 4222));
    }

    #[test]
    fn socket_links() {
        assert_eq!(socket_inode("socket:[4865]"), Some(4865));
        assert_eq!(socket_inode("pipe:[4864]"), None);
        assert_eq!(socket_inode("/var/log/postgresql/postgresql-15-main.log"), None);
        assert_eq!(socket_inode("anon_inode:[eventpoll]"), None);
    }

    #[test]
    fn a_tree_is_its_root_and_everything_below() {
        // 1 ─ 2248 (postmaster) ─ 2249, 2250, 7000 ─ 7001; 3015 beside it.
        let parents = [
            (2248, 1),
            (2249, 2248),
            (2250, 2248),
            (7000, 2248),
            (7001, 7000),
            (3015, 1),
        ];
        let tree = descendants(2248, &parents);
        assert_eq!(tree, HashSet::from([2248, 2249, 2250, 7000, 7001]));
        assert_eq!(descendants(3015, &parents), HashSet::from([3015]));
        // A cycle (impossible in /proc, but a torn read) ends.
        assert_eq!(descendants(5, &[(5, 6), (6, 5)]), HashSet::from([5, 6]));
    }

    #[test]
    fn host_and_port_of_urls() {
        let hp = |url, port| host_port(url, port);
        assert_eq!(
            hp("postgres://postgres@127.0.0.1:5432/postgres", 5432),
            Some(("127.0.0.1".into(), 5432))
        );
        assert_eq!(
            hp("postgres://u:p%40ss@localhost/db?sslmode=disable", 5432),
            Some(("localhost".into(), 5432))
        );
        assert_eq!(hp("nats://127.0.0.1:4222", 4222), Some(("127.0.0.1".into(), 4222)));
        assert_eq!(
            hp("nats://[::1]:4223,nats://10.0.0.2:4222", 4222),
            Some(("::1".into(), 4223))
        );
        assert_eq!(hp("[::1]", 4222), Some(("::1".into(), 4222)));
        assert_eq!(hp("localhost:4222", 4222), Some(("localhost".into(), 4222)));
        // A Unix socket directory in the query: no host to look up.
        assert_eq!(hp("postgres:///db?host=/var/run/postgresql", 5432), None);
        assert_eq!(hp("nats://127.0.0.1:x", 4222), None);
    }

    #[test]
    fn only_this_machine_is_local() {
        assert!(is_local("127.0.0.1"));
        assert!(is_local("127.0.0.5"));
        assert!(is_local("localhost"));
        assert!(is_local("::1"));
        assert!(is_local("0.0.0.0"));
        assert!(!is_local("10.0.0.2"));
        assert!(!is_local("db.example.com"));
    }
}
