import { afterEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { createTidings } from '../tidings.js';
import {
  connected, fakeBroadcastChannel, fakeEdge, fakeLocks, json, jwt, recordingTimers, settle, testOptions, waitFor,
} from './helpers.mjs';

const T = { timeout: 5000 };

/** Every tab a test opens, closed after it even when it fails. */
const allTabs = [];
afterEach(() => allTabs.splice(0).forEach((c) => c.close()));

const note = (id, createdAt = '2026-01-01T00:00:00Z') => ({ id, type: 't', content: id, data: null, groupId: null, createdAt });

/** A browser with shared locks and channels; `tab()` opens a client in a new "tab". */
function browser(edgeOpts) {
  const edge = fakeEdge(edgeOpts);
  const locks = fakeLocks();
  const BroadcastChannel = fakeBroadcastChannel();
  const tabs = [];
  const tab = (extra = {}) => {
    const client = createTidings(testOptions(edge, recordingTimers(), {
      auth: { getToken: async () => jwt('alice') },
      topics: ['scores'],
      shareAcrossTabs: true,
      locks,
      BroadcastChannel,
      ...extra,
    }));
    tabs.push(client);
    allTabs.push(client);
    return client;
  };
  const closeAll = () => tabs.forEach((c) => c.close());
  return { edge, locks, BroadcastChannel, tab, closeAll };
}

/** Records what a client's listeners see. */
function record(client) {
  const seen = [];
  client.on('notification', (n) => seen.push(['notification', n.id]));
  client.on('unread', (c) => seen.push(['unread', c]));
  client.on('connected', (i) => seen.push(['connected', i.memberId]));
  client.on('scores', (d, m) => seen.push(['scores', d, m.id]));
  client.on('status', (s) => seen.push(['status', s.state]));
  return seen;
}

test('one tab leads and holds the stream; followers mirror its events and status', T, async () => {
  const b = browser();
  const s = b.edge.stream();
  const a = b.tab();
  await waitFor(() => a.getSnapshot().leader);
  const f = b.tab();
  const seenA = record(a);
  const seenF = record(f);
  await settle(10);
  assert.equal(f.getSnapshot().leader, false);
  assert.ok(b.locks.held.has('tidings:https://edge.test:alice:scores'));

  connected(s, { id: 'aa-1' });
  s.event('notification', note('n1'), 'aa-2');
  s.event('unread', { unreadCount: 1 });
  s.event('scores', { alice: 10 }, 'aa-3');
  await waitFor(() => seenF.length === 5);
  assert.deepEqual(seenF, seenA);
  assert.deepEqual(seenF, [
    ['connected', 'alice'],
    ['status', 'live'],
    ['notification', 'n1'],
    ['unread', 1],
    ['scores', { alice: 10 }, 'aa-3'],
  ]);
  const sf = f.getSnapshot();
  assert.equal(sf.unreadCount, 1);
  assert.deepEqual(sf.topics, { scores: { alice: 10 } });
  assert.equal(sf.lastEventId, 'aa-3');
  assert.equal(sf.member, 'alice');
  assert.deepEqual(sf.status, { state: 'live' });
  assert.deepEqual(sf.notifications.map((n) => n.id), ['n1']);
  assert.equal(b.edge.streamRequests().length, 1, 'only the leader connects');
  b.closeAll();
});

test('a new follower asks the leader for its snapshot (hello)', T, async () => {
  const b = browser();
  const s = b.edge.stream();
  const a = b.tab();
  connected(s, { id: 'aa-1' });
  s.event('scores', { bob: 2 }, 'aa-7');
  await waitFor(() => a.getSnapshot().lastEventId === 'aa-7');
  const f = b.tab();
  await waitFor(() => f.getSnapshot().lastEventId === 'aa-7');
  const sf = f.getSnapshot();
  assert.deepEqual(sf.topics, { scores: { bob: 2 } });
  assert.equal(sf.member, 'alice');
  assert.deepEqual(sf.status, { state: 'live' });
  assert.equal(sf.leader, false);
  const hello = b.BroadcastChannel.log.find((m) => m.message.kind === 'hello');
  assert.ok(hello);
  b.closeAll();
});

test('when the leader closes, a follower takes the lock and resumes from the last id', T, async () => {
  const b = browser();
  const s1 = b.edge.stream();
  const a = b.tab();
  await waitFor(() => a.getSnapshot().leader);
  const f = b.tab();
  const seen = record(f);
  await settle(10);
  connected(s1, { id: 'aa-1' });
  s1.event('scores', 1, 'aa-2');
  s1.event('scores', 2, 'aa-3');
  await waitFor(() => f.getSnapshot().lastEventId === 'aa-3');

  const s2 = b.edge.stream();
  a.close();
  const r2 = await b.edge.nthStream(2);
  await waitFor(() => f.getSnapshot().leader);
  assert.equal(r2.headers.get('last-event-id'), 'aa-3');
  assert.equal(r2.headers.get('authorization'), `Bearer ${jwt('alice')}`);
  connected(s2, { id: 'aa-3', resumed: true });
  s2.event('scores', 2, 'aa-3'); // a duplicate the edge should not send: dropped anyway
  s2.event('scores', 3, 'aa-4');
  s2.event('resumed', { missed: 1 });
  await waitFor(() => f.getSnapshot().status.state === 'resumed');
  const scores = seen.filter((e) => e[0] === 'scores').map((e) => e[1]);
  assert.deepEqual(scores, [1, 2, 3]);
  assert.equal(f.getSnapshot().lastEventId, 'aa-4');
  assert.equal(b.locks.held.size, 1);
  b.closeAll();
  await settle();
  assert.equal(b.locks.held.size, 0);
});

test('a third tab follows the new leader after a takeover', T, async () => {
  const b = browser();
  const s1 = b.edge.stream();
  const a = b.tab();
  await waitFor(() => a.getSnapshot().leader);
  const f1 = b.tab();
  await settle(5);
  const f2 = b.tab();
  await settle(5);
  connected(s1, { id: 'aa-1' });
  await waitFor(() => f2.getSnapshot().status.state === 'live');
  const s2 = b.edge.stream();
  a.close();
  await b.edge.nthStream(2);
  connected(s2, { id: 'aa-1', resumed: true });
  s2.event('scores', 'x', 'aa-2');
  await waitFor(() => f2.getSnapshot().topics.scores === 'x');
  assert.equal(f1.getSnapshot().leader, true);
  assert.equal(f2.getSnapshot().leader, false);
  assert.equal(b.edge.streamRequests().length, 2);
  b.closeAll();
});

test('followers load their own inbox and markRead changes only their store', T, async () => {
  let unread = 2;
  const b = browser({
    rest: (r) => {
      if (r.path === '/v1/notifications/read') return json({ unreadCount: (unread = 1) });
      if (r.path.endsWith('unread-count')) return json({ unreadCount: unread });
      return json({ notifications: [note('x', '2026-01-02T00:00:00Z'), note('y')], nextCursor: '' });
    },
  });
  b.edge.stream();
  const a = b.tab();
  await waitFor(() => a.getSnapshot().leader);
  const f = b.tab();
  await waitFor(() => f.getSnapshot().notifications.length === 2 && a.getSnapshot().notifications.length === 2);
  assert.equal(b.edge.restRequests().filter((r) => r.path === '/v1/notifications').length, 2);
  await f.inbox.markRead(['x']);
  assert.ok(f.getSnapshot().notifications.find((n) => n.id === 'x').readAt);
  assert.equal(f.getSnapshot().unreadCount, 1);
  assert.equal(a.getSnapshot().notifications.find((n) => n.id === 'x').readAt, null);
  b.closeAll();
});

test('a reset on the leader makes every tab reload its inbox', T, async () => {
  let page = [note('old')];
  const b = browser({
    rest: (r) => (r.path.endsWith('unread-count') ? json({ unreadCount: 0 }) : json({ notifications: page, nextCursor: '' })),
  });
  const s = b.edge.stream();
  const a = b.tab();
  await waitFor(() => a.getSnapshot().leader);
  const f = b.tab();
  await waitFor(() => f.getSnapshot().notifications.length === 1);
  const resets = [];
  f.on('reset', (r) => resets.push(r));
  page = [note('fresh')];
  connected(s, { id: 'aa-1' });
  s.event('reset', { reason: 'other_incarnation', action: 'reload' }, 'bb-5');
  await waitFor(() => resets.length === 1);
  assert.deepEqual(f.getSnapshot().notifications.map((n) => n.id), ['fresh']);
  assert.equal(f.getSnapshot().lastEventId, 'bb-5');
  b.closeAll();
});

test('tabs of other members or topics do not share a lock', T, async () => {
  const b = browser();
  const a = b.tab();
  const c = b.tab({ auth: { getToken: async () => jwt('carol') } });
  const d = b.tab({ topics: ['other'] });
  await waitFor(() => a.getSnapshot().leader && c.getSnapshot().leader && d.getSnapshot().leader);
  assert.deepEqual([...b.locks.held.keys()].sort(), [
    'tidings:https://edge.test:alice:other',
    'tidings:https://edge.test:alice:scores',
    'tidings:https://edge.test:carol:scores',
  ]);
  b.closeAll();
});

test('closing a follower gives up its place in the lock queue', T, async () => {
  const b = browser();
  const a = b.tab();
  await waitFor(() => a.getSnapshot().leader);
  const f = b.tab();
  await settle(5);
  f.close();
  assert.deepEqual(f.getSnapshot().status, { state: 'closed', reason: 'closed' });
  const s2 = b.edge.stream();
  const g = b.tab();
  await settle(5);
  a.close();
  await waitFor(() => g.getSnapshot().leader);
  assert.equal(f.getSnapshot().leader, false);
  void s2;
  b.closeAll();
});
