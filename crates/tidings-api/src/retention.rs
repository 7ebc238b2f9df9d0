//! Retention: notifications older than `TIDINGS_RETENTION` are deleted from Postgres, so
//! the inbox of a member who never deletes anything stays bounded.
//!
//! - One replica at a time: every api replica runs the loop, and each run first takes a
//!   Postgres advisory lock (`tidings_store::RetentionRun`); a replica that finds it
//!   taken skips its run (`busy`). Replicas never split or repeat the work.
//! - Bounded: batches of [`RetentionSchedule::batch`] rows (one short statement each,
//!   over the id index), a pause between batches so the deletes never monopolise
//!   Postgres' I/O or the replication stream, and at most
//!   [`RetentionSchedule::max_batches`] per run; whatever remains waits for the next run
//!   (`more=true` in its log line), and the next run starts after one pause instead of
//!   a period: a backlog is worked off at up to ~9,000 rows a second at the defaults
//!   (1,000 rows per batch, 100 ms pauses), while a run never holds the lock long.
//! - When: [`RetentionSchedule::first_after`] after start-up (not at once, so a rolling
//!   restart does not start every run together with the new replicas' warm-up), then
//!   every [`RetentionSchedule::every`].
//! - Never an unpublished row: entries still in the outbox are skipped (the relay owes
//!   them to a stream); they expire in a later run, once published.
//! - Shutdown: the loop and a run's pauses end on the token; a run stops between
//!   batches, and its lock goes with its connection.
//! - Observed: `tidings_api_retention_deleted_total`, `tidings_api_retention_runs_total`
//!   by outcome, `tidings_api_retention_run_duration_seconds`, and one info line per run.

use std::time::{Duration, Instant};

use tidings_domain::ConfigError;
use tidings_store::StoreError;
use tokio_util::sync::CancellationToken;

use crate::state::ApiState;

/// The shortest retention accepted: anything shorter is far more likely a unit typo
/// (`90` meant as days) than a wish.
const MIN_RETENTION: Duration = Duration::from_secs(3600);

/// `TIDINGS_RETENTION`: how long notifications are kept; `None` keeps them forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention(pub Option<Duration>);

impl Default for Retention {
    /// 90 days.
    fn default() -> Self {
        Self(Some(Duration::from_secs(90 * 24 * 3600)))
    }
}

impl Retention {
    /// `0` (keep forever) or a duration such as `90d` or `720h`.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        if raw == "0" {
            return Ok(Self(None));
        }
        humantime::parse_duration(raw)
            .map(|d| Self((!d.is_zero()).then_some(d)))
            .map_err(|e| format!("{e}: expected a duration such as 90d or 720h, or 0 to keep everything"))
    }

    pub(crate) fn validate(self) -> Result<(), ConfigError> {
        match self.0 {
            Some(d) if d < MIN_RETENTION => Err(ConfigError::new(
                "TIDINGS_RETENTION",
                "must be at least 1h (e.g. 90d), or 0 to keep everything",
            )),
            _ => Ok(()),
        }
    }
}

/// When and how much a retention run deletes. Fixed in production; tests shorten it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionSchedule {
    /// The first run, after start-up.
    pub first_after: Duration,
    /// Between the start of one run and the next.
    pub every: Duration,
    /// Rows per delete statement.
    pub batch: u32,
    /// Between batches.
    pub pause: Duration,
    /// Batches per run, at most.
    pub max_batches: u32,
}

impl Default for RetentionSchedule {
    fn default() -> Self {
        Self {
            first_after: Duration::from_secs(60),
            every: Duration::from_secs(3600),
            batch: 1000,
            pause: Duration::from_millis(100),
            max_batches: 1000,
        }
    }
}

/// What a retention pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetentionRun {
    /// `TIDINGS_RETENTION=0`: nothing is ever deleted.
    Disabled,
    /// Another replica holds the lock; this one did nothing.
    Busy,
    Done(RetentionReport),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionReport {
    pub deleted: u64,
    /// Delete statements run (the last one may have found fewer rows than a batch).
    pub batches: u32,
    /// The run stopped at `max_batches` (or shutdown) with expired rows left.
    pub more: bool,
    pub took: Duration,
}

/// Runs a pass at `first_after`, then every `every`, until `shutdown`. Failures are
/// logged and retried at the next period; the loop never ends early.
pub(crate) async fn run(
    state: ApiState,
    retention: Retention,
    schedule: RetentionSchedule,
    shutdown: CancellationToken,
) {
    if retention.0.is_none() {
        tracing::info!("retention is off (TIDINGS_RETENTION=0): notifications are kept forever");
        return;
    }
    let mut wait = schedule.first_after;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
        wait = match pass(&state, retention, &schedule, &shutdown).await {
            // Stopped at its bound with expired rows left: the next run follows at
            // once (after a pause), so deletes keep up with any insert rate instead
            // of a million rows an hour.
            Ok(RetentionRun::Done(report)) if report.more => schedule.pause,
            Ok(_) => schedule.every,
            Err(e) => {
                tracing::warn!(error = %e, "retention run failed; retrying at the next period");
                schedule.every
            }
        };
    }
}

/// One run: take the lock or give way, delete expired rows batch by batch, release.
pub(crate) async fn pass(
    state: &ApiState,
    retention: Retention,
    schedule: &RetentionSchedule,
    shutdown: &CancellationToken,
) -> Result<RetentionRun, StoreError> {
    let Some(keep) = retention.0 else {
        return Ok(RetentionRun::Disabled);
    };
    let started = Instant::now();
    let metrics = &state.metrics;
    let Some(mut lock) = state
        .store
        .retention_lock()
        .await
        .inspect_err(|_| metrics.retention_failed.inc())?
    else {
        metrics.retention_busy.inc();
        tracing::debug!("retention: another replica is running it");
        return Ok(RetentionRun::Busy);
    };
    let cutoff = chrono::TimeDelta::from_std(keep)
        .ok()
        .and_then(|keep| chrono::Utc::now().checked_sub_signed(keep));
    let mut report = RetentionReport {
        deleted: 0,
        batches: 0,
        more: false,
        took: Duration::ZERO,
    };
    let mut after = None;
    let mut failure = None;
    while let Some(cutoff) = cutoff {
        if report.batches == schedule.max_batches || shutdown.is_cancelled() {
            report.more = true;
            break;
        }
        if report.batches > 0 {
            tokio::select! {
                () = shutdown.cancelled() => continue,
                () = tokio::time::sleep(schedule.pause) => {}
            }
        }
        match lock.delete_expired(cutoff, after, schedule.batch).await {
            Ok(batch) => {
                report.batches += 1;
                report.deleted += batch.deleted;
                metrics.retention_deleted.inc_by(batch.deleted);
                after = batch.last.or(after);
                if batch.deleted < u64::from(schedule.batch) {
                    break;
                }
            }
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    lock.release().await;
    report.took = started.elapsed();
    metrics.retention_duration.observe(report.took.as_secs_f64());
    if let Some(e) = failure {
        metrics.retention_failed.inc();
        tracing::warn!(
            deleted = report.deleted,
            batches = report.batches,
            "retention run stopped by an error"
        );
        return Err(e);
    }
    metrics.retention_done.inc();
    tracing::info!(
        deleted = report.deleted,
        batches = report.batches,
        took_ms = report.took.as_millis() as u64,
        more = report.more,
        older_than = %humantime::format_duration(keep),
        "retention run"
    );
    Ok(RetentionRun::Done(report))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn retention_parses_durations_and_zero_and_refuses_the_rest() {
        let day = 24 * 3600;
        assert_eq!(
            Retention::parse("90d").unwrap(),
            Retention(Some(Duration::from_secs(90 * day)))
        );
        assert_eq!(
            Retention::parse("720h").unwrap(),
            Retention(Some(Duration::from_secs(30 * day)))
        );
        assert_eq!(Retention::parse("0").unwrap(), Retention(None));
        assert_eq!(Retention::parse("0s").unwrap(), Retention(None));
        assert_eq!(Retention::default(), Retention::parse("90d").unwrap());
        for bad in ["", "90", "ninety days", "-1d", "90x"] {
            let e = Retention::parse(bad).unwrap_err();
            assert!(e.contains("or 0 to keep everything"), "{bad}: {e}");
        }
        assert!(Retention::parse("30m").unwrap().validate().is_err());
        let e = Retention::parse("59m").unwrap().validate().unwrap_err().to_string();
        assert!(e.contains("TIDINGS_RETENTION"), "{e}");
        assert!(Retention::parse("1h").unwrap().validate().is_ok());
        assert!(Retention(None).validate().is_ok());
    }
}
