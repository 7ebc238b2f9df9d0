// Notify a member and publish to a topic over the HTTP/JSON API, with Node's fetch.
//
//   node http-producer.mjs alice news
import { randomUUID } from 'node:crypto';

const API_URL = process.env.TIDINGS_API_URL ?? 'http://127.0.0.1:50051';
const API_KEY = process.env.TIDINGS_API_KEY ?? ''; // `tidings dev` needs none

/** POSTs JSON; returns the JSON answer, or throws with what the api said. */
async function post(path, body, headers = {}) {
  let response;
  try {
    response = await fetch(`${API_URL}${path}`, {
      method: 'POST',
      headers: {
        'Content-Type': 'application/json',
        ...(API_KEY && { Authorization: `Bearer ${API_KEY}` }),
        ...headers,
      },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(10_000),
    });
  } catch (e) {
    throw new Error(`cannot reach the tidings api at ${API_URL}: ${e.cause?.message ?? e.message}`);
  }
  if (!response.ok) {
    // Errors are {"error": {"code", "message"}}; 503 and 409 `aborted` are safe to retry
    // with the same Idempotency-Key.
    const text = await response.text();
    let detail = text.slice(0, 200);
    try {
      const { error } = JSON.parse(text);
      detail = `${error.code}: ${error.message}`;
    } catch {}
    throw new Error(`POST ${path}: HTTP ${response.status} ${detail}`);
  }
  return response.json();
}

async function main(memberId, topic) {
  // Stored in the member's inbox, then pushed to their open streams. The
  // Idempotency-Key makes a retry of this request safe: it stores and delivers once.
  const sent = await post(
    '/v1/notifications',
    {
      memberIds: [memberId],
      type: 'comment.created',
      content: `Hello ${memberId}, from Node over HTTP`,
      data: { post: 7, via: 'node-http' },
    },
    { 'Idempotency-Key': randomUUID() },
  );
  for (const d of sent.deliveries) {
    const event = d.eventId ?? 'pending: the outbox relay publishes it';
    console.log(`sent notification ${d.notificationId} to ${d.memberId} (event ${event})`);
  }

  // Broadcast to everyone on the topic's streams; kept in no inbox.
  const published = await post(`/v1/topics/${encodeURIComponent(topic)}/messages`, {
    data: { headline: 'Tidings speaks HTTP', via: 'node-http' },
  });
  console.log(`published to topic ${topic} (event ${published.eventId})`);
}

const [memberId = 'alice', topic = 'news'] = process.argv.slice(2);
try {
  await main(memberId, topic);
} catch (e) {
  console.error(e.message);
  process.exit(1);
}
