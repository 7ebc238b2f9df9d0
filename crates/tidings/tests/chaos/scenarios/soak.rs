//! A bounded soak: steady Sends while every client leaves and comes back at random, to
//! a random edge, for `TIDINGS_CHAOS_SOAK_SECS` (20 s by default). Afterwards, with
//! the clients gone, each role's resident memory must return near what it was before
//! any client connected.

use std::time::{Duration, Instant};

use crate::cluster::Options;
use crate::run::{Load, Run, assert_clean};

/// A role may keep this much above its baseline once the clients are gone: allocator
/// caches, pools and buffers that grew under load are kept, a per-connection leak is
/// not (40 clients reconnecting every few seconds make thousands of connections).
const RSS_SLACK: u64 = 48 * 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_with_random_reconnects_and_memory_returning_to_baseline() {
    let secs = std::env::var("TIDINGS_CHAOS_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let load = Load {
        churn: Some((Duration::from_secs(1), Duration::from_secs(4))),
        ..Load::default()
    };
    let mut run = Run::start("soak", Options::default(), load).await;
    run.steady(Duration::from_secs(secs)).await;
    let report = run.finish(Duration::from_secs(30), &[]).await;
    assert!(
        report.connections > 2 * report.clients,
        "the clients reconnected: {} connections of {} clients",
        report.connections,
        report.clients
    );

    // The clients are gone (finish closed them). Give the roles time to close the
    // streams and let go of what they held.
    let deadline = Instant::now() + Duration::from_secs(20);
    let over = loop {
        let now = run.cluster.rss();
        let over: Vec<String> = run
            .baseline_rss
            .iter()
            .filter_map(|(name, before)| {
                let after = now.iter().find(|(n, _)| n == name)?.1;
                (after > before + RSS_SLACK.max(before / 2))
                    .then(|| format!("{name}: {} MiB → {} MiB", before >> 20, after >> 20))
            })
            .collect();
        if over.is_empty() || Instant::now() >= deadline {
            println!(
                "chaos: soak RSS before → after (MiB): {}",
                run.baseline_rss
                    .iter()
                    .map(|(name, before)| {
                        let after = now.iter().find(|(n, _)| n == name).map_or(0, |(_, a)| *a);
                        format!("{name} {}→{}", before >> 20, after >> 20)
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            break over;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_clean(run.name, &report);
    assert!(over.is_empty(), "memory did not return near its baseline: {over:?}");
}
