//! `tidings`: the one binary. Parses the command line, starts telemetry, installs the
//! signal handlers, and hands over to a role library. Nothing here is logic a test would
//! have to repeat.

mod cli;
mod send;
mod signal;
mod token;

use std::process::ExitCode;

use crate::cli::Cli;

#[cfg(all(feature = "jemalloc", not(target_env = "msvc")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Exit status for a bad configuration (BSD `EX_USAGE`), before anything binds.
const EXIT_CONFIG: u8 = 64;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => ExitCode::SUCCESS,
                _ => ExitCode::from(EXIT_CONFIG),
            };
        }
    };
    if let Err(e) = cli.command.validate() {
        eprintln!("tidings: {e}");
        return ExitCode::from(EXIT_CONFIG);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tidings: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let _telemetry = tidings_telemetry::init(&cli.telemetry, cli.command.role())?;
        if cli.command.serves() {
            // The one-shot commands (`send`, `token`) print results on stdout: no log there.
            let (version, commit) = (tidings_telemetry::build::VERSION, tidings_telemetry::build::COMMIT);
            tracing::info!(version, commit, "tidings {} starting", cli.command.role());
        }
        cli::run(cli.command).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tidings: {e:#}");
            ExitCode::FAILURE
        }
    }
}
