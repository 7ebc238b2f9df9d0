// Member affinity: the client remembers the routing key the edge gives in `connected`
// and sends it back as `?affinity=` on every later connect, in every auth mode, so a
// load balancer hashing on it routes the member to the edge holding its partition.
import { afterEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { createTidings } from '../tidings.js';
import {
  connected, fakeBroadcastChannel, fakeEdge, fakeLocks, jwt, recordingTimers, settle, testOptions, waitFor,
} from './helpers.mjs';

const T = { timeout: 5000 };

const clients = [];
afterEach(() => clients.splice(0).forEach((c) => c.close()));

function setup(extra) {
  const edge = fakeEdge();
  const client = createTidings(testOptions(edge, recordingTimers(), extra));
  clients.push(client);
  return { edge, client };
}

/** The `affinity` query parameter of the n-th (1-based) stream request. */
async function affinityOf(edge, n) {
  return (await edge.nthStream(n)).url.searchParams.get('affinity');
}

const modes = {
  'token in the header': { auth: { getToken: async () => 'tok' } },
  'token in the query': { auth: { getToken: async () => 'tok', via: 'query' } },
  cookie: { auth: { cookie: true } },
  ticket: { auth: { getTicket: async () => 'ticket', getToken: async () => 'tok' } },
};

for (const [mode, options] of Object.entries(modes)) {
  test(`${mode}: the key from connected goes into every later stream URL`, T, async () => {
    const { edge, client } = setup(options);
    const infos = [];
    client.on('connected', (info) => infos.push(info));
    const s1 = edge.stream();
    const s2 = edge.stream();
    const s3 = edge.stream();
    assert.equal(await affinityOf(edge, 1), null, 'a first connect has no key');
    connected(s1, { id: 'aa-1', retry: 5, affinity: '517' });
    s1.end();
    assert.equal(await affinityOf(edge, 2), '517');
    // The credential is still the mode's own: the key is only a routing hint.
    const r2 = edge.streamRequests()[1];
    if (mode === 'ticket') assert.equal(r2.url.searchParams.get('ticket'), 'ticket');
    if (mode === 'token in the query') assert.equal(r2.url.searchParams.get('access_token'), 'tok');
    if (mode === 'token in the header') assert.equal(r2.headers.get('authorization'), 'Bearer tok');
    // A new key (the stream's partitions changed) replaces the old one.
    connected(s2, { id: 'aa-1', retry: 5, affinity: '12' });
    s2.end();
    assert.equal(await affinityOf(edge, 3), '12');
    assert.deepEqual(infos.map((i) => i.affinity), ['517', '12'], 'listeners see the key too');
    s3.end();
  });
}

test('an anonymous client sends no key, and a connected without one clears it', T, async () => {
  const { edge } = setup({ auth: null, topics: ['ranking'] });
  const s1 = edge.stream();
  edge.stream();
  connected(s1, { id: 'aa-1', retry: 5, member: null, affinity: '3' });
  s1.end();
  assert.equal(await affinityOf(edge, 2), null, 'no member, no routing by member');

  const b = setup({ auth: { getToken: async () => 'tok' } });
  const t1 = b.edge.stream();
  const t2 = b.edge.stream();
  b.edge.stream();
  connected(t1, { id: 'aa-1', retry: 5, affinity: '7' });
  t1.end();
  assert.equal(await affinityOf(b.edge, 2), '7');
  connected(t2, { id: 'aa-1', retry: 5 });
  t2.end();
  assert.equal(await affinityOf(b.edge, 3), null);
});

test('a tab that takes the shared stream over connects with the leader\'s key', T, async () => {
  const edge = fakeEdge();
  const locks = fakeLocks();
  const BroadcastChannel = fakeBroadcastChannel();
  const tab = () => {
    const client = createTidings(testOptions(edge, recordingTimers(), {
      auth: { getToken: async () => jwt('alice') }, shareAcrossTabs: true, locks, BroadcastChannel,
    }));
    clients.push(client);
    return client;
  };
  const s1 = edge.stream();
  const leader = tab();
  await waitFor(() => leader.getSnapshot().leader);
  connected(s1, { id: 'aa-1', affinity: '44' });
  await waitFor(() => leader.getSnapshot().status.state === 'live');
  // This tab opens after `connected`: it learns the key from the leader's snapshot.
  const follower = tab();
  await waitFor(() => follower.getSnapshot().status.state === 'live');
  await settle(10);
  edge.stream();
  leader.close();
  await waitFor(() => follower.getSnapshot().leader);
  assert.equal(await affinityOf(edge, 2), '44');
});
