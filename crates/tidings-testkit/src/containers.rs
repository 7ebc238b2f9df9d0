//! The fallback when no service URLs are set: Postgres and NATS (with JetStream) in
//! Docker containers, shared by the tests of one process and removed with the last
//! handle that uses them.

use std::any::Any;
use std::sync::{Arc, Mutex, Weak};

use testcontainers_modules::nats::{Nats, NatsServerCmd};
use testcontainers_modules::postgres::Postgres;
use testcontainers_modules::testcontainers::runners::AsyncRunner as _;
use testcontainers_modules::testcontainers::{ContainerAsync, ImageExt as _};

use crate::ServiceUrls;

/// Keeps the containers alive while a test handle holds it.
pub(crate) type Keepalive = Arc<dyn Any + Send + Sync>;

struct Running {
    urls: ServiceUrls,
    _postgres: ContainerAsync<Postgres>,
    _nats: ContainerAsync<Nats>,
}

static SHARED: Mutex<Weak<Running>> = Mutex::new(Weak::new());

/// A Docker engine answers on `DOCKER_HOST` or the default socket.
pub(crate) fn docker_reachable() -> bool {
    std::env::var_os("DOCKER_HOST").is_some() || std::path::Path::new("/var/run/docker.sock").exists()
}

pub(crate) async fn services() -> Result<(ServiceUrls, Keepalive), Box<dyn std::error::Error + Send + Sync>> {
    if let Some(running) = SHARED.lock().expect("invariant: never poisoned").upgrade() {
        return Ok((running.urls.clone(), running));
    }
    let postgres = Postgres::default().with_tag("16-alpine").start().await?;
    let nats = Nats::default()
        .with_cmd(&NatsServerCmd::default().with_jetstream())
        .with_tag("2.11-alpine")
        .start()
        .await?;
    let (pg_host, pg_port) = (postgres.get_host().await?, postgres.get_host_port_ipv4(5432).await?);
    let (nats_host, nats_port) = (nats.get_host().await?, nats.get_host_port_ipv4(4222).await?);
    let urls = ServiceUrls {
        database_url: format!("postgres://postgres:postgres@{pg_host}:{pg_port}/postgres"),
        nats_url: format!("nats://{nats_host}:{nats_port}"),
    };
    let running = Arc::new(Running {
        urls: urls.clone(),
        _postgres: postgres,
        _nats: nats,
    });
    // Two tests racing here may each start a pair; the loser's pair lives as long as its
    // handle, which is harmless.
    *SHARED.lock().expect("invariant: never poisoned") = Arc::downgrade(&running);
    Ok((urls, running))
}
