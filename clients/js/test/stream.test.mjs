import { afterEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { createTidings } from '../tidings.js';
import { connected, edgeError, fakeEdge, json, recordingTimers, settle, testOptions, waitFor } from './helpers.mjs';

const T = { timeout: 5000 };

/** Every client a test makes, closed after it even when it fails. */
const clients = [];
afterEach(() => clients.splice(0).forEach((c) => c.close()));

function track(client) {
  clients.push(client);
  return client;
}

/** A client on a fake edge. */
function setup(extra = {}, edgeOpts, timers = recordingTimers()) {
  const edge = fakeEdge(edgeOpts);
  const client = track(createTidings(testOptions(edge, timers, { auth: { getToken: async () => 'tok' }, ...extra })));
  return { edge, timers, client };
}

const note = (id, createdAt = '2026-01-01T00:00:00.000Z', extra = {}) => ({
  id, type: 'comment', content: `n ${id}`, data: null, groupId: null, createdAt, ...extra,
});

test('connects with the bearer header and topics; events fill the store and reach listeners', T, async () => {
  const { edge, client } = setup({ topics: ['scores', 'news'] });
  const s = edge.stream();
  const seen = [];
  client.on('notification', (n) => seen.push(['notification', n.id, n.eventId]));
  client.on('unread', (c) => seen.push(['unread', c]));
  client.on('connected', (info) => seen.push(['connected', info.memberId]));
  client.on('scores', (data, meta) => seen.push(['scores', data, meta.id]));
  const statuses = [];
  client.on('status', (st) => statuses.push(st.state));

  const req = await edge.nthStream(1);
  assert.equal(req.url.searchParams.get('topics'), 'scores,news');
  assert.equal(req.headers.get('authorization'), 'Bearer tok');
  assert.equal(req.headers.get('last-event-id'), null);
  assert.equal(req.headers.get('accept'), 'text/event-stream');
  assert.equal(req.url.searchParams.get('access_token'), null);

  const first = client.getSnapshot();
  assert.equal(first.status.state, 'connecting');
  assert.equal(client.getSnapshot(), first, 'same object while nothing changes');

  connected(s, { id: 'aa-10' });
  s.event('notification', note('n1'), 'aa-11');
  s.push(': heartbeat\n\n');
  s.event('unread', { unreadCount: 4 });
  s.event('scores', { alice: 3 }, 'aa-12');
  await waitFor(() => seen.length === 4);

  assert.deepEqual(seen, [
    ['connected', 'alice'],
    ['notification', 'n1', 'aa-11'],
    ['unread', 4],
    ['scores', { alice: 3 }, 'aa-12'],
  ]);
  const snap = client.getSnapshot();
  assert.notEqual(snap, first);
  assert.deepEqual(snap.status, { state: 'live' });
  assert.equal(snap.unreadCount, 4);
  assert.equal(snap.member, 'alice');
  assert.equal(snap.leader, true);
  assert.equal(snap.lastEventId, 'aa-12');
  assert.deepEqual(snap.topics, { scores: { alice: 3 } });
  assert.equal(snap.notifications[0].id, 'n1');
  assert.equal(snap.notifications[0].readAt, null);
  assert.ok(Object.isFrozen(snap) && Object.isFrozen(snap.notifications) && Object.isFrozen(snap.topics));
  assert.deepEqual(statuses, ['live']);
  client.close();
  assert.deepEqual(client.getSnapshot().status, { state: 'closed', reason: 'closed' });
});

test('via query puts access_token in the URL; REST still uses the header', T, async () => {
  const { edge, client } = setup({ auth: { getToken: async () => 'qtok', via: 'query' } });
  const req = await edge.nthStream(1);
  assert.equal(req.url.searchParams.get('access_token'), 'qtok');
  assert.equal(req.headers.get('authorization'), null);
  const rest = await waitFor(() => edge.restRequests()[0]);
  assert.equal(rest.headers.get('authorization'), 'Bearer qtok');
  client.close();
});

test('cookie mode sends credentials: include on stream and REST', T, async () => {
  const { edge, client } = setup({ auth: { cookie: true } });
  const req = await edge.nthStream(1);
  assert.equal(req.init.credentials, 'include');
  assert.equal(req.headers.get('authorization'), null);
  const rest = await waitFor(() => edge.restRequests()[0]);
  assert.equal(rest.init.credentials, 'include');
  client.close();
});

test('anonymous: no credential, no inbox load, inbox methods reject', T, async () => {
  const { edge, client } = setup({ auth: null, topics: ['public'] });
  const req = await edge.nthStream(1);
  assert.equal(req.headers.get('authorization'), null);
  assert.equal(req.init.credentials, 'same-origin');
  await settle();
  assert.equal(edge.restRequests().length, 0);
  await assert.rejects(client.inbox.list(), (e) => e.code === 'unauthenticated');
  await assert.rejects(client.inbox.markRead(['x']), (e) => e.code === 'unauthenticated');
  client.close();
});

test('a stream the server ends is resumed after retry with Last-Event-ID', T, async () => {
  const { edge, timers, client } = setup();
  const s1 = edge.stream();
  const s2 = edge.stream();
  connected(s1, { id: 'aa-1', retry: 1200 });
  s1.event('topic-a', 1, 'aa-2');
  s1.push('retry: 400\n\n'); // drain: a short retry, then the end
  s1.end();
  const second = await edge.nthStream(2);
  assert.equal(second.headers.get('last-event-id'), 'aa-2');
  // first attempt after a clean close: the server's retry, jittered (random 0.5 → ×1)
  assert.ok(timers.delays.includes(400), `delays ${timers.delays}`);
  connected(s2, { id: 'aa-2', resumed: true });
  s2.event('resumed', { missed: 0 });
  await waitFor(() => client.getSnapshot().status.state === 'resumed');
  assert.deepEqual(client.getSnapshot().status, { state: 'resumed', missed: 0 });
  client.close();
});

test('statuses: connecting, live, reconnecting with attempt and delay, resumed', T, async () => {
  const { edge, client } = setup();
  const statuses = [];
  client.on('status', (s) => statuses.push(s));
  const s1 = edge.stream();
  const s2 = edge.stream();
  connected(s1, { id: 'aa-1', retry: 100 });
  await waitFor(() => statuses.length === 1);
  s1.end();
  await edge.nthStream(2);
  connected(s2, { id: 'aa-1', resumed: true });
  s2.event('resumed', { missed: 3 });
  await waitFor(() => statuses.length === 3);
  assert.deepEqual(statuses, [
    { state: 'live' },
    { state: 'reconnecting', attempt: 1, retryMs: 100 },
    { state: 'resumed', missed: 3 },
  ]);
  client.close();
});

test('events with an id at or below the last delivered are dropped', T, async () => {
  const { edge, client } = setup();
  const s1 = edge.stream();
  const s2 = edge.stream();
  const got = [];
  client.on('notification', (n) => got.push(n.id));
  client.on('t', (d) => got.push(`t${d}`));
  connected(s1, { id: 'aa-5' });
  s1.event('notification', note('n6'), 'aa-6');
  s1.event('t', 1, 'aa-7');
  s1.event('t', 0, 'aa-7'); // repeated
  s1.event('notification', note('n5'), 'aa-5'); // older
  s1.event('t', 2, 'bb-1'); // another epoch: not comparable, delivered
  s1.event('t', 3); // no id (a latest value older than the position): delivered
  s1.end();
  await edge.nthStream(2);
  assert.equal(edge.streamRequests()[1].headers.get('last-event-id'), 'bb-1');
  connected(s2, { id: 'bb-1', resumed: true });
  s2.event('t', 9, 'bb-1'); // replayed again by mistake
  s2.event('t', 4, 'bb-2');
  await waitFor(() => got.length === 5);
  await settle();
  assert.deepEqual(got, ['n6', 't1', 't2', 't3', 't4']);
  assert.equal(client.getSnapshot().topics.t, 4);
  client.close();
});

test('connected and reset move the position even backwards', T, async () => {
  const { edge, client } = setup();
  const s1 = edge.stream();
  const got = [];
  client.on('t', (d) => got.push(d));
  connected(s1, { id: 'aa-50' });
  s1.event('reset', { reason: 'unknown_position', action: 'reload' }, 'aa-20');
  s1.event('t', 'after', 'aa-21');
  await waitFor(() => got.length === 1);
  assert.equal(client.getSnapshot().lastEventId, 'aa-21');
  client.close();
});

test('backoff: errors double the delay from retry, capped, and reset after connected', T, async () => {
  const { edge, timers, client } = setup({ maxBackoffMs: 5000 });
  for (let i = 0; i < 4; i += 1) edge.answer(() => edgeError(500, 'internal'));
  const s = edge.stream();
  edge.answer(() => Promise.reject(new TypeError('network down')));
  const statuses = [];
  client.on('status', (st) => statuses.push(st));
  await edge.nthStream(5);
  connected(s, { id: 'aa-1', retry: 1000 });
  await waitFor(() => client.getSnapshot().status.state === 'live');
  s.fail();
  await edge.nthStream(6);
  await waitFor(() => statuses.filter((x) => x.state === 'reconnecting').length === 6);
  const reconnecting = statuses.filter((x) => x.state === 'reconnecting');
  assert.deepEqual(reconnecting.map((x) => [x.attempt, x.retryMs]), [
    [1, 3000], [2, 5000], [3, 5000], [4, 5000], // default retry 3000 doubling, capped at 5000
    [1, 1000], // after connected: attempt 1 with the server's retry
    [2, 2000],
  ]);
  assert.deepEqual(timers.delays.filter((d) => d !== 0), [3000, 5000, 5000, 5000, 1000, 2000]);
  client.close();
});

test('backoff is jittered within [0.5, 1.5) and never over the cap', T, async () => {
  const { reconnectDelay } = await import('../tidings.js');
  assert.equal(reconnectDelay({ attempt: 1, retryMs: 1000, random: () => 0 }), 500);
  assert.equal(reconnectDelay({ attempt: 1, retryMs: 1000, random: () => 0.999 }), 1499);
  assert.equal(reconnectDelay({ attempt: 3, retryMs: 1000, random: () => 0.5 }), 4000);
  assert.equal(reconnectDelay({ attempt: 10, retryMs: 1000, maxBackoffMs: 30000, random: () => 0.999 }), 30000);
  assert.equal(reconnectDelay({ attempt: 10, retryMs: 1000, maxBackoffMs: 30000, random: () => 0 }), 15000);
  assert.equal(reconnectDelay({ attempt: 2, retryAfterMs: 7000, random: () => 0 }), 7000);
  assert.equal(reconnectDelay({ attempt: 2, retryAfterMs: 7000, random: () => 0.5 }), 8750);
  for (let i = 0; i < 200; i += 1) {
    const d = reconnectDelay({ attempt: 1 + (i % 8), retryMs: 3000, maxBackoffMs: 30000 });
    assert.ok(d >= 1500 && d <= 30000, `${d}`);
  }
});

test('Retry-After on 503 and 429 is honoured', T, async () => {
  const { parseRetryAfter } = await import('../tidings.js');
  assert.equal(parseRetryAfter('7'), 7000);
  assert.equal(parseRetryAfter(new Date(Date.UTC(2030, 0, 1, 0, 0, 10)).toUTCString(), Date.UTC(2030, 0, 1)), 10000);
  assert.equal(parseRetryAfter('soon'), null);
  assert.equal(parseRetryAfter(null), null);

  const { edge, timers, client } = setup({ random: () => 0 });
  edge.answer(() => edgeError(503, 'draining', { 'retry-after': '7' }));
  edge.answer(() => edgeError(429, 'too_many_connections', { 'retry-after': '2' }));
  edge.answer(() => edgeError(429, 'too_many_connections'));
  await edge.nthStream(4);
  assert.deepEqual(timers.delays, [7000, 2000, 3000 * 2 ** 2 * 0.5]);
  client.close();
});

test('a ticket is fetched for every connect', T, async () => {
  let n = 0;
  const { edge, client } = setup({ auth: { getTicket: async () => `ticket-${++n}`, getToken: async () => 'rest-tok' } });
  const s1 = edge.stream();
  connected(s1, { id: 'aa-3', retry: 5 });
  s1.end();
  const r2 = await edge.nthStream(2);
  const r1 = edge.streamRequests()[0];
  assert.equal(r1.url.searchParams.get('ticket'), 'ticket-1');
  assert.equal(r2.url.searchParams.get('ticket'), 'ticket-2');
  assert.equal(r2.headers.get('last-event-id'), 'aa-3');
  assert.equal(r1.headers.get('authorization'), null);
  const rest = await waitFor(() => edge.restRequests()[0]);
  assert.equal(rest.headers.get('authorization'), 'Bearer rest-tok');
  client.close();
});

test('a ticket client without getToken uses the cookie for REST', T, async () => {
  const { edge, client } = setup({ auth: { getTicket: async () => 't' } });
  const rest = await waitFor(() => edge.restRequests()[0]);
  assert.equal(rest.init.credentials, 'include');
  assert.equal(rest.headers.get('authorization'), null);
  client.close();
});

test('401: the credential is refreshed once, then closed(unauthenticated)', T, async () => {
  const reasons = [];
  const { edge, client } = setup({ auth: { getToken: async (ctx) => { reasons.push(ctx?.reason); return 'old'; } } });
  edge.answer(() => edgeError(401, 'unauthenticated'));
  edge.answer(() => edgeError(401, 'unauthenticated'));
  await waitFor(() => client.getSnapshot().status.state === 'closed');
  assert.deepEqual(client.getSnapshot().status, { state: 'closed', reason: 'unauthenticated' });
  assert.equal(edge.streamRequests().length, 2);
  assert.ok(reasons.includes('connect') && reasons.includes('unauthorized'));
  await settle(10);
  assert.equal(edge.streamRequests().length, 2);
  client.close();
});

test('401 then success with the refreshed credential goes live', T, async () => {
  let n = 0;
  const { edge, client } = setup({ auth: { getTicket: async () => `t${++n}` } });
  edge.answer(() => edgeError(401, 'ticket_used'));
  const s = edge.stream();
  connected(s, { id: 'aa-1' });
  await waitFor(() => client.getSnapshot().status.state === 'live');
  assert.equal(edge.streamRequests()[1].url.searchParams.get('ticket'), 't2');
  client.close();
});

test('403 closes with forbidden, 400 with bad_request', T, async () => {
  const a = setup();
  a.edge.answer(() => edgeError(403, 'forbidden'));
  await waitFor(() => a.client.getSnapshot().status.state === 'closed');
  assert.equal(a.client.getSnapshot().status.reason, 'forbidden');
  const b = setup();
  b.edge.answer(() => edgeError(400, 'bad_request'));
  await waitFor(() => b.client.getSnapshot().status.state === 'closed');
  assert.equal(b.client.getSnapshot().status.reason, 'bad_request');
  await settle(10);
  assert.equal(a.edge.streamRequests().length + b.edge.streamRequests().length, 2);
});

test('reset reloads the inbox first page and count, then emits reset', T, async () => {
  let page = [note('old1')];
  let count = 1;
  const { edge, client } = setup({}, {
    rest: (r) => (r.path.endsWith('unread-count') ? json({ unreadCount: count }) : json({ notifications: page, nextCursor: '' })),
  });
  const s = edge.stream();
  await waitFor(() => client.getSnapshot().notifications.length === 1);
  connected(s, { id: 'aa-1' });
  page = [note('fresh2', '2026-02-02T00:00:00.000Z'), note('fresh1')];
  count = 7;
  const resets = [];
  client.on('reset', (reason) => resets.push([reason, client.getSnapshot().notifications.map((n) => n.id)]));
  s.event('reset', { reason: 'history_trimmed', action: 'reload the inbox' }, 'aa-99');
  await waitFor(() => resets.length === 1);
  assert.deepEqual(resets, [['history_trimmed', ['fresh2', 'fresh1']]]);
  assert.equal(client.getSnapshot().unreadCount, 7);
  assert.equal(client.getSnapshot().lastEventId, 'aa-99');
  const lists = edge.restRequests().filter((r) => r.path === '/v1/notifications');
  assert.equal(lists.length, 2);
  client.close();
});

test('reauth: reconnects at once with a fresh credential and the last id', T, async () => {
  let n = 0;
  const reasons = [];
  const { edge, timers, client } = setup({ auth: { getToken: async (ctx) => { reasons.push(ctx.reason); return `tok${++n}`; } } });
  const s1 = edge.stream();
  const s2 = edge.stream();
  connected(s1, { id: 'aa-1' });
  s1.event('t', 'x', 'aa-2');
  s1.event('reauth', { expiresAt: 1900000000 });
  s1.event('t', 'y', 'aa-3'); // after reauth on the old stream: not taken, replayed by the new one
  const r2 = await edge.nthStream(2);
  assert.ok(s1.closed, 'the old stream is closed');
  assert.equal(r2.headers.get('last-event-id'), 'aa-2');
  assert.equal(r2.headers.get('authorization'), `Bearer tok${n}`);
  assert.notEqual(r2.headers.get('authorization'), edge.streamRequests()[0].headers.get('authorization'));
  assert.equal(reasons.at(-1), 'reauth');
  assert.deepEqual(timers.delays, [], 'no wait before the reauth reconnect');
  connected(s2, { id: 'aa-2', resumed: true });
  s2.event('t', 'y', 'aa-3');
  s2.event('resumed', { missed: 1 });
  await waitFor(() => client.getSnapshot().status.state === 'resumed');
  assert.equal(client.getSnapshot().topics.t, 'y');
  assert.equal(client.getSnapshot().lastEventId, 'aa-3');
  client.close();
});

test('a repeated reauth for the same expiry does not loop', T, async () => {
  const { edge, client } = setup();
  const s1 = edge.stream();
  const s2 = edge.stream();
  connected(s1, { id: 'aa-1' });
  s1.event('reauth', { expiresAt: 100 });
  await edge.nthStream(2);
  connected(s2, { id: 'aa-1', resumed: true });
  s2.event('reauth', { expiresAt: 100 });
  s2.event('t', 1, 'aa-2');
  await waitFor(() => client.getSnapshot().topics.t === 1);
  await settle(10);
  assert.equal(edge.streamRequests().length, 2);
  client.close();
});

test('the watchdog drops a silent stream and reconnects', T, async () => {
  const edge = fakeEdge();
  const client = track(createTidings({ edgeUrl: 'https://edge.test', fetch: edge.fetch, auth: null, topics: ['p'], idleTimeoutMs: 60, random: () => 0 }));
  const s1 = edge.stream();
  edge.stream();
  connected(s1, { id: 'aa-1', retry: 10 });
  const r2 = await edge.nthStream(2);
  assert.equal(r2.headers.get('last-event-id'), 'aa-1');
  client.close();
});

test('heartbeats keep the watchdog from firing', T, async () => {
  const edge = fakeEdge();
  const client = track(createTidings({ edgeUrl: 'https://edge.test', fetch: edge.fetch, auth: null, topics: ['p'], idleTimeoutMs: 250 }));
  const s1 = edge.stream();
  connected(s1, { id: 'aa-1' });
  for (let i = 0; i < 8; i += 1) {
    await settle(25);
    s1.push(': heartbeat\n\n');
  }
  assert.equal(edge.streamRequests().length, 1);
  client.close();
});

test('a line over 1 MiB drops the stream and reconnects', T, async () => {
  const { edge, client } = setup();
  const s1 = edge.stream();
  connected(s1, { id: 'aa-1', retry: 1 });
  s1.push(`data: ${'x'.repeat(1024 * 1024 + 10)}`);
  const r2 = await edge.nthStream(2);
  assert.ok(s1.closed);
  assert.equal(r2.headers.get('last-event-id'), 'aa-1');
  client.close();
});

test('a throwing listener does not break the stream', T, async (t) => {
  const errors = [];
  t.mock.method(console, 'error', (...a) => errors.push(a));
  const { edge, client } = setup();
  const s = edge.stream();
  const got = [];
  client.on('t', () => { throw new Error('boom'); });
  client.on('t', (d) => got.push(d));
  client.subscribe(() => { throw new Error('bang'); });
  connected(s, { id: 'aa-1' });
  s.event('t', 1, 'aa-2');
  s.event('t', 2, 'aa-3');
  await waitFor(() => got.length === 2);
  assert.equal(edge.streamRequests().length, 1);
  assert.ok(errors.length >= 2);
  client.close();
});

test('a topic named like a client event is reachable with onTopic only', T, async () => {
  const { edge, client } = setup();
  const s = edge.stream();
  const statuses = [];
  const topic = [];
  client.on('status', (x) => statuses.push(x));
  client.onTopic('status', (d) => topic.push(d));
  connected(s, { id: 'aa-1' });
  s.event('status', { up: true }, 'aa-2');
  await waitFor(() => topic.length === 1);
  assert.deepEqual(statuses, [{ state: 'live' }]);
  assert.deepEqual(client.getSnapshot().topics.status, { up: true });
  client.close();
});

test('close() leaves no timers and no open stream', T, async () => {
  // timers that really wait: the 45 s watchdog must not fire during the test
  const { edge, timers, client } = setup({ idleTimeoutMs: 45000 }, undefined, recordingTimers({ cap: 60000 }));
  const s = edge.stream();
  connected(s, { id: 'aa-1' });
  await waitFor(() => client.getSnapshot().status.state === 'live');
  assert.equal(timers.pending.size, 1, 'the watchdog');
  client.close();
  await settle();
  assert.equal(timers.pending.size, 0);
  assert.ok(s.closed);
  assert.equal(edge.streamRequests().length, 1);
});

test('close() during a backoff wait cancels it', T, async () => {
  const edge = fakeEdge();
  const timers = recordingTimers({ cap: 10000 });
  const client = track(createTidings(testOptions(edge, timers, { auth: null, topics: ['p'] })));
  edge.answer(() => edgeError(503, 'full', { 'retry-after': '1' }));
  await waitFor(() => client.getSnapshot().status.state === 'reconnecting');
  assert.equal(timers.pending.size, 1);
  client.close();
  assert.equal(timers.pending.size, 0);
  await settle(20);
  assert.equal(edge.streamRequests().length, 1);
});

test('member comes from connected (null when anonymous)', T, async () => {
  const { edge, client } = setup({ auth: null, topics: ['p'] });
  const s = edge.stream();
  connected(s, { id: 'aa-1', member: null });
  await waitFor(() => client.getSnapshot().status.state === 'live');
  assert.equal(client.getSnapshot().member, null);
  client.close();
});

test('an unread count of 0 from the stream marks the held items read (mark-all-read elsewhere)', T, async () => {
  const { edge, client } = setup();
  const s = edge.stream();
  await edge.nthStream(1);
  connected(s, { id: 'aa-1' });
  s.event('notification', note('n1'), 'aa-2');
  s.event('notification', note('n2'), 'aa-3');
  s.event('unread', { unreadCount: 2 });
  await waitFor(() => client.getSnapshot().unreadCount === 2);
  assert.ok(client.getSnapshot().notifications.every((n) => n.readAt === null));
  s.event('unread', { unreadCount: 0 });
  await waitFor(() => client.getSnapshot().unreadCount === 0);
  assert.ok(client.getSnapshot().notifications.every((n) => typeof n.readAt === 'string'));
});
