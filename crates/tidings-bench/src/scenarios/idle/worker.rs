//! `idle`'s generator processes. A process may hold only as many connections as its
//! open-file limit allows (20,000 on the standard machine), so `idle` runs several
//! copies of this binary (`tidings-bench idle-worker …`, hidden from `--help`), each
//! opening its share of the members from its own block of loopback source addresses.
//! A worker prints one JSON [`Report`] line on stdout once every stream it opened is
//! connected, then holds them until its stdin closes: the parent has measured, or died.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio::io::{AsyncBufReadExt as _, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

use crate::client::Sources;
use crate::measure::now_nanos;
use crate::measure::rss_kib;
use crate::scenarios::connect_spread;

/// One worker's share (the hidden `idle-worker` subcommand; only `idle` starts it).
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Every edge, in the parent's order: member `i` goes to edge `i % edges`.
    #[arg(long = "edge-addr", value_delimiter = ',', required = true)]
    edge_addrs: Vec<SocketAddr>,
    /// This worker's first member (`idle-<first>`) in the whole set.
    #[arg(long)]
    first: usize,
    /// Members to connect, from `first` on.
    #[arg(long)]
    count: usize,
    /// First loopback source address (127.0.0.<source-first>) of this worker's block.
    #[arg(long)]
    source_first: u8,
    /// Addresses in the block; no other worker uses them.
    #[arg(long)]
    source_count: u8,
    /// Connection attempts in flight at once.
    #[arg(long)]
    concurrency: usize,
}

/// What a worker tells its parent once all its streams are connected.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct Report {
    pub(crate) connected: usize,
    /// Wall clock (Unix nanoseconds) when the first connect began and the last one's
    /// `connected` event arrived: workers start apart, so the parent takes the span.
    pub(crate) started_ns: u64,
    pub(crate) finished_ns: u64,
    /// The worker's own resident memory with every stream open.
    pub(crate) rss_kib: u64,
}

/// The member id of the `i`-th idle connection.
pub(crate) fn member(i: usize) -> String {
    format!("idle-{i}")
}

/// The worker process's body.
pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let members: Vec<String> = (args.first..args.first + args.count).map(member).collect();
    let sources = Sources {
        first: args.source_first,
        count: args.source_count,
    };
    let started_ns = now_nanos() as u64;
    let conns = connect_spread(&args.edge_addrs, args.first, &members, &[], args.concurrency, sources).await?;
    let report = Report {
        connected: conns.len(),
        started_ns,
        finished_ns: now_nanos() as u64,
        rss_kib: rss_kib(std::process::id()),
    };
    // `println!` flushes at the newline (stdout is line-buffered), so the parent sees
    // the whole line at once.
    println!("{}", serde_json::to_string(&report)?);
    // Hold the streams until the parent closes our stdin (or exits, which closes it).
    // Read on a blocking thread: tokio's own stdin would need a feature the whole
    // workspace's tokio would then be built with.
    tokio::task::spawn_blocking(|| std::io::copy(&mut std::io::stdin(), &mut std::io::sink())).await??;
    drop(conns);
    Ok(())
}

/// A worker process, seen from `idle`.
#[derive(Debug)]
pub(crate) struct Worker {
    index: usize,
    child: Child,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl Worker {
    /// Starts worker `index`: this binary again, members `first..first + count`.
    pub(crate) fn spawn(
        index: usize,
        edges: &[SocketAddr],
        first: usize,
        count: usize,
        sources: Sources,
        concurrency: usize,
    ) -> anyhow::Result<Self> {
        let edges: Vec<String> = edges.iter().map(ToString::to_string).collect();
        let mut child = Command::new(std::env::current_exe()?)
            .arg("idle-worker")
            .args(["--edge-addr", &edges.join(",")])
            .args(["--first", &first.to_string(), "--count", &count.to_string()])
            .args(["--source-first", &sources.first.to_string()])
            .args(["--source-count", &sources.count.to_string()])
            .args(["--concurrency", &concurrency.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            // If `idle` fails or is interrupted, its workers do not outlive it.
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting idle worker {index}"))?;
        let stdout = child.stdout.take().context("a worker's stdout is piped")?;
        Ok(Self {
            index,
            child,
            stdout: BufReader::new(stdout).lines(),
        })
    }

    /// Waits for the worker's report. A worker that exits first has failed; its error
    /// is on stderr, which it shares with us.
    pub(crate) async fn report(&mut self) -> anyhow::Result<Report> {
        match self.stdout.next_line().await? {
            Some(line) => serde_json::from_str(&line)
                .with_context(|| format!("idle worker {}: unreadable report {line:?}", self.index)),
            None => {
                let status = self.child.wait().await?;
                bail!("idle worker {} exited before reporting ({status})", self.index)
            }
        }
    }

    /// Closes the worker's stdin, so it closes its streams and exits, and waits for it.
    pub(crate) async fn finish(mut self) -> anyhow::Result<()> {
        drop(self.child.stdin.take());
        let status = match tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await {
            Ok(status) => status?,
            Err(_) => {
                let _ = self.child.kill().await;
                bail!("idle worker {} did not exit within 30 s", self.index)
            }
        };
        if !status.success() {
            bail!("idle worker {} failed at exit ({status})", self.index);
        }
        Ok(())
    }
}
