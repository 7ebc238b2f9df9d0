// The browser tests' page: creates a Tidings client (tidings.js, copied next to this
// file from clients/js/) from `window.startClient(options)` or the URL's query string,
// renders its state to the DOM (so screenshots show it) and records every event in
// `window.log` for the tests' assertions.
//
// options: { auth: 'cookie' | 'token' | 'query' | 'ticket' | null, topics: [...],
//            shareAcrossTabs: bool, token: '<jwt>' (a fixed bearer), ... }
// For 'token', 'query' and 'ticket' without a fixed token, the test exposes
// `window.mintToken()` (page.exposeFunction) and the page calls it for each credential.
import { createTidings } from './tidings.js';

const $ = (id) => document.getElementById(id);

window.log = [];
window.client = null;
window.harnessReady = true;

function record(type, data) {
  const entry = { t: Date.now(), type, data };
  window.log.push(entry);
  $('event-count').textContent = String(window.log.length);
  const lines = window.log.slice(-12).map((e) => `${new Date(e.t).toISOString().slice(11, 23)} ${e.type} ${short(e.data)}`);
  $('events').textContent = lines.join('\n');
}

function short(data) {
  const text = typeof data === 'string' ? data : JSON.stringify(data);
  return text && text.length > 140 ? `${text.slice(0, 140)}…` : text ?? '';
}

/** A bearer token: the fixed one the test injected, else a fresh one from the test. */
async function bearer() {
  if (window.bearerToken) return window.bearerToken;
  if (typeof window.mintToken === 'function') return window.mintToken();
  throw new Error('no token: the test neither injected one nor exposed mintToken');
}

/** getTicket: trades the bearer token for a single-use stream ticket. */
async function ticket() {
  const response = await fetch('/v1/stream/ticket', {
    method: 'POST',
    headers: { Authorization: `Bearer ${await bearer()}`, Accept: 'application/json' },
    cache: 'no-store',
  });
  const body = await response.json().catch(() => null);
  record('ticket', { status: response.status });
  if (!response.ok) throw new Error(`ticket: HTTP ${response.status} ${JSON.stringify(body)}`);
  return body.ticket;
}

function authFor(options) {
  switch (options.auth ?? null) {
    case null:
    case 'anonymous':
      return null;
    case 'cookie':
      return { cookie: true };
    case 'token':
      return { getToken: async (info) => { record('getToken', info ?? null); return bearer(); }, via: 'header' };
    case 'query':
      return { getToken: async (info) => { record('getToken', info ?? null); return bearer(); }, via: 'query' };
    case 'ticket':
      return { getTicket: async (info) => { record('getTicket', info ?? null); return ticket(); }, getToken: () => bearer() };
    default:
      throw new Error(`unknown auth ${options.auth}`);
  }
}

window.startClient = (options = {}) => {
  if (window.client) window.client.close();
  if (options.token) window.bearerToken = options.token;
  const client = createTidings({
    edgeUrl: options.edgeUrl ?? location.origin,
    auth: authFor(options),
    topics: options.topics ?? [],
    shareAcrossTabs: Boolean(options.shareAcrossTabs),
    ...(options.pageSize ? { pageSize: options.pageSize } : {}),
  });
  window.client = client;
  client.on('connected', (data) => {
    record('connected', data);
    $('node').textContent = data?.node ?? '?';
  });
  client.on('notification', (item) => record('notification', { id: item?.id, content: item?.content, eventId: item?.eventId ?? null }));
  client.on('unread', (count) => record('unread', count));
  client.on('reset', (reason) => record('reset', reason));
  client.on('status', (status) => record('status', status));
  client.on('error', (error) => record('error', String(error?.message ?? error)));
  for (const topic of options.topics ?? []) client.onTopic(topic, (data, meta) => record(`topic:${topic}`, { data, id: meta?.id ?? null }));
  client.subscribe(() => render(client.getSnapshot()));
  render(client.getSnapshot());
  return true;
};

/** The state the tests read: the snapshot, minus functions. */
window.snapshot = () => {
  const s = window.client?.getSnapshot();
  return s ? JSON.parse(JSON.stringify(s)) : null;
};

function render(s) {
  $('status').textContent = s.status?.state ?? '?';
  $('status').dataset.state = s.status?.state ?? '?';
  if (s.status?.state === 'reconnecting') $('status').textContent += ` (attempt ${s.status.attempt})`;
  if (s.status?.state === 'resumed') $('status').textContent += ` (${s.status.missed} missed)`;
  $('badge').textContent = String(s.unreadCount);
  $('badge').dataset.count = String(s.unreadCount);
  $('member').textContent = s.member ?? '–';
  $('leader').textContent = s.leader ? 'leader' : 'follower';
  const list = $('notifications');
  list.replaceChildren(...s.notifications.map((n) => {
    const li = document.createElement('li');
    li.dataset.id = n.id;
    li.className = n.readAt ? 'read' : 'unread';
    li.textContent = n.content;
    return li;
  }));
  $('notification-count').textContent = String(s.notifications.length);
  const topics = s.topics ?? {};
  $('ranking').textContent = topics.ranking ? JSON.stringify(topics.ranking, null, 1) : '(none)';
}

// Query-string start: ?auth=cookie&topics=ranking&share=1
const params = new URLSearchParams(location.search);
if (params.has('auth')) {
  const auth = params.get('auth');
  window.startClient({
    auth: auth === 'null' || auth === '' ? null : auth,
    topics: params.get('topics') ? params.get('topics').split(',') : [],
    shareAcrossTabs: params.get('share') === '1',
  });
}
