//! How `unicast` hands a notification to the cluster: through the api (the durable
//! path a producer uses) or straight to the stream (the edge-only path, measuring what
//! the edges and NATS add on their own).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use tidings_bus::{Bus, Outgoing};
use tidings_domain::{EventId, MemberId};
use tidings_proto::v1 as pb;
use uuid::Uuid;

use crate::cluster::{Client, Cluster};

/// Which way notifications enter the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Path {
    /// gRPC `Send` to the api: Postgres commit, then JetStream publish.
    Durable,
    /// Publish to the cluster's JetStream stream directly, with the subject, headers
    /// and payload the api would use: no api, no Postgres on the way in.
    Edge,
}

/// How long a direct publish waits for JetStream's acknowledgement. No relay stands
/// behind it, so a publish not acknowledged in time fails the run.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);

/// A sender of one path. Cheap to clone: one per in-flight notification.
#[derive(Debug, Clone)]
pub(crate) enum Publisher {
    Durable(Arc<Client>),
    Edge(Arc<Bus>),
}

/// What the cluster said about one notification.
#[derive(Debug)]
pub(crate) struct Sent {
    pub(crate) notification_id: String,
    /// The SSE id it will carry (empty if the api deferred publishing to its relay).
    pub(crate) event_id: String,
}

impl Publisher {
    pub(crate) async fn new(path: Path, cluster: &Cluster) -> anyhow::Result<Self> {
        Ok(match path {
            Path::Durable => Self::Durable(Arc::new(cluster.client().await?)),
            Path::Edge => Self::Edge(Arc::new(cluster.bus().await?)),
        })
    }

    /// Sends one notification of type `bench` with `data_json` to `member`.
    pub(crate) async fn send(self, member: String, data_json: String) -> anyhow::Result<Sent> {
        match self {
            Self::Durable(client) => {
                // A tonic client is a cheap handle over one shared channel.
                let mut client = Client::clone(&client);
                let request = pb::SendRequest {
                    member_ids: vec![member],
                    r#type: "bench".into(),
                    content: String::new(),
                    data_json,
                    ..Default::default()
                };
                let response = client.send(request).await?.into_inner();
                let delivery = response
                    .deliveries
                    .into_iter()
                    .next()
                    .context("no delivery in SendResponse")?;
                Ok(Sent {
                    notification_id: delivery.notification_id,
                    event_id: delivery.event_id,
                })
            }
            Self::Edge(bus) => {
                let member = MemberId::parse(&member)?;
                let id = Uuid::now_v7();
                let message = Outgoing {
                    subject: bus.subjects().member(&member),
                    msg_id: Some(id.to_string()),
                    event: None,
                    traceparent: None,
                    unread: None,
                    // The payload a Send of the same notification carries, but for
                    // the data's spacing (a Send's is Postgres' jsonb rendering).
                    payload: tidings_api::payload::notification(
                        id,
                        "bench",
                        "",
                        Some(&data_json),
                        None,
                        chrono::Utc::now(),
                    ),
                };
                let stored = bus
                    .publish_all(vec![message], PUBLISH_TIMEOUT)
                    .await
                    .into_iter()
                    .next()
                    .context("publish_all answers every message")??;
                if stored.duplicate {
                    bail!("JetStream took fresh notification {id} for a duplicate");
                }
                Ok(Sent {
                    notification_id: id.to_string(),
                    event_id: EventId::new(bus.epoch(), stored.seq).to_string(),
                })
            }
        }
    }
}
