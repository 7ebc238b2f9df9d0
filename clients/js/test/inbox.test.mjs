import { afterEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { createTidings, fetchTicket, TidingsError } from '../tidings.js';
import { connected, edgeError, fakeEdge, json, recordingTimers, settle, testOptions, waitFor } from './helpers.mjs';

const T = { timeout: 5000 };

/** Every client a test makes, closed after it even when it fails. */
const clients = [];
afterEach(() => clients.splice(0).forEach((c) => c.close()));
const track = (client) => (clients.push(client), client);

const note = (id, createdAt, extra = {}) => ({
  id, type: 'comment', content: `n ${id}`, data: { k: id }, groupId: null, createdAt, readAt: null, eventId: null, ...extra,
});

/** An inbox on the fake edge: `items` newest first, unread `count`. */
function inboxEdge(state) {
  return fakeEdge({
    rest: (r) => {
      if (r.path === '/v1/notifications/unread-count') return json({ unreadCount: state.count });
      if (r.path === '/v1/notifications/archive' || r.path === '/v1/notifications/delete') {
        if (state.refuse) return edgeError(404, 'not_found');
        state.count = state.afterDrop ?? 0;
        const n = r.body.ids.length;
        return json(r.path.endsWith('archive') ? { unreadCount: state.count, archived: n } : { unreadCount: state.count, deleted: n });
      }
      if (r.path === '/v1/notifications/read') {
        state.count = state.afterRead ?? 0;
        return json({ unreadCount: state.count });
      }
      if (r.path === '/v1/notifications') {
        const limit = Number(r.url.searchParams.get('limit'));
        return json({ notifications: state.items.slice(0, limit), nextCursor: state.next ?? '' });
      }
      return edgeError(404, 'not_found');
    },
  });
}

function setup(state, extra = {}) {
  const edge = inboxEdge(state);
  const timers = recordingTimers();
  const client = track(createTidings(testOptions(edge, timers, { auth: { getToken: async () => 'tok' }, ...extra })));
  return { edge, client };
}

test('start loads the first page and the unread count into the store', T, async () => {
  const state = { items: [note('b', '2026-01-02T00:00:00Z'), note('a', '2026-01-01T00:00:00Z')], count: 2 };
  const { edge, client } = setup(state, { pageSize: 10 });
  await waitFor(() => client.getSnapshot().notifications.length === 2);
  const snap = client.getSnapshot();
  assert.equal(snap.unreadCount, 2);
  assert.deepEqual(snap.notifications.map((n) => n.id), ['b', 'a']);
  const list = edge.restRequests().find((r) => r.path === '/v1/notifications');
  assert.equal(list.url.searchParams.get('limit'), '10');
  assert.equal(list.url.searchParams.get('unread_only'), 'false');
  assert.equal(list.url.searchParams.has('cursor'), false);
  assert.equal(list.headers.get('authorization'), 'Bearer tok');
  assert.equal(list.headers.get('accept'), 'application/json');
  client.close();
});

test('inbox.list passes cursor, limit and unread_only', T, async () => {
  const state = { items: [note('a', '2026-01-01T00:00:00Z')], count: 1, next: 'c2' };
  const { edge, client } = setup(state);
  const page = await client.inbox.list({ cursor: 'c1', limit: 5, unreadOnly: true });
  assert.deepEqual(page.notifications.map((n) => n.id), ['a']);
  assert.equal(page.nextCursor, 'c2');
  const r = edge.restRequests().find((x) => x.url.searchParams.get('cursor') === 'c1');
  assert.equal(r.url.href, 'https://edge.test/v1/notifications?cursor=c1&limit=5&unread_only=true');
  assert.equal(r.method, 'GET');
  client.close();
});

test('markRead posts ids, updates the count and readAt in the store', T, async () => {
  const state = { items: [note('b', '2026-01-02T00:00:00Z'), note('a', '2026-01-01T00:00:00Z')], count: 2, afterRead: 1 };
  const { edge, client } = setup(state);
  await waitFor(() => client.getSnapshot().notifications.length === 2);
  const before = client.getSnapshot();
  const count = await client.inbox.markRead(['a']);
  assert.equal(count, 1);
  const post = edge.restRequests().find((r) => r.path === '/v1/notifications/read');
  assert.equal(post.method, 'POST');
  assert.deepEqual(post.body, { ids: ['a'] });
  assert.equal(post.headers.get('content-type'), 'application/json');
  assert.equal(post.headers.get('authorization'), 'Bearer tok');
  const snap = client.getSnapshot();
  assert.notEqual(snap, before);
  assert.equal(snap.unreadCount, 1);
  assert.equal(snap.notifications.find((n) => n.id === 'b').readAt, null);
  assert.ok(snap.notifications.find((n) => n.id === 'a').readAt);
  assert.equal(await client.inbox.markRead([]), 1, 'no ids: no call');
  assert.equal(edge.restRequests().filter((r) => r.path === '/v1/notifications/read').length, 1);
  client.close();
});

test('markRead, archive and delete refuse one id given as a string (its characters are no ids)', T, async () => {
  const state = { items: [note('a', '2026-01-01T00:00:00Z')], count: 1 };
  const { edge, client } = setup(state);
  await waitFor(() => client.getSnapshot().notifications.length === 1);
  for (const method of ['markRead', 'archive', 'delete']) {
    await assert.rejects(client.inbox[method]('a'), TypeError, method);
  }
  assert.deepEqual(edge.restRequests().filter((r) => r.method === 'POST'), [], 'no call');
  assert.equal(await client.inbox.markRead(new Set(['a'])), 0, 'a Set of ids is fine');
  client.close();
});

test('markAllRead marks up to the newest notification', T, async () => {
  const state = { items: [note('b', '2026-01-02T00:00:00Z'), note('a', '2026-01-01T00:00:00Z')], count: 2, afterRead: 0 };
  const { edge, client } = setup(state);
  await waitFor(() => client.getSnapshot().notifications.length === 2);
  assert.equal(await client.inbox.markAllRead(), 0);
  const lists = edge.restRequests().filter((r) => r.path === '/v1/notifications');
  assert.equal(lists.at(-1).url.searchParams.get('limit'), '1');
  const post = edge.restRequests().find((r) => r.path === '/v1/notifications/read');
  assert.deepEqual(post.body, { up_to: 'b' });
  const snap = client.getSnapshot();
  assert.equal(snap.unreadCount, 0);
  assert.ok(snap.notifications.every((n) => n.readAt));
  client.close();
});

test('markAllRead on an empty inbox is a no-op returning 0', T, async () => {
  const { edge, client } = setup({ items: [], count: 0 });
  assert.equal(await client.inbox.markAllRead(), 0);
  assert.equal(edge.restRequests().filter((r) => r.path === '/v1/notifications/read').length, 0);
  client.close();
});

test('unreadCount fetches the count and stores it', T, async () => {
  const state = { items: [], count: 3 };
  const { client } = setup(state);
  await waitFor(() => client.getSnapshot().unreadCount === 3);
  state.count = 9;
  assert.equal(await client.inbox.unreadCount(), 9);
  assert.equal(client.getSnapshot().unreadCount, 9);
  client.close();
});

test('REST errors reject with the edge code and status', T, async () => {
  const edge = fakeEdge({ rest: () => edgeError(403, 'forbidden') });
  const client = track(createTidings(testOptions(edge, recordingTimers(), { auth: { cookie: true } })));
  client.on('error', () => {}); // the start load fails too
  await assert.rejects(client.inbox.unreadCount(), (e) => e instanceof TidingsError && e.status === 403 && e.code === 'forbidden');
  client.close();
});

test('REST retries a 401 once with a fresh token', T, async () => {
  const reasons = [];
  let first = true;
  const edge = fakeEdge({
    rest: (r) => {
      if (r.path === '/v1/notifications/unread-count' && first) {
        first = false;
        return edgeError(401, 'expired');
      }
      return json({ unreadCount: 5, notifications: [], nextCursor: '' });
    },
  });
  const client = track(createTidings(testOptions(edge, recordingTimers(), {
    auth: { getToken: async (ctx) => { reasons.push(ctx.reason); return `t${reasons.length}`; } },
  })));
  await waitFor(() => client.getSnapshot().unreadCount === 5);
  assert.ok(reasons.includes('unauthorized'));
  client.close();
});

test('live notifications merge with the loaded page, deduped by id, newest first, capped', T, async () => {
  const items = [];
  for (let i = 9; i >= 0; i -= 1) items.push(note(`p${i}`, `2026-01-01T00:00:0${i}Z`));
  const state = { items, count: 0 };
  const { edge, client } = setup(state, { pageSize: 2 }); // cap: 10
  const s = edge.stream();
  await waitFor(() => client.getSnapshot().notifications.length === 2);
  connected(s, { id: 'aa-1' });
  s.event('notification', note('p9', '2026-01-01T00:00:09Z'), 'aa-2'); // already listed
  for (let i = 0; i < 10; i += 1) {
    s.event('notification', note(`live${i}`, `2026-02-01T00:00:0${i}Z`), `aa-${3 + i}`);
  }
  await waitFor(() => client.getSnapshot().lastEventId === 'aa-12');
  const ids = client.getSnapshot().notifications.map((n) => n.id);
  assert.equal(ids.length, 10);
  assert.deepEqual(ids, ['live9', 'live8', 'live7', 'live6', 'live5', 'live4', 'live3', 'live2', 'live1', 'live0']);
  assert.equal(new Set(ids).size, ids.length);
  client.close();
});

test('a page loading while notifications arrive keeps them, and a live count wins', T, async () => {
  let release;
  const gate = new Promise((r) => { release = r; });
  const edge = fakeEdge({
    rest: async (r) => {
      await gate;
      if (r.path.endsWith('unread-count')) return json({ unreadCount: 1 });
      return json({ notifications: [note('old', '2026-01-01T00:00:00Z')], nextCursor: '' });
    },
  });
  const client = track(createTidings(testOptions(edge, recordingTimers(), { auth: { cookie: true } })));
  const s = edge.stream();
  connected(s, { id: 'aa-1' });
  s.event('notification', note('new', '2026-03-01T00:00:00Z'), 'aa-2');
  s.event('unread', { unreadCount: 2 });
  await waitFor(() => client.getSnapshot().unreadCount === 2);
  release();
  await waitFor(() => client.getSnapshot().notifications.length === 2);
  await settle();
  assert.deepEqual(client.getSnapshot().notifications.map((n) => n.id), ['new', 'old']);
  assert.equal(client.getSnapshot().unreadCount, 2);
  client.close();
});

test('fetchTicket posts the bearer and returns the ticket', T, async () => {
  const calls = [];
  const ticket = await fetchTicket({
    edgeUrl: 'https://edge.test/',
    token: 'jwt',
    fetch: async (url, init) => {
      calls.push([url, init]);
      return json({ ticket: 'tk', expiresIn: 30 }, 201);
    },
  });
  assert.equal(ticket, 'tk');
  assert.equal(calls[0][0], 'https://edge.test/v1/stream/ticket');
  assert.equal(calls[0][1].method, 'POST');
  assert.equal(calls[0][1].headers.Authorization, 'Bearer jwt');
  await assert.rejects(
    fetchTicket({ edgeUrl: 'https://e', token: 'x', fetch: async () => edgeError(401, 'unauthenticated') }),
    (e) => e.status === 401,
  );
});

for (const what of ['archive', 'delete']) {
  test(`${what} posts ids, drops them from the store and takes the edge's count`, T, async () => {
    const state = { items: [note('b', '2026-01-02T00:00:00Z'), note('a', '2026-01-01T00:00:00Z')], count: 2, afterDrop: 1 };
    const { edge, client } = setup(state);
    await waitFor(() => client.getSnapshot().notifications.length === 2);
    assert.equal(await client.inbox[what](['b']), 1);
    const post = edge.restRequests().find((r) => r.path === `/v1/notifications/${what}`);
    assert.equal(post.method, 'POST');
    assert.deepEqual(post.body, { ids: ['b'] });
    assert.equal(post.headers.get('authorization'), 'Bearer tok');
    const snap = client.getSnapshot();
    assert.equal(snap.unreadCount, 1);
    assert.deepEqual(snap.notifications.map((n) => n.id), ['a']);
    assert.equal(await client.inbox[what]([]), 1, 'no ids: no call');
    assert.equal(edge.restRequests().filter((r) => r.path === `/v1/notifications/${what}`).length, 1);
    client.close();
  });
}

test('archive of an id that is not the member\'s rejects with not_found and keeps the store', T, async () => {
  const state = { items: [note('a', '2026-01-01T00:00:00Z')], count: 1, refuse: true };
  const { client } = setup(state);
  await waitFor(() => client.getSnapshot().notifications.length === 1);
  await assert.rejects(client.inbox.archive(['x']), (e) => e instanceof TidingsError && e.code === 'not_found');
  assert.deepEqual(client.getSnapshot().notifications.map((n) => n.id), ['a']);
  assert.equal(client.getSnapshot().unreadCount, 1);
  client.close();
});

test('inbox.list passes the archived filter and refuses an unknown one', T, async () => {
  const state = { items: [note('a', '2026-01-01T00:00:00Z', { archivedAt: '2026-01-03T00:00:00Z' })], count: 0 };
  const { edge, client } = setup(state);
  const page = await client.inbox.list({ archived: 'only' });
  assert.equal(page.notifications[0].archivedAt, '2026-01-03T00:00:00Z');
  const r = edge.restRequests().find((x) => x.url.searchParams.get('archived') === 'only');
  assert.ok(r, 'archived=only sent');
  await assert.rejects(client.inbox.list({ archived: 'everything' }), (e) => e instanceof TidingsError && e.code === 'invalid_argument');
  client.close();
});
