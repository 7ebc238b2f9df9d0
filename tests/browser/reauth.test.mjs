// 4. Reauth: tokens live 15 s and the edges announce `reauth` 10 s before expiry, so the
//    page's getToken is asked for a fresh token every ~5 s and the stream reconnects with
//    it. Notifications sent across those token changes arrive once each, in order, and
//    the status comes back to live.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { eventually, startCluster } from './cluster.mjs';
import {
  assertExactlyOnceInOrder, launchBrowser, openClient, scenario, sender, waitConnected, waitReceived,
} from './helpers.mjs';

let cluster;
let browser;

before(async () => {
  cluster = await startCluster({ name: 'reauth', edgeEnv: { TIDINGS_REAUTH_BEFORE: '10s' } });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await cluster?.stop();
});

test('reauth: short-lived tokens are refreshed through getToken; nothing lost or repeated', { timeout: 120_000 }, async () => {
  const member = 'reauth-member';
  const context = await browser.newContext();
  let page;
  const minted = [];
  await scenario('reauth', { cluster, pages: () => [page] }, async () => {
    page = await openClient(context, cluster, { auth: 'token' }, {
      before: (p) => p.exposeFunction('mintToken', async () => {
        const token = await cluster.token(member, '15s');
        minted.push(Date.now());
        return token;
      }),
    });
    await waitConnected(page);

    // ~16 s of notifications: at least two reauth cycles (one every ~5 s).
    const s = sender(cluster, member, { intervalMs: 250, min: 12, prefix: 'reauth #' });
    try {
      await page.waitForFunction(
        () => window.log.filter((e) => e.type === 'connected').length >= 4,
        null,
        { timeout: 40_000, polling: 100 },
      );
      const count = s.sent.length;
      await eventually('more notifications sent', () => s.sent.length >= count + 4, { timeoutMs: 20_000 });
    } finally {
      s.stop();
    }
    const sent = await s.done;
    await waitReceived(page, sent, 30_000);
    await assertExactlyOnceInOrder(page, sent, 'reauth');

    const log = await page.evaluate(() => window.log);
    const connects = log.filter((e) => e.type === 'connected');
    const reauths = log.filter((e) => e.type === 'getToken' && e.data?.reason === 'reauth');
    assert.ok(reauths.length >= 3, `getToken asked for reauth ${reauths.length} times`);
    assert.ok(connects.slice(1).every((c) => c.data.resumed === true), 'every reconnect resumed by Last-Event-ID');
    assert.equal(log.filter((e) => e.type === 'reset').length, 0, 'no reset');
    assert.equal(log.filter((e) => e.type === 'error').length, 0, `no error: ${JSON.stringify(log.filter((e) => e.type === 'error'))}`);
    // The stream was never cut by an expired token: the client always reconnected first.
    let expired = 0;
    for (const i of [0, 1]) expired += await cluster.edgeMetric(i, 'tidings_edge_connections_closed_total', { reason: 'token_expired' });
    assert.equal(expired, 0, 'no stream closed at token expiry');

    await page.waitForFunction(() => ['live', 'resumed'].includes(window.snapshot().status.state), null, { timeout: 15_000 });
    const states = log.filter((e) => e.type === 'status').map((e) => e.data.state);
    assert.ok(!states.includes('closed'), `never closed: ${states.join(',')}`);
    await page.waitForFunction((n) => document.getElementById('badge').textContent === String(n), sent.length, { timeout: 15_000 });
    console.error(`# reauth: ${sent.length} notifications over ${connects.length} streams, ${minted.length} tokens minted`);
  });
  await context.close();
});
