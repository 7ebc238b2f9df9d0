use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use tidings_proto::v1 as pb;
use tokio::sync::Mutex;

use crate::cluster::Cluster;
use crate::measure::{Percentiles, cpu, own_cpu};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Subscribers of the topic (one member each).
    #[arg(long, default_value_t = 1000)]
    subscribers: usize,
    /// Messages published back to back.
    #[arg(long, default_value_t = 100)]
    messages: usize,
}

const TOPIC: &str = "bench";

/// Per subscriber: the message numbers received, with their latencies to the
/// generator's read and to the arrival at the subscriber's socket.
type Received = Vec<(u64, Duration, Duration)>;

/// A message's data as published below.
#[derive(serde::Deserialize)]
struct Message<'a> {
    t: &'a str,
    n: u64,
}

pub(crate) async fn run(cluster: &Cluster, args: Args) -> anyhow::Result<String> {
    let edges: Vec<_> = cluster.edges.iter().map(|e| e.addr).collect();
    let members: Vec<String> = (0..args.subscribers).map(|i| format!("bc-{i}")).collect();
    let conns = super::connect_all(&edges, &members, &[TOPIC], 200).await?;
    // Per subscriber: the message numbers received and their latencies.
    let seen: Arc<Vec<Mutex<Received>>> = Arc::new((0..args.subscribers).map(|_| Mutex::new(Vec::new())).collect());
    let last_at: Arc<Mutex<Option<Instant>>> = Arc::default();
    let mut readers = Vec::new();
    for (i, mut conn) in conns.into_iter().enumerate() {
        let (seen, last_at, messages) = (seen.clone(), last_at.clone(), args.messages);
        readers.push(tokio::spawn(async move {
            let mut got = Vec::with_capacity(messages);
            while let Ok(Some(e)) = conn.next_ref().await {
                if e.event != TOPIC {
                    continue;
                }
                got.push(match serde_json::from_str::<Message<'_>>(&e.data) {
                    Ok(m) => (
                        m.n,
                        super::latency_since(m.t, e.received_at).unwrap_or_default(),
                        super::latency_since(m.t, e.arrived_at).unwrap_or_default(),
                    ),
                    Err(_) => (u64::MAX, Duration::ZERO, Duration::ZERO),
                });
                if got.len() == messages {
                    break;
                }
            }
            let mut last = last_at.lock().await;
            *last = Some(last.map_or(Instant::now(), |l| l.max(Instant::now())));
            *seen[i].lock().await = got;
            // Kept open until the edge's CPU is read: closing 10,000 streams is not
            // delivery work.
            conn
        }));
    }
    let mut client = cluster.client().await?;
    let cpu_before = (cluster.edges.iter().map(|e| cpu(e.pid())).sum::<Duration>(), own_cpu());
    let started = Instant::now();
    for n in 0..args.messages {
        let data = serde_json::json!({ "t": crate::measure::now_nanos().to_string(), "n": n }).to_string();
        client
            .publish(pb::PublishRequest {
                topic: TOPIC.into(),
                event: String::new(),
                data_json: data,
            })
            .await?;
    }
    let publish_seconds = started.elapsed().as_secs_f64();
    let all = futures::future::join_all(readers);
    let Ok(open) = tokio::time::timeout(Duration::from_secs(60), all).await else {
        bail!("subscribers did not receive every message within 60 s");
    };
    let cpu_after = (cluster.edges.iter().map(|e| cpu(e.pid())).sum::<Duration>(), own_cpu());
    drop(open);
    let seconds = last_at.lock().await.map_or(0.0, |l| (l - started).as_secs_f64());
    let deliveries = args.subscribers * args.messages;

    let mut latencies = Vec::with_capacity(deliveries);
    let mut arrivals = Vec::with_capacity(deliveries);
    let mut wrong = 0usize;
    for cell in seen.iter() {
        let got = cell.lock().await;
        let in_order = got.iter().map(|(n, _, _)| *n).eq(0..args.messages as u64);
        wrong += usize::from(!in_order);
        latencies.extend(got.iter().map(|(_, l, _)| *l));
        arrivals.extend(got.iter().map(|(_, _, a)| *a));
    }
    let edge_cpu = (cpu_after.0 - cpu_before.0).as_secs_f64();
    let per_delivery_us = edge_cpu * 1e6 / deliveries as f64;
    let rate = deliveries as f64 / seconds.max(1e-9);
    let p = Percentiles::of(&mut latencies);
    let at_socket = Percentiles::of(&mut arrivals);
    let ok = wrong == 0;
    let report = format!(
        "broadcast: {} messages to {} subscribers = {deliveries} deliveries in {seconds:.3} s ({rate:.0}/s; publishing took {publish_seconds:.3} s)\n  latency at the socket {}\n  latency to the read {}\n  edge CPU {edge_cpu:.3} s = {per_delivery_us:.3} µs per delivery; load generator CPU {:.3} s\n  subscribers with a missing, duplicated or reordered message: {wrong}\n{}",
        args.messages,
        args.subscribers,
        at_socket.map(|p| p.row()).unwrap_or_default(),
        p.map(|p| p.row()).unwrap_or_default(),
        (cpu_after.1 - cpu_before.1).as_secs_f64(),
        serde_json::json!({
            "scenario": "broadcast", "subscribers": args.subscribers, "messages": args.messages,
            "deliveries": deliveries, "seconds": seconds, "deliveries_per_second": rate,
            "edge_cpu_s": edge_cpu, "edge_cpu_us_per_delivery": per_delivery_us,
            "generator_cpu_s": (cpu_after.1 - cpu_before.1).as_secs_f64(),
            "latency": p.map(|p| p.json()), "latency_at_socket": at_socket.map(|p| p.json()), "bad_subscribers": wrong, "ok": ok,
        })
    );
    if !ok {
        bail!("{report}\nverification failed");
    }
    Ok(report)
}
