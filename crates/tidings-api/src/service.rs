//! `tidings.v1.NotificationService`: thin handlers that authenticate, convert (in
//! `convert.rs`), call the api (the write path's two front-ends, the inbox, the topic
//! publish), and convert back. Every call is counted and timed by [`Service::timed`].

use std::future::Future;
use std::pin::Pin;
use std::time::Instant;

use futures::{Stream, StreamExt as _};
use tidings_proto::v1 as pb;
use tidings_proto::v1::notification_service_server::NotificationService;
use tidings_store::Archive;
use tonic::{Request, Response, Status, Streaming};

use crate::auth::{ApiKeys, Producer};
use crate::group_commit::GroupCommit;
use crate::send_stream::SendStreams;
use crate::state::ApiState;
use crate::status_codes;
use crate::{ApiError, convert};

#[derive(Debug, Clone)]
pub(crate) struct Service {
    pub(crate) state: ApiState,
    /// Unary Sends go through here, to share transactions with concurrent ones.
    pub(crate) group_commit: GroupCommit,
    /// Each SendStream call gets a worker of its own.
    pub(crate) send_streams: SendStreams,
    pub(crate) keys: ApiKeys,
}

impl Service {
    /// Runs one call, counting it by status code and timing it under `method`.
    async fn timed<T>(&self, method: &str, call: impl Future<Output = Result<T, Status>>) -> Result<T, Status> {
        let started = Instant::now();
        let result = call.await;
        let code = result.as_ref().map_or_else(Status::code, |_| tonic::Code::Ok);
        self.state.metrics.observe(method, started, code);
        result
    }

    async fn send_inner(&self, request: Request<pb::SendRequest>) -> Result<Response<pb::SendResponse>, Status> {
        let producer = self.caller(&request)?;
        let trace = traceparent(&request);
        Ok(Response::new(
            self.handle_send(request.into_inner(), &producer, trace).await?,
        ))
    }

    async fn send_stream_inner(
        &self,
        request: Request<Streaming<pb::SendStreamRequest>>,
    ) -> Result<Response<ResponseStream>, Status> {
        let producer = self.caller(&request)?;
        let trace = traceparent(&request);
        let inbound = request.into_inner().map(move |item| {
            item.map_err(status_codes::inbound)
                .and_then(|r| Ok(convert::send_request(r.into(), &producer, trace.clone())?))
        });
        let answers = self.send_streams.open(inbound);
        Ok(Response::new(Box::pin(answers.map(|answer| {
            answer.map(|receipt| convert::send_response(receipt).into())
        }))))
    }

    async fn publish_inner(
        &self,
        request: Request<pb::PublishRequest>,
    ) -> Result<Response<pb::PublishResponse>, Status> {
        self.caller(&request)?;
        let trace = traceparent(&request);
        Ok(Response::new(self.handle_publish(request.into_inner(), trace).await?))
    }

    async fn list_notifications_inner(
        &self,
        request: Request<pb::ListNotificationsRequest>,
    ) -> Result<Response<pb::ListNotificationsResponse>, Status> {
        self.caller(&request)?;
        Ok(Response::new(self.handle_list(request.into_inner()).await?))
    }

    async fn mark_read_inner(
        &self,
        request: Request<pb::MarkReadRequest>,
    ) -> Result<Response<pb::MarkReadResponse>, Status> {
        self.caller(&request)?;
        Ok(Response::new(self.handle_mark_read(request.into_inner()).await?))
    }

    async fn archive_inner(
        &self,
        request: Request<pb::ArchiveNotificationsRequest>,
    ) -> Result<Response<pb::ArchiveNotificationsResponse>, Status> {
        self.caller(&request)?;
        Ok(Response::new(self.handle_archive(request.into_inner()).await?))
    }

    async fn delete_inner(
        &self,
        request: Request<pb::DeleteNotificationsRequest>,
    ) -> Result<Response<pb::DeleteNotificationsResponse>, Status> {
        self.caller(&request)?;
        Ok(Response::new(self.handle_delete(request.into_inner()).await?))
    }

    async fn get_unread_count_inner(
        &self,
        request: Request<pb::GetUnreadCountRequest>,
    ) -> Result<Response<pb::GetUnreadCountResponse>, Status> {
        self.caller(&request)?;
        Ok(Response::new(self.handle_unread_count(request.into_inner()).await?))
    }

    /// The operations, shared by both transports: the gRPC handlers above and the
    /// HTTP/JSON API (`rest.rs`) call these with protobuf requests, so validation, limits,
    /// messages and the write path are one code, whichever way a producer came in.
    /// The caller has authenticated already.
    pub(crate) async fn handle_send(
        &self,
        request: pb::SendRequest,
        producer: &Producer,
        trace: Option<String>,
    ) -> Result<pb::SendResponse, ApiError> {
        let send = convert::send_request(request, producer, trace)?;
        let receipt = self.group_commit.send(send).await?;
        Ok(convert::send_response(receipt))
    }

    pub(crate) async fn handle_publish(
        &self,
        request: pb::PublishRequest,
        trace: Option<String>,
    ) -> Result<pb::PublishResponse, ApiError> {
        let message = convert::publish_request(request)?;
        let event_id = self.state.publish_topic(message, trace).await?;
        Ok(pb::PublishResponse {
            event_id: event_id.to_string(),
        })
    }

    pub(crate) async fn handle_list(
        &self,
        req: pb::ListNotificationsRequest,
    ) -> Result<pb::ListNotificationsResponse, ApiError> {
        let member = convert::member("member_id", &req.member_id)?;
        let limit = convert::page_limit(req.limit)?;
        let before = convert::decode_cursor(&req.cursor)?;
        let archived = convert::archived_filter(req.archived)?;
        let page = self
            .state
            .page(&member, before, limit, req.unread_only, archived)
            .await?;
        Ok(convert::list_response(page))
    }

    pub(crate) async fn handle_mark_read(&self, req: pb::MarkReadRequest) -> Result<pb::MarkReadResponse, ApiError> {
        let member = convert::member("member_id", &req.member_id)?;
        let which = convert::mark_read(&req)?;
        match self.state.mark_read(&member, &which).await? {
            Some(unread) => Ok(pb::MarkReadResponse {
                unread_count: unread.count,
            }),
            None => Err(ApiError::NotFound(format!(
                "up_to: no notification {} for this member",
                req.up_to
            ))),
        }
    }

    pub(crate) async fn handle_archive(
        &self,
        req: pb::ArchiveNotificationsRequest,
    ) -> Result<pb::ArchiveNotificationsResponse, ApiError> {
        let member = convert::member("member_id", &req.member_id)?;
        let which = convert::selection(&req.ids, &req.up_to)?;
        match self.state.archive(&member, &which).await? {
            Archive::Done(changed) => Ok(pb::ArchiveNotificationsResponse {
                unread_count: changed.unread.count,
                archived: changed.changed,
            }),
            Archive::NotFound(id) => {
                let field = if req.up_to.is_empty() { "ids" } else { "up_to" };
                Err(ApiError::NotFound(format!(
                    "{field}: no notification {id} for this member; nothing was archived"
                )))
            }
        }
    }

    pub(crate) async fn handle_delete(
        &self,
        req: pb::DeleteNotificationsRequest,
    ) -> Result<pb::DeleteNotificationsResponse, ApiError> {
        let member = convert::member("member_id", &req.member_id)?;
        let which = convert::selection(&req.ids, &req.up_to)?;
        let changed = self.state.delete(&member, &which).await?;
        Ok(pb::DeleteNotificationsResponse {
            unread_count: changed.unread.count,
            deleted: changed.changed,
        })
    }

    pub(crate) async fn handle_unread_count(
        &self,
        req: pb::GetUnreadCountRequest,
    ) -> Result<pb::GetUnreadCountResponse, ApiError> {
        let (members, many) = convert::unread_members(&req)?;
        Ok(if many {
            let counts = self.state.unread_counts(&members).await?;
            pb::GetUnreadCountResponse {
                unread_count: 0,
                unread_counts: counts.iter().map(|c| c.count).collect(),
                unread_versions: counts.iter().map(|c| c.version).collect(),
            }
        } else {
            pb::GetUnreadCountResponse {
                unread_count: self.state.unread_count(&members[0]).await?,
                unread_counts: Vec::new(),
                unread_versions: Vec::new(),
            }
        })
    }

    fn caller<T>(&self, request: &Request<T>) -> Result<Producer, ApiError> {
        let authorization = request.metadata().get("authorization").and_then(|v| v.to_str().ok());
        self.keys.authenticate(authorization)
    }
}

fn traceparent<T>(request: &Request<T>) -> Option<String> {
    request
        .metadata()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(tidings_telemetry::propagation::canonical_traceparent)
}

type ResponseStream = Pin<Box<dyn Stream<Item = Result<pb::SendStreamResponse, Status>> + Send>>;

#[tonic::async_trait]
impl NotificationService for Service {
    async fn send(&self, request: Request<pb::SendRequest>) -> Result<Response<pb::SendResponse>, Status> {
        self.timed("Send", self.send_inner(request)).await
    }

    type SendStreamStream = ResponseStream;

    async fn send_stream(
        &self,
        request: Request<Streaming<pb::SendStreamRequest>>,
    ) -> Result<Response<Self::SendStreamStream>, Status> {
        self.timed("SendStream", self.send_stream_inner(request)).await
    }

    async fn publish(&self, request: Request<pb::PublishRequest>) -> Result<Response<pb::PublishResponse>, Status> {
        self.timed("Publish", self.publish_inner(request)).await
    }

    async fn list_notifications(
        &self,
        request: Request<pb::ListNotificationsRequest>,
    ) -> Result<Response<pb::ListNotificationsResponse>, Status> {
        self.timed("ListNotifications", self.list_notifications_inner(request))
            .await
    }

    async fn mark_read(&self, request: Request<pb::MarkReadRequest>) -> Result<Response<pb::MarkReadResponse>, Status> {
        self.timed("MarkRead", self.mark_read_inner(request)).await
    }

    async fn get_unread_count(
        &self,
        request: Request<pb::GetUnreadCountRequest>,
    ) -> Result<Response<pb::GetUnreadCountResponse>, Status> {
        self.timed("GetUnreadCount", self.get_unread_count_inner(request)).await
    }

    async fn archive_notifications(
        &self,
        request: Request<pb::ArchiveNotificationsRequest>,
    ) -> Result<Response<pb::ArchiveNotificationsResponse>, Status> {
        self.timed("ArchiveNotifications", self.archive_inner(request)).await
    }

    async fn delete_notifications(
        &self,
        request: Request<pb::DeleteNotificationsRequest>,
    ) -> Result<Response<pb::DeleteNotificationsResponse>, Status> {
        self.timed("DeleteNotifications", self.delete_inner(request)).await
    }
}
