#!/usr/bin/env python3
"""An SSE client for scripts/examples: opens a member's stream on an edge, joined to a
topic, and waits for what one producer example sends — a `notification` event and an
event named after the topic (a Publish without an event name).

Usage: sse_expect.py EDGE_URL TOKEN MEMBER TOPIC READY_FILE TIMEOUT_SECONDS

Opens `GET EDGE_URL/v1/stream?topics=TOPIC` with `Authorization: Bearer TOKEN`, checks
that the `connected` event names MEMBER (the token's `sub`), then creates READY_FILE so
the caller can run the producer. Prints, as they arrive:
    notification <notification id> <SSE id>
    topic <SSE id>
and exits 0 once both have; exits 1 when the stream is refused, names another member,
or TIMEOUT_SECONDS pass first (saying what did arrive), connecting included. Standard
library only.
"""
import json
import signal
import sys
import urllib.error
import urllib.parse
import urllib.request


class Deadline(Exception):
    pass


def on_alarm(_signum, _frame):
    raise Deadline()


def events(response):
    """Yields (event, id, data) as the stream's events arrive."""
    event, event_id, data = "message", None, []
    while True:
        line = response.readline()
        if not line:
            raise SystemExit("sse_expect: the stream ended")
        line = line.decode().rstrip("\r\n")
        if line == "":
            if data:
                yield event, event_id, "\n".join(data)
            event, event_id, data = "message", None, []
        elif line.startswith(":"):
            continue
        else:
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "event":
                event = value
            elif field == "id":
                event_id = value
            elif field == "data":
                data.append(value)


def main():
    edge, token, member, topic, ready, timeout = sys.argv[1:7]
    # Everything, connecting included, within the timeout: the alarm interrupts a read.
    signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, float(timeout))
    url = f"{edge}/v1/stream?" + urllib.parse.urlencode({"topics": topic})
    request = urllib.request.Request(
        url, headers={"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
    )
    try:
        response = urllib.request.urlopen(request, timeout=float(timeout))
    except urllib.error.HTTPError as e:
        raise SystemExit(f"sse_expect: {url} refused the stream: {e.code} {e.read()[:300]!r}")
    except (OSError, Deadline) as e:
        raise SystemExit(f"sse_expect: cannot open {url}: {e or 'timed out'}")
    seen = []
    notification = published = None
    try:
        for event, event_id, data in events(response):
            seen.append(event)
            if event == "connected":
                got = json.loads(data).get("memberId")
                if got != member:
                    raise SystemExit(f"sse_expect: the stream is member {got!r}'s, expected {member!r}")
                open(ready, "w").close()
            elif event == "notification" and notification is None:
                notification = (json.loads(data)["id"], event_id)
                print("notification", *notification, flush=True)
            elif event == topic and published is None:
                published = event_id
                print("topic", published, flush=True)
            if notification and published:
                return
    except Deadline:
        pass
    missing = [what for what, got in (("notification", notification), (f"{topic} event", published)) if not got]
    raise SystemExit(
        f"sse_expect: within {timeout}s, the stream of {member!r} got no {' and no '.join(missing)}"
        f" (events seen: {seen})"
    )


if __name__ == "__main__":
    main()
