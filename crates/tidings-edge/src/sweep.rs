//! The node's timers, shared by every connection instead of a timer per stream: one
//! sweep a second sends heartbeats to quiet streams, `reauth` before a token expires,
//! ends streams at expiry, and closes sockets that stopped draining. Drain closes
//! streams spread over its window from one task.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::Rng as _;

use crate::delivery::Closed;
use crate::hub::Conn;
use crate::sse;
use crate::state::EdgeState;

/// How often the sweep runs; also the resolution of heartbeats, reauth and expiry.
const TICK: Duration = Duration::from_secs(1);

/// Runs the sweep until shutdown.
pub(crate) async fn run(state: Arc<EdgeState>) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let heartbeat = secs(state.limits.heartbeat);
    let stall = secs(state.limits.write_timeout);
    let reauth_before = state.limits.reauth_before.as_secs();
    loop {
        tokio::select! {
            () = state.lifecycle.shutdown.cancelled() => return,
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
                tracing::warn!(
                    member = conn.who(),
                    connection = conn.id,
                    "socket not draining; closing stream"
                );
                conn.end(Closed::SlowConsumer);
                continue;
            }
            if delivery.ended().is_some() {
                continue;
            }
            delivery.trim();
            if unix >= conn.expires_at {
                delivery.end(Closed::TokenExpired);
            } else if !delivery.reauth_sent && unix.saturating_add(reauth_before) >= conn.expires_at {
                delivery.reauth_sent = true;
                delivery.push_control(sse::reauth(conn.expires_at), None, now);
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
        () = state.lifecycle.drain.cancelled() => {}
        () = state.lifecycle.shutdown.cancelled() => return,
    }
    let started = tokio::time::Instant::now();
    let mut closing: Vec<_> = {
        let mut rng = rand::rng();
        state
            .hub
            .all()
            .into_iter()
            .map(|conn| (state.limits.drain_window.mul_f64(rng.random_range(0.0..0.8)), conn))
            .collect()
    };
    closing.sort_by_key(|(at, _)| *at);
    for (at, conn) in closing {
        tokio::select! {
            () = tokio::time::sleep_until(started + at) => {}
            () = state.lifecycle.shutdown.cancelled() => break,
        }
        close(&state, &conn);
    }
    state.lifecycle.shutdown.cancelled().await;
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
