//! The scenarios. Each starts its own cluster, measures, verifies, reports, and stops
//! the cluster whatever happened.

mod broadcast;
mod idle;
mod ingest;
mod storm;
mod unicast;

use std::net::SocketAddr;
use std::time::Duration;

use futures::StreamExt as _;
use tidings_edge::{Claims, Verifier, expiry_in};

use crate::client::{self, Sources, SseConn};
use crate::cluster::{Cluster, ClusterArgs, JWT_SECRET};

#[derive(Debug, clap::Subcommand)]
pub(crate) enum Scenario {
    /// Open N idle SSE connections over the edges from worker processes; report connect
    /// rate and edge RSS per connection.
    Idle(idle::Args),
    /// N connected members, spread over the edges round robin or by partition;
    /// send at a fixed rate through the api to random members; report publish→receive
    /// latency percentiles, the CPU per Send of the api, nats-server and Postgres, each
    /// edge's NATS traffic and CPU, and verify every delivery.
    Unicast(unicast::Args),
    /// N subscribers of one topic; publish M messages back to back, or `--rate` per
    /// second (paced; sustained with `--duration`); report deliveries per second, edge
    /// CPU per delivery and latency percentiles, and for a scheduled run the publisher's
    /// lag, offered vs achieved deliveries per second and whether the cluster kept up.
    Broadcast(broadcast::Args),
    /// SendStream at rising concurrency: notifications per second persisted and
    /// published, and the api's CPU per notification.
    Ingest(ingest::Args),
    /// N clients that each missed K notifications reconnect at once with Last-Event-ID
    /// (a rolling deploy): time until all caught up, errors.
    Storm(storm::Args),
    /// Internal: one generator process of `idle`, started by it (not a scenario).
    #[command(hide = true)]
    IdleWorker(idle::worker::Args),
}

pub(crate) async fn run(scenario: Scenario, args: ClusterArgs) -> anyhow::Result<()> {
    // A worker drives the cluster its parent started; it starts nothing itself.
    if let Scenario::IdleWorker(a) = scenario {
        return idle::worker::run(a).await;
    }
    // An impossible layout is refused before anything starts.
    if let Scenario::Idle(a) = &scenario {
        a.plan(args.edges)?;
    }
    let cluster = Cluster::start(&args, &[]).await?;
    if let Err(e) = cluster.warm_up_database().await {
        cluster.stop().await;
        return Err(e);
    }
    let result = match scenario {
        Scenario::Idle(a) => idle::run(&cluster, a).await,
        Scenario::Unicast(a) => unicast::run(&cluster, a).await,
        Scenario::Broadcast(a) => broadcast::run(&cluster, a).await,
        Scenario::Ingest(a) => ingest::run(&cluster, a).await,
        Scenario::Storm(a) => storm::run(&cluster, a).await,
        Scenario::IdleWorker(_) => unreachable!("invariant: workers return before a cluster starts"),
    };
    cluster.stop().await;
    let report = result?;
    println!("{report}");
    Ok(())
}

/// A subscriber token for `member`, allowed to join `topics`.
pub(crate) fn token(member: &str, topics: &[&str]) -> String {
    let claims = Claims {
        sub: member.into(),
        exp: expiry_in(Duration::from_secs(3600)),
        topics: (!topics.is_empty()).then(|| topics.iter().map(|t| t.to_string()).collect()),
    };
    Verifier::hs256(JWT_SECRET.as_bytes())
        .sign(&claims)
        .expect("HS256 signs")
}

/// Opens one stream per member, `concurrency` at a time, round-robin over the edges,
/// and waits for each `connected` event.
pub(crate) async fn connect_all(
    edges: &[SocketAddr],
    members: &[String],
    topics: &[&str],
    concurrency: usize,
) -> anyhow::Result<Vec<SseConn>> {
    connect_spread(edges, 0, members, topics, concurrency, Sources::ALL).await
}

/// [`connect_all`] for a slice of a larger set: `members[j]` is member `first + j` of
/// the whole set and goes to edge `(first + j) % edges.len()`, so slices opened by
/// different processes together spread evenly over the edges; source addresses come
/// from `sources` only.
pub(crate) async fn connect_spread(
    edges: &[SocketAddr],
    first: usize,
    members: &[String],
    topics: &[&str],
    concurrency: usize,
    sources: Sources,
) -> anyhow::Result<Vec<SseConn>> {
    let opened = connect_each(
        edges,
        |j| (first + j) % edges.len(),
        members,
        topics,
        concurrency,
        sources,
    )
    .await?;
    Ok(opened.into_iter().map(|(conn, _)| conn).collect())
}

/// Opens one stream per member, `concurrency` at a time, `members[j]` on edge
/// `edge_of(j)`, and waits for each `connected` event, returned beside its stream.
pub(crate) async fn connect_each(
    edges: &[SocketAddr],
    edge_of: impl Fn(usize) -> usize,
    members: &[String],
    topics: &[&str],
    concurrency: usize,
    sources: Sources,
) -> anyhow::Result<Vec<(SseConn, client::Event)>> {
    let query = if topics.is_empty() {
        String::new()
    } else {
        format!("&topics={}", topics.join(","))
    };
    let opened = futures::stream::iter(members.iter().enumerate().map(|(j, member)| {
        let edge = edges[edge_of(j)];
        let token = token(member, topics);
        let query = query.clone();
        async move {
            let mut conn = client::open(edge, sources.ip(j), &token, &query, None).await?;
            match conn.next().await? {
                Some(e) if e.event == "connected" => Ok((conn, e)),
                other => anyhow::bail!("expected connected, got {other:?}"),
            }
        }
    }))
    .buffered(concurrency)
    .collect::<Vec<_>>()
    .await;
    opened.into_iter().collect()
}

/// Sends `requests` over one SendStream call; returns the responses in order.
pub(crate) async fn send_stream(
    client: &crate::cluster::Client,
    requests: Vec<tidings_proto::v1::SendRequest>,
) -> anyhow::Result<Vec<tidings_proto::v1::SendResponse>> {
    let mut client = client.clone();
    let requests = requests.into_iter().map(tidings_proto::v1::SendStreamRequest::from);
    let mut responses = client.send_stream(futures::stream::iter(requests)).await?.into_inner();
    let mut out = Vec::new();
    while let Some(r) = responses.message().await? {
        out.push(r.into());
    }
    Ok(out)
}

/// `t` from an event's JSON data, and the latency from then to `received_at`.
pub(crate) fn latency(data: &serde_json::Value, received_at: u128) -> Option<Duration> {
    latency_since(data["t"].as_str()?, received_at)
}

/// The latency from `t` (Unix nanoseconds as a decimal string) to `received_at`.
pub(crate) fn latency_since(t: &str, received_at: u128) -> Option<Duration> {
    let t = t.parse::<u128>().ok()?;
    Some(Duration::from_nanos(received_at.saturating_sub(t) as u64))
}
