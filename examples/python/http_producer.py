"""Notify a member and publish to a topic over the HTTP/JSON API, with `requests`.

    python http_producer.py alice news
"""

import os
import sys
import uuid
from urllib.parse import quote

import requests

API_URL = os.environ.get("TIDINGS_API_URL", "http://127.0.0.1:50051")
API_KEY = os.environ.get("TIDINGS_API_KEY", "")  # `tidings dev` needs none


class TidingsError(Exception):
    pass


def call(session, path, body, headers=None):
    """POSTs JSON; returns the JSON answer, or raises with what the api said."""
    try:
        response = session.post(f"{API_URL}{path}", json=body, headers=headers, timeout=10)
    except requests.RequestException as e:
        raise TidingsError(f"cannot reach the tidings api at {API_URL}: {e}") from e
    if not response.ok:
        # Errors are {"error": {"code", "message"}}; 503 and 409 `aborted` are safe to
        # retry with the same Idempotency-Key.
        try:
            error = response.json()["error"]
            detail = f"{error['code']}: {error['message']}"
        except (ValueError, KeyError, TypeError):
            detail = response.text[:200]
        raise TidingsError(f"POST {path}: HTTP {response.status_code} {detail}")
    return response.json()


def main(member_id, topic):
    with requests.Session() as session:
        if API_KEY:
            session.headers["Authorization"] = f"Bearer {API_KEY}"

        # Stored in the member's inbox, then pushed to their open streams. The
        # Idempotency-Key makes a retry of this request safe: it stores and delivers once.
        sent = call(
            session,
            "/v1/notifications",
            {
                "memberIds": [member_id],
                "type": "comment.created",
                "content": f"Hello {member_id}, from Python over HTTP",
                "data": {"post": 7, "via": "python-http"},
            },
            headers={"Idempotency-Key": str(uuid.uuid4())},
        )
        for d in sent["deliveries"]:
            event = d["eventId"] or "pending: the outbox relay publishes it"
            print(f"sent notification {d['notificationId']} to {d['memberId']} (event {event})")

        # Broadcast to everyone on the topic's streams; kept in no inbox.
        published = call(
            session,
            f"/v1/topics/{quote(topic, safe='')}/messages",
            {"data": {"headline": "Tidings speaks HTTP", "via": "python-http"}},
        )
        print(f"published to topic {topic} (event {published['eventId']})")


if __name__ == "__main__":
    member = sys.argv[1] if len(sys.argv) > 1 else "alice"
    topic = sys.argv[2] if len(sys.argv) > 2 else "news"
    try:
        main(member, topic)
    except TidingsError as e:
        sys.exit(str(e))
