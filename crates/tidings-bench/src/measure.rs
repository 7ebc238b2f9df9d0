//! Figures: latency percentiles, a process's RSS, CPU time and open files from /proc,
//! and a gauge from a node's `/metrics`.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;

/// Percentiles of a set of latencies.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Percentiles {
    pub(crate) p50: Duration,
    pub(crate) p90: Duration,
    pub(crate) p99: Duration,
    pub(crate) p999: Duration,
    pub(crate) max: Duration,
}

impl Percentiles {
    pub(crate) fn of(samples: &mut [Duration]) -> Option<Self> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
        Some(Self {
            p50: at(0.5),
            p90: at(0.9),
            p99: at(0.99),
            p999: at(0.999),
            max: samples[samples.len() - 1],
        })
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        let ms = |d: Duration| (d.as_secs_f64() * 1e6).round() / 1e3;
        serde_json::json!({ "p50_ms": ms(self.p50), "p90_ms": ms(self.p90), "p99_ms": ms(self.p99),
                            "p999_ms": ms(self.p999), "max_ms": ms(self.max) })
    }

    pub(crate) fn row(&self) -> String {
        let ms = |d: Duration| format!("{:.3}", d.as_secs_f64() * 1e3);
        format!(
            "p50 {} | p90 {} | p99 {} | p99.9 {} | max {} ms",
            ms(self.p50),
            ms(self.p90),
            ms(self.p99),
            ms(self.p999),
            ms(self.max)
        )
    }
}

/// Resident memory of a process, in KiB.
pub(crate) fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).map(str::to_owned))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

/// Open file descriptors of a process (sockets included).
pub(crate) fn open_files(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}

/// The value of an unlabelled gauge or counter `name` on `http`'s `/metrics`.
pub(crate) async fn edge_gauge(http: SocketAddr, name: &str) -> anyhow::Result<f64> {
    Ok(edge_metrics(http, &[name]).await?[0])
}

/// The values of unlabelled gauges or counters on `http`'s `/metrics`, read in one
/// scrape, in the order of `names`.
pub(crate) async fn edge_metrics(http: SocketAddr, names: &[&str]) -> anyhow::Result<Vec<f64>> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut s = tokio::net::TcpStream::connect(http).await?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n")
        .await?;
    let mut body = String::new();
    s.read_to_string(&mut body).await?;
    names
        .iter()
        .map(|name| {
            body.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
                .with_context(|| format!("no {name} in {http}/metrics"))
        })
        .collect()
}

/// User + system CPU time a process has used.
pub(crate) fn cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    ticks(Stat::parse(&stat).map_or(0, |s| s.own_ticks))
}

/// What the bench reads from `/proc/<pid>/stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stat {
    pub(crate) ppid: u32,
    /// utime + stime, in clock ticks.
    pub(crate) own_ticks: u64,
    /// cutime + cstime: the CPU of children that have exited and been waited for (a
    /// Postgres backend that ends is counted here, in the postmaster).
    pub(crate) children_ticks: u64,
}

impl Stat {
    pub(crate) fn parse(stat: &str) -> Option<Self> {
        // Fields after the command name (which may contain spaces and parentheses)
        // start after the last ") ".
        let (_, rest) = stat.rsplit_once(") ")?;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok());
        // ppid is field 4 of the whole line, utime..cstime fields 14 to 17: 1 and 11
        // to 14 after the name.
        Some(Self {
            ppid: u32::try_from(field(1)?).ok()?,
            own_ticks: field(11)? + field(12)?,
            children_ticks: field(13)? + field(14)?,
        })
    }
}

/// `ticks` clock ticks as a duration.
pub(crate) fn ticks(ticks: u64) -> Duration {
    Duration::from_secs_f64(ticks as f64 / clock_ticks() as f64)
}

/// Processes whose executable is named `name` (e.g. every `nats-server` on the machine).
pub(crate) fn pids_named(name: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|comm| comm.trim() == name))
        .collect()
}

/// CPU time of this process.
pub(crate) fn own_cpu() -> Duration {
    cpu(std::process::id())
}

/// Clock ticks per second (`getconf CLK_TCK`, asked once).
fn clock_ticks() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .filter(|t| *t > 0)
            .unwrap_or(100)
    })
}

/// Wall-clock now as Unix nanoseconds (carried in event data for latency).
pub(crate) fn now_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_after_a_name_with_spaces_and_parentheses() {
        let line = "2249 (postgres: 15/main: x) y) S 2248 2248 2248 0 -1 4194368 4 0 0 0 \
                    7 3 11 13 20 0 1 0 3062 222543872 1 18446744073709551615 0 0 0";
        let stat = Stat::parse(line).expect("parses");
        assert_eq!(
            stat,
            Stat {
                ppid: 2248,
                own_ticks: 10,
                children_ticks: 24
            }
        );
        assert_eq!(Stat::parse("12 (short"), None);
        assert_eq!(Stat::parse(""), None);
    }
}
