use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use rand::Rng as _;
use tidings_proto::v1 as pb;
use tokio::sync::Mutex;

use crate::cluster::Cluster;
use crate::measure::{Percentiles, cpu, own_cpu};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Connected members (one stream each).
    #[arg(long, default_value_t = 100)]
    members: usize,
    /// Notifications per second, each to one random member.
    #[arg(long, default_value_t = 1000)]
    rate: u32,
    /// How long to send.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
}

/// What a member's stream received: (stream sequence, notification id, latency).
type Seen = Vec<(u64, String, Duration)>;

pub(crate) async fn run(cluster: &Cluster, args: Args) -> anyhow::Result<String> {
    let edges: Vec<_> = cluster.edges.iter().map(|e| e.addr).collect();
    let members: Vec<String> = (0..args.members).map(|i| format!("uni-{i}")).collect();
    let conns = super::connect_all(&edges, &members, &[], 200).await?;
    let seen: Arc<Vec<Mutex<Seen>>> = Arc::new((0..args.members).map(|_| Mutex::new(Vec::new())).collect());
    let mut readers = Vec::new();
    for (i, mut conn) in conns.into_iter().enumerate() {
        let seen = seen.clone();
        readers.push(tokio::spawn(async move {
            while let Ok(Some(e)) = conn.next().await {
                if e.event != "notification" {
                    continue;
                }
                let data: serde_json::Value = serde_json::from_str(&e.data).unwrap_or_default();
                let latency = super::latency(&data["data"]).unwrap_or_default();
                let seq =
                    e.id.as_deref()
                        .and_then(|id| id.rsplit('-').next())
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(0);
                seen[i]
                    .lock()
                    .await
                    .push((seq, data["id"].as_str().unwrap_or_default().to_owned(), latency));
            }
        }));
    }

    let client = cluster.client().await?;
    let total = (f64::from(args.rate) * args.duration.as_secs_f64()).round() as usize;
    let expected: Arc<Mutex<HashMap<usize, Vec<String>>>> = Arc::default();
    let cpu_before = (
        cpu(cluster.api.pid()),
        cluster.edges.iter().map(|e| cpu(e.pid())).sum::<Duration>(),
        own_cpu(),
    );
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(args.rate)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let mut sends = Vec::with_capacity(total);
    for n in 0..total {
        ticker.tick().await;
        let member = rand::rng().random_range(0..args.members);
        let (mut client, expected, name) = (client.clone(), expected.clone(), members[member].clone());
        sends.push(tokio::spawn(async move {
            let request = pb::SendRequest {
                member_ids: vec![name],
                r#type: "bench".into(),
                content: String::new(),
                data_json: serde_json::json!({ "t": super::now_nanos().to_string(), "n": n }).to_string(),
                ..Default::default()
            };
            let response = client.send(request).await?.into_inner();
            let id = response.deliveries[0].notification_id.clone();
            expected.lock().await.entry(member).or_default().push(id);
            Ok::<_, anyhow::Error>(())
        }));
    }
    for send in sends {
        send.await??;
    }
    let send_seconds = started.elapsed().as_secs_f64();
    // Everything sent must arrive; allow the tail a moment.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let mut received = 0;
        for s in seen.iter() {
            received += s.lock().await.len();
        }
        if received >= total || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let cpu_after = (
        cpu(cluster.api.pid()),
        cluster.edges.iter().map(|e| cpu(e.pid())).sum::<Duration>(),
        own_cpu(),
    );
    for r in readers {
        r.abort();
    }

    // Verify: each member got exactly what was sent to it, once, in stream order. Sends
    // to one member may complete out of order, so compare as sets and check order by seq.
    let expected = expected.lock().await;
    let mut latencies = Vec::with_capacity(total);
    let (mut lost, mut duplicated, mut disordered) = (0usize, 0usize, 0usize);
    for (member, cell) in seen.iter().enumerate() {
        let got = cell.lock().await;
        let want: std::collections::HashSet<&String> =
            expected.get(&member).map(|v| v.iter().collect()).unwrap_or_default();
        let got_ids: std::collections::HashSet<&String> = got.iter().map(|(_, id, _)| id).collect();
        lost += want.difference(&got_ids).count();
        duplicated += got.len() - got_ids.len();
        disordered += got.windows(2).filter(|w| w[0].0 >= w[1].0).count();
        latencies.extend(got.iter().map(|(_, _, l)| *l));
    }
    let percentiles = Percentiles::of(&mut latencies);
    let ok = lost == 0 && duplicated == 0 && disordered == 0;
    let report = format!(
        "unicast: {total} notifications to {} members at {}/s ({send_seconds:.2} s)\n  latency {}\n  lost {lost}, duplicated {duplicated}, out of order {disordered}\n  CPU s: api {:.2}, edges {:.2}, load generator {:.2}\n{}",
        args.members,
        args.rate,
        percentiles.map(|p| p.row()).unwrap_or_default(),
        (cpu_after.0 - cpu_before.0).as_secs_f64(),
        (cpu_after.1 - cpu_before.1).as_secs_f64(),
        (cpu_after.2 - cpu_before.2).as_secs_f64(),
        serde_json::json!({
            "scenario": "unicast", "members": args.members, "rate": args.rate, "sent": total,
            "latency": percentiles.map(|p| p.json()), "lost": lost, "duplicated": duplicated,
            "out_of_order": disordered, "api_cpu_s": (cpu_after.0 - cpu_before.0).as_secs_f64(),
            "edge_cpu_s": (cpu_after.1 - cpu_before.1).as_secs_f64(),
            "generator_cpu_s": (cpu_after.2 - cpu_before.2).as_secs_f64(), "ok": ok,
        })
    );
    if !ok {
        bail!("{report}\nverification failed");
    }
    Ok(report)
}
