//! `tidings-bench`: measures a real Tidings cluster on this machine. It starts the api
//! and edges as child processes of the `tidings` binary (against the Postgres and NATS
//! it is given), drives them over real gRPC and real SSE connections, checks every
//! event (each received exactly once, in order, by the right member) and prints a table
//! and one JSON line. A fast number with a lost message is a failure, not a result.

mod client;
mod cluster;
mod histogram;
mod measure;
mod routing;
mod scenarios;
mod servers;

use clap::Parser as _;

#[derive(Debug, clap::Parser)]
#[command(name = "tidings-bench", version)]
struct Cli {
    #[command(subcommand)]
    scenario: scenarios::Scenario,
    #[command(flatten)]
    cluster: cluster::ClusterArgs,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // Each SSE connection is a file; take whatever the hard limit allows.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tidings-bench: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(scenarios::run(cli.scenario, cli.cluster)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tidings-bench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
