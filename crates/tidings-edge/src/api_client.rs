//! The edge's gRPC client of the api: inbox calls and unread counts (the api alone owns
//! Postgres, so everything the edge knows of an inbox comes through here), and, for the
//! dev demo only, Send and Publish.

use std::time::Duration;

use tidings_domain::{MemberId, Secret};
use tidings_proto::v1 as pb;
use tidings_proto::v1::notification_service_client::NotificationServiceClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

/// A lazily connected gRPC client of the api, presenting the edge's API key. Cheap to
/// clone (one shared channel).
#[derive(Debug, Clone)]
pub(crate) struct ApiClient {
    inner: NotificationServiceClient<InterceptedService<Channel, Bearer>>,
}

/// Adds the edge's API key to every call.
#[derive(Debug, Clone)]
struct Bearer(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request.metadata_mut().insert("authorization", value.clone());
        }
        Ok(request)
    }
}

impl ApiClient {
    /// Never fails for an unreachable api: calls fail (UNAVAILABLE) until it is back.
    pub(crate) fn new(url: &str, key: Option<&Secret<String>>) -> anyhow::Result<Self> {
        let channel = Endpoint::from_shared(url.to_owned())?
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(10))
            .connect_lazy();
        let bearer = key.map(|k| format!("Bearer {}", k.expose()).parse()).transpose()?;
        Ok(Self {
            inner: NotificationServiceClient::with_interceptor(channel, Bearer(bearer)),
        })
    }

    /// One page of `member`'s inbox.
    pub(crate) async fn list(
        &self,
        member: &MemberId,
        cursor: String,
        limit: u32,
        unread_only: bool,
        archived: pb::ArchivedFilter,
    ) -> Result<pb::ListNotificationsResponse, tonic::Status> {
        let request = pb::ListNotificationsRequest {
            member_id: member.to_string(),
            cursor,
            limit,
            unread_only,
            archived: archived.into(),
        };
        Ok(self.inner.clone().list_notifications(request).await?.into_inner())
    }

    /// Marks `ids`, or everything up to `up_to`, read; returns the new unread count.
    pub(crate) async fn mark_read(
        &self,
        member: &MemberId,
        ids: Vec<String>,
        up_to: String,
    ) -> Result<u64, tonic::Status> {
        let request = pb::MarkReadRequest {
            member_id: member.to_string(),
            ids,
            up_to,
        };
        Ok(self.inner.clone().mark_read(request).await?.into_inner().unread_count)
    }

    /// Archives `ids`, or everything up to `up_to`; returns the new unread count and
    /// how many were archived.
    pub(crate) async fn archive(
        &self,
        member: &MemberId,
        ids: Vec<String>,
        up_to: String,
    ) -> Result<pb::ArchiveNotificationsResponse, tonic::Status> {
        let request = pb::ArchiveNotificationsRequest {
            member_id: member.to_string(),
            ids,
            up_to,
        };
        Ok(self.inner.clone().archive_notifications(request).await?.into_inner())
    }

    /// Deletes `ids`, or everything up to `up_to`; returns the new unread count and how
    /// many were deleted.
    pub(crate) async fn delete(
        &self,
        member: &MemberId,
        ids: Vec<String>,
        up_to: String,
    ) -> Result<pb::DeleteNotificationsResponse, tonic::Status> {
        let request = pb::DeleteNotificationsRequest {
            member_id: member.to_string(),
            ids,
            up_to,
        };
        Ok(self.inner.clone().delete_notifications(request).await?.into_inner())
    }

    /// The unread counts of `members`, in their order (at most 500: the api's bound),
    /// each with its version; `None` versions from an api that predates them.
    pub(crate) async fn unread_counts(&self, members: &[MemberId]) -> Result<Vec<(u64, Option<u64>)>, tonic::Status> {
        let request = pb::GetUnreadCountRequest {
            member_ids: members.iter().map(MemberId::to_string).collect(),
            ..Default::default()
        };
        let response = self.inner.clone().get_unread_count(request).await?.into_inner();
        let (counts, versions) = (response.unread_counts, response.unread_versions);
        if counts.len() != members.len() || !(versions.is_empty() || versions.len() == counts.len()) {
            return Err(tonic::Status::internal(format!(
                "{} unread counts and {} versions for {} members",
                counts.len(),
                versions.len(),
                members.len()
            )));
        }
        let mut versions = versions.into_iter();
        Ok(counts.into_iter().map(|c| (c, versions.next())).collect())
    }

    pub(crate) async fn unread_count(&self, member: &MemberId) -> Result<u64, tonic::Status> {
        let request = pb::GetUnreadCountRequest {
            member_id: member.to_string(),
            ..Default::default()
        };
        Ok(self
            .inner
            .clone()
            .get_unread_count(request)
            .await?
            .into_inner()
            .unread_count)
    }

    /// Sends a notification (the dev demo's form).
    pub(crate) async fn send(&self, request: pb::SendRequest) -> Result<pb::SendResponse, tonic::Status> {
        Ok(self.inner.clone().send(request).await?.into_inner())
    }

    /// Publishes to a topic (the dev demo's ranking board).
    pub(crate) async fn publish(&self, request: pb::PublishRequest) -> Result<String, tonic::Status> {
        Ok(self.inner.clone().publish(request).await?.into_inner().event_id)
    }
}
