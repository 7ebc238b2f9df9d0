//! Faults of NATS under steady load: the stream leader killed (twice, quorum kept), a
//! node paused, an edge or an api partitioned from every node, the stream deleted and
//! created again.

use std::time::{Duration, Instant};

use crate::cluster::{Cluster, Options};
use crate::run::{Load, Run, assert_clean};

const SETTLE: Duration = Duration::from_secs(30);

/// SIGKILL the stream leader, bring it back, then SIGKILL the new leader: two of three
/// replicas stay up throughout, so nothing acknowledged may be lost and no history is
/// gone — no `reset`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_the_stream_leader_then_another_node() {
    let mut run = Run::start("sigkill-leader", Options::default(), Load::default()).await;
    run.steady(Duration::from_secs(3)).await;
    let first_kill = Instant::now();
    for round in 0..2 {
        let leader = run.cluster.stream_leader().await;
        run.mark(format!("SIGKILL the stream leader {leader} (round {round})"));
        let node = run.cluster.nats.node_mut(&leader);
        let pid = node.pid().expect("the leader runs");
        node.kill();
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "{leader} survived SIGKILL"
        );
        run.steady(Duration::from_secs(5)).await;
        let new_leader = run.cluster.stream_leader().await;
        assert_ne!(new_leader, leader, "a new leader was elected");
        run.mark(format!("{new_leader} leads; restarting {leader}"));
        run.cluster.nats.node_mut(&leader).restart().await;
        run.mark(format!("{leader} rejoined"));
        run.steady(Duration::from_secs(3)).await;
    }
    let last = run.mark("both kills done");
    run.steady(Duration::from_secs(3)).await;
    run.assert_acked_between(run.started, first_kill, "before the first kill");
    run.assert_acked_between(first_kill, last, "during the kills");
    let report = run.finish(SETTLE, &[]).await;
    assert_clean(run.name, &report);
}

/// SIGKILL the stream leader and stop sending half a second later: a live message
/// lost in the leader change is then followed by no other on its subject, so only a
/// resync after the leader change (not the next message's `Nats-Last-Sequence`) can
/// bring it. Every acknowledged notification must still arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_the_stream_leader_as_the_load_ends() {
    let load = Load {
        members: 40,
        clients_per_member: 1,
        ..Load::default()
    };
    let mut run = Run::start("sigkill-leader-at-the-end", Options::default(), load).await;
    run.steady(Duration::from_secs(3)).await;
    let leader = run.cluster.stream_leader().await;
    let kill = run.mark(format!("SIGKILL the stream leader {leader}"));
    run.cluster.nats.node_mut(&leader).kill();
    run.steady(Duration::from_millis(500)).await;
    run.stop_load().await;
    run.assert_acked_between(run.started, kill, "before the kill");
    let report = run.finish(SETTLE, &[]).await;
    assert_clean(run.name, &report);
}

/// SIGSTOP the stream leader for longer than three pings: its connections are dead but
/// open. Roles notice by their pings and move; a new leader is elected; nothing is lost
/// and nobody is reset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigstop_a_nats_server() {
    let mut run = Run::start("sigstop-nats", Options::default(), Load::default()).await;
    run.steady(Duration::from_secs(3)).await;
    let leader = run.cluster.stream_leader().await;
    let stop = run.mark(format!("SIGSTOP the stream leader {leader}"));
    run.cluster.nats.node_mut(&leader).pause();
    run.steady(Duration::from_secs(8)).await;
    run.cluster.nats.node_mut(&leader).resume();
    let back = run.mark(format!("SIGCONT {leader}"));
    run.steady(Duration::from_secs(5)).await;
    run.assert_acked_between(run.started, stop, "before the pause");
    run.assert_acked_between(stop, back, "while the leader was paused");
    let report = run.finish(SETTLE, &[]).await;
    assert_clean(run.name, &report);
}

/// edge0 cut off from every NATS node for 6 s, twice its dead-connection time (3 pings
/// of 1 s): its browsers stay or move, and get everything once, without `reset`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_an_edge_from_nats() {
    let mut run = Run::start("partition-edge", Options::default(), Load::default()).await;
    run.steady(Duration::from_secs(3)).await;
    let cut = run.mark("edge0 cut off from NATS");
    let hit = run.recorder.clients_on("edge0", cut);
    run.cluster.partition_edge0(true);
    run.steady(Duration::from_secs(6)).await;
    run.cluster.partition_edge0(false);
    let back = run.mark("edge0 reaches NATS again");
    run.steady(Duration::from_secs(6)).await;
    assert!(hit > 0, "no client was on edge0 when it was cut off");
    println!("chaos: {hit} clients were streaming from edge0 when it was cut off");
    run.assert_acked_between(run.started, cut, "before the partition");
    run.assert_acked_between(cut, back, "during the partition");
    let report = run.finish(SETTLE, &[]).await;
    assert_clean(run.name, &report);
}

/// api0 cut off from NATS (connections closed) for 12 s with the stream's duplicate
/// window at 3 s: what the relays republish after the window must still be stored and
/// delivered once (DESIGN §7.6).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_an_api_from_nats_past_the_duplicate_window() {
    api0_away_past_the_duplicate_window("partition-api", "api0 cut off from NATS", |cluster, away| {
        cluster.partition_api0(away);
    })
    .await;
}

/// The asymmetric partition: for 12 s api0's publishes reach NATS but nothing comes
/// back (no acknowledgement, no PONG), with the duplicate window at 3 s. The messages
/// it published are stored while its rows stay in the outbox, so a relay publishes them
/// again after the window: each must still be stored and delivered once (DESIGN §7.6).
/// (The relay looks in the stream for entries past half the window, and defers the
/// ones its lookups let grow that old, `tidings-api` `relay.rs`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lose_nats_replies_to_an_api_past_the_duplicate_window() {
    api0_away_past_the_duplicate_window("mute-api-replies", "api0 hears nothing from NATS", |cluster, away| {
        cluster.mute_api0_replies(away);
    })
    .await;
}

/// Steady load; `fault` keeps api0 away from NATS for 12 s, four times the duplicate
/// window (3 s); then everything acknowledged must be delivered once.
async fn api0_away_past_the_duplicate_window(name: &'static str, what: &str, fault: impl Fn(&Cluster, bool)) {
    let options = Options {
        duplicate_window: "3s",
        publish_timeout: "500ms",
    };
    let mut run = Run::start(name, options, Load::default()).await;
    run.steady(Duration::from_secs(3)).await;
    let cut = run.mark(format!("{what} (duplicate window 3 s)"));
    fault(&run.cluster, true);
    run.steady(Duration::from_secs(12)).await;
    fault(&run.cluster, false);
    let back = run.mark("api0 back");
    run.steady(Duration::from_secs(5)).await;
    run.assert_acked_between(run.started, cut, "before the partition");
    run.assert_acked_between(cut, back, "during the partition");
    // The relay backs off up to 30 s between attempts.
    let report = run.finish(Duration::from_secs(60), &[]).await;
    assert_clean(run.name, &report);
}

/// The stream deleted and created again while edges run: history is gone, so a
/// `reset` saying so is allowed (and re-baselines the client) — but every notification
/// acknowledged after that must arrive, and none silently vanish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_and_recreate_the_stream_while_edges_run() {
    let mut run = Run::start("recreate-stream", Options::default(), Load::default()).await;
    run.steady(Duration::from_secs(3)).await;
    let deleted = run.mark("stream deleted");
    let name = run.cluster.bus.settings.name.clone();
    run.cluster
        .bus
        .bus
        .jetstream()
        .delete_stream(&name)
        .await
        .expect("deleting the stream");
    run.steady(Duration::from_secs(2)).await;
    let config = tidings_bus::NatsConfig::new(run.cluster.nats.urls());
    let _creator = tidings_bus::Bus::connect(&config, &run.cluster.bus.settings, "chaos")
        .await
        .expect("creating the stream again");
    let created = run.mark("stream created again");
    run.steady(Duration::from_secs(8)).await;
    run.assert_acked_between(run.started, deleted, "before the deletion");
    run.assert_acked_between(created, Instant::now(), "after the re-creation");
    let history_gone = ["other_incarnation", "unknown_position", "history_trimmed", "live_gap"];
    let report = run.finish(SETTLE, &history_gone).await;
    assert_clean(run.name, &report);
}
