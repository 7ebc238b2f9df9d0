// Test doubles: a scripted edge behind a fake fetch, SSE bodies the test writes to,
// recording timers, Web Locks and BroadcastChannel fakes.

const encoder = new TextEncoder();

/** A `text/event-stream` Response whose body the test feeds; aborting errors it. */
export function sseStream({ status = 200, headers = {} } = {}) {
  let controller;
  let closed = false;
  const body = new ReadableStream({
    start(c) {
      controller = c;
    },
    cancel() {
      closed = true;
    },
  });
  const response = new Response(body, { status, headers: { 'content-type': 'text/event-stream', ...headers } });
  return {
    response,
    /** Writes raw SSE text (or a Uint8Array). */
    push(chunk) {
      if (closed) return;
      controller.enqueue(typeof chunk === 'string' ? encoder.encode(chunk) : chunk);
    },
    /** Writes one event. */
    event(name, data, id) {
      const lines = [];
      if (id != null) lines.push(`id: ${id}`);
      lines.push(`event: ${name}`);
      lines.push(`data: ${typeof data === 'string' ? data : JSON.stringify(data)}`);
      this.push(`${lines.join('\n')}\n\n`);
    },
    /** The server ends the stream cleanly. */
    end() {
      if (closed) return;
      closed = true;
      controller.close();
    },
    /** The connection breaks. */
    fail(error = new TypeError('network error')) {
      if (closed) return;
      closed = true;
      controller.error(error);
    },
    abort() {
      if (closed) return;
      closed = true;
      controller.error(new DOMException('The operation was aborted.', 'AbortError'));
    },
    get closed() {
      return closed;
    },
  };
}

/** A JSON Response. */
export function json(body, status = 200, headers = {}) {
  return new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json', ...headers } });
}

/** An edge error Response. */
export function edgeError(status, code, headers = {}) {
  return json({ error: { code, message: `${code} (test)` } }, status, headers);
}

/**
 * A fake edge: `fetch` records every request; stream requests take the next scripted
 * answer from `streams` (a function returning a Response or an sseStream()), REST
 * requests are answered by `rest(request)`.
 */
export function fakeEdge({ rest = () => json({ notifications: [], nextCursor: '' }) } = {}) {
  const requests = [];
  const streamQueue = [];
  const opened = [];
  const edge = {
    requests,
    /** Streams opened so far (sseStream objects). */
    opened,
    rest,
    /** Queues the answer for the next stream request. */
    answer(fn) {
      streamQueue.push(fn);
      return edge;
    },
    /** Queues a live stream and returns it. */
    stream(opts) {
      const s = sseStream(opts);
      streamQueue.push(() => s);
      return s;
    },
    streamRequests() {
      return requests.filter((r) => r.path === '/v1/stream');
    },
    restRequests() {
      return requests.filter((r) => r.path !== '/v1/stream');
    },
    /** Resolves when the n-th (1-based) stream request has been made. */
    nthStream(n) {
      return waitFor(() => edge.streamRequests().length >= n && edge.streamRequests()[n - 1]);
    },
    fetch: async (url, init = {}) => {
      const u = new URL(url);
      const headers = new Headers(init.headers);
      const request = { url: u, path: u.pathname, method: init.method ?? 'GET', headers, init, body: init.body ? JSON.parse(init.body) : undefined };
      requests.push(request);
      if (u.pathname !== '/v1/stream') return edge.rest(request);
      const next = streamQueue.shift();
      if (!next) {
        // Nothing scripted: a stream that stays open (and errors on abort).
        const s = sseStream();
        opened.push(s);
        init.signal?.addEventListener('abort', () => s.abort());
        return s.response;
      }
      const answer = await next(request);
      if (answer instanceof Response) return answer;
      opened.push(answer);
      if (init.signal?.aborted) answer.abort();
      init.signal?.addEventListener('abort', () => answer.abort());
      return answer.response;
    },
  };
  return edge;
}

/**
 * Timers that record every delay asked for but fire after at most `cap` ms (real
 * time), so backoff can be asserted without waiting for it. `pending` is what is set
 * and not yet fired or cleared.
 */
export function recordingTimers({ cap = 1 } = {}) {
  const delays = [];
  const pending = new Map();
  let next = 1;
  return {
    delays,
    pending,
    setTimeout(fn, ms) {
      const id = next++;
      delays.push(ms);
      const real = setTimeout(() => {
        pending.delete(id);
        fn();
      }, Math.min(ms, cap));
      pending.set(id, { ms, real });
      return id;
    },
    clearTimeout(id) {
      const t = pending.get(id);
      if (t) clearTimeout(t.real);
      pending.delete(id);
    },
  };
}

/** Polls `check` until it returns something truthy (bounded). */
export async function waitFor(check, { timeout = 2000, interval = 2 } = {}) {
  const until = Date.now() + timeout;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > until) throw new Error(`waitFor timed out: ${check}`);
    await new Promise((r) => setTimeout(r, interval));
  }
}

/** Lets pending promise callbacks and immediate timers run. */
export function settle(ms = 5) {
  return new Promise((r) => setTimeout(r, ms));
}

/** An in-memory Web Locks (exclusive mode only), shared by the "tabs" of one test. */
export function fakeLocks() {
  const queues = new Map();
  const locks = {
    held: new Map(),
    request(name, options, callback) {
      if (typeof options === 'function') [options, callback] = [{}, options];
      return new Promise((resolve, reject) => {
        const entry = { callback, resolve, reject };
        const queue = queues.get(name) ?? [];
        queues.set(name, queue);
        const signal = options.signal;
        if (signal) {
          if (signal.aborted) return reject(new DOMException('aborted', 'AbortError'));
          signal.addEventListener('abort', () => {
            const i = queue.indexOf(entry);
            if (i > 0 || (i === 0 && !entry.granted)) {
              queue.splice(i, 1);
              reject(new DOMException('aborted', 'AbortError'));
            }
          });
        }
        queue.push(entry);
        if (queue.length === 1) grant(name);
      });
    },
  };
  function grant(name) {
    const queue = queues.get(name);
    const entry = queue?.[0];
    if (!entry) return;
    entry.granted = true;
    locks.held.set(name, entry);
    Promise.resolve()
      .then(() => entry.callback({ name, mode: 'exclusive' }))
      .then(entry.resolve, entry.reject)
      .finally(() => {
        queue.shift();
        locks.held.delete(name);
        grant(name);
      });
  }
  return locks;
}

/** A BroadcastChannel class whose instances of one name talk within a test. */
export function fakeBroadcastChannel() {
  const channels = new Map();
  const log = [];
  return class FakeBroadcastChannel {
    static log = log;
    constructor(name) {
      this.name = name;
      this.onmessage = null;
      this.closed = false;
      const set = channels.get(name) ?? new Set();
      channels.set(name, set);
      set.add(this);
    }
    postMessage(message) {
      if (this.closed) throw new DOMException('closed', 'InvalidStateError');
      const copy = structuredClone(message);
      log.push({ from: this, message: copy });
      for (const other of channels.get(this.name)) {
        if (other === this) continue;
        setTimeout(() => {
          if (!other.closed) other.onmessage?.({ data: structuredClone(copy) });
        }, 0);
      }
    }
    close() {
      this.closed = true;
      channels.get(this.name)?.delete(this);
    }
  };
}

/** A JWT-shaped token (unsigned) with the given subject. */
export function jwt(sub, extra = {}) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  return `${b64({ alg: 'none' })}.${b64({ sub, ...extra })}.sig`;
}

/** The default options of a test client: fake edge, recorded timers, fixed jitter. */
export function testOptions(edge, timers, extra = {}) {
  return {
    edgeUrl: 'https://edge.test',
    fetch: edge.fetch,
    setTimeout: timers.setTimeout,
    clearTimeout: timers.clearTimeout,
    random: () => 0.5,
    idleTimeoutMs: 0,
    ...extra,
  };
}

/** The `connected` event an edge sends first (with a routing key when `affinity` is given). */
export function connected(s, { id = 'e1-0', member = 'alice', resumed = false, retry = 3000, affinity } = {}) {
  s.push(`retry: ${retry}\n\n`);
  const data = { connectionId: 1, memberId: member, node: 'edge-1', resumed };
  if (affinity !== undefined) data.affinity = affinity;
  s.event('connected', data, id);
}
