use std::future::Future;
use std::time::{Duration, Instant};

/// How long [`eventually`] waits: `TIDINGS_TEST_PATIENCE` seconds, default 20. Raise it
/// on a loaded machine instead of editing tests.
pub fn patience() -> Duration {
    std::env::var("TIDINGS_TEST_PATIENCE")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(Duration::from_secs(20), Duration::from_secs)
}

/// Polls `check` until it returns `Some`, backing off from 5 ms to 200 ms; panics with
/// `what` after [`patience`]. The only waiting primitive tests use: no bare sleeps.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + patience();
    let mut pause = Duration::from_millis(5);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if Instant::now() >= deadline {
            panic!("gave up after {:?} waiting for: {what}", patience());
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}
