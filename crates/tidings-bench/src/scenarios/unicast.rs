//! `unicast`: members connected, notifications at a fixed rate to random members,
//! through the api (`--path durable`) or straight to the stream (`--path edge`).
//! Every notification must reach its member once, in stream order, under the SSE id the
//! publisher was given, and every badge count (`unread`) a member's stream shows must be
//! right: never above what was sent to the member so far, never below one shown
//! before (nothing is read during the run), and at the end exactly what was sent; the report is publish→receive latency and CPU per process:
//! the api's, nats-server's and Postgres' (the whole server: backends, WAL writer,
//! checkpointer) per notification sent, each read over the measured window, the last
//! two only where they are found on this machine (`servers.rs`), else "unknown".
//!
//! Members go to the edges round robin or by partition (`--routing`, `routing.rs`);
//! each edge's NATS traffic, live messages, live partitions and CPU are read over the
//! same window, to show what routing by member saves each edge.

mod publisher;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use rand::Rng as _;
use tokio::sync::Mutex;

use crate::client::Sources;
use crate::cluster::Cluster;
use crate::measure::{Percentiles, cpu, edge_metrics, own_cpu};
use crate::routing::Routing;
use crate::servers::Server;
use publisher::{Path, Publisher, Sent};

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
    /// `durable`: Send through the api (Postgres, then JetStream). `edge`: publish to
    /// the cluster's stream directly, as the api would, to measure edges and NATS alone.
    #[arg(long, value_enum, default_value_t = Path::Durable)]
    path: Path,
    /// How members are spread over the edges: `round-robin`, or `affinity` (by
    /// partition, as a load balancer hashing on the routing key does).
    #[arg(long, value_enum, default_value_t = Routing::RoundRobin)]
    routing: Routing,
}

/// One notification a member's stream received.
struct Got {
    seq: u64,
    event_id: String,
    notification_id: String,
    /// To the generator's read of it.
    latency: Duration,
    /// To its arrival at the subscriber's socket.
    arrival: Duration,
    /// The second of the run it was sent in.
    second: usize,
}

type Seen = Vec<Got>;

pub(crate) async fn run(cluster: &Cluster, args: Args) -> anyhow::Result<String> {
    // Found before anything connects: the search reads every process's open files.
    let (nats, postgres) = (cluster.nats_server(), cluster.postgres());
    let edges: Vec<_> = cluster.edges.iter().map(|e| e.addr).collect();
    let members: Vec<String> = (0..args.members).map(|i| format!("uni-{i}")).collect();
    let partitions = cluster.partitions()?;
    let ids = members
        .iter()
        .map(|m| tidings_domain::MemberId::parse(m))
        .collect::<Result<Vec<_>, _>>()?;
    let edge_of = |i: usize| args.routing.edge_of(i, &ids[i], partitions, edges.len());
    let opened = super::connect_each(&edges, edge_of, &members, &[], 200, Sources::ALL).await?;
    let mut conns = Vec::with_capacity(opened.len());
    for (i, (conn, connected)) in opened.into_iter().enumerate() {
        // The edge's partition of the member is the bench's: routing by it is routing
        // by what the edge subscribes to.
        let data: serde_json::Value = serde_json::from_str(&connected.data)?;
        let partition = ids[i].partition(partitions).to_string();
        if data["affinity"].as_str() != Some(partition.as_str()) {
            bail!(
                "{}: the edge's affinity is {}, the bench computed {partition}",
                members[i],
                data["affinity"]
            );
        }
        conns.push(conn);
    }
    let seen: Arc<Vec<Mutex<Seen>>> = Arc::new((0..args.members).map(|_| Mutex::new(Vec::new())).collect());
    // The unread counts each stream showed, in order.
    let badges: Arc<Vec<Mutex<Vec<u64>>>> = Arc::new((0..args.members).map(|_| Mutex::new(Vec::new())).collect());
    let run_start = crate::measure::now_nanos();
    let mut readers = Vec::new();
    for (i, mut conn) in conns.into_iter().enumerate() {
        let (seen, badges) = (seen.clone(), badges.clone());
        readers.push(tokio::spawn(async move {
            while let Ok(Some(e)) = conn.next().await {
                if e.event == "unread" {
                    let data: serde_json::Value = serde_json::from_str(&e.data).unwrap_or_default();
                    // A count that does not parse is wrong: u64::MAX is above any sent.
                    badges[i]
                        .lock()
                        .await
                        .push(data["unreadCount"].as_u64().unwrap_or(u64::MAX));
                    continue;
                }
                if e.event != "notification" {
                    continue;
                }
                let data: serde_json::Value = serde_json::from_str(&e.data).unwrap_or_default();
                let latency = super::latency(&data["data"], e.received_at).unwrap_or_default();
                let arrival = super::latency(&data["data"], e.arrived_at).unwrap_or_default();
                let sent_at = data["data"]["t"]
                    .as_str()
                    .and_then(|t| t.parse::<u128>().ok())
                    .unwrap_or(0);
                let second = (sent_at.saturating_sub(run_start) / 1_000_000_000) as usize;
                let event_id = e.id.unwrap_or_default();
                let seq = event_id.rsplit('-').next().and_then(|s| s.parse().ok()).unwrap_or(0);
                let notification_id = data["id"].as_str().unwrap_or_default().to_owned();
                seen[i].lock().await.push(Got {
                    seq,
                    event_id,
                    notification_id,
                    latency,
                    arrival,
                    second,
                });
            }
        }));
    }

    let publisher = Publisher::new(args.path, cluster).await?;
    let total = (f64::from(args.rate) * args.duration.as_secs_f64()).round() as usize;
    let expected: Arc<Mutex<HashMap<usize, Vec<Sent>>>> = Arc::default();
    // How long each Send (or direct publish) took to answer: what a producer waits.
    let answers: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let server_cpu = || Servers {
        nats: nats.as_ref().ok().map(Server::cpu),
        postgres: postgres.as_ref().ok().map(Server::cpu),
    };
    let edges_before = read_edges(cluster).await?;
    let cpu_before = (
        cpu(cluster.api.pid()),
        cluster.edges.iter().map(|e| cpu(e.pid())).sum::<Duration>(),
        own_cpu(),
        server_cpu(),
    );
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(args.rate)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let mut sends = Vec::with_capacity(total);
    for n in 0..total {
        ticker.tick().await;
        let member = rand::rng().random_range(0..args.members);
        let (publisher, expected, name) = (publisher.clone(), expected.clone(), members[member].clone());
        let answers = answers.clone();
        sends.push(tokio::spawn(async move {
            let data_json = serde_json::json!({ "t": crate::measure::now_nanos().to_string(), "n": n }).to_string();
            let asked = Instant::now();
            let sent = publisher.send(name, data_json).await?;
            answers.lock().await.push(asked.elapsed());
            expected.lock().await.entry(member).or_default().push(sent);
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
    // And every badge its final count (a fetch may answer a moment after the last
    // notification). Only the durable path's counts are known: the edge path's
    // notifications are in no inbox.
    let check_badges = matches!(args.path, Path::Durable);
    let deadline = Instant::now() + Duration::from_secs(5);
    if check_badges {
        loop {
            let sent = expected.lock().await;
            let mut settled = true;
            for (member, cell) in badges.iter().enumerate() {
                let want = sent.get(&member).map_or(0, Vec::len) as u64;
                if cell.lock().await.last().copied().unwrap_or(0) != want {
                    settled = false;
                    break;
                }
            }
            drop(sent);
            if settled || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let cpu_after = (
        cpu(cluster.api.pid()),
        cluster.edges.iter().map(|e| cpu(e.pid())).sum::<Duration>(),
        own_cpu(),
        server_cpu(),
    );
    let edges_after = read_edges(cluster).await?;
    let per_edge: Vec<EdgeUse> = edges_before
        .iter()
        .zip(&edges_after)
        .map(|(before, after)| EdgeUse::between(before, after))
        .collect();
    let fan_in = FanIn::of(&per_edge, total, partitions);
    for r in readers {
        r.abort();
    }

    // Verify: each member got exactly what was sent to it, once, in stream order, under
    // the SSE id the publisher was told (when it was told one). Sends to one member may
    // complete out of order, so compare as sets and check order by seq. Anything
    // received that was sent to someone else counts as unexpected.
    let expected = expected.lock().await;
    let mut latencies = Vec::with_capacity(total);
    let mut arrivals = Vec::with_capacity(total);
    let mut by_second: Vec<Vec<Duration>> = Vec::new();
    let (mut lost, mut duplicated, mut disordered, mut unexpected, mut wrong_id) =
        (0usize, 0usize, 0usize, 0usize, 0usize);
    let (mut badges_shown, mut badges_wrong) = (0usize, 0usize);
    for (member, cell) in badges.iter().enumerate() {
        let shown = cell.lock().await;
        let want = expected.get(&member).map_or(0, Vec::len) as u64;
        badges_shown += shown.len();
        if check_badges {
            badges_wrong += badge_errors(&shown, want);
        }
    }
    for (member, cell) in seen.iter().enumerate() {
        let got = cell.lock().await;
        let want: HashMap<&String, &String> = expected
            .get(&member)
            .map(|v| v.iter().map(|s| (&s.notification_id, &s.event_id)).collect())
            .unwrap_or_default();
        let got_ids: HashMap<&String, &String> = got.iter().map(|g| (&g.notification_id, &g.event_id)).collect();
        lost += want.keys().filter(|id| !got_ids.contains_key(*id)).count();
        unexpected += got_ids.keys().filter(|id| !want.contains_key(*id)).count();
        wrong_id += want
            .iter()
            .filter(|(id, event)| !event.is_empty() && got_ids.get(*id).is_some_and(|got| got != *event))
            .count();
        duplicated += got.len() - got_ids.len();
        disordered += got.windows(2).filter(|w| w[0].seq >= w[1].seq).count();
        latencies.extend(got.iter().map(|g| g.latency));
        arrivals.extend(got.iter().map(|g| g.arrival));
        for g in got.iter() {
            if by_second.len() <= g.second {
                by_second.resize_with(g.second + 1, Vec::new);
            }
            by_second[g.second].push(g.latency);
        }
    }
    let percentiles = Percentiles::of(&mut latencies);
    let arrival = Percentiles::of(&mut arrivals);
    let answered = Percentiles::of(&mut answers.lock().await);
    // Where the tail comes from: a steady p99, or a few bad seconds.
    let p99_by_second: Vec<String> = by_second
        .iter_mut()
        .map(|l| {
            Percentiles::of(l)
                .map(|p| format!("{:.0}", p.p99.as_secs_f64() * 1e3))
                .unwrap_or_else(|| "-".into())
        })
        .collect();
    let ok = lost == 0 && duplicated == 0 && disordered == 0 && unexpected == 0 && wrong_id == 0 && badges_wrong == 0;
    let path = match args.path {
        Path::Durable => "durable",
        Path::Edge => "edge",
    };
    let (api_cpu, edge_cpu, own_cpu) = (
        cpu_after.0.saturating_sub(cpu_before.0),
        cpu_after.1.saturating_sub(cpu_before.1),
        cpu_after.2.saturating_sub(cpu_before.2),
    );
    let used = |after: Option<Duration>, before: Option<Duration>| Some(after?.saturating_sub(before?));
    let (nats_cpu, postgres_cpu) = (
        used(cpu_after.3.nats, cpu_before.3.nats),
        used(cpu_after.3.postgres, cpu_before.3.postgres),
    );
    let per_send = PerSend::of(total, api_cpu, nats_cpu, postgres_cpu);
    let seconds = |d: Option<Duration>| d.map_or_else(|| "unknown".to_owned(), |d| format!("{:.2}", d.as_secs_f64()));
    let report = format!(
        "unicast ({path} path, {} routing over {} edges): {total} notifications to {} members at {}/s ({send_seconds:.2} s)\n  latency {}\n  at the socket {}\n  answered {}\n  p99 (ms) by second sent: {}\n  lost {lost}, duplicated {duplicated}, out of order {disordered}, unexpected {unexpected}, wrong id {wrong_id}, badges wrong {badges_wrong} of {badges_shown}\n  CPU s: api {:.2}, nats-server {}, Postgres {}, edges {:.2}, load generator {:.2}\n  {}\n  (nats-server {}; Postgres {})\n{}\n{}",
        args.routing.name(),
        edges.len(),
        args.members,
        args.rate,
        percentiles.map(|p| p.row()).unwrap_or_default(),
        arrival.map(|p| p.row()).unwrap_or_default(),
        answered.map(|p| p.row()).unwrap_or_default(),
        p99_by_second.join(" "),
        api_cpu.as_secs_f64(),
        seconds(nats_cpu),
        seconds(postgres_cpu),
        edge_cpu.as_secs_f64(),
        own_cpu.as_secs_f64(),
        per_send.row(match args.path {
            Path::Durable => "Send",
            Path::Edge => "notification",
        }),
        found(&nats),
        found(&postgres),
        fan_in.rows(&per_edge),
        serde_json::json!({
            "scenario": "unicast", "path": path, "routing": args.routing.name(), "members": args.members,
            "rate": args.rate, "sent": total, "partitions": partitions,
            "edges": per_edge.iter().map(EdgeUse::json).collect::<Vec<_>>(),
            "edge_cpu_us_per_notification": fan_in.edge_cpu_us, "edge_receipts_per_notification": fan_in.receipts,
            "nats_received_bytes_per_notification": fan_in.nats_bytes,
            "latency": percentiles.map(|p| p.json()), "latency_at_socket": arrival.map(|p| p.json()),
            "answered": answered.map(|p| p.json()), "lost": lost, "duplicated": duplicated,
            "out_of_order": disordered, "unexpected": unexpected, "wrong_id": wrong_id,
            "badges_shown": badges_shown, "badges_wrong": badges_wrong, "api_cpu_s": api_cpu.as_secs_f64(),
            "nats_cpu_s": nats_cpu.map(|d| d.as_secs_f64()), "postgres_cpu_s": postgres_cpu.map(|d| d.as_secs_f64()),
            "edge_cpu_s": edge_cpu.as_secs_f64(), "generator_cpu_s": own_cpu.as_secs_f64(),
            "api_cpu_us_per_send": per_send.api, "nats_cpu_us_per_send": per_send.nats,
            "postgres_cpu_us_per_send": per_send.postgres, "api_nats_cpu_us_per_send": per_send.api_nats(),
            "api_nats_postgres_cpu_us_per_send": per_send.all(), "ok": ok,
        })
    );
    if !ok {
        bail!("{report}\nverification failed");
    }
    Ok(report)
}

/// How many of the counts a member's stream showed, in order, were wrong when `sent`
/// notifications went to the member and none was read: one above `sent`, one below a
/// count shown before it, and a last one other than `sent` (or none at all).
fn badge_errors(shown: &[u64], sent: u64) -> usize {
    let above = shown.iter().filter(|&&c| c > sent).count();
    let backwards = shown.windows(2).filter(|w| w[1] < w[0]).count();
    let last = usize::from(shown.last() != Some(&sent));
    above + backwards + last
}

/// What one edge reports and has used, read before and after the measured window.
#[derive(Debug, Clone, Copy, PartialEq)]
struct EdgeReading {
    cpu: Duration,
    nats_received_bytes: f64,
    live_messages: f64,
    live_partitions: f64,
}

async fn read_edges(cluster: &Cluster) -> anyhow::Result<Vec<EdgeReading>> {
    let mut readings = Vec::new();
    for edge in &cluster.edges {
        let names = [
            "tidings_edge_nats_received_bytes_total",
            "tidings_edge_live_messages_received_total",
            "tidings_edge_live_partitions",
        ];
        let values = edge_metrics(edge.addr, &names).await?;
        readings.push(EdgeReading {
            cpu: cpu(edge.pid()),
            nats_received_bytes: values[0],
            live_messages: values[1],
            live_partitions: values[2],
        });
    }
    Ok(readings)
}

/// One edge over the measured window.
#[derive(Debug, Clone, Copy, PartialEq)]
struct EdgeUse {
    cpu: Duration,
    nats_received_bytes: f64,
    live_messages: f64,
    /// At the start of the window (every stream is open by then).
    live_partitions: f64,
}

impl EdgeUse {
    fn between(before: &EdgeReading, after: &EdgeReading) -> Self {
        Self {
            cpu: after.cpu.saturating_sub(before.cpu),
            nats_received_bytes: after.nats_received_bytes - before.nats_received_bytes,
            live_messages: after.live_messages - before.live_messages,
            live_partitions: before.live_partitions,
        }
    }

    #[cfg(test)]
    fn with_partitions(self, live_partitions: f64) -> Self {
        Self {
            live_partitions,
            ..self
        }
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "cpu_s": self.cpu.as_secs_f64(), "nats_received_bytes": self.nats_received_bytes,
            "live_messages": self.live_messages, "live_partitions": self.live_partitions,
        })
    }
}

/// The edges together, per notification sent: how many edges received it from NATS,
/// the NATS bytes they read, the CPU they spent.
#[derive(Debug, Clone, Copy, PartialEq)]
struct FanIn {
    partitions: u16,
    receipts: f64,
    nats_bytes: f64,
    edge_cpu_us: f64,
}

impl FanIn {
    fn of(edges: &[EdgeUse], sent: usize, partitions: u16) -> Self {
        let sent = sent.max(1) as f64;
        Self {
            partitions,
            receipts: edges.iter().map(|e| e.live_messages).sum::<f64>() / sent,
            nats_bytes: edges.iter().map(|e| e.nats_received_bytes).sum::<f64>() / sent,
            edge_cpu_us: edges.iter().map(|e| e.cpu.as_secs_f64()).sum::<f64>() * 1e6 / sent,
        }
    }

    fn rows(&self, edges: &[EdgeUse]) -> String {
        let each = |f: &dyn Fn(&EdgeUse) -> String| edges.iter().map(f).collect::<Vec<_>>().join(" / ");
        format!(
            "  per edge: live partitions {} (of {}); NATS received {} MB; live messages {}; CPU {} s\n  per notification, edges together: received by {:.2} edges, {:.0} B of NATS traffic, {:.0} µs of edge CPU",
            each(&|e| format!("{:.0}", e.live_partitions)),
            self.partitions,
            each(&|e| format!("{:.2}", e.nats_received_bytes / 1e6)),
            each(&|e| format!("{:.0}", e.live_messages)),
            each(&|e| format!("{:.2}", e.cpu.as_secs_f64())),
            self.receipts,
            self.nats_bytes,
            self.edge_cpu_us,
        )
    }
}

/// CPU of the servers the cluster uses but the bench did not start, where found.
struct Servers {
    nats: Option<Duration>,
    postgres: Option<Duration>,
}

/// CPU per notification sent, in µs, of the processes on the durable path; `None`
/// where a server was not found.
#[derive(Debug, Clone, Copy, PartialEq)]
struct PerSend {
    api: f64,
    nats: Option<f64>,
    postgres: Option<f64>,
}

impl PerSend {
    fn of(sent: usize, api: Duration, nats: Option<Duration>, postgres: Option<Duration>) -> Self {
        let us = |d: Duration| d.as_secs_f64() * 1e6 / sent.max(1) as f64;
        Self {
            api: us(api),
            nats: nats.map(us),
            postgres: postgres.map(us),
        }
    }

    /// api + nats-server: issue 20's figure for the durable path.
    fn api_nats(&self) -> Option<f64> {
        Some(self.api + self.nats?)
    }

    /// api + nats-server + Postgres.
    fn all(&self) -> Option<f64> {
        Some(self.api_nats()? + self.postgres?)
    }

    fn row(&self, unit: &str) -> String {
        let us = |v: Option<f64>| v.map_or_else(|| "unknown".to_owned(), |v| format!("{v:.0} µs"));
        format!(
            "CPU per {unit}: api {}, nats-server {}, Postgres {}; api + nats-server {}; all three {}",
            us(Some(self.api)),
            us(self.nats),
            us(self.postgres),
            us(self.api_nats()),
            us(self.all())
        )
    }
}

/// How a server was found, or why not.
fn found(server: &Result<Server, String>) -> String {
    match server {
        Ok(s) => format!("pid {} on port {}, with its descendants", s.pid, s.port),
        Err(why) => format!("unknown: {why}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn badges_may_only_climb_to_what_was_sent() {
        assert_eq!(badge_errors(&[0, 1, 2, 3], 3), 0);
        assert_eq!(badge_errors(&[0, 2, 2, 3], 3), 0, "a count shown twice is not wrong");
        assert_eq!(badge_errors(&[0, 2, 1, 3], 3), 1, "an older count after a newer one");
        assert_eq!(badge_errors(&[0, 4, 3], 3), 2, "above what was sent, then back");
        assert_eq!(badge_errors(&[0, 1, 2], 3), 1, "not the final count");
        assert_eq!(badge_errors(&[], 0), 1, "no badge at all");
        assert_eq!(badge_errors(&[0], 0), 0);
    }

    #[test]
    fn cpu_per_send_and_its_sums() {
        let ms = Duration::from_millis;
        let known = PerSend::of(1000, ms(300), Some(ms(100)), Some(ms(250)));
        assert_eq!(
            (known.api, known.nats, known.postgres),
            (300.0, Some(100.0), Some(250.0))
        );
        assert_eq!((known.api_nats(), known.all()), (Some(400.0), Some(650.0)));
        assert_eq!(
            known.row("Send"),
            "CPU per Send: api 300 µs, nats-server 100 µs, Postgres 250 µs; api + nats-server 400 µs; all three 650 µs"
        );
        // An unknown server makes every sum that needs it unknown, not smaller.
        let no_postgres = PerSend::of(1000, ms(300), Some(ms(100)), None);
        assert_eq!((no_postgres.api_nats(), no_postgres.all()), (Some(400.0), None));
        let no_nats = PerSend::of(1000, ms(300), None, Some(ms(250)));
        assert_eq!((no_nats.api_nats(), no_nats.all()), (None, None));
        assert!(no_nats.row("Send").contains("nats-server unknown"));
        // Nothing sent divides by one, not zero.
        assert_eq!(PerSend::of(0, ms(1), None, None).api, 1000.0);
    }

    #[test]
    fn fan_in_sums_the_edges_per_notification() {
        let edge = |cpu_ms, bytes, messages| EdgeUse {
            cpu: Duration::from_millis(cpu_ms),
            nats_received_bytes: bytes,
            live_messages: messages,
            live_partitions: 1024.0,
        };
        // Round robin: all three edges received all 1,000.
        let edges = [edge(100, 4e5, 1000.0), edge(120, 4e5, 1000.0), edge(80, 4e5, 1000.0)];
        let fan_in = FanIn::of(&edges, 1000, 1024);
        assert_eq!(
            (fan_in.receipts, fan_in.nats_bytes, fan_in.edge_cpu_us),
            (3.0, 1200.0, 300.0)
        );
        assert!(
            fan_in.rows(&edges).contains("received by 3.00 edges"),
            "{}",
            fan_in.rows(&edges)
        );
        let before = EdgeReading {
            cpu: Duration::from_millis(50),
            nats_received_bytes: 10.0,
            live_messages: 2.0,
            live_partitions: 341.0,
        };
        let after = EdgeReading {
            cpu: Duration::from_millis(80),
            nats_received_bytes: 110.0,
            live_messages: 7.0,
            live_partitions: 0.0,
        };
        assert_eq!(
            EdgeUse::between(&before, &after),
            edge(30, 100.0, 5.0).with_partitions(341.0)
        );
    }
}
