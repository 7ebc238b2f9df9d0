// Compile-time tests of the hand-written declarations (tidings.d.ts, react.d.ts):
// `npx tsc -p tsconfig.json` (scripts/test runs it, with --strict) fails when the
// documented API — README.md and the JSDoc in tidings.js — no longer type-checks, or
// when a misuse below stops being an error. Nothing here runs.
//
// Imports go through the package's own name, so the `exports` map and its `types`
// conditions in package.json are checked too.
import {
  createTidings,
  fetchTicket,
  parseEventId,
  parseRetryAfter,
  reconnectDelay,
  SseParser,
  TidingsError,
  DEFAULT_RETRY_MS,
  MAX_BUFFER_LENGTH,
} from '@tidings/client';
import type {
  ConnectedInfo,
  InboxPage,
  TidingsClient,
  TidingsNotification,
  TidingsOptions,
  TidingsSnapshot,
  TidingsStatus,
} from '@tidings/client';
import { useTidings, useTopic } from '@tidings/client/react';

/** `expect<T>()(value)`: the value's type is exactly T (not wider, not narrower). */
type Exact<A, B> = (<T>() => T extends A ? 1 : 2) extends (<T>() => T extends B ? 1 : 2) ? true : false;
declare function expectType<T>(): <V>(value: V & (Exact<T, V> extends true ? unknown : never)) => void;

declare const edgeUrl: string;
declare function myJwt(): Promise<string>;

// ----- options and auth modes (README "Auth modes") -------------------------------

const cookie = createTidings({ edgeUrl, auth: { cookie: true } });
createTidings({ edgeUrl, auth: { getToken: async ({ reason }) => `${reason}`, via: 'header' } });
createTidings({ edgeUrl, auth: { getToken: () => 'jwt', via: 'query' } });
createTidings({
  edgeUrl,
  auth: { getTicket: async () => fetchTicket({ edgeUrl, token: await myJwt() }), getToken: myJwt },
});
createTidings({ edgeUrl, auth: { getTicket: () => 'ticket', cookie: true } });
createTidings({ edgeUrl, topics: ['ranking'] });
createTidings({ edgeUrl, auth: null, topics: ['ranking'] });
const full: TidingsOptions = {
  edgeUrl,
  auth: { cookie: true },
  topics: ['ranking'],
  shareAcrossTabs: true,
  pageSize: 20,
  maxBackoffMs: 30000,
  idleTimeoutMs: 0,
  channelName: 'tidings',
  fetch: globalThis.fetch,
  locks: navigator.locks,
  BroadcastChannel,
  random: Math.random,
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (id) => clearTimeout(id),
};
createTidings(full);

// Every reason a credential is asked for.
createTidings({
  edgeUrl,
  auth: {
    getToken: ({ reason }) => {
      switch (reason) {
        case 'connect':
        case 'reconnect':
        case 'reauth':
        case 'unauthorized':
        case 'request':
        case 'identify':
          return 'jwt';
        default: {
          const never: never = reason; // a new reason must be documented here
          return never;
        }
      }
    },
  },
});

// @ts-expect-error edgeUrl is required
createTidings({ auth: { cookie: true } });
// @ts-expect-error via is 'header' or 'query'
createTidings({ edgeUrl, auth: { getToken: myJwt, via: 'cookie' } });
// @ts-expect-error an auth object must be one of the three modes
createTidings({ edgeUrl, auth: { token: 'jwt' } });
// @ts-expect-error topics are names
createTidings({ edgeUrl, topics: 'ranking' });

// ----- events ---------------------------------------------------------------------

const client: TidingsClient = cookie;
const off: () => void = client.on('notification', (n) => {
  expectType<TidingsNotification>()(n);
  expectType<string>()(n.id);
  expectType<string>()(n.type);
  expectType<string>()(n.content);
  expectType<string | null>()(n.readAt);
  expectType<string | null>()(n.eventId);
  expectType<string | null>()(n.groupId);
  expectType<string>()(n.createdAt);
});
off();
client.on('unread', (count) => expectType<number>()(count));
client.on('reset', (reason) => expectType<string | null>()(reason));
client.on('connected', (info) => {
  expectType<ConnectedInfo>()(info);
  expectType<string | null>()(info.memberId);
  expectType<boolean>()(info.resumed);
  expectType<string | undefined>()(info.affinity);
});
client.on('error', (error) => expectType<unknown>()(error));
client.on('status', (status) => {
  expectType<TidingsStatus>()(status);
  switch (status.state) {
    case 'connecting':
    case 'live':
      break;
    case 'reconnecting':
      expectType<number>()(status.attempt);
      expectType<number>()(status.retryMs);
      break;
    case 'resumed':
      expectType<number>()(status.missed);
      break;
    case 'closed':
      expectType<'closed' | 'unauthenticated' | 'forbidden' | 'bad_request'>()(status.reason);
      break;
    default: {
      const never: never = status; // a new state must be documented here
      return never;
    }
  }
});
// Topic events: any other name, with the data typed by the listener.
interface Ranking {
  entries: { name: string; score: number }[];
}
client.on('ranking', (data: Ranking, { id }) => {
  expectType<string | null>()(id);
  return data.entries;
});
client.on<Ranking>('ranking', (data) => data.entries);
client.onTopic('status', (data, meta) => {
  expectType<unknown>()(data);
  expectType<string | null>()(meta.id);
});
// @ts-expect-error a client event's listener gets that event's value (a count here)
client.on('unread', (count: string) => count);
// @ts-expect-error `notification` is the client event, not a topic of any shape
client.on('notification', (data: Ranking) => data);
// @ts-expect-error the listener is a function
client.on('status', 'live');

// ----- the store (useSyncExternalStore's contract) --------------------------------

const unsubscribe: () => void = client.subscribe(() => {});
unsubscribe();
const snapshot = client.getSnapshot();
expectType<TidingsSnapshot>()(snapshot);
expectType<TidingsStatus>()(snapshot.status);
expectType<number>()(snapshot.unreadCount);
expectType<readonly TidingsNotification[]>()(snapshot.notifications);
expectType<Readonly<Record<string, unknown>>>()(snapshot.topics);
expectType<string | null>()(snapshot.lastEventId);
expectType<string | null>()(snapshot.member);
expectType<boolean>()(snapshot.leader);
// @ts-expect-error the snapshot is read-only
snapshot.unreadCount = 1;
// @ts-expect-error its list too
snapshot.notifications.push(snapshot.notifications[0]);
// Bound: safe to pass around detached.
const { subscribe, getSnapshot } = client;
subscribe(() => getSnapshot().status);

// ----- the inbox ------------------------------------------------------------------

async function inbox(): Promise<void> {
  const page = await client.inbox.list({ cursor: '', limit: 20, unreadOnly: true, archived: 'include' });
  expectType<InboxPage>()(page);
  expectType<string>()(page.nextCursor);
  expectType<readonly TidingsNotification[]>()(page.notifications);
  await client.inbox.list();
  expectType<number>()(await client.inbox.markRead(['id-1', 'id-2']));
  expectType<number>()(await client.inbox.markRead(new Set(['id-1'])));
  expectType<number>()(await client.inbox.markAllRead());
  expectType<number>()(await client.inbox.archive(['id-1']));
  expectType<number>()(await client.inbox.delete(['id-1']));
  expectType<number>()(await client.inbox.unreadCount());
  // @ts-expect-error archived is 'exclude', 'include' or 'only'
  await client.inbox.list({ archived: true });
  // @ts-expect-error ids, not one id
  await client.inbox.markRead('id-1');
  try {
    await client.inbox.markAllRead();
  } catch (error) {
    if (error instanceof TidingsError) {
      expectType<number | null>()(error.status);
      expectType<string | null>()(error.code);
    }
  }
}
void inbox;
client.close();

// ----- React hooks ----------------------------------------------------------------

function Bell(): string {
  const { unreadCount, notifications, status } = useTidings(client);
  expectType<number>()(unreadCount);
  expectType<readonly TidingsNotification[]>()(notifications);
  return `${status.state} ${unreadCount}`;
}
function Board(): number {
  const ranking = useTopic<Ranking>(client, 'ranking');
  expectType<Ranking | undefined>()(ranking);
  expectType<unknown>()(useTopic(client, 'ranking'));
  return ranking?.entries.length ?? 0;
}
void Bell;
void Board;
// @ts-expect-error the hooks take the client, not its options
useTidings({ edgeUrl });

// ----- the helpers ----------------------------------------------------------------

const parser = new SseParser({
  onEvent: (e) => {
    expectType<string>()(e.type);
    expectType<string>()(e.data);
    expectType<string | null>()(e.id);
  },
  onRetry: (ms) => expectType<number>()(ms),
  maxBufferLength: MAX_BUFFER_LENGTH,
});
parser.feed('data: x\n\n');
expectType<string>()(parser.lastEventId);
const position = parseEventId('aa-1');
if (position) expectType<bigint>()(position.seq);
expectType<number>()(reconnectDelay({ attempt: 1, retryMs: DEFAULT_RETRY_MS, maxBackoffMs: 30000, retryAfterMs: null }));
expectType<number | null>()(parseRetryAfter('3'));
expectType<Promise<string>>()(fetchTicket({ edgeUrl, token: 'jwt' }));
new TidingsError('boom', { status: 503, code: 'unavailable' });
