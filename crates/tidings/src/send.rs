//! `tidings send`: one Send or Publish against a running api, printing the response as
//! JSON, for shells and scripts.

use anyhow::Context as _;
use tidings_proto::v1 as pb;
use tidings_proto::v1::notification_service_client::NotificationServiceClient;
use tonic::metadata::MetadataValue;

use crate::cli::SendArgs;

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
