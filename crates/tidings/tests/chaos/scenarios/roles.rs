//! Faults of the tidings roles and of Postgres: an edge or api SIGKILLed under load, a
//! rolling restart of every role, Postgres cut off from the apis.

use std::time::Duration;

use crate::cluster::Options;
use crate::run::{Load, Run, assert_clean};

const SETTLE: Duration = Duration::from_secs(30);

/// Browsers on a killed edge reconnect to the others with `Last-Event-ID` and get
/// exactly what they missed; nothing acknowledged is lost, nobody is reset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_an_edge_while_clients_stream() {
    let mut run = Run::start("sigkill-edge", Options::default(), Load::default()).await;
    run.steady(Duration::from_secs(3)).await;
    let kill = run.mark("SIGKILL edge1");
    let hit = run.recorder.clients_on("edge1", kill);
    run.cluster.kill_edge(1).await;
    run.steady(Duration::from_secs(5)).await;
    run.cluster.start_edge(1).await;
    let back = run.mark("edge1 restarted");
    run.steady(Duration::from_secs(4)).await;
    assert!(hit > 0, "no client was on edge1 when it was killed");
    println!("chaos: {hit} clients were streaming from edge1 when it was killed");
    run.assert_acked_between(run.started, kill, "before the kill");
    run.assert_acked_between(kill, back, "while edge1 was dead");
    let report = run.finish(SETTLE, &[]).await;
    assert_clean(run.name, &report);
}

/// A producer whose api dies mid-call — a unary Send, or a SendStream held open on it
/// (half the producers) — retries with the same key on the other api: the notification
/// is stored and delivered once; what the dead api committed and never published, the
/// survivor's relay publishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_an_api_replica_mid_load() {
    let load = Load {
        streaming: 3,
        ..Load::default()
    };
    let mut run = Run::start("sigkill-api", Options::default(), load).await;
    run.steady(Duration::from_secs(3)).await;
    let kill = run.mark("SIGKILL api0");
    run.cluster.kill_api(0).await;
    run.steady(Duration::from_secs(5)).await;
    run.cluster.start_api(0).await;
    let back = run.mark("api0 restarted");
    run.steady(Duration::from_secs(4)).await;
    run.assert_acked_between(run.started, kill, "before the kill");
    run.assert_acked_between(kill, back, "while api0 was dead");
    let report = run.finish(SETTLE, &[]).await;
    assert!(report.retried_sends > 0, "no Send was retried: the kill hit no call");
    assert_clean(run.name, &report);
}

/// Postgres unreachable for the apis (it is shared here, so a proxy is cut instead of
/// restarting it): Sends fail UNAVAILABLE in bounded time, producers retry with their
/// keys, and after it returns each is stored and delivered once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_cut_off_from_the_apis_under_load() {
    let mut run = Run::start("postgres-cut", Options::default(), Load::default()).await;
    run.steady(Duration::from_secs(3)).await;
    let cut = run.mark("Postgres cut off from both apis");
    run.cluster.pg_proxy.cut();
    run.steady(Duration::from_secs(6)).await;
    run.cluster.pg_proxy.restore();
    let back = run.mark("Postgres reachable again");
    run.steady(Duration::from_secs(5)).await;
    run.assert_acked_between(run.started, cut, "before the cut");
    run.assert_acked_between(back, std::time::Instant::now(), "after the cut");
    let report = run.finish(SETTLE, &[]).await;
    assert!(report.retried_sends > 0, "no Send was retried: the cut hit no call");
    assert_clean(run.name, &report);
}

/// Every edge, then every api, gets SIGTERM and is started again, one at a time, under
/// steady load: drained browsers resume elsewhere with nothing lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_restart_of_every_edge_and_api() {
    let mut run = Run::start("rolling-restart", Options::default(), Load::default()).await;
    run.steady(Duration::from_secs(3)).await;
    let first = run.mark("rolling restart begins");
    for i in 0..3 {
        run.mark(format!("SIGTERM edge{i}"));
        run.cluster.terminate_edge(i).await;
        run.cluster.start_edge(i).await;
        run.mark(format!("edge{i} back"));
        run.steady(Duration::from_secs(2)).await;
    }
    for i in 0..2 {
        run.mark(format!("SIGTERM api{i}"));
        run.cluster.terminate_api(i).await;
        run.cluster.start_api(i).await;
        run.mark(format!("api{i} back"));
        run.steady(Duration::from_secs(2)).await;
    }
    let last = run.mark("rolling restart done");
    run.steady(Duration::from_secs(3)).await;
    run.assert_acked_between(run.started, first, "before the restarts");
    run.assert_acked_between(first, last, "during the restarts");
    let report = run.finish(SETTLE, &[]).await;
    assert_clean(run.name, &report);
}
