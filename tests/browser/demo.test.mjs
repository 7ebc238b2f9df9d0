// 7. The demo of `tidings dev` (/demo/): sign in through the page's form, send a
//    notification with its "Send notification" form and see the badge and the item,
//    publish a ranking with its button and see the board. Screenshots: 1280x800 (also to
//    docs/demo.png when UPDATE_SCREENSHOT=1) and a 390x844 phone.
// 8. The demo's own controls on a phone (390x844), found by their accessible names and
//    worked with the keyboard: sign in, send, "Mark read", "Mark all read"; the
//    connection indicator through a restart of `tidings dev` (live, reconnecting,
//    "resumed, N missed"); nothing wider than the screen, no control without a name.
//
// The demo and its token-minting endpoints exist only in dev mode (`EdgeOptions::demo`
// is no flag of `tidings edge`), so these tests run `tidings dev`, not the nginx cluster.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';

import {
  BIN, REPO, databaseUrl, dropDatabase, eventually, freePort, runId, spawnTracked,
} from './cluster.mjs';
import { launchBrowser, scenario, screenshot } from './helpers.mjs';

let dev;
let env;
let browser;
let demoUrl;
let database;
let logFile;
let tmp;

/** Starts `tidings dev` with `env` (again, after a stop: same database, stream and ports); resolves to the demo's URL. */
async function startDev() {
  let stdout = '';
  dev = spawnTracked('dev', BIN, ['dev'], {
    env,
    logFile,
    onStdout: (text) => {
      stdout += text;
    },
  });
  const proc = dev;
  return eventually('`tidings dev` to print its demo URL', () => {
    if (proc.exited) throw new Error(`tidings dev exited ${JSON.stringify(proc.exitStatus)}:\n${fs.readFileSync(logFile, 'utf8').slice(-3000)}`);
    return /Tidings demo: (\S+)/.exec(stdout)?.[1];
  }, { timeoutMs: 60_000 });
}

before(async () => {
  const id = runId();
  database = `tidings_test_browser_${id}`;
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tidings-browser-demo-'));
  logFile = path.join(tmp, 'dev.log');
  env = {};
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
    TIDINGS_RETRY: '500ms', // the page's first reconnect after a restart comes quickly
  });
  demoUrl = await startDev();
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

// ---------------------------------------------------------------------------------
// 8. On a phone, by keyboard, through a restart
// ---------------------------------------------------------------------------------

/** Waits for the connection indicator to show `state`, its text matching `text`. */
async function waitIndicator(page, state, text, timeout = 30_000) {
  await page.waitForFunction(([state, source]) => {
    const el = document.getElementById('status');
    return el.dataset.state === state && new RegExp(source).test(el.textContent);
  }, [state, text.source], { timeout, polling: 50 }).catch(async (error) => {
    const now = await page.locator('#status').evaluate((el) => `${el.dataset.state}: ${el.textContent}`);
    throw new Error(`the indicator never showed ${state} ${text} (it shows "${now}"): ${error.message}`);
  });
}

/**
 * Nothing is wider than the screen (no sideways scrolling on a phone). A mobile Chromium
 * zooms out to fit content wider than the page's `width=device-width`, and then reports
 * that wider width as `innerWidth`: the bound is the viewport the test set.
 */
async function assertNoHorizontalOverflow(page, when) {
  const width = page.viewportSize().width;
  const { scrollWidth, innerWidth, wide } = await page.evaluate((width) => ({
    scrollWidth: document.documentElement.scrollWidth,
    innerWidth: window.innerWidth,
    wide: [...document.querySelectorAll('body *')]
      .filter((el) => el.getBoundingClientRect().right > width + 0.5)
      .slice(0, 5)
      .map((el) => `<${el.localName}${el.id ? `#${el.id}` : ''}${el.className ? `.${String(el.className).replace(/ /g, '.')}` : ''}> right=${Math.round(el.getBoundingClientRect().right)}`),
  }), width);
  assert.ok(scrollWidth <= width && innerWidth <= width, `${when}: the page is ${scrollWidth}px wide (innerWidth ${innerWidth}) on a ${width}px screen; past its edge: ${wide.join(', ')}`);
}

const CONTROL_ROLES = 'button|textbox|searchbox|checkbox|radio|combobox|listbox|slider|spinbutton|switch|link';

/**
 * Every control on screen has an accessible name (its label, aria-label or text), by
 * the accessibility tree Chromium exposes, and the tree lists every visible control.
 */
async function assertControlsNamed(page, when) {
  const tree = (await page.locator('body').ariaSnapshot()).split('\n');
  const controls = tree.filter((line) => new RegExp(`^\\s*- (${CONTROL_ROLES})\\b`).test(line));
  const unnamed = controls.filter((line) => !new RegExp(`^\\s*- (${CONTROL_ROLES}) "`).test(line));
  assert.deepEqual(unnamed, [], `${when}: controls without an accessible name`);
  const visible = await page.locator('button:visible, input:visible, select:visible, textarea:visible, a[href]:visible').count();
  assert.equal(controls.length, visible, `${when}: the accessibility tree lists every visible control:\n${controls.join('\n')}`);
}

/** The element that has the keyboard focus, described. */
const focused = (page) => page.evaluate(() => {
  const el = document.activeElement;
  return el ? `${el.localName}#${el.id}[${(el.getAttribute('aria-label') ?? el.textContent).trim().replace(/\s+/g, ' ').slice(0, 60)}]` : null;
});

test('the demo on a phone, by keyboard: sign in, send, mark read, mark all read; through a restart: reconnecting, then resumed with the missed count', { timeout: 180_000 }, async () => {
  const context = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
  let page;
  const member = `phone-${runId()}`;
  await scenario('demo-phone-keyboard-resume', { cluster: devLogs, pages: () => [page] }, async () => {
    page = await context.newPage();
    page.on('pageerror', (error) => console.error(`# demo page error: ${error.message}`));
    await page.goto(demoUrl, { timeout: 15_000 });
    await waitIndicator(page, 'live', /^live$/);
    await assertControlsNamed(page, 'anonymous');
    await assertNoHorizontalOverflow(page, 'anonymous');

    // Sign in with the keyboard: type the member id, Enter submits the form.
    const memberInput = page.getByLabel('Member id');
    await memberInput.focus();
    await memberInput.selectText();
    await page.keyboard.type(member);
    await page.keyboard.press('Enter');
    await page.waitForFunction((m) => document.getElementById('member-name').textContent === m, member, { timeout: 10_000 });
    await waitIndicator(page, 'live', /^live$/);
    const bell = (name) => page.getByRole('button', { name, exact: true });
    await bell('Notifications, none unread').waitFor({ timeout: 10_000 });
    await assertControlsNamed(page, 'signed in');

    // Send with the demo's form (the keyboard again: Enter on its button).
    const sendTo = page.getByLabel('Send a notification to');
    const message = page.getByLabel('Message');
    const sendButton = page.getByRole('button', { name: 'Send notification', exact: true });
    const send = async (text) => {
      await sendTo.fill(member);
      await message.fill(text);
      await sendButton.focus();
      const sent = page.waitForResponse((r) => new URL(r.url()).pathname === '/demo/send', { timeout: 15_000 });
      await page.keyboard.press('Enter');
      const response = await sent;
      assert.equal(response.status(), 200, `the demo sent "${text}": ${await response.text()}`);
    };
    const item = (text) => page.locator('#notifications li', { hasText: text });
    const markRead = (text) => page.getByRole('button', { name: `Mark “${text}” read`, exact: true });
    const first = 'Bob commented on your post';
    // A word longer than the screen is wide (a link, here without a hyphen to break at)
    // must wrap, not widen the page.
    const second = `Carol shared https://example.com/${'alonglinkwithoutspaces'.repeat(4)}`;
    await send(first);
    await bell('Notifications, 1 unread').waitFor({ timeout: 15_000 });
    await item(first).waitFor({ timeout: 15_000 });
    await send(second);
    await bell('Notifications, 2 unread').waitFor({ timeout: 15_000 });
    await item(second).waitFor({ timeout: 15_000 });
    assert.equal(await page.locator('#badge').textContent(), '2');
    await assertControlsNamed(page, 'two unread');
    await assertNoHorizontalOverflow(page, 'two unread, one with a long word');

    // "Mark read" by keyboard: focus it, Enter.
    await markRead(first).focus();
    assert.equal(await markRead(first).evaluate((el) => el === document.activeElement), true, `"Mark read" takes the focus (it is on ${await focused(page)})`);
    await page.keyboard.press('Enter');
    await bell('Notifications, 1 unread').waitFor({ timeout: 15_000 });
    await markRead(first).waitFor({ state: 'detached', timeout: 10_000 });
    assert.equal(await item(first).getAttribute('class'), 'read');
    assert.equal(await item(second).getAttribute('class'), 'unread');
    // The list re-rendered; the keyboard user is still in it, on the next "Mark read".
    assert.equal(await markRead(second).evaluate((el) => el === document.activeElement), true, `focus after "Mark read" is on the next one, not ${await focused(page)}`);

    // "Mark all read" by keyboard: focus it, Space.
    const markAll = page.getByRole('button', { name: 'Mark all read', exact: true });
    await markAll.focus();
    assert.equal(await markAll.evaluate((el) => el === document.activeElement), true, `"Mark all read" takes the focus (it is on ${await focused(page)})`);
    await page.keyboard.press('Space');
    await bell('Notifications, none unread').waitFor({ timeout: 15_000 });
    assert.equal(await page.isHidden('#badge'), true, 'no badge at 0');
    assert.equal(await page.getByRole('button', { name: /^Mark “/ }).count(), 0, 'no "Mark read" left');
    assert.equal(await item(second).getAttribute('class'), 'read');
    assert.equal(await markAll.isDisabled(), true);
    assert.equal(await page.evaluate(() => document.activeElement?.id), 'inbox-title', `focus after "Mark all read" (now disabled) is on the inbox, not ${await focused(page)}`);

    // The connection indicator through a restart. The page's stream requests are cut off
    // (only those: the demo's forms and tokens still work) until the restarted cluster has
    // taken three notifications, which the page then must have missed.
    await waitIndicator(page, 'live', /^live$/);
    const isStream = (url) => url.pathname === '/v1/stream';
    await page.route(isStream, (route) => route.abort('connectionrefused'));
    const stopped = await dev.stop('SIGTERM', 15_000);
    assert.equal(stopped.code, 0, `tidings dev drains and exits 0: ${JSON.stringify(stopped)}`);
    await waitIndicator(page, 'reconnecting', /^reconnecting \(attempt \d+, in \d+(\.\d)? s\)…$/);
    await assertNoHorizontalOverflow(page, 'reconnecting');
    assert.equal(await startDev(), demoUrl, 'restarted on the same address');
    const missed = ['Dave replied while you were away', 'Erin mentioned you', 'Frank sent you a file'];
    for (const text of missed) await send(text);
    assert.equal(await page.locator('#notifications li').count(), 2, 'nothing arrives while the stream is cut off');
    assert.match(await page.locator('#status').textContent(), /^reconnecting/);
    await page.unroute(isStream);
    await waitIndicator(page, 'resumed', new RegExp(`^live — resumed, ${missed.length} missed$`), 60_000);
    for (const text of missed) await item(text).waitFor({ timeout: 10_000 });
    await bell(`Notifications, ${missed.length} unread`).waitFor({ timeout: 15_000 });
    assert.deepEqual(
      await page.locator('#notifications li .content').allTextContents(),
      [...missed].reverse().concat([second, first]),
      'each once, newest first',
    );
    await assertControlsNamed(page, 'resumed');
    await assertNoHorizontalOverflow(page, 'resumed');
    await page.evaluate(() => window.scrollTo(0, 0)); // the screenshot from the top, the sticky bar in place
  });
  await context.close();
});
