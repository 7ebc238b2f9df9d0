/**
 * Tidings browser client: notifications and topic events from a Tidings edge over
 * Server-Sent Events, read with `fetch()` and a WHATWG-compliant SSE parser.
 *
 * Plain ES module, no imports, no dependencies. See README.md for usage.
 *
 * What it guarantees:
 * - every reconnect sends the id of the last event delivered as `Last-Event-ID`, so
 *   the edge replays exactly what was missed; an event whose id is at or below the
 *   last one delivered (same stream epoch) is dropped: nothing lost, nothing repeated;
 * - credentials are asked for on every connect (a ticket is single use), and again
 *   when the edge announces the token's expiry (`reauth`);
 * - with `shareAcrossTabs`, one tab holds the stream and the others mirror it;
 * - every connect after the first carries the member's routing key (`affinity` in the
 *   `connected` event) as `?affinity=`, so a load balancer hashing on it sends the
 *   member to the edge that holds its partition (deploy/README.md).
 *
 * @module tidings
 */

/** The server's default reconnection delay when it has sent no `retry:`. */
export const DEFAULT_RETRY_MS = 3000;

/** Longest SSE line (and event data) the parser buffers, in UTF-16 units (~1 MiB). */
export const MAX_BUFFER_LENGTH = 1024 * 1024;

/** Events the client itself emits through `on()`; a topic of one of these names is
 *  reachable with `onTopic()` only. */
const CLIENT_EVENTS = new Set(['notification', 'unread', 'reset', 'status', 'connected', 'error']);

/** Events the edge writes itself; any other event name is a topic event. */
const CONTROL_EVENTS = new Set(['connected', 'resumed', 'notification', 'unread', 'reset', 'reauth']);

/** Control events that move the stream position whatever it was (never duplicates). */
const POSITIONING_EVENTS = new Set(['connected', 'reset']);

// ---------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------

/** An error from the edge (`{"error":{"code","message"}}`) or from the client itself. */
export class TidingsError extends Error {
  /**
   * @param {string} message
   * @param {{status?: number, code?: string, cause?: unknown}} [details]
   */
  constructor(message, { status, code, cause } = {}) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'TidingsError';
    /** HTTP status, when the edge answered. */
    this.status = status ?? null;
    /** The edge's error code, or the client's (`unauthenticated`, `overflow`, ...). */
    this.code = code ?? null;
  }
}

// ---------------------------------------------------------------------------------
// SSE parser
// ---------------------------------------------------------------------------------

/**
 * A streaming Server-Sent Events parser following the WHATWG "event stream
 * interpretation": lines end in CRLF, LF or CR (also split across chunks); `:` starts a
 * comment; `data:` lines join with LF; `id:` with a NUL is ignored; `retry:` must be
 * all digits; an event without data is not dispatched.
 *
 * `feed()` throws a `TidingsError` with code `overflow` when a line or an event's data
 * grows over `maxBufferLength`: the caller should drop the stream.
 */
export class SseParser {
  #onEvent;
  #onRetry;
  #onComment;
  #max;
  #line = '';
  #skipLF = false;
  #started = false;
  #data = [];
  #dataLength = 0;
  #type = '';
  /** @type {string | null} the id field of the event being read, if it has one */
  #id = null;
  /** The last event ID buffer (persists across events, as in EventSource). */
  lastEventId = '';

  /**
   * @param {{
   *   onEvent?: (event: {type: string, data: string, id: string | null, lastEventId: string}) => void,
   *   onRetry?: (ms: number) => void,
   *   onComment?: (text: string) => void,
   *   maxBufferLength?: number,
   * }} [handlers]
   */
  constructor({ onEvent = () => {}, onRetry = () => {}, onComment = () => {}, maxBufferLength = MAX_BUFFER_LENGTH } = {}) {
    this.#onEvent = onEvent;
    this.#onRetry = onRetry;
    this.#onComment = onComment;
    this.#max = maxBufferLength;
  }

  /** Parses the next decoded chunk of the stream. @param {string} text */
  feed(text) {
    if (!text) return;
    if (!this.#started) {
      this.#started = true;
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    }
    let start = 0;
    if (this.#skipLF) {
      this.#skipLF = false;
      if (text[0] === '\n') start = 1;
    }
    const eol = /[\r\n]/g;
    eol.lastIndex = start;
    for (let m = eol.exec(text); m !== null; m = eol.exec(text)) {
      const line = this.#line + text.slice(start, m.index);
      this.#line = '';
      start = m.index + 1;
      if (text[m.index] === '\r') {
        if (start === text.length) this.#skipLF = true;
        else if (text[start] === '\n') start += 1;
      }
      eol.lastIndex = start;
      this.#processLine(line);
    }
    this.#line += text.slice(start);
    if (this.#line.length > this.#max) {
      this.#line = '';
      throw new TidingsError(`an SSE line is over ${this.#max} characters`, { code: 'overflow' });
    }
  }

  /** @param {string} line */
  #processLine(line) {
    if (line === '') return this.#dispatch();
    if (line[0] === ':') return this.#onComment(line.slice(1));
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value[0] === ' ') value = value.slice(1);
    switch (field) {
      case 'event':
        this.#type = value;
        break;
      case 'data':
        this.#data.push(value);
        this.#dataLength += value.length + 1;
        if (this.#dataLength > this.#max) {
          this.#data = [];
          this.#dataLength = 0;
          throw new TidingsError(`an SSE event is over ${this.#max} characters`, { code: 'overflow' });
        }
        break;
      case 'id':
        if (!value.includes('\0')) {
          this.#id = value;
          this.lastEventId = value;
        }
        break;
      case 'retry':
        if (/^\d+$/.test(value)) this.#onRetry(Number(value));
        break;
      default:
        break; // unknown fields are ignored
    }
  }

  #dispatch() {
    const id = this.#id;
    const type = this.#type || 'message';
    this.#id = null;
    this.#type = '';
    if (this.#data.length === 0) return;
    const data = this.#data.join('\n');
    this.#data = [];
    this.#dataLength = 0;
    this.#onEvent({ type, data, id, lastEventId: this.lastEventId });
  }
}

// ---------------------------------------------------------------------------------
// Small pure helpers (exported for tests and advanced use)
// ---------------------------------------------------------------------------------

/**
 * Splits a Tidings event id `<epoch hex>-<sequence decimal>`; `null` for anything else
 * (which is then treated as opaque).
 * @param {string | null | undefined} id
 * @returns {{epoch: string, seq: bigint} | null}
 */
export function parseEventId(id) {
  const m = typeof id === 'string' ? /^([0-9a-fA-F]+)-(\d{1,20})$/.exec(id) : null;
  return m ? { epoch: m[1].toLowerCase(), seq: BigInt(m[2]) } : null;
}

/**
 * The delay before reconnect attempt `attempt` (1-based): `retryMs` doubled per
 * attempt after the first, capped at `maxBackoffMs`, times a jitter in [0.5, 1.5)
 * (and never over `maxBackoffMs`). A `Retry-After` from the edge wins: at least that
 * long, plus up to half again as jitter.
 * @param {{attempt: number, retryMs?: number, maxBackoffMs?: number,
 *   retryAfterMs?: number | null, random?: () => number}} args
 * @returns {number} milliseconds
 */
export function reconnectDelay({ attempt, retryMs = DEFAULT_RETRY_MS, maxBackoffMs = 30000, retryAfterMs = null, random = Math.random }) {
  const r = Math.min(Math.max(random(), 0), 0.999999);
  if (retryAfterMs != null) return Math.round(retryAfterMs * (1 + r / 2));
  const base = Math.min(maxBackoffMs, retryMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(Math.min(maxBackoffMs, base * (0.5 + r)));
}

/**
 * A `Retry-After` header in milliseconds (delta-seconds or an HTTP date); `null` when
 * absent or unreadable.
 * @param {string | null | undefined} value
 * @param {number} [now] the current time, ms since the epoch
 */
export function parseRetryAfter(value, now = Date.now()) {
  if (value == null || value === '') return null;
  const text = String(value).trim();
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  const at = Date.parse(text);
  return Number.isNaN(at) ? null : Math.max(0, at - now);
}

/** The `sub` claim of a JWT, without verifying it (used only to name the cross-tab lock). */
function jwtSubject(token) {
  try {
    const part = String(token).split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const json = atob(part + '='.repeat((4 - (part.length % 4)) % 4));
    const sub = JSON.parse(json).sub;
    return typeof sub === 'string' && sub ? sub : null;
  } catch {
    return null;
  }
}

/** JSON data when it parses, the raw text otherwise. */
function parseData(text) {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/** A timestamp to sort by; unknown times sort as newest. */
function timeOf(item) {
  const t = Date.parse(item?.createdAt);
  return Number.isNaN(t) ? Infinity : t;
}

/** Newest first; ties keep their order (Array.prototype.sort is stable). */
function newestFirst(a, b) {
  const ta = timeOf(a);
  const tb = timeOf(b);
  return ta === tb ? 0 : tb > ta ? 1 : -1;
}

/** An inbox item as the store keeps it (REST and SSE shapes made alike). */
function toItem(raw, eventId = null) {
  return Object.freeze({ ...raw, readAt: raw.readAt ?? null, eventId: eventId ?? raw.eventId ?? null });
}

/**
 * `incoming` merged into `current`, deduped by id (an incoming item updates a known
 * one, keeping its read state unless it brings one), newest first, at most `cap`.
 */
function mergeNotifications(current, incoming, cap) {
  const byId = new Map();
  const add = (item, preferred) => {
    const old = byId.get(item.id);
    if (!old) return byId.set(item.id, item);
    const [fresh, base] = preferred ? [item, old] : [old, item];
    byId.set(item.id, Object.freeze({ ...base, ...fresh,
      readAt: fresh.readAt ?? base.readAt ?? null, eventId: fresh.eventId ?? base.eventId ?? null }));
  };
  for (const item of incoming) add(item, true);
  for (const item of current) add(item, false);
  return Object.freeze([...byId.values()].sort(newestFirst).slice(0, cap));
}

/** `list` with `readAt` set to `now` on the unread items `pick` selects. */
function markItems(list, pick, now) {
  let changed = false;
  const next = list.map((n) => {
    if (n.readAt || !pick(n)) return n;
    changed = true;
    return Object.freeze({ ...n, readAt: now });
  });
  return changed ? Object.freeze(next) : list;
}

/**
 * Notification ids as an array of strings. One id as a string is refused: spread, it
 * would name each of its characters.
 * @param {Iterable<string> | null | undefined} ids
 */
function idList(ids) {
  if (typeof ids === 'string') throw new TypeError('ids must be an array (or another iterable) of ids, not one id as a string');
  return [...(ids ?? [])].map(String);
}

/** Whether two status objects say the same thing. */
function sameStatus(a, b) {
  const keys = Object.keys(a);
  return keys.length === Object.keys(b).length && keys.every((k) => Object.is(a[k], b[k]));
}

/** The auth options, validated, in one shape. */
function normalizeAuth(auth) {
  if (auth == null) return { mode: 'anonymous', authenticated: false, cookie: false };
  if (typeof auth.getTicket === 'function') {
    const getToken = typeof auth.getToken === 'function' ? auth.getToken : null;
    // REST cannot use a ticket: it takes getToken's bearer, else the cookie.
    return { mode: 'ticket', authenticated: true, getTicket: auth.getTicket, getToken, cookie: Boolean(auth.cookie) || !getToken };
  }
  if (typeof auth.getToken === 'function') {
    const via = auth.via ?? 'header';
    if (via !== 'header' && via !== 'query') throw new TypeError("auth.via must be 'header' or 'query'");
    return { mode: 'token', authenticated: true, getToken: auth.getToken, via, cookie: false };
  }
  if (auth.cookie) return { mode: 'cookie', authenticated: true, cookie: true };
  throw new TypeError('auth must be { cookie: true }, { getToken }, { getTicket } or null');
}

/** Wraps a host function so it is called with the global object as `this`. */
function hosted(fn) {
  if (typeof fn !== 'function') return null;
  return (...args) => fn.apply(globalThis, args);
}

/**
 * Trades a bearer token for a single-use stream ticket (`POST /v1/stream/ticket`).
 * Handy as `auth: { getTicket: () => fetchTicket({ edgeUrl, token: await getJwt() }) }`.
 * @param {{edgeUrl: string, token: string, fetch?: typeof fetch}} args
 * @returns {Promise<string>} the ticket
 */
export async function fetchTicket({ edgeUrl, token, fetch: fetchFn = globalThis.fetch }) {
  const res = await fetchFn.call(globalThis, `${String(edgeUrl).replace(/\/+$/, '')}/v1/stream/ticket`, {
    method: 'POST',
    headers: { Accept: 'application/json', Authorization: `Bearer ${token}` },
    cache: 'no-store',
  });
  if (!res.ok) throw await errorOf(res);
  const body = await res.json();
  return body.ticket;
}

/** The TidingsError an error response stands for. */
async function errorOf(res) {
  let body = null;
  try {
    body = await res.json();
  } catch {
    // not JSON: the status says enough
  }
  const code = body?.error?.code ?? `http_${res.status}`;
  return new TidingsError(body?.error?.message ?? `the edge answered ${res.status}`, { status: res.status, code });
}

// ---------------------------------------------------------------------------------
// The client
// ---------------------------------------------------------------------------------

/**
 * Creates a client and starts it: it connects (or, with `shareAcrossTabs`, follows the
 * tab that holds the stream) and loads the inbox's first page when authenticated.
 * Listeners added right after `createTidings()` miss nothing: the start is async.
 * @param {import('./tidings.js').TidingsOptions} options
 * @returns {import('./tidings.js').TidingsClient}
 */
export function createTidings(options) {
  return new Tidings(options);
}

class Tidings {
  // Options
  #edgeUrl;
  #auth;
  #topics;
  #share;
  #pageSize;
  #cap;
  #maxBackoffMs;
  #idleTimeoutMs;
  #channelName;
  #fetch;
  #locks;
  #BroadcastChannel;
  #random;
  #setTimeout;
  #clearTimeout;

  // Store
  #state;
  #subscribers = new Set();
  #listeners = new Map();

  // Lifecycle and stream
  #closed = false;
  #leader = false;
  /** @type {null | {controller: AbortController, connected: boolean, reauth: boolean, idle: boolean, watchdog: unknown}} */
  #conn = null;
  /** @type {null | {timer: unknown, resolve: () => void}} */
  #sleep = null;
  #retryMs = DEFAULT_RETRY_MS;
  #lastEventId = null;
  #position = null;
  #lastReauthAt = null;
  /** The routing key from the last `connected` (null: none yet, or anonymous). */
  #affinity = null;

  // Cross-tab
  #channel = null;
  #lockAbort = null;
  #releaseLock = null;

  // Inbox loads
  #loadSeq = 0;
  #arrivals = null;
  #unreadVersion = 0;

  /** Inbox REST calls; they reject for an anonymous client. */
  inbox;

  /** @param {import('./tidings.js').TidingsOptions} options */
  constructor(options = {}) {
    const {
      edgeUrl, auth = null, topics = [], shareAcrossTabs = false, pageSize = 20,
      maxBackoffMs = 30000, idleTimeoutMs = 45000, channelName = null,
    } = options;
    if (typeof edgeUrl !== 'string' || !edgeUrl) throw new TypeError('edgeUrl is required');
    if (!Number.isInteger(pageSize) || pageSize < 1) throw new TypeError('pageSize must be a positive integer');
    this.#edgeUrl = edgeUrl.replace(/\/+$/, '');
    this.#auth = normalizeAuth(auth);
    this.#topics = [...new Set(topics)];
    this.#pageSize = pageSize;
    this.#cap = pageSize * 5;
    this.#maxBackoffMs = maxBackoffMs;
    this.#idleTimeoutMs = idleTimeoutMs;
    this.#channelName = channelName;
    this.#fetch = hosted(options.fetch ?? globalThis.fetch);
    if (!this.#fetch) throw new TypeError('no fetch: pass options.fetch');
    this.#locks = options.locks ?? globalThis.navigator?.locks ?? null;
    this.#BroadcastChannel = options.BroadcastChannel ?? globalThis.BroadcastChannel ?? null;
    this.#random = options.random ?? Math.random;
    this.#setTimeout = hosted(options.setTimeout ?? globalThis.setTimeout);
    this.#clearTimeout = hosted(options.clearTimeout ?? globalThis.clearTimeout);
    this.#share = Boolean(shareAcrossTabs && this.#locks && this.#BroadcastChannel);
    if (shareAcrossTabs && !this.#share) {
      console.warn('tidings: shareAcrossTabs needs Web Locks and BroadcastChannel; this tab keeps its own stream');
    }
    this.#state = Object.freeze({
      status: Object.freeze({ state: 'connecting' }),
      unreadCount: 0,
      notifications: Object.freeze([]),
      topics: Object.freeze({}),
      lastEventId: null,
      member: null,
      leader: false,
    });
    this.inbox = Object.freeze({
      list: (opts) => this.#list(opts),
      markRead: (ids) => this.#markRead(ids),
      markAllRead: () => this.#markAllRead(),
      archive: (ids) => this.#drop('archive', ids),
      delete: (ids) => this.#drop('delete', ids),
      unreadCount: () => this.#unreadCount(),
    });
    this.#start();
  }

  // ----- public API -------------------------------------------------------------

  /**
   * Listens to `notification`, `unread`, `reset`, `status`, `connected`, `error`, or a
   * topic event by name. Returns the function that stops listening.
   * @param {string} event
   * @param {(...args: any[]) => void} fn
   */
  on(event, fn) {
    let set = this.#listeners.get(event);
    if (!set) this.#listeners.set(event, (set = new Set()));
    set.add(fn);
    return () => {
      set.delete(fn);
    };
  }

  /** Listens to a topic event, whatever its name (even `status`). */
  onTopic(name, fn) {
    return this.on(`topic:${name}`, fn);
  }

  /** Store subscription for `useSyncExternalStore`; returns the unsubscribe function. */
  subscribe = (listener) => {
    this.#subscribers.add(listener);
    return () => {
      this.#subscribers.delete(listener);
    };
  };

  /** The current immutable snapshot; a new object only when something changed. */
  getSnapshot = () => this.#state;

  /** Stops everything: the stream, timers, the cross-tab lock and channel. */
  close() {
    this.#shutdown('closed');
  }

  // ----- store and listeners ----------------------------------------------------

  #update(patch) {
    const state = this.#state;
    if (Object.keys(patch).every((k) => Object.is(state[k], patch[k]))) return;
    this.#state = Object.freeze({ ...state, ...patch });
    for (const listener of [...this.#subscribers]) {
      try {
        listener();
      } catch (error) {
        console.error('tidings: a store subscriber failed', error);
      }
    }
  }

  #emit(event, ...args) {
    const set = this.#listeners.get(event);
    if (!set) return;
    for (const fn of [...set]) {
      try {
        fn(...args);
      } catch (error) {
        console.error(`tidings: a '${event}' listener failed`, error);
      }
    }
  }

  /** A failure with no caller to reject: to `on('error')`, else the console. */
  #report(error) {
    if (this.#listeners.get('error')?.size) this.#emit('error', error);
    else console.error('tidings:', error);
  }

  #setStatus(status, { force = false } = {}) {
    if (this.#closed && !force) return;
    if (sameStatus(this.#state.status, status)) return;
    const frozen = Object.freeze({ ...status });
    this.#update({ status: frozen });
    this.#emit('status', frozen);
    this.#post({ kind: 'status', status: frozen });
  }

  // ----- start and stop -----------------------------------------------------------

  async #start() {
    try {
      if (this.#share) {
        await this.#startShared();
      } else {
        this.#leader = true;
        this.#update({ leader: true });
        this.#loadInbox();
        await this.#runStream();
      }
    } catch (error) {
      this.#report(error);
    }
  }

  #shutdown(reason) {
    if (this.#closed) return;
    this.#closed = true;
    const conn = this.#conn;
    if (conn) {
      this.#disarm(conn);
      conn.controller.abort();
    }
    if (this.#sleep) {
      this.#clearTimeout(this.#sleep.timer);
      this.#sleep.resolve();
      this.#sleep = null;
    }
    this.#lockAbort?.abort();
    this.#releaseLock?.();
    try {
      this.#channel?.close();
    } catch {
      // already closed
    }
    this.#channel = null;
    this.#loadSeq += 1; // a load under way no longer lands
    this.#setStatus({ state: 'closed', reason }, { force: true });
  }

  #running() {
    return !this.#closed && this.#leader;
  }

  #wait(ms) {
    return new Promise((resolve) => {
      const timer = this.#setTimeout(() => {
        this.#sleep = null;
        resolve();
      }, ms);
      this.#sleep = { timer, resolve };
    });
  }

  // ----- the stream (leader) ----------------------------------------------------

  /** Connects and reconnects until closed or refused for good. */
  async #runStream() {
    let attempt = 0;
    let unauthorized = 0;
    let reason = 'connect';
    if (this.#state.status.state !== 'connecting') this.#setStatus({ state: 'connecting' });
    while (this.#running()) {
      const outcome = await this.#connectOnce(reason);
      if (!this.#running()) return;
      if (outcome.connected) attempt = 0;
      if (outcome.kind === 'reauth') {
        reason = 'reauth';
        continue; // at once: the edge replays from our last id
      }
      if (outcome.kind === 'fatal') return this.#shutdown(outcome.reason);
      attempt += 1;
      if (outcome.kind === 'unauthorized') {
        unauthorized += 1;
        if (unauthorized > 1) return this.#shutdown('unauthenticated');
        reason = 'unauthorized'; // one more try, at once, with a fresh credential
        this.#setStatus({ state: 'reconnecting', attempt, retryMs: 0 });
        continue;
      }
      unauthorized = 0;
      const retryMs = reconnectDelay({
        attempt,
        retryMs: this.#retryMs,
        maxBackoffMs: this.#maxBackoffMs,
        retryAfterMs: outcome.retryAfterMs ?? null,
        random: this.#random,
      });
      this.#setStatus({ state: 'reconnecting', attempt, retryMs });
      await this.#wait(retryMs);
      reason = 'reconnect';
    }
  }

  /**
   * One connection, from asking for a credential to the end of the body.
   * @returns {Promise<{kind: 'ended'|'error'|'reauth'|'unauthorized'|'fatal', connected?: boolean, reason?: string, retryAfterMs?: number | null, error?: unknown}>}
   */
  async #connectOnce(reason) {
    const conn = { controller: new AbortController(), connected: false, reauth: false, idle: false, watchdog: null };
    this.#conn = conn;
    this.#arm(conn);
    try {
      const { url, init } = await this.#streamRequest(reason);
      if (conn.controller.signal.aborted) throw new TidingsError('aborted', { code: 'aborted' });
      const res = await this.#fetch(url, { ...init, signal: conn.controller.signal });
      if (!res.ok) return await this.#refusal(res);
      if (!/^text\/event-stream/i.test(res.headers.get('content-type') ?? '')) {
        res.body?.cancel().catch(() => {});
        return { kind: 'error', error: new TidingsError('the edge did not answer with an event stream', { status: res.status, code: 'not_a_stream' }) };
      }
      await this.#read(conn, res.body);
      return { kind: conn.reauth ? 'reauth' : 'ended', connected: conn.connected };
    } catch (error) {
      if (conn.reauth) return { kind: 'reauth', connected: conn.connected };
      return { kind: 'error', connected: conn.connected, error };
    } finally {
      this.#disarm(conn);
      conn.controller.abort();
      if (this.#conn === conn) this.#conn = null;
    }
  }

  /** The stream URL and request init, with a fresh credential. */
  async #streamRequest(reason) {
    const auth = this.#auth;
    const params = new URLSearchParams();
    if (this.#topics.length) params.set('topics', this.#topics.join(','));
    const headers = { Accept: 'text/event-stream' };
    if (this.#lastEventId) headers['Last-Event-ID'] = this.#lastEventId;
    if (auth.mode === 'token') {
      const token = await auth.getToken({ reason });
      if (auth.via === 'query') params.set('access_token', token);
      else headers.Authorization = `Bearer ${token}`;
    } else if (auth.mode === 'ticket') {
      params.set('ticket', await auth.getTicket({ reason }));
    }
    // The load balancer's routing key: a query parameter, which reaches it where the
    // edge's cookie is not sent (another site, or no credentials). The edge never
    // trusts it: the credential decides the member.
    if (this.#affinity && auth.authenticated) params.set('affinity', this.#affinity);
    const query = params.toString();
    return {
      url: `${this.#edgeUrl}/v1/stream${query ? `?${query}` : ''}`,
      init: { method: 'GET', headers, cache: 'no-store', credentials: auth.cookie ? 'include' : 'same-origin' },
    };
  }

  /** What a refused stream request means for the reconnect loop. */
  async #refusal(res) {
    const error = await errorOf(res);
    switch (res.status) {
      case 401:
        return { kind: 'unauthorized', error };
      case 403:
        return { kind: 'fatal', reason: 'forbidden', error };
      case 400:
        return { kind: 'fatal', reason: 'bad_request', error };
      default:
        return { kind: 'error', error, retryAfterMs: parseRetryAfter(res.headers.get('retry-after')) };
    }
  }

  /** Reads the body through the parser until it ends (or throws when aborted). */
  async #read(conn, body) {
    const reader = body.getReader();
    const decoder = new TextDecoder();
    const parser = new SseParser({
      onEvent: (raw) => this.#onFrame(conn, raw),
      onRetry: (ms) => {
        if (!conn.controller.signal.aborted) this.#retryMs = ms;
      },
    });
    const signal = conn.controller.signal;
    const cancel = () => reader.cancel().catch(() => {});
    signal.addEventListener('abort', cancel, { once: true });
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (signal.aborted) throw new TidingsError(conn.idle ? 'the stream went silent' : 'aborted', { code: conn.idle ? 'idle' : 'aborted' });
        if (done) return;
        this.#arm(conn);
        parser.feed(decoder.decode(value, { stream: true }));
      }
    } catch (error) {
      cancel();
      throw error;
    } finally {
      signal.removeEventListener('abort', cancel);
    }
  }

  /** (Re)starts the watchdog: a stream silent for idleTimeoutMs is dropped. */
  #arm(conn) {
    if (!(this.#idleTimeoutMs > 0)) return;
    this.#disarm(conn);
    conn.watchdog = this.#setTimeout(() => {
      conn.watchdog = null;
      conn.idle = true;
      conn.controller.abort();
    }, this.#idleTimeoutMs);
  }

  #disarm(conn) {
    if (conn.watchdog != null) this.#clearTimeout(conn.watchdog);
    conn.watchdog = null;
  }

  /** An event read by the leader: delivered here, shared, then its stream effects. */
  #onFrame(conn, raw) {
    if (conn.controller.signal.aborted || !this.#running()) return;
    const event = { type: raw.type, data: parseData(raw.data), id: raw.id };
    if (!this.#deliver(event)) return;
    this.#post({ kind: 'event', event });
    switch (event.type) {
      case 'connected':
        conn.connected = true;
        // A resumed stream is live once its replay is written (`resumed`).
        if (!event.data?.resumed) this.#setStatus({ state: 'live' });
        break;
      case 'resumed':
        this.#setStatus({ state: 'resumed', missed: Number(event.data?.missed ?? 0) });
        break;
      case 'reauth':
        this.#onReauth(conn, event.data);
        break;
      default:
        break;
    }
  }

  /**
   * The token expires soon: reconnect now with a fresh credential and the last id.
   * A second `reauth` for the same expiry means the credential did not change; the
   * stream is then kept until the edge ends it (no reconnect loop).
   */
  #onReauth(conn, data) {
    const expiresAt = data?.expiresAt ?? null;
    if (expiresAt !== null && expiresAt === this.#lastReauthAt) return;
    this.#lastReauthAt = expiresAt;
    conn.reauth = true;
    conn.controller.abort();
  }

  // ----- events (leader and followers alike) -------------------------------------

  /**
   * Applies one event to the store and the listeners. Returns false for a duplicate
   * (an id at or below the last one delivered, same epoch), which is dropped.
   */
  #deliver({ type, data, id }) {
    const positioning = POSITIONING_EVENTS.has(type);
    if (id != null && !positioning && this.#isDuplicate(id)) return false;
    const patch = {};
    if (id != null) {
      this.#lastEventId = id === '' ? null : id;
      this.#position = parseEventId(id);
      patch.lastEventId = this.#lastEventId;
    }
    let emit = null;
    switch (type) {
      case 'connected':
        patch.member = data?.memberId ?? null;
        this.#affinity = typeof data?.affinity === 'string' && data.affinity ? data.affinity : null;
        emit = () => this.#emit('connected', data);
        break;
      case 'resumed':
      case 'reauth':
        break;
      case 'notification': {
        if (data && typeof data === 'object' && data.id != null) {
          const item = toItem(data, id);
          patch.notifications = mergeNotifications(this.#state.notifications, [item], this.#cap);
          this.#arrivals?.add(item.id);
          emit = () => this.#emit('notification', item);
        } else {
          emit = () => this.#emit('notification', data);
        }
        break;
      }
      case 'unread': {
        const count = Number(data?.unreadCount ?? 0);
        this.#unreadVersion += 1;
        patch.unreadCount = count;
        // Nothing unread any more (mark-all-read in another tab or device): the
        // items held here are read too, though the event names none of them.
        if (count === 0) {
          patch.notifications = markItems(this.#state.notifications, () => true, new Date().toISOString());
        }
        emit = () => this.#emit('unread', count);
        break;
      }
      case 'reset':
        emit = () => this.#onReset(data);
        break;
      default:
        patch.topics = Object.freeze({ ...this.#state.topics, [type]: data });
        emit = () => this.#emitTopic(type, data, { id });
        break;
    }
    this.#update(patch);
    emit?.();
    return true;
  }

  #isDuplicate(id) {
    const pos = parseEventId(id);
    const last = this.#position;
    return Boolean(pos && last && pos.epoch === last.epoch && pos.seq <= last.seq);
  }

  #emitTopic(name, data, meta) {
    this.#emit(`topic:${name}`, data, meta);
    if (!CLIENT_EVENTS.has(name)) this.#emit(name, data, meta);
  }

  /** History was lost: reload the inbox (replacing the list and count), then tell. */
  async #onReset(data) {
    await this.#loadInbox();
    if (!this.#closed) this.#emit('reset', data?.reason ?? null);
  }

  // ----- inbox ------------------------------------------------------------------

  /**
   * Loads the first inbox page and the unread count into the store, replacing what is
   * there; notifications that arrive live meanwhile are kept, and a count that changed
   * live meanwhile wins over the loaded one.
   */
  async #loadInbox() {
    if (!this.#auth.authenticated || this.#closed) return;
    const load = (this.#loadSeq += 1);
    const arrivals = new Set();
    this.#arrivals = arrivals;
    const unreadVersion = this.#unreadVersion;
    try {
      const [page, count] = await Promise.all([this.#list({ limit: this.#pageSize }), this.#fetchUnread()]);
      if (load !== this.#loadSeq || this.#closed) return;
      const live = this.#state.notifications.filter((n) => arrivals.has(n.id));
      const patch = { notifications: mergeNotifications(live, page.notifications, this.#cap) };
      if (this.#unreadVersion === unreadVersion) patch.unreadCount = count;
      this.#update(patch);
    } catch (error) {
      if (load === this.#loadSeq && !this.#closed) this.#report(error);
    } finally {
      if (this.#arrivals === arrivals) this.#arrivals = null;
    }
  }

  /** One REST call with the client's credential; a 401 with a token is retried once. */
  async #rest(path, { method = 'GET', body } = {}) {
    const auth = this.#auth;
    if (!auth.authenticated) {
      throw new TidingsError('an anonymous client has no inbox', { code: 'unauthenticated' });
    }
    for (let tries = 0; ; tries += 1) {
      const headers = { Accept: 'application/json' };
      if (body !== undefined) headers['Content-Type'] = 'application/json';
      if (auth.getToken) headers.Authorization = `Bearer ${await auth.getToken({ reason: tries ? 'unauthorized' : 'request' })}`;
      const res = await this.#fetch(`${this.#edgeUrl}${path}`, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: 'no-store',
        credentials: auth.cookie ? 'include' : 'same-origin',
      });
      if (res.status === 401 && auth.getToken && tries === 0) {
        await res.body?.cancel().catch(() => {});
        continue;
      }
      if (!res.ok) throw await errorOf(res);
      return res.json();
    }
  }

  async #list({ cursor, limit, unreadOnly = false, archived } = {}) {
    const params = new URLSearchParams();
    if (cursor) params.set('cursor', cursor);
    params.set('limit', String(limit ?? this.#pageSize));
    params.set('unread_only', unreadOnly ? 'true' : 'false');
    if (archived !== undefined) {
      if (!['exclude', 'include', 'only'].includes(archived)) {
        throw new TidingsError(`archived must be 'exclude', 'include' or 'only', not ${JSON.stringify(archived)}`, { code: 'invalid_argument' });
      }
      params.set('archived', archived);
    }
    const body = await this.#rest(`/v1/notifications?${params}`);
    return {
      notifications: Object.freeze((body.notifications ?? []).map((n) => toItem(n))),
      nextCursor: body.nextCursor ?? '',
    };
  }

  async #fetchUnread() {
    const body = await this.#rest('/v1/notifications/unread-count');
    return Number(body.unreadCount ?? 0);
  }

  async #unreadCount() {
    const count = await this.#fetchUnread();
    this.#unreadVersion += 1;
    this.#update({ unreadCount: count });
    return count;
  }

  async #markRead(ids) {
    const list = idList(ids);
    if (list.length === 0) return this.#state.unreadCount;
    const body = await this.#rest('/v1/notifications/read', { method: 'POST', body: { ids: list } });
    const count = Number(body.unreadCount ?? 0);
    const wanted = new Set(list);
    this.#unreadVersion += 1;
    this.#update({
      unreadCount: count,
      notifications: markItems(this.#state.notifications, (n) => wanted.has(n.id), new Date().toISOString()),
    });
    return count;
  }

  async #markAllRead() {
    const { notifications } = await this.#list({ limit: 1 });
    const newest = notifications[0];
    if (!newest) return 0;
    const body = await this.#rest('/v1/notifications/read', { method: 'POST', body: { up_to: newest.id } });
    const count = Number(body.unreadCount ?? 0);
    const upTo = timeOf(newest);
    this.#unreadVersion += 1;
    this.#update({
      unreadCount: count,
      notifications: markItems(this.#state.notifications, (n) => n.id === newest.id || timeOf(n) <= upTo, new Date().toISOString()),
    });
    return count;
  }

  /**
   * Archives (`what` = 'archive') or deletes ('delete') these notifications: either way
   * they leave the store's list, and the count is the edge's answer. Every tab's count
   * also follows by the stream's `unread` event.
   */
  async #drop(what, ids) {
    const list = idList(ids);
    if (list.length === 0) return this.#state.unreadCount;
    const body = await this.#rest(`/v1/notifications/${what}`, { method: 'POST', body: { ids: list } });
    const count = Number(body.unreadCount ?? 0);
    const gone = new Set(list);
    this.#unreadVersion += 1;
    this.#update({
      unreadCount: count,
      notifications: Object.freeze(this.#state.notifications.filter((n) => !gone.has(n.id))),
    });
    return count;
  }

  // ----- cross-tab --------------------------------------------------------------

  /** Joins the tabs' channel, then waits in line for the stream's lock. */
  async #startShared() {
    const name = `tidings:${this.#edgeUrl}:${await this.#memberKey()}`;
    if (this.#closed) return;
    const channel = new this.#BroadcastChannel(this.#channelName ?? name);
    this.#channel = channel;
    channel.onmessage = (e) => this.#onMessage(e.data);
    this.#loadInbox();
    this.#postAny({ kind: 'hello' });
    this.#lockAbort = new AbortController();
    try {
      await this.#locks.request(name, { signal: this.#lockAbort.signal }, () => this.#lead());
    } catch (error) {
      if (error?.name !== 'AbortError') throw error;
    }
  }

  /** Who the stream is for (the lock's name): member (or auth mode) and topics. */
  async #memberKey() {
    const auth = this.#auth;
    let who = auth.mode === 'anonymous' ? 'anon' : auth.mode;
    if (auth.getToken) {
      try {
        who = jwtSubject(await auth.getToken({ reason: 'identify' })) ?? who;
      } catch {
        // keep the mode as the key
      }
    }
    return `${who}:${[...this.#topics].sort().join(',')}`;
  }

  /** This tab got the lock: it holds the stream until it closes. */
  #lead() {
    if (this.#closed) return undefined;
    this.#leader = true;
    this.#update({ leader: true });
    return new Promise((resolve) => {
      this.#releaseLock = resolve;
      this.#runStream().catch((error) => this.#report(error)).finally(resolve);
    });
  }

  /** Posts to the other tabs when leading. */
  #post(message) {
    if (this.#leader) this.#postAny(message);
  }

  #postAny(message) {
    if (!this.#channel) return;
    try {
      this.#channel.postMessage(message);
    } catch (error) {
      this.#report(error);
    }
  }

  #onMessage(message) {
    if (!message || this.#closed) return;
    switch (message.kind) {
      case 'hello':
        if (this.#leader) {
          const { status, topics, lastEventId, member, unreadCount } = this.#state;
          const affinity = this.#affinity;
          this.#postAny({ kind: 'snapshot', snapshot: { status, topics, lastEventId, member, unreadCount, affinity } });
        }
        break;
      case 'snapshot':
        if (!this.#leader) this.#adopt(message.snapshot);
        break;
      case 'event':
        if (!this.#leader) this.#deliver(message.event);
        break;
      case 'status':
        if (!this.#leader) this.#setStatus(message.status);
        break;
      default:
        break;
    }
  }

  /** A follower takes the leader's state: topics, member, status, and position. */
  #adopt(snapshot) {
    if (!snapshot) return;
    const patch = {
      topics: Object.freeze({ ...this.#state.topics, ...snapshot.topics }),
      member: snapshot.member ?? this.#state.member,
    };
    // A follower that takes the stream over later connects with the leader's key.
    if (typeof snapshot.affinity === 'string' && snapshot.affinity) this.#affinity = snapshot.affinity;
    const theirs = parseEventId(snapshot.lastEventId);
    const ours = this.#position;
    const behind = snapshot.lastEventId && (!ours || !theirs || theirs.epoch !== ours.epoch || theirs.seq > ours.seq);
    if (behind) {
      this.#lastEventId = snapshot.lastEventId;
      this.#position = theirs;
      patch.lastEventId = snapshot.lastEventId;
    }
    this.#update(patch);
    if (snapshot.status) this.#setStatus(snapshot.status);
  }
}
