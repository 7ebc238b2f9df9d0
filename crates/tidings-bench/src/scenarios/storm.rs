use std::time::{Duration, Instant};

use anyhow::bail;
use futures::StreamExt as _;
use tidings_proto::v1 as pb;

use crate::client::{self, Sources};
use crate::cluster::Cluster;
use crate::measure::{cpu, edge_gauge, own_cpu, pids_named};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Clients (one member each).
    #[arg(long, default_value_t = 1000)]
    clients: usize,
    /// Notifications each client misses while away.
    #[arg(long, default_value_t = 10)]
    missed: usize,
    /// Reconnections in flight at once.
    #[arg(long, default_value_t = 1000)]
    concurrency: usize,
}

pub(crate) async fn run(cluster: &Cluster, args: Args) -> anyhow::Result<String> {
    let edges: Vec<_> = cluster.edges.iter().map(|e| e.addr).collect();
    let members: Vec<String> = (0..args.clients).map(|i| format!("storm-{i}")).collect();
    // Connect, note where each stream starts (the `connected` id), disconnect.
    let positions: Vec<Option<String>> = futures::stream::iter(members.iter().enumerate().map(|(i, member)| {
        let (edge, token) = (edges[i % edges.len()], super::token(member, &[]));
        async move {
            let mut conn = client::open(edge, Sources::ALL.ip(i), &token, "", None).await?;
            let connected = conn.next().await?.filter(|e| e.event == "connected");
            Ok::<_, anyhow::Error>(connected.and_then(|e| e.id))
        }
    }))
    .buffered(200)
    .collect::<Vec<_>>()
    .await
    .into_iter()
    .collect::<Result<_, _>>()?;
    let client = cluster.client().await?;
    let mut requests = Vec::with_capacity(args.clients * args.missed);
    for k in 0..args.missed {
        for m in &members {
            requests.push(pb::SendRequest {
                member_ids: vec![m.clone()],
                r#type: "storm".into(),
                content: k.to_string(),
                ..Default::default()
            });
        }
    }
    for chunk in requests.chunks(5000) {
        super::send_stream(&client, chunk.to_vec()).await?;
    }

    // Everyone comes back at once.
    let edge_cpu0: Duration = cluster.edges.iter().map(|e| cpu(e.pid())).sum();
    // nats-server is not ours to start: every one on the machine counts.
    let nats = pids_named("nats-server");
    let nats_cpu = || nats.iter().map(|p| cpu(*p)).sum::<Duration>();
    let (nats_cpu0, api_cpu0, own_cpu0) = (nats_cpu(), cpu(cluster.api.pid()), own_cpu());
    let started = Instant::now();
    let results = futures::stream::iter(members.iter().enumerate().map(|(i, member)| {
        let (edge, token, last) = (
            edges[(i + 1) % edges.len()],
            super::token(member, &[]),
            positions[i].clone(),
        );
        let missed = args.missed;
        async move {
            let mut conn = client::open(edge, Sources::ALL.ip(i), &token, "", last.as_deref()).await?;
            let mut got = Vec::with_capacity(missed);
            while got.len() < missed {
                match tokio::time::timeout(Duration::from_secs(30), conn.next()).await {
                    Ok(Ok(Some(e))) if e.event == "notification" => {
                        let data: serde_json::Value = serde_json::from_str(&e.data)?;
                        got.push(
                            data["content"]
                                .as_str()
                                .unwrap_or_default()
                                .parse::<usize>()
                                .unwrap_or(usize::MAX),
                        );
                    }
                    Ok(Ok(Some(e))) if e.event == "reset" => bail!("reset: {}", e.data),
                    Ok(Ok(Some(_))) => {}
                    _ => bail!("stream ended or stalled after {} of {missed}", got.len()),
                }
            }
            if !got.iter().copied().eq(0..missed) {
                bail!("wrong events: {got:?}");
            }
            Ok::<_, anyhow::Error>(started.elapsed())
        }
    }))
    .buffer_unordered(args.concurrency)
    .collect::<Vec<_>>()
    .await;
    let seconds = started.elapsed().as_secs_f64();
    let edge_cpu = (cluster.edges.iter().map(|e| cpu(e.pid())).sum::<Duration>() - edge_cpu0).as_secs_f64();
    let nats_cpu = (nats_cpu() - nats_cpu0).as_secs_f64();
    let api_cpu = (cpu(cluster.api.pid()) - api_cpu0).as_secs_f64();
    let own_cpu = (own_cpu() - own_cpu0).as_secs_f64();
    // How the edges read the stream: one replay each, or passes for many at once.
    let mut replays = [0.0; 3];
    for edge in &cluster.edges {
        for (total, name) in replays.iter_mut().zip([
            "tidings_edge_replays_total{method=\"direct_get\"}",
            "tidings_edge_replays_total{method=\"window\"}",
            "tidings_edge_replay_passes_total",
        ]) {
            *total += edge_gauge(edge.addr, name).await.unwrap_or(0.0);
        }
    }
    let [direct, windowed, passes] = replays;
    let errors: Vec<String> = results
        .iter()
        .filter_map(|r| r.as_ref().err().map(|e| format!("{e:#}")))
        .collect();
    let ok = errors.is_empty();
    let report = format!(
        "storm: {} clients × {} missed, all reconnecting at once: caught up in {seconds:.2} s, errors {}; \
         CPU-s: edges {edge_cpu:.2}, nats-server {nats_cpu:.2}, api {api_cpu:.2}, generator {own_cpu:.2}; \
         replays: {direct} one by one, {windowed} from {passes} passes\n{}",
        args.clients,
        args.missed,
        errors.len(),
        serde_json::json!({ "scenario": "storm", "clients": args.clients, "missed": args.missed,
            "seconds": seconds, "errors": errors.len(), "edge_cpu_s": edge_cpu, "nats_cpu_s": nats_cpu,
            "api_cpu_s": api_cpu, "generator_cpu_s": own_cpu, "ok": ok,
            "replays_direct": direct, "replays_window": windowed, "passes": passes,
            "first_error": errors.first() })
    );
    if !ok {
        bail!("{report}\nverification failed");
    }
    Ok(report)
}
