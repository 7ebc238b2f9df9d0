// Shared by the *.test.mjs files: the browser, screenshots, and the checks on what a
// page received.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';

import { ARTIFACTS, sleep } from './cluster.mjs';

export const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';

export async function launchBrowser() {
  return chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
}

/** A file name from a test name. */
export function slug(name) {
  return name.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '');
}

/** Saves a screenshot of `page` to target/browser-artifacts/<name>.png. */
export async function screenshot(page, name, options = {}) {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  const file = path.join(ARTIFACTS, `${slug(name)}.png`);
  try {
    await page.screenshot({ path: file, fullPage: true, timeout: 10_000, ...options });
  } catch (error) {
    console.error(`# screenshot ${file} failed: ${error.message}`);
  }
  return file;
}

/**
 * Runs one scenario: on failure prints the cluster's log tails and the pages' event
 * logs; always saves a screenshot of `pages()[0]` as the test's final state.
 */
export async function scenario(name, { cluster, pages = () => [] }, fn) {
  try {
    await fn();
  } catch (error) {
    console.error(`\n# ${name} failed: ${error.stack ?? error}`);
    for (const [i, page] of pages().entries()) {
      if (!page || page.isClosed()) continue;
      const log = await page.evaluate(() => window.log ?? null).catch(() => null);
      console.error(`# page ${i} event log (${log?.length ?? 0} events; runs of notifications condensed):`);
      for (const line of condense(log ?? [])) console.error(`#   ${line}`);
    }
    if (cluster) console.error(cluster.logs());
    throw error;
  } finally {
    const open = pages().filter((p) => p && !p.isClosed());
    if (open[0]) await screenshot(open[0], name);
    // The pages' event logs, for the record.
    const logs = [];
    for (const page of open) logs.push(await page.evaluate(() => window.log ?? null).catch(() => null));
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    fs.writeFileSync(path.join(ARTIFACTS, `${slug(name)}.events.json`), JSON.stringify(logs, null, 1));
  }
}

/** Log lines, with each run of consecutive notification events as one line. */
export function condense(log) {
  const lines = [];
  const time = (e) => new Date(e.t).toISOString().slice(11, 23);
  for (let i = 0; i < log.length; i += 1) {
    const e = log[i];
    if (e.type === 'notification') {
      let j = i;
      while (j + 1 < log.length && ['notification', 'unread'].includes(log[j + 1].type)) j += 1;
      const run = log.slice(i, j + 1).filter((x) => x.type === 'notification');
      const first = run[0].data;
      const last = run.at(-1).data;
      lines.push(run.length === 1
        ? `${time(e)} notification ${first.content} (${first.eventId})`
        : `${time(e)}..${time(log[j])} ${run.length} notifications: ${first.content} (${first.eventId}) .. ${last.content} (${last.eventId})`);
      i = j;
    } else if (e.type !== 'unread') {
      lines.push(`${time(e)} ${e.type} ${JSON.stringify(e.data)}`);
    }
  }
  return lines;
}

/** Opens the test page and starts a client with `options` (see page/harness.js). */
export async function openClient(context, cluster, options, { before } = {}) {
  const page = await context.newPage();
  page.on('pageerror', (error) => console.error(`# page error: ${error.message}`));
  page.on('console', (msg) => {
    if (msg.type() === 'error' || msg.type() === 'warning') console.error(`# console.${msg.type()}: ${msg.text()}`);
  });
  if (before) await before(page);
  await page.goto(cluster.pageUrl(), { timeout: 15_000 });
  await page.waitForFunction(() => window.harnessReady === true, null, { timeout: 10_000 });
  await page.evaluate((o) => window.startClient(o), options);
  return page;
}

/** Waits for the first `connected` event after index `from` of the page's log; returns its data. */
export async function waitConnected(page, { from = 0, timeout = 30_000 } = {}) {
  const handle = await page.waitForFunction(
    (from) => window.log.slice(from).find((e) => e.type === 'connected')?.data ?? null,
    from,
    { timeout, polling: 50 },
  );
  return handle.jsonValue();
}

export async function logLength(page) {
  return page.evaluate(() => window.log.length);
}

/** Ids of the `notification` events the page received, in order. */
export async function receivedIds(page) {
  return page.evaluate(() => window.log.filter((e) => e.type === 'notification').map((e) => e.data.id));
}

/** Waits until the page has received every id in `ids` (as notification events). */
export async function waitReceived(page, ids, timeout = 30_000) {
  await page.waitForFunction(
    (ids) => {
      const got = new Set(window.log.filter((e) => e.type === 'notification').map((e) => e.data.id));
      return ids.every((id) => got.has(id));
    },
    ids,
    { timeout, polling: 100 },
  );
}

/** Waits until the page's rendered list holds every id in `ids`. */
export async function waitRendered(page, ids, timeout = 30_000) {
  await page.waitForFunction(
    (ids) => {
      const shown = new Set([...document.querySelectorAll('#notifications li')].map((li) => li.dataset.id));
      return ids.every((id) => shown.has(id));
    },
    ids,
    { timeout, polling: 100 },
  );
}

/** The ids rendered in the page's list, top (newest) first. */
export async function renderedIds(page) {
  return page.evaluate(() => [...document.querySelectorAll('#notifications li')].map((li) => li.dataset.id));
}

/**
 * The page received exactly `sent` (ids, in send order) as notification events: each
 * once, in order, nothing else; and it renders each once, newest first.
 */
export async function assertExactlyOnceInOrder(page, sent, label = 'page', { cap = 100 } = {}) {
  const got = await receivedIds(page);
  const dupes = got.filter((id, i) => got.indexOf(id) !== i);
  assert.deepEqual(dupes, [], `${label}: notifications delivered more than once`);
  const missing = sent.filter((id) => !got.includes(id));
  assert.deepEqual(missing, [], `${label}: notifications never delivered`);
  assert.deepEqual(got, sent, `${label}: notification events, in order`);
  const shown = await renderedIds(page);
  assert.deepEqual(shown.filter((id, i) => shown.indexOf(id) !== i), [], `${label}: rendered twice`);
  // The client keeps the newest pageSize × 5 (default 100) in its list.
  assert.deepEqual(shown.filter((id) => sent.includes(id)), [...sent].reverse().slice(0, cap), `${label}: rendered list, newest first`);
}

/**
 * Sends notifications to `member` one after another, `intervalMs` apart, until `stop()`
 * has been called and at least `min` were sent (at most `max`). Returns the controller:
 * `{ sent, stop(), done }` — `done` resolves to the sent ids, in order.
 */
export function sender(cluster, member, { intervalMs = 100, min = 30, max = 1000, prefix = 'n' } = {}) {
  const sent = [];
  let stopped = false;
  const done = (async () => {
    for (let n = 1; n <= max && (!stopped || sent.length < min); n += 1) {
      const { id } = await cluster.send(member, `${prefix} ${n}`);
      sent.push(id);
      await sleep(intervalMs);
    }
    return sent.slice();
  })();
  return { sent, stop: () => { stopped = true; }, done };
}

/** The member's inbox over REST through nginx, newest first (ids). */
export async function inboxIds(page, limit = 50) {
  return page.evaluate(async (limit) => {
    const ids = [];
    let cursor = '';
    for (let pages = 0; pages < 100; pages += 1) {
      const { notifications, nextCursor } = await window.client.inbox.list({ cursor, limit });
      ids.push(...notifications.map((n) => n.id));
      if (!nextCursor || notifications.length === 0) break;
      cursor = nextCursor;
    }
    return ids;
  }, limit);
}
