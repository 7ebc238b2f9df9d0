// The Tidings demo page: the browser client library (`tidings.js`, the same file as
// clients/js/tidings.js) driving a bell, an inbox and a live ranking board, plus forms
// that play the backend through the dev-only endpoints under /demo/.
import { createTidings } from './tidings.js';

const RANKING = 'ranking';
const $ = (id) => document.getElementById(id);
const edgeUrl = location.origin;

let client = null;
let unsubscribe = () => {};

/** A fresh dev token for `member` (dev mode mints one for anyone). */
async function mintToken(member) {
  const response = await fetch('/demo/token', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ member }),
  });
  const body = await response.json();
  if (!response.ok) throw new Error(body.error?.message ?? `token: HTTP ${response.status}`);
  return body.token;
}

/** (Re)creates the client: signed in as `member`, or anonymous (the ranking only). */
function connect(member) {
  unsubscribe();
  client?.close();
  const auth = member ? { getToken: () => mintToken(member) } : null;
  client = createTidings({ edgeUrl, auth, topics: [RANKING], shareAcrossTabs: true });
  unsubscribe = client.subscribe(() => render(client.getSnapshot(), member));
  render(client.getSnapshot(), member);
  $('signed-in').hidden = !member;
  $('sign-in').hidden = Boolean(member);
  $('member-name').textContent = member ?? '';
}

function render(snapshot, member) {
  renderStatus(snapshot.status);
  renderBadge(member ? snapshot.unreadCount : 0);
  renderInbox(member ? snapshot.notifications : null);
  renderRanking(snapshot.topics?.[RANKING]);
}

function renderStatus(status) {
  const el = $('status');
  const text = {
    connecting: () => 'connecting…',
    live: () => 'live',
    reconnecting: (s) => `reconnecting (attempt ${s.attempt}, in ${Math.round(s.retryMs / 100) / 10} s)…`,
    resumed: (s) => `live — resumed, ${s.missed} missed`,
    closed: (s) => `closed (${s.reason})`,
  }[status?.state ?? 'connecting'];
  el.dataset.state = status?.state ?? 'connecting';
  el.textContent = text ? text(status ?? {}) : String(status?.state);
}

function renderBadge(count) {
  const badge = $('badge');
  badge.hidden = !count;
  badge.textContent = count > 99 ? '99+' : String(count);
  $('bell').setAttribute('aria-label', count ? `Notifications, ${count} unread` : 'Notifications, none unread');
  // A disabled button drops the focus: a keyboard user who marked all read stays in the inbox.
  if (!count && document.activeElement === $('mark-all')) $('inbox-title').focus();
  $('mark-all').disabled = !count;
}

function renderInbox(notifications) {
  const list = $('notifications');
  const empty = $('inbox-empty');
  // Every change redraws the list: a keyboard user on one of its buttons keeps a place.
  const focusedId = list.contains(document.activeElement) ? document.activeElement.closest('li')?.dataset.id : null;
  const order = [...list.querySelectorAll('li button')].map((b) => b.closest('li').dataset.id);
  list.replaceChildren();
  if (!notifications) {
    empty.textContent = 'Sign in to see your notifications.';
    empty.hidden = false;
    if (focusedId) $('inbox-title').focus();
    return;
  }
  empty.textContent = 'Nothing yet: send yourself a notification.';
  empty.hidden = notifications.length > 0;
  for (const n of notifications) {
    const item = document.createElement('li');
    item.className = n.readAt ? 'read' : 'unread';
    item.dataset.id = n.id;
    const what = document.createElement('div');
    what.className = 'what';
    const content = document.createElement('span');
    content.className = 'content';
    content.textContent = n.content || '(no text)';
    const meta = document.createElement('span');
    meta.className = 'type';
    meta.textContent = `${n.type} · ${new Date(n.createdAt).toLocaleTimeString()}`;
    what.append(content, meta);
    item.append(what);
    if (!n.readAt) {
      const button = document.createElement('button');
      button.type = 'button';
      button.className = 'secondary';
      button.textContent = 'Mark read';
      button.setAttribute('aria-label', `Mark “${n.content}” read`);
      button.addEventListener('click', () => client.inbox.markRead([n.id]).catch(report));
      item.append(button);
    }
    list.append(item);
  }
  if (focusedId) refocus(list, focusedId, order);
}

/**
 * Focus back on item `id`'s button; when it has none any more (marked read), on the
 * next item's "Mark read" (`order`: the items that had one, before), else the previous
 * one's, else the inbox heading.
 */
function refocus(list, id, order) {
  const buttons = new Map([...list.querySelectorAll('li button')].map((b) => [b.closest('li').dataset.id, b]));
  const at = order.indexOf(id);
  const candidates = [id, ...order.slice(at + 1), ...order.slice(0, Math.max(at, 0)).reverse()];
  const next = candidates.find((other) => buttons.has(other));
  (next ? buttons.get(next) : $('inbox-title')).focus();
}

function renderRanking(board) {
  const list = $('ranking');
  list.replaceChildren();
  const entries = Array.isArray(board?.entries) ? board.entries : [];
  $('ranking-empty').hidden = entries.length > 0;
  entries.forEach((entry, i) => {
    const item = document.createElement('li');
    const place = document.createElement('span');
    place.className = 'place';
    place.textContent = String(i + 1);
    const name = document.createElement('span');
    name.textContent = String(entry.name);
    const score = document.createElement('span');
    score.className = 'score';
    score.textContent = String(entry.score);
    item.append(place, name, score);
    list.append(item);
  });
}

function report(error) {
  $('produce-result').textContent = String(error?.message ?? error);
}

async function post(path, body) {
  const response = await fetch(path, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const json = await response.json();
  if (!response.ok) throw new Error(json.error?.message ?? `HTTP ${response.status}`);
  return json;
}

/** A plausible board: five players, scores shuffled a little each time. */
function nextRanking() {
  const names = ['alice', 'bob', 'carol', 'dave', 'erin'];
  const entries = names
    .map((name) => ({ name, score: Math.floor(Math.random() * 1000) }))
    .sort((a, b) => b.score - a.score);
  return { title: 'Top players', at: new Date().toISOString(), entries };
}

$('sign-in').addEventListener('submit', (event) => {
  event.preventDefault();
  const member = $('member').value.trim();
  if (!member) return;
  sessionStorage.setItem('tidings-demo-member', member);
  connect(member);
});
$('sign-out').addEventListener('click', () => {
  sessionStorage.removeItem('tidings-demo-member');
  connect(null);
  $('member').focus();
});
$('mark-all').addEventListener('click', () => client.inbox.markAllRead().catch(report));
$('bell').addEventListener('click', () => $('inbox').scrollIntoView({ behavior: 'smooth' }));
$('send').addEventListener('submit', async (event) => {
  event.preventDefault();
  const member = $('send-member').value.trim();
  try {
    await post('/demo/send', { member, type: 'demo.comment', content: $('send-content').value });
    report(`Sent to ${member}.`);
  } catch (error) {
    report(error);
  }
});
$('publish').addEventListener('submit', async (event) => {
  event.preventDefault();
  try {
    const { eventId } = await post('/demo/publish', { topic: RANKING, data: nextRanking() });
    report(`Published ranking ${eventId}.`);
  } catch (error) {
    report(error);
  }
});

const member = new URLSearchParams(location.search).get('member') ?? sessionStorage.getItem('tidings-demo-member');
connect(member || null);
