//! `broadcast`: N subscribers of one topic, messages published through the api back to
//! back (burst, the default), at `--rate` per second for `--messages` (paced) or for
//! `--duration` (sustained). Every subscriber must get every message exactly once and
//! in order, or the run fails. The report is deliveries per second, edge CPU per
//! delivery and latency percentiles; a scheduled run adds how far the publisher fell
//! behind its schedule, the offered and achieved delivery rates, the latency of the
//! run's last quarter, and whether the cluster kept up.

mod deliveries;
mod schedule;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;

use crate::cluster::Cluster;
use crate::histogram::Histogram;
use crate::measure::{cpu, own_cpu};
use deliveries::{Deliveries, Order, Quarters};
use schedule::{Mode, Schedule};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Subscribers of the topic (one member each).
    #[arg(long, default_value_t = 1000)]
    subscribers: usize,
    /// Messages to publish (with `--duration`: rate × duration instead).
    #[arg(long, default_value_t = 100)]
    messages: u64,
    /// Publish this many messages per second, evenly spaced, one at a time (paced;
    /// sustained with `--duration`). Without it the messages go back to back (burst).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    rate: Option<u32>,
    /// Publish at `--rate` for this long (sustained), e.g. `20s`.
    #[arg(long, requires = "rate", conflicts_with = "messages", value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
}

const TOPIC: &str = "bench";

/// The share of the offered deliveries per second a scheduled run must achieve to have
/// kept up.
const KEPT_UP_SHARE: f64 = 0.95;

/// A message's data as published.
#[derive(serde::Deserialize)]
struct Message<'a> {
    t: &'a str,
    n: u64,
}

pub(crate) async fn run(cluster: &Cluster, args: Args) -> anyhow::Result<String> {
    let mode = Mode::new(args.messages, args.rate, args.duration);
    let messages = mode.messages();
    let edges: Vec<_> = cluster.edges.iter().map(|e| e.addr).collect();
    let members: Vec<String> = (0..args.subscribers).map(|i| format!("bc-{i}")).collect();
    let conns = super::connect_all(&edges, &members, &[TOPIC], 200).await?;
    let deliveries = Arc::new(Deliveries::new(messages));
    let mut readers = Vec::new();
    for (i, mut conn) in conns.into_iter().enumerate() {
        let deliveries = deliveries.clone();
        readers.push(tokio::spawn(async move {
            let mut order = Order::new();
            while order.received() < messages {
                let Ok(Some(e)) = conn.next_ref().await else { break };
                if e.event != TOPIC {
                    continue;
                }
                let message = serde_json::from_str::<Message<'_>>(&e.data).ok();
                order.receive(message.as_ref().map(|m| m.n));
                if let Some(m) = message {
                    let since = |at| super::latency_since(m.t, at).unwrap_or_default();
                    deliveries.record(i, m.n, since(e.arrived_at), since(e.received_at), e.arrived_at);
                }
            }
            // The stream is kept open until the edge's CPU is read: closing 10,000
            // streams is not delivery work.
            (conn, order, Instant::now())
        }));
    }
    let client = cluster.client().await?;
    let cpu_before = (cluster.edges.iter().map(|e| cpu(e.pid())).sum::<Duration>(), own_cpu());
    let started = Instant::now();
    let published = schedule::publish(&client, TOPIC, mode, started).await?;
    let all = futures::future::join_all(readers);
    let Ok(done) = tokio::time::timeout(Duration::from_secs(60), all).await else {
        bail!("subscribers did not receive every message within 60 s");
    };
    let cpu_after = (cluster.edges.iter().map(|e| cpu(e.pid())).sum::<Duration>(), own_cpu());
    let (mut wrong, mut last_read, mut open) = (0usize, started, Vec::with_capacity(done.len()));
    for reader in done {
        let (conn, order, finished) = reader?;
        wrong += usize::from(!order.complete(messages));
        last_read = last_read.max(finished);
        open.push(conn);
    }
    drop(open);

    let seconds = (last_read - started).as_secs_f64();
    let deliveries_total = args.subscribers as u64 * messages;
    let edge_cpu = (cpu_after.0 - cpu_before.0).as_secs_f64();
    let generator_cpu = (cpu_after.1 - cpu_before.1).as_secs_f64();
    let per_delivery_us = edge_cpu * 1e6 / deliveries_total.max(1) as f64;
    let per_second = deliveries_total as f64 / seconds.max(1e-9);
    let total = deliveries.total();
    let (at_socket, to_read) = (Quarters::whole(&total.at_socket), Quarters::whole(&total.to_read));
    let p99_by_quarter = total.at_socket.each_ref().map(|h| h.quantile(0.99));
    let scheduled = mode.rate().map(|rate| {
        let interval = Schedule::new(rate).interval;
        let (first, last) = total.arrivals.unwrap_or_default();
        let span = Duration::from_nanos(u64::try_from(last.saturating_sub(first)).unwrap_or(u64::MAX));
        Pace::judge(
            f64::from(rate) * args.subscribers as f64,
            achieved(at_socket.len(), span, interval),
            p99_by_quarter[0].unwrap_or_default(),
            p99_by_quarter[3].unwrap_or_default(),
            interval,
        )
    });
    let ok = wrong == 0;
    let ms = |d: Duration| format!("{:.3}", d.as_secs_f64() * 1e3);
    let row = |h: &Histogram| h.percentiles().map(|p| p.row()).unwrap_or_default();
    let json = |h: &Histogram| h.percentiles().map(|p| p.json());
    let how = match mode {
        Mode::Burst { .. } => "burst".to_owned(),
        Mode::Paced { rate, .. } => format!("paced, {rate} msg/s"),
        Mode::Sustained { rate, duration } => {
            format!("sustained, {rate} msg/s for {}", humantime::format_duration(duration))
        }
    };
    let mut report = format!(
        "broadcast ({how}): {messages} messages to {} subscribers = {deliveries_total} deliveries in {seconds:.3} s ({per_second:.0}/s; publishing took {:.3} s)\n  latency at the socket {}\n  latency to the read {}\n",
        args.subscribers,
        published.seconds,
        row(&at_socket),
        row(&to_read),
    );
    if let Some(pace) = &scheduled {
        let quarters: Vec<String> = p99_by_quarter.iter().map(|p| p.map_or("-".into(), ms)).collect();
        report += &format!(
            "  publisher at most {} ms behind its schedule{}\n  last quarter: at the socket {}\n  p99 at the socket by quarter of the run: {} ms\n  {}\n",
            ms(published.max_lag),
            if published.max_lag > pace.interval {
                " (more than one interval: the generator or the api held the rate back)"
            } else {
                ""
            },
            row(&total.at_socket[3]),
            quarters.join(" / "),
            pace.row(),
        );
    }
    report += &format!(
        "  edge CPU {edge_cpu:.3} s = {per_delivery_us:.3} µs per delivery; load generator CPU {generator_cpu:.3} s\n  subscribers with a missing, duplicated or reordered message: {wrong}\n{}",
        serde_json::json!({
            "scenario": "broadcast", "mode": mode.name(), "rate": mode.rate(),
            "duration_s": match mode {
                Mode::Sustained { duration, .. } => Some(duration.as_secs_f64()),
                Mode::Burst { .. } | Mode::Paced { .. } => None,
            },
            "subscribers": args.subscribers, "messages": messages,
            "deliveries": deliveries_total, "seconds": seconds, "deliveries_per_second": per_second,
            "publish_seconds": published.seconds,
            "publish_lag_max_ms": mode.rate().map(|_| ms_json(published.max_lag)),
            "offered_deliveries_per_second": scheduled.as_ref().map(|p| p.offered),
            "achieved_deliveries_per_second": scheduled.as_ref().map(|p| p.achieved),
            "kept_up": scheduled.as_ref().map(|p| p.kept_up),
            "last_quarter_p99_bound_ms": scheduled.as_ref().map(|p| ms_json(p.bound)),
            "edge_cpu_s": edge_cpu, "edge_cpu_us_per_delivery": per_delivery_us,
            "generator_cpu_s": generator_cpu,
            "latency": json(&to_read), "latency_at_socket": json(&at_socket),
            "latency_last_quarter": json(&total.to_read[3]), "latency_at_socket_last_quarter": json(&total.at_socket[3]),
            "p99_at_socket_by_quarter_ms": p99_by_quarter.map(|p| p.map(ms_json)),
            "bad_subscribers": wrong, "ok": ok,
        })
    );
    if !ok {
        bail!("{report}\nverification failed");
    }
    Ok(report)
}

/// Milliseconds to the microsecond, as [`Percentiles::json`](crate::measure::Percentiles::json) gives them.
fn ms_json(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// Deliveries per second achieved: `deliveries` over the `span` from the first arrival
/// at a subscriber's socket to the last, plus one publishing `interval` (the last
/// message's own slot). A cluster that delivers each message with the same latency
/// achieves exactly the offered rate however long that latency, which cancels out; one
/// that falls behind stretches the span by the backlog left at the end.
fn achieved(deliveries: u64, span: Duration, interval: Duration) -> f64 {
    deliveries as f64 / (span + interval).as_secs_f64().max(1e-9)
}

/// Whether a scheduled run kept up with what it offered.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Pace {
    /// Deliveries per second offered: rate × subscribers.
    offered: f64,
    /// Deliveries per second that reached the subscribers' sockets.
    achieved: f64,
    p99_last: Duration,
    /// The most the last quarter's p99 may be.
    bound: Duration,
    interval: Duration,
    kept_up: bool,
}

impl Pace {
    /// Kept up: `achieved` is at least [`KEPT_UP_SHARE`] of `offered`, and the last
    /// quarter's p99 latency at the socket is at most the first quarter's plus the
    /// larger of the first quarter's itself and one publishing `interval`. A cluster
    /// that cannot keep the rate builds a backlog, and the latency grows with it over
    /// the run; growth past the first quarter's own latency means the backlog grew by
    /// more than the whole latency a message had at the start. Growth of less than one
    /// interval is less than one message's fan-out still queued at the end, which
    /// noise on a shared machine makes (at small latencies twice the first quarter's
    /// is still only a millisecond or two).
    fn judge(offered: f64, achieved: f64, p99_first: Duration, p99_last: Duration, interval: Duration) -> Self {
        let bound = p99_first + p99_first.max(interval);
        Self {
            offered,
            achieved,
            p99_last,
            bound,
            interval,
            kept_up: achieved >= KEPT_UP_SHARE * offered && p99_last <= bound,
        }
    }

    /// The verdict and both of its conditions.
    fn row(&self) -> String {
        let share = self.achieved / self.offered.max(1e-9);
        let yes = |b: bool| if b { "yes" } else { "no" };
        let ms = |d: Duration| format!("{:.3}", d.as_secs_f64() * 1e3);
        format!(
            "offered {:.0} deliveries/s, achieved {:.0}/s at the sockets ({:.1}%)\n  kept up: {} (achieved >= {:.0}% of offered: {}; last quarter's p99 {} ms <= {} ms, the first quarter's plus the larger of itself and one interval: {})",
            self.offered,
            self.achieved,
            share * 100.0,
            yes(self.kept_up),
            KEPT_UP_SHARE * 100.0,
            yes(share >= KEPT_UP_SHARE),
            ms(self.p99_last),
            ms(self.bound),
            yes(self.p99_last <= self.bound),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn achieved_is_deliveries_over_the_arrivals_and_one_slot() {
        let ms = Duration::from_millis;
        // 100 messages at 10/s to 1,000 subscribers, arriving 99 intervals apart
        // whatever the latency: the offered 10,000/s.
        assert_eq!(achieved(100_000, ms(9_900), ms(100)), 10_000.0);
        // The last message's deliveries done 2.4 s after their schedule, the first's
        // at once: a backlog, 8,000/s.
        assert_eq!(achieved(100_000, ms(12_400), ms(100)), 8_000.0);
        assert!(achieved(0, Duration::ZERO, Duration::ZERO).is_finite());
    }

    #[test]
    fn keeping_up_wants_the_rate_and_no_growing_tail() {
        let ms = Duration::from_millis;
        let interval = ms(10); // 100 msg/s
        // Steady: 99% of the offered rate, p99 flat.
        let steady = Pace::judge(1e6, 0.99e6, ms(120), ms(130), interval);
        assert!(steady.kept_up);
        assert_eq!(steady.bound, ms(240));
        // Slightly short of the rate.
        assert!(!Pace::judge(1e6, 0.94e6, ms(120), ms(130), interval).kept_up);
        // The rate reached (a short run), but the tail more than doubled: a backlog.
        assert!(!Pace::judge(1e6, 0.97e6, ms(120), ms(241), interval).kept_up);
        assert!(Pace::judge(1e6, 0.97e6, ms(120), ms(240), interval).kept_up);
        // Small latencies: growth within one interval is noise, not a backlog.
        let small = Pace::judge(2e3, 2e3, ms(1), ms(9), interval);
        assert_eq!(small.bound, ms(11));
        assert!(small.kept_up);
        assert!(!Pace::judge(2e3, 2e3, ms(1), ms(12), interval).kept_up);
        assert_eq!(
            Pace::judge(20_000.0, 17_780.0, ms(16), ms(15), interval).row(),
            "offered 20000 deliveries/s, achieved 17780/s at the sockets (88.9%)\n  kept up: no \
             (achieved >= 95% of offered: no; last quarter's p99 15.000 ms <= 32.000 ms, the first \
             quarter's plus the larger of itself and one interval: yes)"
        );
    }
}
