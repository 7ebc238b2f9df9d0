//! A pool connection that one busy worker keeps between its statements (the api's
//! group-commit writers, their recorder, a SendStream call's worker).
//!
//! sqlx tests every connection handed back to the pool with a round trip (a `Sync`,
//! answered by `ReadyForQuery`), in a task it spawns for the purpose: for a worker
//! that runs one statement per batch, that doubled the round trips to Postgres and,
//! at 1,000 unary Sends/s, took about a tenth of the api's CPU (BENCHMARKS.md, issue
//! 20). A [`Held`] connection goes back to the pool when its worker runs out of work
//! ([`Held::release`], or [`Held::wait_for`] after [`IDLE`] without any, so an idle api
//! holds none), when it sat unused for [`IDLE`] before a statement (the pool then tests
//! it), when it has been held for [`AT_MOST`] (so the pool's own limits still apply now
//! and then), and after any failed statement (a broken connection is closed by the
//! pool's test; a rolled-back transaction is finished).

use std::pin::pin;
use std::time::{Duration, Instant};

use sqlx::pool::PoolConnection;
use sqlx::{PgConnection, Postgres};

use crate::{Store, StoreError};

/// A held connection unused this long goes back to the pool before the next statement,
/// and a worker without work for this long gives its connection back.
pub const IDLE: Duration = Duration::from_secs(1);
/// A connection is handed back at least this often, however busy its worker.
const AT_MOST: Duration = Duration::from_secs(60);

/// One worker's connection. Not `Clone`: a connection runs one statement at a time.
#[derive(Debug)]
pub struct Held {
    store: Store,
    conn: Option<Kept>,
}

#[derive(Debug)]
struct Kept {
    conn: PoolConnection<Postgres>,
    acquired: Instant,
    used: Instant,
}

impl Store {
    /// A connection for one worker to keep (taken from the pool at its first statement).
    pub fn held(&self) -> Held {
        Held {
            store: self.clone(),
            conn: None,
        }
    }
}

impl Held {
    /// Runs `work` on the held connection, taking one from the pool first when there is
    /// none or it is due back. A failure hands the connection back.
    pub(crate) async fn run<T>(
        &mut self,
        work: impl AsyncFnOnce(&mut PgConnection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let now = Instant::now();
        if self
            .conn
            .as_ref()
            .is_some_and(|k| now.duration_since(k.used) >= IDLE || now.duration_since(k.acquired) >= AT_MOST)
        {
            self.conn = None;
        }
        let kept = match &mut self.conn {
            Some(kept) => kept,
            None => self.conn.insert(Kept {
                conn: self.store.pool().acquire().await?,
                acquired: now,
                used: now,
            }),
        };
        let result = work(&mut kept.conn).await;
        kept.used = Instant::now();
        if result.is_err() {
            self.conn = None;
        }
        result
    }

    /// Waits for a worker's next piece of work (`next`: a queue's `recv`, a lock),
    /// handing the connection back to the pool if none comes within [`IDLE`], so an
    /// idle worker holds no connection. `next` is polled to the end either way: the
    /// release does not cancel it.
    pub async fn wait_for<T>(&mut self, next: impl Future<Output = T>) -> T {
        let mut next = pin!(next);
        match tokio::time::timeout(IDLE, next.as_mut()).await {
            Ok(item) => item,
            Err(_) => {
                self.release();
                next.await
            }
        }
    }

    /// Hands the connection back to the pool, for a worker about to wait for work: a
    /// connection is held only while its worker is busy.
    pub fn release(&mut self) {
        self.conn = None;
    }

    /// Whether a connection is held now.
    pub fn is_holding(&self) -> bool {
        self.conn.is_some()
    }
}
