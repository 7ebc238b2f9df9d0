//! `tidings.v1.NotificationService`: thin handlers that authenticate, convert, call the
//! store or the sender, and convert back.

use std::pin::Pin;

use futures::{FutureExt as _, Stream, StreamExt as _};
use tidings_bus::Outgoing;
use tidings_domain::EventId;
use tidings_proto::v1 as pb;
use tidings_proto::v1::notification_service_server::NotificationService;
use tidings_store::NewSend;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument as _;

use crate::auth::{ApiKeys, Producer};
use crate::group_commit::GroupCommit;
use crate::{ApiError, Sender, convert};

/// Most requests one batch (a SendStream's, or a group commit's) commits together,
/// and most rows.
pub(crate) const MAX_BATCH_REQUESTS: usize = 512;
pub(crate) const MAX_BATCH_ROWS: usize = 10_000;
/// Responses buffered per SendStream call; a client that stops reading stalls only its
/// own call.
const STREAM_RESPONSE_BUFFER: usize = 1024;

#[derive(Debug, Clone)]
pub(crate) struct Service {
    pub(crate) sender: Sender,
    /// Unary Sends go through here, to share transactions with concurrent ones.
    pub(crate) group_commit: GroupCommit,
    pub(crate) keys: ApiKeys,
}

impl Service {
    async fn send_inner(&self, request: Request<pb::SendRequest>) -> Result<Response<pb::SendResponse>, Status> {
        let producer = self.caller(&request)?;
        let trace = traceparent(&request);
        let send = convert::send_request(request.into_inner(), &producer, trace)?;
        Ok(Response::new(self.group_commit.send(send).await?))
    }

    async fn send_stream_inner(
        &self,
        request: Request<Streaming<pb::SendRequest>>,
    ) -> Result<Response<ResponseStream>, Status> {
        let producer = self.caller(&request)?;
        let trace = traceparent(&request);
        let inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(STREAM_RESPONSE_BUFFER);
        tokio::spawn(send_stream(self.sender.clone(), producer, trace, inbound, tx).in_current_span());
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn publish_inner(
        &self,
        request: Request<pb::PublishRequest>,
    ) -> Result<Response<pb::PublishResponse>, Status> {
        self.caller(&request)?;
        let trace = traceparent(&request);
        let message = convert::publish_request(request.into_inner())?;
        let bus = &self.sender.bus;
        if !bus.is_connected() {
            return Err(ApiError::BusUnavailable("not connected".into()).into());
        }
        let outgoing = Outgoing {
            subject: bus.subjects().topic(&message.topic),
            msg_id: None,
            event: Some(message.event),
            traceparent: trace,
            payload: message.data_json.into(),
        };
        let result = bus.publish_all(vec![outgoing], self.sender.publish_timeout).await.pop();
        match result {
            Some(Ok(stored)) => Ok(Response::new(pb::PublishResponse {
                event_id: EventId::new(bus.epoch(), stored.seq).to_string(),
            })),
            Some(Err(e)) => Err(ApiError::BusUnavailable(e.to_string()).into()),
            None => Err(Status::internal("no publish result")),
        }
    }

    async fn list_notifications_inner(
        &self,
        request: Request<pb::ListNotificationsRequest>,
    ) -> Result<Response<pb::ListNotificationsResponse>, Status> {
        self.caller(&request)?;
        let req = request.into_inner();
        let member = convert::member("member_id", &req.member_id)?;
        let limit = convert::page_limit(req.limit)?;
        let before = convert::decode_cursor(&req.cursor)?;
        // One extra row tells whether another page exists.
        let mut items = self
            .sender
            .store
            .list(&member, before, limit + 1, req.unread_only)
            .await
            .map_err(ApiError::from)?;
        let more = items.len() > limit as usize;
        items.truncate(limit as usize);
        let next_cursor = match (more, items.last()) {
            (true, Some(last)) => convert::encode_cursor(last.id),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListNotificationsResponse {
            notifications: items.into_iter().map(convert::notification).collect(),
            next_cursor,
        }))
    }

    async fn mark_read_inner(
        &self,
        request: Request<pb::MarkReadRequest>,
    ) -> Result<Response<pb::MarkReadResponse>, Status> {
        self.caller(&request)?;
        let req = request.into_inner();
        let member = convert::member("member_id", &req.member_id)?;
        let which = convert::mark_read(&req)?;
        match self
            .sender
            .store
            .mark_read(&member, &which)
            .await
            .map_err(ApiError::from)?
        {
            Some(unread_count) => {
                self.announce_unread_change(&member, unread_count).await;
                Ok(Response::new(pb::MarkReadResponse { unread_count }))
            }
            None => Err(ApiError::NotFound(format!("up_to: no notification {} for this member", req.up_to)).into()),
        }
    }

    async fn get_unread_count_inner(
        &self,
        request: Request<pb::GetUnreadCountRequest>,
    ) -> Result<Response<pb::GetUnreadCountResponse>, Status> {
        self.caller(&request)?;
        let (members, many) = convert::unread_members(request.get_ref())?;
        let store = &self.sender.store;
        Ok(Response::new(if many {
            pb::GetUnreadCountResponse {
                unread_count: 0,
                unread_counts: store.unread_counts(&members).await.map_err(ApiError::from)?,
            }
        } else {
            pb::GetUnreadCountResponse {
                unread_count: store.unread_count(&members[0]).await.map_err(ApiError::from)?,
                unread_counts: Vec::new(),
            }
        }))
    }

    fn caller<T>(&self, request: &Request<T>) -> Result<Producer, Status> {
        self.keys.authenticate(request)
    }

    /// Tells every edge holding the member that its unread count changed (edges fetch
    /// the count itself, so concurrent changes can never leave a stale one behind).
    /// Best effort: the read state is committed either way, and a stream's next
    /// connect or notification refreshes the badge.
    async fn announce_unread_change(&self, member: &tidings_domain::MemberId, unread_count: u64) {
        let bus = &self.sender.bus;
        if !bus.is_connected() {
            return;
        }
        let outgoing = Outgoing {
            subject: bus.subjects().member(member),
            msg_id: None,
            event: Some(tidings_bus::UNREAD_EVENT.to_owned()),
            traceparent: None,
            payload: serde_json::json!({ "unreadCount": unread_count }).to_string().into(),
        };
        if let Some(Err(e)) = bus.publish_all(vec![outgoing], self.sender.publish_timeout).await.pop() {
            tracing::debug!(error = %e, "announcing an unread change failed");
        }
    }
}

fn traceparent<T>(request: &Request<T>) -> Option<String> {
    request
        .metadata()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

type ResponseStream = Pin<Box<dyn Stream<Item = Result<pb::SendResponse, Status>> + Send>>;

#[tonic::async_trait]
impl NotificationService for Service {
    async fn send(&self, request: Request<pb::SendRequest>) -> Result<Response<pb::SendResponse>, Status> {
        let started = std::time::Instant::now();
        let result = self.send_inner(request).await;
        self.sender.metrics.observe("Send", started, &result);
        result
    }

    type SendStreamStream = ResponseStream;

    async fn send_stream(
        &self,
        request: Request<Streaming<pb::SendRequest>>,
    ) -> Result<Response<Self::SendStreamStream>, Status> {
        let started = std::time::Instant::now();
        let result = self.send_stream_inner(request).await;
        self.sender.metrics.observe("SendStream", started, &result);
        result
    }

    async fn publish(&self, request: Request<pb::PublishRequest>) -> Result<Response<pb::PublishResponse>, Status> {
        let started = std::time::Instant::now();
        let result = self.publish_inner(request).await;
        self.sender.metrics.observe("Publish", started, &result);
        result
    }

    async fn list_notifications(
        &self,
        request: Request<pb::ListNotificationsRequest>,
    ) -> Result<Response<pb::ListNotificationsResponse>, Status> {
        let started = std::time::Instant::now();
        let result = self.list_notifications_inner(request).await;
        self.sender.metrics.observe("ListNotifications", started, &result);
        result
    }

    async fn mark_read(&self, request: Request<pb::MarkReadRequest>) -> Result<Response<pb::MarkReadResponse>, Status> {
        let started = std::time::Instant::now();
        let result = self.mark_read_inner(request).await;
        self.sender.metrics.observe("MarkRead", started, &result);
        result
    }

    async fn get_unread_count(
        &self,
        request: Request<pb::GetUnreadCountRequest>,
    ) -> Result<Response<pb::GetUnreadCountResponse>, Status> {
        let started = std::time::Instant::now();
        let result = self.get_unread_count_inner(request).await;
        self.sender.metrics.observe("GetUnreadCount", started, &result);
        result
    }
}

/// Reads requests as they come, commits each group that has arrived by the time the
/// previous group is done in one transaction, and answers in request order. A bad
/// request ends the call after the answers to everything before it.
async fn send_stream(
    sender: Sender,
    producer: Producer,
    trace: Option<String>,
    mut inbound: Streaming<pb::SendRequest>,
    tx: mpsc::Sender<Result<pb::SendResponse, Status>>,
) {
    loop {
        let first = tokio::select! {
            () = tx.closed() => return,
            next = inbound.next() => next,
        };
        let mut pending: Vec<Result<pb::SendRequest, Status>> = match first {
            None => return,
            Some(item) => vec![item],
        };
        let mut rows = 0usize;
        // Take whatever else has already arrived, without waiting.
        while pending.len() < MAX_BATCH_REQUESTS && rows < MAX_BATCH_ROWS {
            match inbound.next().now_or_never() {
                Some(Some(item)) => {
                    rows += item.as_ref().map(|r| r.member_ids.len()).unwrap_or(0);
                    pending.push(item);
                }
                _ => break,
            }
        }

        let mut sends: Vec<NewSend> = Vec::with_capacity(pending.len());
        let mut stop: Option<Status> = None;
        for item in pending {
            match item.and_then(|r| convert::send_request(r, &producer, trace.clone()).map_err(Status::from)) {
                Ok(send) => sends.push(send),
                Err(status) => {
                    stop = Some(status);
                    break;
                }
            }
        }
        if !sends.is_empty() {
            let callers = vec![tracing::Span::current(); sends.len()];
            match sender.send(&sends, &callers).await {
                Ok(results) => {
                    for result in results {
                        let failed = result.is_err();
                        if tx.send(result.map_err(Status::from)).await.is_err() {
                            return;
                        }
                        if failed {
                            return;
                        }
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(e.into())).await;
                    return;
                }
            }
        }
        if let Some(status) = stop {
            let _ = tx.send(Err(status)).await;
            return;
        }
    }
}
