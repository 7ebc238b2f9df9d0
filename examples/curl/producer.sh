#!/usr/bin/env bash
# Notify a member and publish to a topic over the HTTP/JSON API, with curl (and jq to
# build the JSON, so any member id or text is quoted right).
#
#   bash producer.sh alice news
set -euo pipefail
member=${1:-alice}
topic=${2:-news}
api=${TIDINGS_API_URL:-http://127.0.0.1:50051}
auth=() # `tidings dev` needs no key
if [ -n "${TIDINGS_API_KEY:-}" ]; then auth=(-H "Authorization: Bearer $TIDINGS_API_KEY"); fi

# post PATH JSON [curl options]: prints the JSON answer; on an error prints what the api
# said ({"error":{"code","message"}}) and exits. 503 and 409 `aborted` are safe to
# retry with the same Idempotency-Key.
post() {
  local path=$1 body=$2 answer status
  shift 2
  answer=$(curl -sS --max-time 10 -w '\n%{http_code}' "${auth[@]}" -H 'Content-Type: application/json' \
    "$@" --data-binary "$body" "$api$path") || { echo "cannot reach the tidings api at $api" >&2; exit 1; }
  status=${answer##*$'\n'}
  answer=${answer%$'\n'*}
  if [ "$status" != 200 ]; then
    echo "POST $path: HTTP $status $(jq -r '.error | "\(.code): \(.message)"' <<<"$answer" 2>/dev/null || echo "$answer")" >&2
    exit 1
  fi
  printf '%s\n' "$answer"
}

# Stored in the member's inbox, then pushed to their open streams. The Idempotency-Key
# makes a retry of this request safe: it stores and delivers once.
key=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
send=$(jq -cn --arg member "$member" \
  '{memberIds: [$member], type: "comment.created", content: "Hello \($member), from curl",
    data: {post: 7, via: "curl"}}')
post /v1/notifications "$send" -H "Idempotency-Key: $key" | jq -r '.deliveries[] |
  "sent notification \(.notificationId) to \(.memberId) (event \(.eventId // "pending: the outbox relay publishes it"))"'

# Broadcast to everyone on the topic's streams; kept in no inbox.
post "/v1/topics/$topic/messages" '{"data":{"headline":"Tidings speaks curl","via":"curl"}}' |
  jq -r --arg topic "$topic" '"published to topic \($topic) (event \(.eventId))"'
