//! `idle`: N idle streams, one member each, spread evenly over the edges and opened by
//! worker processes (see `worker.rs`), so the total is not bounded by one process's
//! open-file limit. Reports the connect rate and each edge's RSS per connection, and
//! checks with each edge's own `tidings_edge_connections` that it holds its share.

pub(crate) mod worker;

use std::time::{Duration, Instant};

use anyhow::bail;

use crate::client::Sources;
use crate::cluster::Cluster;
use crate::measure::{edge_gauge, open_files, rss_kib};
use worker::Worker;

/// Streams one worker process opens at most: 20,000 open files per process on the
/// standard machine, less headroom for the runtime and its pipes.
pub(crate) const MAX_PER_WORKER: usize = 18_000;
/// Streams one edge may be given at most: each is an open file of the edge process,
/// which shares the same 20,000 limit with its listener, NATS and api connections.
pub(crate) const MAX_PER_EDGE: usize = 19_000;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Connections to open (one member each), spread evenly over the edges.
    #[arg(long, default_value_t = 1000)]
    connections: usize,
    /// Generator processes opening them, each from its own block of loopback source
    /// addresses (default: as few as hold at most 18,000 connections each).
    #[arg(long)]
    workers: Option<usize>,
    /// Connection attempts in flight at once, per worker.
    #[arg(long, default_value_t = 200)]
    concurrency: usize,
    /// Pause before reading RSS, so allocator and kernel settle.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    settle: Duration,
}

/// How the connections are laid out over edges and workers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Plan {
    connections: usize,
    edges: usize,
    workers: usize,
}

impl Args {
    /// The layout for `edges` edges, refused when a process would exceed its share.
    pub(crate) fn plan(&self, edges: usize) -> anyhow::Result<Plan> {
        let n = self.connections;
        if n == 0 || edges == 0 {
            bail!("idle needs at least one connection and one edge");
        }
        if n.div_ceil(edges) > MAX_PER_EDGE {
            bail!(
                "{n} connections over {edges} edge(s) is more than {MAX_PER_EDGE} per edge process; use --edges {}",
                n.div_ceil(MAX_PER_EDGE)
            );
        }
        let workers = self.workers.unwrap_or_else(|| n.div_ceil(MAX_PER_WORKER));
        if workers == 0 || workers > n || workers > usize::from(Sources::ALL.count) {
            bail!("--workers must be 1..={} and at most --connections", Sources::ALL.count);
        }
        if n.div_ceil(workers) > MAX_PER_WORKER {
            bail!(
                "{n} connections from {workers} worker(s) is more than {MAX_PER_WORKER} per process; use --workers {}",
                n.div_ceil(MAX_PER_WORKER)
            );
        }
        Ok(Plan {
            connections: n,
            edges,
            workers,
        })
    }
}

impl Plan {
    /// Worker `w`'s members: a contiguous, near-equal slice.
    fn slice(&self, w: usize) -> (usize, usize) {
        let (lo, hi) = (
            self.connections * w / self.workers,
            self.connections * (w + 1) / self.workers,
        );
        (lo, hi - lo)
    }

    /// Streams edge `e` is given: member `i` goes to edge `i % edges`.
    fn on_edge(&self, e: usize) -> usize {
        self.connections / self.edges + usize::from(e < self.connections % self.edges)
    }
}

pub(crate) async fn run(cluster: &Cluster, args: Args) -> anyhow::Result<String> {
    let edges: Vec<_> = cluster.edges.iter().map(|e| e.addr).collect();
    let plan = args.plan(edges.len())?;
    let before: Vec<u64> = cluster.edges.iter().map(|e| rss_kib(e.pid())).collect();
    let mut workers = Vec::with_capacity(plan.workers);
    for w in 0..plan.workers {
        let (first, count) = plan.slice(w);
        let sources = Sources::ALL
            .split(w, plan.workers)
            .expect("invariant: plan() allows at most one worker per source address");
        workers.push(Worker::spawn(w, &edges, first, count, sources, args.concurrency)?);
    }
    let started = Instant::now();
    let reports = futures::future::try_join_all(workers.iter_mut().map(Worker::report)).await?;
    let took = started.elapsed();
    let connected: usize = reports.iter().map(|r| r.connected).sum();
    if connected != plan.connections {
        bail!("workers connected {connected} of {} streams", plan.connections);
    }
    // Connect time from the workers' own clocks: first connect to last `connected`.
    let span_ns = reports.iter().map(|r| r.finished_ns).max().unwrap_or(0)
        - reports.iter().map(|r| r.started_ns).min().unwrap_or(0);
    let connect_seconds = if span_ns > 0 {
        span_ns as f64 / 1e9
    } else {
        took.as_secs_f64()
    };
    tokio::time::sleep(args.settle).await;
    let after: Vec<u64> = cluster.edges.iter().map(|e| rss_kib(e.pid())).collect();
    let fds: Vec<usize> = cluster.edges.iter().map(|e| open_files(e.pid())).collect();
    let mut held = Vec::with_capacity(edges.len());
    for edge in &edges {
        held.push(edge_gauge(*edge, "tidings_edge_connections").await? as usize);
    }
    for w in workers {
        w.finish().await?;
    }

    let share: Vec<usize> = (0..edges.len()).map(|e| plan.on_edge(e)).collect();
    let per_conn: Vec<f64> = before
        .iter()
        .zip(&after)
        .zip(&share)
        .map(|((b, a), n)| a.saturating_sub(*b) as f64 / (*n).max(1) as f64)
        .collect();
    let (total_before, total_after) = (before.iter().sum::<u64>(), after.iter().sum::<u64>());
    let total_per_conn = total_after.saturating_sub(total_before) as f64 / plan.connections as f64;
    let rate = plan.connections as f64 / connect_seconds;
    let ok = held == share;
    let mut report = format!(
        "idle: {} connections over {} edge(s) from {} worker process(es) in {connect_seconds:.2} s ({rate:.0}/s)\n",
        plan.connections,
        edges.len(),
        plan.workers
    );
    for (i, (((b, a), k), (n, h))) in before
        .iter()
        .zip(&after)
        .zip(&per_conn)
        .zip(share.iter().zip(&held))
        .enumerate()
    {
        report.push_str(&format!(
            "  edge {i}: {h} of {n} held, {} open files, RSS {b} → {a} KiB, {k:.2} KiB per connection\n",
            fds[i]
        ));
    }
    report.push_str(&format!(
        "  all edges: RSS {total_before} → {total_after} KiB, {total_per_conn:.2} KiB per connection\n  workers: {} connections, RSS {} KiB\n",
        reports.iter().map(|r| r.connected.to_string()).collect::<Vec<_>>().join(" + "),
        reports.iter().map(|r| r.rss_kib.to_string()).collect::<Vec<_>>().join(" + "),
    ));
    let json = serde_json::json!({
        "scenario": "idle", "connections": plan.connections, "edges": edges.len(),
        "workers": plan.workers, "worker_connections": reports.iter().map(|r| r.connected).collect::<Vec<_>>(),
        "worker_rss_kib": reports.iter().map(|r| r.rss_kib).collect::<Vec<_>>(),
        "connect_seconds": connect_seconds, "connects_per_second": rate,
        "edge_connections": share, "edge_connections_held": held, "edge_open_files": fds,
        "edge_rss_kib_before": before, "edge_rss_kib_after": after, "edge_kib_per_connection": per_conn,
        "edges_rss_kib_before": total_before, "edges_rss_kib_after": total_after,
        "edges_kib_per_connection": total_per_conn, "ok": ok,
    });
    report.push_str(&json.to_string());
    if !ok {
        bail!("{report}\nverification failed: an edge does not hold its share ({held:?} of {share:?})");
    }
    Ok(report)
}
