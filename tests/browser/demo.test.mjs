// 7. The demo of `tidings dev` (/demo/): sign in through the page's form, send a
//    notification with its "Send notification" form and see the badge and the item,
//    publish a ranking with its button and see the board. Screenshots: 1280x800 (also to
//    docs/demo.png when UPDATE_SCREENSHOT=1) and a 390x844 phone.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';

import {
  BIN, REPO, databaseUrl, dropDatabase, eventually, freePort, runId, spawnTracked,
} from './cluster.mjs';
import { launchBrowser, scenario, screenshot } from './helpers.mjs';

let dev;
let browser;
let demoUrl;
let database;
let logFile;
let tmp;

before(async () => {
  const id = runId();
  database = `tidings_test_browser_${id}`;
  tmp = fs.mkdtempSync(path.join((await import('node:os')).tmpdir(), 'tidings-browser-demo-'));
  logFile = path.join(tmp, 'dev.log');
  const env = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!k.startsWith('TIDINGS_') && k !== 'DATABASE_URL' && !k.startsWith('OTEL_')) env[k] = v;
  }
  env.NO_COLOR = '1';
  Object.assign(env, {
    DATABASE_URL: databaseUrl(database),
    NATS_URL: process.env.NATS_URL,
    TIDINGS_STREAM: `BROWSER_DEMO_${id.toUpperCase()}`,
    TIDINGS_SUBJECT_PREFIX: `browserdemo${id}`,
    TIDINGS_STREAM_PARTITIONS: '16',
    TIDINGS_API_LISTEN: `127.0.0.1:${await freePort()}`,
    TIDINGS_API_HTTP_LISTEN: `127.0.0.1:${await freePort()}`,
    TIDINGS_EDGE_LISTEN: `127.0.0.1:${await freePort()}`,
    TIDINGS_SHUTDOWN_GRACE: '2s',
    TIDINGS_DRAIN_WINDOW: '1s',
  });
  let stdout = '';
  dev = spawnTracked('dev', BIN, ['dev'], {
    env,
    logFile,
    onStdout: (text) => {
      stdout += text;
    },
  });
  demoUrl = await eventually('`tidings dev` to print its demo URL', () => {
    if (dev.exited) throw new Error(`tidings dev exited ${JSON.stringify(dev.exitStatus)}:\n${fs.readFileSync(logFile, 'utf8').slice(-3000)}`);
    return /Tidings demo: (\S+)/.exec(stdout)?.[1];
  }, { timeoutMs: 60_000 });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await dev?.stop('SIGTERM', 10_000);
  if (database) await dropDatabase(database);
  if (tmp && !process.env.KEEP_LOGS) fs.rmSync(tmp, { recursive: true, force: true });
});

const devLogs = { logs: () => `----- tidings dev log -----\n${fs.existsSync(logFile) ? fs.readFileSync(logFile, 'utf8').split('\n').slice(-40).join('\n') : ''}` };

test('the demo: sign in, send a notification, see the badge and the item, publish a ranking', { timeout: 120_000 }, async () => {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  let page;
  await scenario('demo', { cluster: devLogs, pages: () => [page] }, async () => {
    page = await context.newPage();
    page.on('pageerror', (error) => console.error(`# demo page error: ${error.message}`));
    await page.goto(demoUrl, { timeout: 15_000 });
    // Anonymous first: the ranking board's stream is live without signing in.
    await page.waitForFunction(() => document.getElementById('status').dataset.state === 'live', null, { timeout: 20_000 });

    const member = `demo-${runId()}`;
    await page.fill('#member', member);
    await page.click('#sign-in button[type="submit"]');
    await page.waitForFunction((m) => document.getElementById('member-name').textContent === m, member, { timeout: 10_000 });
    await page.waitForFunction(() => ['live', 'resumed'].includes(document.getElementById('status').dataset.state), null, { timeout: 20_000 });
    assert.equal(await page.isHidden('#badge'), true, 'no badge before any notification');

    await page.fill('#send-member', member);
    await page.fill('#send-content', 'Someone commented on your post');
    await page.click('#send button[type="submit"]');
    await page.waitForFunction(() => {
      const badge = document.getElementById('badge');
      return !badge.hidden && badge.textContent === '1';
    }, null, { timeout: 15_000 });
    await page.waitForFunction(() => document.querySelectorAll('#notifications li').length === 1, null, { timeout: 15_000 });
    assert.match(await page.locator('#notifications li .content').first().textContent(), /Someone commented on your post/);

    await page.click('#publish button[type="submit"]');
    await page.waitForFunction(() => document.querySelectorAll('#ranking li').length === 5, null, { timeout: 15_000 });
    assert.equal(await page.isHidden('#ranking-empty'), true);

    // Screenshots: the desktop one (and docs/demo.png on request), then a phone.
    await page.waitForTimeout(300); // let the last paint settle
    const desktop = await screenshot(page, 'demo-1280x800', { fullPage: false });
    if (process.env.UPDATE_SCREENSHOT === '1') {
      fs.mkdirSync(path.join(REPO, 'docs'), { recursive: true });
      fs.copyFileSync(desktop, path.join(REPO, 'docs/demo.png'));
      console.error('# updated docs/demo.png');
    }
    await page.setViewportSize({ width: 390, height: 844 });
    await page.waitForTimeout(300);
    await screenshot(page, 'demo-390x844', { fullPage: false });
    await page.setViewportSize({ width: 1280, height: 800 });
  });
  await context.close();
});

test('the demo shows either the sign-in form or "Signed in as", never both', { timeout: 60_000 }, async () => {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  let page;
  await scenario('demo-sign-in-visibility', { cluster: devLogs, pages: () => [page] }, async () => {
    page = await context.newPage();
    await page.goto(demoUrl, { timeout: 15_000 });
    await page.waitForFunction(() => document.getElementById('status').dataset.state === 'live', null, { timeout: 20_000 });
    const visible = () => page.evaluate(() => Object.fromEntries(['sign-in', 'signed-in'].map((id) => {
      const el = document.getElementById(id);
      return [id, { hiddenAttribute: el.hidden, display: getComputedStyle(el).display }];
    })));
    const anonymous = await visible();
    await page.fill('#member', `demo-${runId()}`);
    await page.click('#sign-in button[type="submit"]');
    await page.waitForFunction(() => document.getElementById('member-name').textContent !== '', null, { timeout: 10_000 });
    const signedIn = await visible();
    // The page sets the `hidden` attribute; the stylesheet must not override it.
    assert.equal(anonymous['signed-in'].display, 'none', `before signing in, "Signed in as" is hidden: ${JSON.stringify(anonymous)}`);
    assert.equal(signedIn['sign-in'].display, 'none', `after signing in, the sign-in form is hidden: ${JSON.stringify(signedIn)}`);
  });
  await context.close();
});
