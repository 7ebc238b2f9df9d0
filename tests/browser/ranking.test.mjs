// 2. The ranking board: `ranking` is a public topic in `latest` mode. An anonymous page
//    shows the newest value published before it loaded (only that one) and updates live.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { startCluster } from './cluster.mjs';
import { launchBrowser, openClient, scenario, waitConnected } from './helpers.mjs';

let cluster;
let browser;

before(async () => {
  cluster = await startCluster({ name: 'ranking' });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await cluster?.stop();
});

const board = (round) => ({
  title: 'Top players',
  round,
  entries: [
    { name: 'alice', score: 100 + round },
    { name: 'bob', score: 90 + round },
    { name: 'carol', score: 80 - round },
  ],
});

const rankingEvents = (page) => page.evaluate(() => window.log.filter((e) => e.type === 'topic:ranking').map((e) => e.data.data));

test('an anonymous page shows the latest ranking published before it loaded and updates live', { timeout: 90_000 }, async () => {
  const context = await browser.newContext();
  let page;
  await scenario('ranking-board', { cluster, pages: () => [page] }, async () => {
    // Two boards before the page exists: `latest` sends only the newest on connect.
    await cluster.publish('ranking', board(1));
    await cluster.publish('ranking', board(2));

    page = await openClient(context, cluster, { auth: null, topics: ['ranking'] });
    const connected = await waitConnected(page);
    assert.equal(connected.memberId, null, 'an anonymous stream has no member');
    await page.waitForFunction(() => window.log.some((e) => e.type === 'topic:ranking'), null, { timeout: 15_000 });
    assert.deepEqual(await rankingEvents(page), [board(2)], 'only the newest board, once');
    assert.match(await page.locator('#ranking').textContent(), /"round": 2/);

    // Live updates.
    await cluster.publish('ranking', board(3));
    await page.waitForFunction(() => /"round": 3/.test(document.getElementById('ranking').textContent), null, { timeout: 15_000 });
    await cluster.publish('ranking', board(4));
    await page.waitForFunction(() => /"round": 4/.test(document.getElementById('ranking').textContent), null, { timeout: 15_000 });
    assert.deepEqual(await rankingEvents(page), [board(2), board(3), board(4)]);
    assert.equal((await page.evaluate(() => window.snapshot())).topics.ranking.round, 4);

    // The anonymous client has no inbox, and asking for one is refused by the client.
    const inbox = await page.evaluate(() => window.client.inbox.list().then(() => 'listed', (e) => e.code));
    assert.equal(inbox, 'unauthenticated');
    assert.equal(await page.evaluate(() => window.log.filter((e) => e.type === 'notification').length), 0);
  });
  await context.close();
});
