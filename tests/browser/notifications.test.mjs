// 1. A notification sent over gRPC (`tidings send`) appears in the page and the badge
//    updates; marking it read in one tab updates the badge in another tab.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { startCluster } from './cluster.mjs';
import { launchBrowser, openClient, receivedIds, scenario, waitConnected, waitRendered } from './helpers.mjs';

let cluster;
let browser;

before(async () => {
  cluster = await startCluster({ name: 'notifications' });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await cluster?.stop();
});

const badge = (page) => page.evaluate(() => document.getElementById('badge').textContent);

test('a notification sent over gRPC appears with its badge; mark-read in one tab updates the other', { timeout: 120_000 }, async () => {
  const context = await browser.newContext();
  let a;
  let b;
  await scenario('notifications-two-tabs', { cluster, pages: () => [a, b] }, async () => {
    const member = 'alice';
    await context.addCookies([{ name: 'tidings_token', value: await cluster.token(member, '1h'), url: cluster.nginxUrl }]);
    a = await openClient(context, cluster, { auth: 'cookie' });
    b = await openClient(context, cluster, { auth: 'cookie' });
    const [ca, cb] = await Promise.all([waitConnected(a), waitConnected(b)]);
    assert.equal(ca.memberId, member);
    assert.equal(cb.memberId, member);

    const first = await cluster.send(member, 'Bob commented on your post');
    for (const page of [a, b]) {
      await waitRendered(page, [first.id], 15_000);
      await page.waitForFunction(() => document.getElementById('badge').textContent === '1', null, { timeout: 15_000 });
      assert.equal(await page.locator(`#notifications li[data-id="${first.id}"]`).textContent(), 'Bob commented on your post');
    }

    const second = await cluster.send(member, 'Carol liked your photo');
    for (const page of [a, b]) {
      await waitRendered(page, [second.id], 15_000);
      await page.waitForFunction(() => document.getElementById('badge').textContent === '2', null, { timeout: 15_000 });
      assert.deepEqual(await receivedIds(page), [first.id, second.id]);
    }

    // Tab A marks the first read: the edge's `unread` event reaches tab B too.
    const count = await a.evaluate((id) => window.client.inbox.markRead([id]), first.id);
    assert.equal(count, 1);
    await b.waitForFunction(() => document.getElementById('badge').textContent === '1', null, { timeout: 15_000 });
    assert.equal(await badge(a), '1');
    // Tab A knows which one it marked; tab B learns the count (and sees the item read after a reload of its inbox).
    assert.equal(await a.locator(`#notifications li[data-id="${first.id}"]`).getAttribute('class'), 'read');

    // Mark all read in tab B: tab A's badge goes to 0.
    await b.evaluate(() => window.client.inbox.markAllRead());
    await a.waitForFunction(() => document.getElementById('badge').textContent === '0', null, { timeout: 15_000 });
    assert.equal(await badge(b), '0');
    await a.bringToFront();
  });
  await context.close();
});
