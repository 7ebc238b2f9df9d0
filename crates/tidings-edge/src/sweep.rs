//! The node's timers, shared by every connection instead of a timer per stream: one
//! sweep a second sends heartbeats to quiet streams, `reauth` before a token expires,
//! ends streams at expiry, and closes sockets that stopped draining. Drain closes
//! streams spread over its window from one task.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::Rng as _;
use serde_json::json;

use crate::delivery::Closed;
use crate::hub::Conn;
use crate::sse;
use crate::state::EdgeState;

/// How often the sweep runs; also the resolution of heartbeats, reauth and expiry.
const TICK: Duration = Duration::from_secs(1);

/// Seconds since the node started, advanced by the sweep: cheap enough to read on
/// every delivery.
#[derive(Debug)]
pub(crate) struct Clock {
    started: Instant,
    seconds: AtomicU32,
}

impl Default for Clock {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            seconds: AtomicU32::new(0),
        }
    }
}

impl Clock {
    pub(crate) fn now(&self) -> u32 {
        self.seconds.load(Ordering::Relaxed)
    }

    fn advance(&self) -> u32 {
        let now = u32::try_from(self.started.elapsed().as_secs()).unwrap_or(u32::MAX);
        self.seconds.store(now, Ordering::Relaxed);
        now
    }
}

/// Runs the sweep until shutdown.
pub(crate) async fn run(state: Arc<EdgeState>) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let heartbeat = secs(state.heartbeat);
    let stall = secs(state.write_timeout);
    let reauth_before = state.reauth_before.as_secs();
    loop {
        tokio::select! {
            () = state.shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = state.clock.advance();
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        for conn in state.hub.all() {
            let mut delivery = conn.delivery();
            if delivery.stalled(now, stall) {
                drop(delivery);
                tracing::warn!(member = %conn.member, connection = conn.id, "socket not draining; closing stream");
                conn.end(Closed::SlowConsumer);
                continue;
            }
            if delivery.ended().is_some() {
                continue;
            }
            delivery.trim();
            if unix >= conn.expires_at {
                delivery.end(Closed::TokenExpired);
            } else if !delivery.reauth_sent && unix + reauth_before >= conn.expires_at {
                delivery.reauth_sent = true;
                let frame = sse::event(
                    None,
                    "reauth",
                    json!({ "expiresAt": conn.expires_at }).to_string().as_bytes(),
                );
                delivery.push_control(frame, None, now);
            } else if delivery.quiet(now, heartbeat) {
                delivery.push_control(sse::heartbeat(), None, now);
            }
        }
    }
}

/// On drain, closes every open stream at a random point of the first 80% of the
/// window, each told to come back after a randomized `retry:` (to another node).
/// Whatever is open when the window ends is closed at once.
pub(crate) async fn drain(state: Arc<EdgeState>) {
    tokio::select! {
        () = state.drain.cancelled() => {}
        () = state.shutdown.cancelled() => return,
    }
    let started = tokio::time::Instant::now();
    let mut closing: Vec<_> = {
        let mut rng = rand::rng();
        state
            .hub
            .all()
            .into_iter()
            .map(|conn| (state.drain_window.mul_f64(rng.random_range(0.0..0.8)), conn))
            .collect()
    };
    closing.sort_by_key(|(at, _)| *at);
    for (at, conn) in closing {
        tokio::select! {
            () = tokio::time::sleep_until(started + at) => {}
            () = state.shutdown.cancelled() => break,
        }
        close(&state, &conn);
    }
    state.shutdown.cancelled().await;
    for conn in state.hub.all() {
        close(&state, &conn);
    }
}

fn close(state: &EdgeState, conn: &Conn) {
    let retry = Duration::from_millis(rand::rng().random_range(500..3000));
    let mut delivery = conn.delivery();
    if delivery.ended().is_none() {
        delivery.push_control(sse::retry(retry), None, state.clock.now());
        delivery.end(Closed::Drain);
    }
}

fn secs(d: Duration) -> u32 {
    u32::try_from(d.as_secs()).unwrap_or(u32::MAX).max(1)
}
