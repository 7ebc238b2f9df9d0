//! `tidings send`: one Send or Publish against a running api, printing the response as
//! JSON, for shells and scripts.

use anyhow::Context as _;
use tidings_proto::v1 as pb;
use tidings_proto::v1::notification_service_client::NotificationServiceClient;
use tonic::metadata::MetadataValue;

#[derive(Debug, clap::Args)]
pub(crate) struct SendArgs {
    /// The api's gRPC address.
    #[arg(long = "api-url", env = "TIDINGS_API_URL", default_value = "http://127.0.0.1:50051")]
    pub(crate) api_url: String,
    /// The producer API key to present (one of the api's TIDINGS_API_KEYS).
    #[arg(long = "api-key", env = "TIDINGS_API_KEY", hide_env_values = true)]
    pub(crate) api_key: Option<tidings_domain::Secret<String>>,
    /// Recipient member ids (repeat the flag or separate with commas).
    #[arg(long = "member", value_delimiter = ',')]
    pub(crate) members: Vec<String>,
    /// Publish to this broadcast topic instead of notifying members.
    #[arg(long, conflicts_with = "members")]
    pub(crate) topic: Option<String>,
    /// Notification type, e.g. `comment.created`.
    #[arg(long = "type", default_value = "message")]
    pub(crate) kind: String,
    /// Human-readable text.
    #[arg(long, default_value = "")]
    pub(crate) content: String,
    /// Structured data as a JSON value (for --topic: the message itself).
    #[arg(long)]
    pub(crate) data: Option<String>,
    /// Grouping key, e.g. a thread id.
    #[arg(long)]
    pub(crate) group: Option<String>,
    /// Makes a retry of this command deliver once.
    #[arg(long = "idempotency-key")]
    pub(crate) idempotency_key: Option<String>,
    /// SSE event name for --topic (default: the topic).
    #[arg(long, requires = "topic")]
    pub(crate) event: Option<String>,
}

pub(crate) async fn run(args: SendArgs) -> anyhow::Result<()> {
    let channel = tonic::transport::Endpoint::from_shared(args.api_url.clone())
        .with_context(|| format!("TIDINGS_API_URL {:?} is not a URL", args.api_url))?
        .connect_timeout(std::time::Duration::from_secs(5))
        .timeout(std::time::Duration::from_secs(30))
        .connect()
        .await
        .with_context(|| format!("connecting to the api at {}", args.api_url))?;
    let bearer = match &args.api_key {
        Some(key) => Some(
            MetadataValue::try_from(format!("Bearer {}", key.expose()))
                .context("TIDINGS_API_KEY holds characters a header cannot carry")?,
        ),
        None => None,
    };
    let mut client = NotificationServiceClient::with_interceptor(channel, move |mut request: tonic::Request<()>| {
        if let Some(value) = &bearer {
            request.metadata_mut().insert("authorization", value.clone());
        }
        Ok(request)
    });

    let printed = if let Some(topic) = args.topic {
        let request = pb::PublishRequest {
            topic,
            event: args.event.unwrap_or_default(),
            data_json: args.data.unwrap_or_default(),
        };
        let response = client.publish(request).await.map_err(status_error)?.into_inner();
        serde_json::json!({ "eventId": response.event_id })
    } else {
        if args.members.is_empty() {
            anyhow::bail!("give --member (one or more) or --topic");
        }
        let request = pb::SendRequest {
            member_ids: args.members,
            r#type: args.kind,
            content: args.content,
            data_json: args.data.unwrap_or_default(),
            group_id: args.group.unwrap_or_default(),
            idempotency_key: args.idempotency_key.unwrap_or_default(),
        };
        let response = client.send(request).await.map_err(status_error)?.into_inner();
        let deliveries: Vec<_> = response
            .deliveries
            .into_iter()
            .map(|d| serde_json::json!({ "memberId": d.member_id, "notificationId": d.notification_id, "eventId": d.event_id }))
            .collect();
        serde_json::json!({ "deliveries": deliveries })
    };
    println!("{printed}");
    Ok(())
}

fn status_error(status: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("the api answered {:?}: {}", status.code(), status.message())
}
