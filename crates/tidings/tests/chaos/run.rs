//! One scenario's run: the cluster, browsers connected first, then steady Sends; the
//! scenario injects its fault; then the load stops, the run settles (bounded), and the
//! checker judges the record and prints its counts.

use std::time::{Duration, Instant};

use crate::checker::{Report, check};
use crate::client::Clients;
use crate::cluster::{Cluster, Options};
use crate::producer::Producers;
use crate::record::Recorder;

/// The load of a scenario.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Load {
    pub(crate) members: usize,
    pub(crate) clients_per_member: usize,
    pub(crate) producers: usize,
    /// How many of the producers send over SendStream.
    pub(crate) streaming: usize,
    /// Each producer sends once per period.
    pub(crate) period: Duration,
    /// Clients leave and come back after a random time in this range.
    pub(crate) churn: Option<(Duration, Duration)>,
}

impl Default for Load {
    /// 40 clients (2 for each of 20 members), 30 Sends a second.
    fn default() -> Self {
        Self {
            members: 20,
            clients_per_member: 2,
            producers: 6,
            streaming: 0,
            period: Duration::from_millis(200),
            churn: None,
        }
    }
}

/// A scenario in progress.
#[derive(Debug)]
pub(crate) struct Run {
    pub(crate) name: &'static str,
    pub(crate) cluster: Cluster,
    pub(crate) recorder: Recorder,
    pub(crate) clients: Option<Clients>,
    producers: Option<Producers>,
    pub(crate) started: Instant,
    /// Each role's resident memory before any client connected.
    pub(crate) baseline_rss: Vec<(String, u64)>,
}

impl Run {
    /// Starts the cluster and the clients, waits until every client is connected, then
    /// starts the producers.
    pub(crate) async fn start(name: &'static str, options: Options, load: Load) -> Self {
        tidings_testkit::init_test_log();
        let started = Instant::now();
        let cluster = Cluster::start(&options).await;
        let recorder = Recorder::default();
        let baseline_rss = cluster.rss();
        let members: Vec<String> = (0..load.members).map(|m| format!("member-{m}")).collect();
        let clients = Clients::start(
            &cluster.edge_addrs(),
            &members,
            load.clients_per_member,
            load.churn,
            &recorder,
        );
        let total = load.members * load.clients_per_member;
        tidings_testkit::eventually("every client to be connected", || async {
            (recorder.connected_clients() == total).then_some(())
        })
        .await;
        let producers = Producers::start(
            &cluster.api_addrs(),
            &members,
            (load.producers, load.streaming),
            load.period,
            &recorder,
        );
        recorder.mark(format!(
            "{name}: cluster up and {total} clients connected in {} ms; load started",
            started.elapsed().as_millis()
        ));
        Self {
            name,
            cluster,
            recorder,
            clients: Some(clients),
            producers: Some(producers),
            started,
            baseline_rss,
        }
    }

    /// Lets the load run for `time` (a fault's duration, or steady state around one).
    pub(crate) async fn steady(&self, time: Duration) {
        tokio::time::sleep(time).await;
    }

    pub(crate) fn mark(&self, what: impl Into<String>) -> Instant {
        self.recorder.mark(what)
    }

    /// Asserts that Sends were acknowledged within `from..to`: the fault happened
    /// while notifications were flowing, not in a quiet moment.
    pub(crate) fn assert_acked_between(&self, from: Instant, to: Instant, what: &str) {
        let n = self.recorder.acked_between(from, to);
        assert!(n > 0, "{}: no Send was acknowledged {what}", self.name);
        println!("chaos: {n} acknowledged {what}");
    }

    /// Stops the producers now (the fault's aftermath then gets no further Sends).
    pub(crate) async fn stop_load(&mut self) {
        if let Some(producers) = self.producers.take() {
            producers.stop().await;
        }
        self.mark("load stopped");
    }

    /// Stops the producers, waits (up to `settle`) until every client has what it is
    /// owed and the outbox is empty, stops the clients, and checks. Prints the report.
    pub(crate) async fn finish(&mut self, settle: Duration, allowed_resets: &[&str]) -> Report {
        if let Some(producers) = self.producers.take() {
            producers.stop().await;
        }
        self.mark("load stopped; settling");
        let deadline = Instant::now() + settle;
        loop {
            let rows = self.cluster.rows().await;
            let report = check(&self.recorder.snapshot(), &rows, allowed_resets);
            let outbox = self.cluster.outbox_len().await;
            if (report.lost == 0 && outbox == 0) || Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        if let Some(clients) = self.clients.take() {
            clients.stop().await;
        }
        let rows = self.cluster.rows().await;
        let report = check(&self.recorder.snapshot(), &rows, allowed_resets);
        println!(
            "chaos: {} ({} s): {report}",
            self.name,
            self.started.elapsed().as_secs()
        );
        if !report.is_clean() {
            println!("chaos: last log lines of each role:\n{}", self.cluster.log_tails(15));
        }
        report
    }
}

/// Fails the test with the report unless it is clean.
pub(crate) fn assert_clean(name: &str, report: &Report) {
    assert!(report.is_clean(), "{name}: the checker found failures:\n{report}");
}
