//! How `broadcast` publishes: back to back (burst), or on a schedule of `--rate`
//! messages per second, for `--messages` (paced) or for `--duration` (sustained).
//!
//! A scheduled publisher waits for an interval timer before each message and publishes
//! one at a time: with more than one Publish in flight two messages could reach the
//! stream in either order, and the check that every subscriber gets them in order
//! would fail on the generator's account. A publish that overruns its interval delays
//! the next tick (`MissedTickBehavior::Delay`), never bunching messages to catch up,
//! so the spacing stays at least the interval; how far the publisher fell behind the
//! ideal schedule (message `n` at `n / rate` s after the first) is measured and
//! reported as the lag, so a generator or api that cannot keep the rate is visible.

use std::time::{Duration, Instant};

use tidings_proto::v1 as pb;

use crate::cluster::Client;

/// How the messages are published.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Mode {
    /// As fast as one Publish after another goes.
    Burst { messages: u64 },
    /// `messages` at `rate` per second.
    Paced { rate: u32, messages: u64 },
    /// `rate` per second for `duration`.
    Sustained { rate: u32, duration: Duration },
}

impl Mode {
    pub(crate) fn new(messages: u64, rate: Option<u32>, duration: Option<Duration>) -> Self {
        match (rate, duration) {
            (None, _) => Self::Burst { messages },
            (Some(rate), None) => Self::Paced { rate, messages },
            (Some(rate), Some(duration)) => Self::Sustained { rate, duration },
        }
    }

    pub(crate) fn name(&self) -> &'static str {
        match self {
            Self::Burst { .. } => "burst",
            Self::Paced { .. } => "paced",
            Self::Sustained { .. } => "sustained",
        }
    }

    /// The number of messages the run publishes (at least one).
    pub(crate) fn messages(&self) -> u64 {
        match *self {
            Self::Burst { messages } | Self::Paced { messages, .. } => messages.max(1),
            Self::Sustained { rate, duration } => ((f64::from(rate) * duration.as_secs_f64()).round() as u64).max(1),
        }
    }

    pub(crate) fn rate(&self) -> Option<u32> {
        match *self {
            Self::Burst { .. } => None,
            Self::Paced { rate, .. } | Self::Sustained { rate, .. } => Some(rate),
        }
    }
}

/// When each message of a scheduled run is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Schedule {
    pub(crate) interval: Duration,
}

impl Schedule {
    pub(crate) fn new(rate: u32) -> Self {
        Self {
            interval: Duration::from_nanos(1_000_000_000 / u64::from(rate.max(1))),
        }
    }

    /// When message `n` is due, after the first.
    pub(crate) fn due(&self, n: u64) -> Duration {
        let nanos = self.interval.as_nanos().saturating_mul(u128::from(n));
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// How late message `n` is when published `elapsed` after the first was due.
    pub(crate) fn lag(&self, n: u64, elapsed: Duration) -> Duration {
        elapsed.saturating_sub(self.due(n))
    }
}

/// What publishing took.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Published {
    /// From the first publish to the last one's answer.
    pub(crate) seconds: f64,
    /// The most any message was published behind its schedule (zero in a burst).
    pub(crate) max_lag: Duration,
}

/// Publishes `mode`'s messages to `topic`, one at a time; message `n`'s data is
/// `{"t": <Unix nanoseconds when it was published>, "n": n}`. `started` is when the
/// first is due.
pub(crate) async fn publish(client: &Client, topic: &str, mode: Mode, started: Instant) -> anyhow::Result<Published> {
    let mut client = client.clone();
    let schedule = mode.rate().map(Schedule::new);
    let mut ticker = schedule.map(|s| {
        let mut ticker = tokio::time::interval_at(started.into(), s.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker
    });
    let mut max_lag = Duration::ZERO;
    for n in 0..mode.messages() {
        if let (Some(ticker), Some(schedule)) = (ticker.as_mut(), schedule) {
            ticker.tick().await;
            max_lag = max_lag.max(schedule.lag(n, started.elapsed()));
        }
        let data = serde_json::json!({ "t": crate::measure::now_nanos().to_string(), "n": n }).to_string();
        client
            .publish(pb::PublishRequest {
                topic: topic.into(),
                event: String::new(),
                data_json: data,
            })
            .await?;
    }
    Ok(Published {
        seconds: started.elapsed().as_secs_f64(),
        max_lag,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mode_follows_the_options() {
        let s = Duration::from_secs;
        assert_eq!(Mode::new(100, None, None), Mode::Burst { messages: 100 });
        assert_eq!(
            Mode::new(100, Some(10), None),
            Mode::Paced {
                rate: 10,
                messages: 100
            }
        );
        let sustained = Mode::new(100, Some(100), Some(s(20)));
        assert_eq!(
            sustained,
            Mode::Sustained {
                rate: 100,
                duration: s(20)
            }
        );
        assert_eq!(sustained.messages(), 2000);
        assert_eq!(Mode::new(7, Some(3), Some(Duration::from_millis(500))).messages(), 2);
        assert_eq!(Mode::new(0, None, None).messages(), 1);
        assert_eq!(Mode::new(5, None, None).rate(), None);
        assert_eq!(sustained.rate(), Some(100));
    }

    #[test]
    fn messages_are_due_evenly_spaced() {
        let schedule = Schedule::new(10);
        assert_eq!(schedule.interval, Duration::from_millis(100));
        assert_eq!(schedule.due(0), Duration::ZERO);
        assert_eq!(schedule.due(25), Duration::from_millis(2500));
        assert_eq!(Schedule::new(3).due(3), Duration::from_nanos(999_999_999));
        assert_eq!(Schedule::new(1).due(u64::MAX), Duration::from_nanos(u64::MAX));
    }

    #[test]
    fn lag_is_how_far_behind_the_ideal_schedule() {
        let schedule = Schedule::new(100);
        let ms = Duration::from_millis;
        // On time, or early (a tick never fires early, but the clock is read after it).
        assert_eq!(schedule.lag(5, ms(50)), Duration::ZERO);
        assert_eq!(schedule.lag(5, ms(49)), Duration::ZERO);
        // A publish that took 35 ms instead of 10 delays every later message: with
        // Delay the ticks after it keep their spacing, so the lag stays, and grows with
        // each further overrun.
        assert_eq!(schedule.lag(6, ms(85)), ms(25));
        assert_eq!(schedule.lag(7, ms(95)), ms(25));
        assert_eq!(schedule.lag(8, ms(140)), ms(60));
    }
}
