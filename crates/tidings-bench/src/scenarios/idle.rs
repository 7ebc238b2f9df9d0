use std::time::{Duration, Instant};

use crate::cluster::Cluster;
use crate::measure::rss_kib;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Connections to open (one member each), spread over the edges.
    #[arg(long, default_value_t = 1000)]
    connections: usize,
    /// Connection attempts in flight at once.
    #[arg(long, default_value_t = 200)]
    concurrency: usize,
    /// Pause before reading RSS, so allocator and kernel settle.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    settle: Duration,
}

pub(crate) async fn run(cluster: &Cluster, args: Args) -> anyhow::Result<String> {
    let edges: Vec<_> = cluster.edges.iter().map(|e| e.addr).collect();
    let before: Vec<u64> = cluster.edges.iter().map(|e| rss_kib(e.pid())).collect();
    let members: Vec<String> = (0..args.connections).map(|i| format!("idle-{i}")).collect();
    let started = Instant::now();
    let conns = super::connect_all(&edges, &members, &[], args.concurrency).await?;
    let took = started.elapsed();
    tokio::time::sleep(args.settle).await;
    let after: Vec<u64> = cluster.edges.iter().map(|e| rss_kib(e.pid())).collect();
    let per_edge = args.connections.div_ceil(edges.len().max(1));
    let per_conn: Vec<f64> = before
        .iter()
        .zip(&after)
        .map(|(b, a)| a.saturating_sub(*b) as f64 / per_edge as f64)
        .collect();
    let rate = args.connections as f64 / took.as_secs_f64();
    drop(conns);
    let mut report = format!(
        "idle: {} connections in {:.2} s ({rate:.0}/s)\n",
        args.connections,
        took.as_secs_f64()
    );
    for (i, ((b, a), k)) in before.iter().zip(&after).zip(&per_conn).enumerate() {
        report.push_str(&format!("  edge {i}: RSS {b} → {a} KiB, {k:.2} KiB per connection\n"));
    }
    let json = serde_json::json!({
        "scenario": "idle", "connections": args.connections, "edges": edges.len(),
        "connect_seconds": took.as_secs_f64(), "connects_per_second": rate,
        "edge_rss_kib_before": before, "edge_rss_kib_after": after, "edge_kib_per_connection": per_conn,
        "ok": true,
    });
    report.push_str(&json.to_string());
    Ok(report)
}
