// Notify a member and publish to a topic over gRPC, with @grpc/grpc-js. The service
// definition is loaded from proto/ at run time (@grpc/proto-loader): nothing generated.
//
//   node grpc-producer.mjs alice news
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';

const API_URL = process.env.TIDINGS_API_URL ?? 'http://127.0.0.1:50051';
const API_KEY = process.env.TIDINGS_API_KEY ?? ''; // `tidings dev` needs none
// Where proto/ is: this repository's, unless you copied the example elsewhere.
const PROTO_DIR = process.env.TIDINGS_PROTO_DIR ?? fileURLToPath(new URL('../../proto', import.meta.url));

const definition = protoLoader.loadSync('tidings/v1/notification.proto', {
  includeDirs: [PROTO_DIR],
  keepCase: true, // field names as in the .proto: member_ids, data_json
  defaults: true, // unset fields as their defaults ("" for an event_id not known yet)
});
const { NotificationService } = grpc.loadPackageDefinition(definition).tidings.v1;

function connect(url) {
  const { protocol, host } = new URL(url);
  const credentials = protocol === 'https:' ? grpc.credentials.createSsl() : grpc.credentials.createInsecure();
  return new NotificationService(host, credentials);
}

async function main(memberId, topic) {
  const api = connect(API_URL);
  const metadata = new grpc.Metadata();
  if (API_KEY) metadata.set('authorization', `Bearer ${API_KEY}`);
  const call = (method, request) =>
    promisify(api[method].bind(api))(request, metadata, { deadline: Date.now() + 10_000 });

  try {
    // Stored in the member's inbox, then pushed to their open streams. The idempotency
    // key makes a retry of this Send safe: it stores and delivers once.
    const sent = await call('Send', {
      member_ids: [memberId],
      type: 'comment.created',
      content: `Hello ${memberId}, from Node over gRPC`,
      data_json: JSON.stringify({ post: 7, via: 'node-grpc' }),
      idempotency_key: randomUUID(),
    });
    for (const d of sent.deliveries) {
      const event = d.event_id || 'pending: the outbox relay publishes it';
      console.log(`sent notification ${d.notification_id} to ${d.member_id} (event ${event})`);
    }

    // Broadcast to everyone on the topic's streams; kept in no inbox.
    const published = await call('Publish', {
      topic,
      data_json: JSON.stringify({ headline: 'Tidings speaks Node', via: 'node-grpc' }),
    });
    console.log(`published to topic ${topic} (event ${published.event_id})`);
  } finally {
    api.close();
  }
}

const [memberId = 'alice', topic = 'news'] = process.argv.slice(2);
try {
  await main(memberId, topic);
} catch (e) {
  // UNAVAILABLE: the api is down or unreachable (retry with the same idempotency key);
  // INVALID_ARGUMENT names the field; UNAUTHENTICATED: check TIDINGS_API_KEY.
  const code = e.code !== undefined ? grpc.status[e.code] : 'ERROR';
  console.error(`tidings api at ${API_URL}: ${code}: ${e.details ?? e.message}`);
  process.exit(1);
}
