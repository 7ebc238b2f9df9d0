//! What this binary is: its version and the commit it was built from, for `--version`,
//! the first log line of every role, and the `tidings_build_info` metric.

/// The workspace version (`Cargo.toml`).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The commit built (`git rev-parse --short=12 HEAD`, or `TIDINGS_COMMIT` when set at
/// build time), `unknown` when neither was available.
pub const COMMIT: &str = env!("TIDINGS_COMMIT");

/// `0.1.0 (commit 3358bf0a1b2c)`, as `tidings --version` prints it.
pub const LONG_VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("TIDINGS_COMMIT"), ")");
