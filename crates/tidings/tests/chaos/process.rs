//! One `tidings` role as a real child process that cannot outlive the test.
//!
//! Each role runs under a small bash guard in a process group of its own: the guard
//! starts the role, prints its pid, and waits on a pipe from the test. When the test
//! process dies in any way (a panic, nextest's timeout, a SIGKILL) the pipe closes and
//! the guard kills its whole group; when the test drops the handle, the group is killed
//! directly. So no run leaves a process behind, and a fault aimed at the role (SIGKILL,
//! SIGSTOP, SIGTERM) reaches the role itself, not the guard.

use std::io::BufRead as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The guard: `$1` is the log file, the rest is the command. It ends by killing its
/// own process group (`kill 0`) once its stdin closes.
const GUARD: &str = r#"log=$1; shift; "$@" >>"$log" 2>&1 </dev/null & echo $!; read -r _; kill -KILL 0"#;

/// A running role. Dropping it SIGKILLs the role and its guard and reaps the guard.
#[derive(Debug)]
pub(crate) struct Proc {
    guard: Child,
    pid: u32,
    log: PathBuf,
}

impl Proc {
    /// Starts `tidings <role>` with exactly `env` (plus PATH), appending its output to
    /// `log`.
    pub(crate) fn spawn(role: &str, env: &[(String, String)], log: &Path) -> Self {
        let mut guard = Command::new("bash")
            .arg("-c")
            .arg(GUARD)
            .arg("guard")
            .arg(log)
            .arg(env!("CARGO_BIN_EXE_tidings"))
            .arg(role)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawning tidings {role}: {e}"));
        let mut line = String::new();
        let stdout = guard.stdout.take().expect("invariant: stdout is piped");
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .unwrap_or_else(|e| panic!("reading the pid of tidings {role}: {e}"));
        let pid = line
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("the guard of tidings {role} printed {line:?}: {e}"));
        Self {
            guard,
            pid,
            log: log.to_owned(),
        }
    }

    /// Sends `signal` (`KILL`, `TERM`, `STOP`, `CONT`) to the role itself.
    pub(crate) fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([format!("-{signal}"), self.pid.to_string()])
            .status()
            .unwrap_or_else(|e| panic!("running kill -{signal}: {e}"));
        assert!(status.success(), "kill -{signal} {} failed", self.pid);
    }

    /// The role has exited (a zombie its guard has not reaped yet counts as exited).
    pub(crate) fn is_dead(&self) -> bool {
        match std::fs::read_to_string(format!("/proc/{}/stat", self.pid)) {
            Err(_) => true,
            // `pid (comm) S ...`: the state follows the last ')'.
            Ok(stat) => stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
        }
    }

    /// Waits up to `within` for the role to exit; true if it did.
    pub(crate) async fn exited_within(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.is_dead() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.is_dead()
    }

    /// Resident memory in bytes, from `/proc/<pid>/status`.
    pub(crate) fn rss(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    }

    /// The last `lines` lines of the role's log, for failure messages.
    pub(crate) fn log_tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let group = format!("-{}", self.guard.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.guard.wait();
    }
}

pub(crate) fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
