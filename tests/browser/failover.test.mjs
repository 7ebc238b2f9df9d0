// 3. Failover through nginx, for cookie auth and for ticket auth: while notifications are
//    sent continuously, the edge holding the page's stream drains (SIGTERM), is restarted,
//    then the other edge is killed (SIGKILL). The page reconnects by itself and shows
//    every notification exactly once, in order.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { eventually, startCluster } from './cluster.mjs';
import {
  assertExactlyOnceInOrder, inboxIds, launchBrowser, logLength, openClient, scenario, sender,
  waitConnected, waitReceived,
} from './helpers.mjs';

let cluster;
let browser;

before(async () => {
  cluster = await startCluster({ name: 'failover', edgeEnv: { TIDINGS_DRAIN_WINDOW: '2s', TIDINGS_RETRY: '500ms' } });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await cluster?.stop();
});

async function failover(name, member, options, setup, check = async () => {}) {
  const context = await browser.newContext();
  let page;
  await scenario(name, { cluster, pages: () => [page] }, async () => {
    // Both edges up (an earlier scenario may have left one down).
    for (const i of [0, 1]) if (cluster.edges[i].proc.exited) await cluster.startEdge(i);
    await setup(context);
    page = await openClient(context, cluster, options);
    const first = await waitConnected(page);
    assert.equal(first.memberId, member);
    const i = cluster.edgeIndex(first.node);
    const j = 1 - i;

    const timings = [];
    const s = sender(cluster, member, { intervalMs: 100, min: 30, prefix: `${name} #` });
    try {
      await eventually('5 notifications sent', () => s.sent.length >= 5, { timeoutMs: 20_000 });
      await waitReceived(page, s.sent.slice(0, 5), 15_000);

      // Drain the edge holding the stream: the page resumes on the other one.
      let mark = await logLength(page);
      const drained = cluster.signalEdge(i, 'SIGTERM');
      const drainedAt = Date.now();
      const second = await waitConnected(page, { from: mark, timeout: 30_000 });
      timings.push(`drain → reconnected in ${Date.now() - drainedAt} ms`);
      assert.equal(second.node, cluster.edges[j].node, 'resumed on the other edge after the drain');
      const status = await drained;
      assert.equal(status.code, 0, `${cluster.edges[i].node} exits cleanly after draining: ${JSON.stringify(status)}`);
      await cluster.startEdge(i);

      // Some notifications live on the second edge, then kill it outright.
      let count = s.sent.length;
      await eventually('more notifications sent', () => s.sent.length >= count + 3, { timeoutMs: 20_000 });
      await waitReceived(page, s.sent.slice(0, count + 3), 15_000);
      mark = await logLength(page);
      await cluster.stopEdge(j, 'SIGKILL');
      const killedAt = Date.now();
      const third = await waitConnected(page, { from: mark, timeout: 60_000 });
      timings.push(`kill → reconnected in ${Date.now() - killedAt} ms`);
      assert.equal(third.node, cluster.edges[i].node, 'resumed on the restarted edge after the kill');

      count = s.sent.length;
      await eventually('more notifications sent', () => s.sent.length >= count + 3, { timeoutMs: 20_000 });
    } finally {
      s.stop();
    }
    const sent = await s.done;
    assert.ok(sent.length >= 30, `sent ${sent.length}`);
    await waitReceived(page, sent, 30_000);
    await assertExactlyOnceInOrder(page, sent, name);
    await page.waitForFunction((n) => document.getElementById('badge').textContent === String(n), sent.length, { timeout: 15_000 });
    assert.deepEqual(await inboxIds(page), [...sent].reverse(), 'the inbox over REST holds the same, newest first');
    const statuses = await page.evaluate(() => window.log.filter((e) => e.type === 'status').map((e) => e.data.state));
    assert.ok(statuses.includes('reconnecting'), `went through reconnecting: ${statuses.join(',')}`);
    assert.ok(['live', 'resumed'].includes(statuses.at(-1)), `ends live: ${statuses.join(',')}`);
    await check(page);
    console.error(`# ${name}: ${sent.length} notifications, each once and in order, across a drain of ${cluster.edges[i].node} and a kill of ${cluster.edges[j].node}; ${timings.join(', ')}`);
  });
  await context.close();
}

test('failover with cookie auth: drain one edge, kill the other, nothing lost or repeated', { timeout: 180_000 }, async () => {
  const member = 'failover-cookie';
  await failover('failover-cookie', member, { auth: 'cookie' }, async (context) => {
    await context.addCookies([{ name: 'tidings_token', value: await cluster.token(member, '1h'), url: cluster.nginxUrl }]);
  });
});

test('failover with ticket auth: drain one edge, kill the other, nothing lost or repeated', { timeout: 180_000 }, async () => {
  const member = 'failover-ticket';
  const token = await cluster.token(member, '1h');
  await failover('failover-ticket', member, { auth: 'ticket', token }, async () => {}, async (page) => {
    // Every connect traded the token for a fresh single-use ticket.
    const tickets = await page.evaluate(() => window.log.filter((e) => e.type === 'ticket').map((e) => e.data.status));
    const connects = await page.evaluate(() => window.log.filter((e) => e.type === 'connected').length);
    const issued = tickets.filter((status) => status >= 200 && status < 300).length;
    assert.ok(connects >= 3 && issued >= connects, `${issued} tickets issued (answers ${tickets.join(',')}) for ${connects} connects`);
  });
});
