// 6. Two tabs with shareAcrossTabs: the edges hold ONE stream for the member and both
//    tabs update. Closing the leader tab hands the stream to the other tab (a new
//    stream), and notifications sent around the hand-over appear exactly once, in order.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { eventually, sleep, startCluster } from './cluster.mjs';
import {
  assertExactlyOnceInOrder, launchBrowser, openClient, scenario, sender, waitConnected, waitReceived,
} from './helpers.mjs';

let cluster;
let browser;

before(async () => {
  cluster = await startCluster({ name: 'shared-tabs' });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await cluster?.stop();
});

const sum = (counts) => counts.reduce((a, b) => a + b, 0);

test('shared tabs: one stream for two tabs; closing the leader hands over with nothing lost or repeated', { timeout: 120_000 }, async () => {
  const member = 'shared-member';
  const context = await browser.newContext();
  let a;
  let b;
  await scenario('shared-tabs', { cluster, pages: () => [b, a] }, async () => {
    await context.addCookies([{ name: 'tidings_token', value: await cluster.token(member, '1h'), url: cluster.nginxUrl }]);
    a = await openClient(context, cluster, { auth: 'cookie', shareAcrossTabs: true });
    await waitConnected(a);
    b = await openClient(context, cluster, { auth: 'cookie', shareAcrossTabs: true });
    const leaders = async () => [await a.evaluate(() => window.snapshot().leader), await b.evaluate(() => window.snapshot().leader)];
    assert.deepEqual(await leaders(), [true, false], 'the first tab leads');

    // One stream on the edges for both tabs, and it stays one.
    await eventually('one open stream', async () => sum(await cluster.openStreams()) === 1, { timeoutMs: 10_000 });
    await sleep(1000);
    assert.deepEqual(sum(await cluster.openStreams()), 1, `open streams per edge: ${await cluster.openStreams()}`);

    const first = [];
    for (const n of [1, 2, 3]) first.push((await cluster.send(member, `shared ${n}`)).id);
    await waitReceived(a, first, 15_000);
    await waitReceived(b, first, 15_000);
    for (const page of [a, b]) await page.waitForFunction(() => document.getElementById('badge').textContent === '3', null, { timeout: 15_000 });
    const opened = (await cluster.edgeMetric(0, 'tidings_edge_connections_opened_total')) + (await cluster.edgeMetric(1, 'tidings_edge_connections_opened_total'));
    assert.equal(opened, 1, 'only the leader ever opened a stream');

    // Hand-over: send continuously while the leader tab closes.
    const s = sender(cluster, member, { intervalMs: 100, min: 20, prefix: 'handover #' });
    let closedAt;
    try {
      await eventually('5 sent', () => s.sent.length >= 5, { timeoutMs: 20_000 });
      const mark = await b.evaluate(() => window.log.length);
      await a.close();
      closedAt = s.sent.length;
      const connected = await waitConnected(b, { from: mark, timeout: 30_000 });
      assert.equal(connected.resumed, true, 'the new leader resumes from the last event it saw');
      assert.equal(await b.evaluate(() => window.snapshot().leader), true, 'the second tab leads now');
      const count = s.sent.length;
      await eventually('more sent after the hand-over', () => s.sent.length >= count + 5, { timeoutMs: 20_000 });
    } finally {
      s.stop();
    }
    const sent = [...first, ...(await s.done)];
    await waitReceived(b, sent, 30_000);
    await assertExactlyOnceInOrder(b, sent, 'the remaining tab');
    await b.waitForFunction((n) => document.getElementById('badge').textContent === String(n), sent.length, { timeout: 15_000 });
    await eventually('one open stream after the hand-over', async () => sum(await cluster.openStreams()) === 1, { timeoutMs: 15_000 });
    const reopened = (await cluster.edgeMetric(0, 'tidings_edge_connections_opened_total')) + (await cluster.edgeMetric(1, 'tidings_edge_connections_opened_total'));
    assert.equal(reopened, 2, 'the new leader opened one new stream');
    console.error(`# shared tabs: ${sent.length} notifications; leader closed after ${closedAt + first.length}`);
  });
  await context.close();
});
