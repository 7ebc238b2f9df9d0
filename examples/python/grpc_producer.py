"""Notify a member and publish to a topic over gRPC.

Needs the code generated from proto/ (see README.md):

    python -m grpc_tools.protoc -I ../../proto --python_out=. --grpc_python_out=. \\
        ../../proto/tidings/v1/notification.proto
    python grpc_producer.py alice news
"""

import json
import os
import sys
import uuid

import grpc

from tidings.v1 import notification_pb2 as pb
from tidings.v1 import notification_pb2_grpc as pb_grpc

API_URL = os.environ.get("TIDINGS_API_URL", "http://127.0.0.1:50051")
API_KEY = os.environ.get("TIDINGS_API_KEY", "")  # `tidings dev` needs none


def connect(url):
    """A channel to the api: plain for http://, TLS for https://."""
    if url.startswith("https://"):
        return grpc.secure_channel(url.removeprefix("https://"), grpc.ssl_channel_credentials())
    return grpc.insecure_channel(url.removeprefix("http://"))


def main(member_id, topic):
    metadata = [("authorization", f"Bearer {API_KEY}")] if API_KEY else []
    with connect(API_URL) as channel:
        api = pb_grpc.NotificationServiceStub(channel)

        # Stored in the member's inbox, then pushed to their open streams. The
        # idempotency key makes a retry of this Send safe: it stores and delivers once.
        sent = api.Send(
            pb.SendRequest(
                member_ids=[member_id],
                type="comment.created",
                content=f"Hello {member_id}, from Python over gRPC",
                data_json=json.dumps({"post": 7, "via": "python-grpc"}),
                idempotency_key=str(uuid.uuid4()),
            ),
            metadata=metadata,
            timeout=10,
        )
        for d in sent.deliveries:
            event = d.event_id or "pending: the outbox relay publishes it"
            print(f"sent notification {d.notification_id} to {d.member_id} (event {event})")

        # Broadcast to everyone on the topic's streams; kept in no inbox.
        published = api.Publish(
            pb.PublishRequest(
                topic=topic,
                data_json=json.dumps({"headline": "Tidings speaks Python", "via": "python-grpc"}),
            ),
            metadata=metadata,
            timeout=10,
        )
        print(f"published to topic {topic} (event {published.event_id})")


if __name__ == "__main__":
    member = sys.argv[1] if len(sys.argv) > 1 else "alice"
    topic = sys.argv[2] if len(sys.argv) > 2 else "news"
    try:
        main(member, topic)
    except grpc.RpcError as e:
        # UNAVAILABLE: the api is down or unreachable (retry with the same idempotency
        # key); INVALID_ARGUMENT names the field; UNAUTHENTICATED: check TIDINGS_API_KEY.
        sys.exit(f"tidings api at {API_URL}: {e.code().name}: {e.details()}")
