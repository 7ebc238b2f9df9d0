// 5. Reset: the edges replay at most 5 events (TIDINGS_REPLAY_LIMIT=5). The page is cut
//    off (both edges stopped) while more than that are sent; when the edges are back, the
//    page gets `reset`, reloads its inbox over REST and shows all of them.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { startCluster } from './cluster.mjs';
import { launchBrowser, logLength, openClient, scenario, waitConnected, waitReceived, waitRendered } from './helpers.mjs';

let cluster;
let browser;

before(async () => {
  cluster = await startCluster({ name: 'reset', edgeEnv: { TIDINGS_REPLAY_LIMIT: '5' } });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await cluster?.stop();
});

test('reset: a gap beyond the replay limit resets the page, which reloads its inbox and shows everything', { timeout: 120_000 }, async () => {
  const member = 'reset-member';
  const context = await browser.newContext();
  let page;
  await scenario('reset', { cluster, pages: () => [page] }, async () => {
    await context.addCookies([{ name: 'tidings_token', value: await cluster.token(member, '1h'), url: cluster.nginxUrl }]);
    page = await openClient(context, cluster, { auth: 'cookie' });
    await waitConnected(page);
    const before = [];
    for (const n of [1, 2]) before.push((await cluster.send(member, `before ${n}`)).id);
    await waitReceived(page, before, 15_000);

    // Cut the page off: both edges down (the api still takes Sends).
    const mark = await logLength(page);
    await Promise.all([cluster.stopEdge(0, 'SIGKILL'), cluster.stopEdge(1, 'SIGKILL')]);
    await page.waitForFunction((from) => window.log.slice(from).some((e) => e.type === 'status' && e.data.state === 'reconnecting'), mark, { timeout: 15_000 });
    const missed = [];
    for (let n = 1; n <= 8; n += 1) missed.push((await cluster.send(member, `while offline ${n}`)).id);
    await Promise.all([cluster.startEdge(0), cluster.startEdge(1)]);

    // Back: more than the replay limit was missed, so the edge sends `reset`.
    await waitConnected(page, { from: mark, timeout: 60_000 });
    await page.waitForFunction((from) => window.log.slice(from).some((e) => e.type === 'reset'), mark, { timeout: 30_000 });
    const all = [...before, ...missed];
    await waitRendered(page, all, 15_000);
    const shown = await page.evaluate(() => [...document.querySelectorAll('#notifications li')].map((li) => li.dataset.id));
    assert.deepEqual(shown, [...all].reverse(), 'every notification shown once, newest first');
    await page.waitForFunction((n) => document.getElementById('badge').textContent === String(n), all.length, { timeout: 15_000 });

    // Live events continue after the reset.
    const after = await cluster.send(member, 'after the reset');
    await waitRendered(page, [after.id], 15_000);
    await page.waitForFunction((n) => document.getElementById('badge').textContent === String(n), all.length + 1, { timeout: 15_000 });
    const resets = await page.evaluate(() => window.log.filter((e) => e.type === 'reset').map((e) => e.data));
    assert.equal(resets.length, 1, `one reset: ${JSON.stringify(resets)}`);
    let counted = 0;
    for (const i of [0, 1]) counted += await cluster.edgeMetric(i, 'tidings_edge_resets_total');
    assert.equal(counted, 1, 'the edges counted one reset');
  });
  await context.close();
});
