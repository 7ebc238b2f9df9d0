// A real Tidings cluster for the browser tests, as child processes on free loopback
// ports: one `tidings api`, two `tidings edge` (edge-1, edge-2) and the real nginx with
// the project's deploy/nginx/tidings.conf in front of them, which also serves the test
// page and the client library under /app/ (same origin as the stream: no CORS).
//
// Needs DATABASE_URL, NATS_URL (a nats-server >= 2.10) and optionally TIDINGS_NGINX, as
// scripts/lib/services.sh exports them (run.sh does). Every run gets its own database,
// JetStream stream and subject prefix; the database is dropped at the end.
//
// No process is left behind: children are stopped by `stop()`, on process exit and on
// SIGINT/SIGTERM, and each is started with a parent-death signal (setpriv --pdeathsig)
// so even a SIGKILLed test runner takes them down.

import { spawn, spawnSync, execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);

export const HERE = path.dirname(fileURLToPath(import.meta.url));
export const REPO = path.resolve(HERE, '../..');
export const BIN = process.env.TIDINGS_BIN ?? path.join(REPO, 'target/debug/tidings');
export const ARTIFACTS = path.join(REPO, 'target/browser-artifacts');
const CLIENT_JS = path.join(REPO, 'clients/js/tidings.js');
const NGINX_CONF = path.join(REPO, 'deploy/nginx/tidings.conf');
const HAS_PDEATHSIG = spawnSync('setpriv', ['--help'], { encoding: 'utf8' }).stdout?.includes('--pdeathsig') ?? false;

// ---------------------------------------------------------------------------------
// Children: every process this module starts, killed whatever way the runner ends.
// ---------------------------------------------------------------------------------

/** @type {Set<Proc>} */
const live = new Set();

function killAllSync() {
  for (const proc of live) proc.killSync();
}
process.on('exit', killAllSync);
/** Test databases not dropped yet: a run stopped by a signal drops them on its way out. */
const databases = new Set();

for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.once(signal, () => {
    killAllSync();
    for (const name of databases) {
      spawnSync('psql', [process.env.DATABASE_URL, '-qAtc', `DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`], { timeout: 10_000, stdio: 'ignore' });
    }
    process.exit(128 + (os.constants.signals[signal] ?? 1));
  });
}

/** One child process, its output appended to a log file. */
class Proc {
  constructor(name, cmd, args, { env, logFile, group = false, deathSignal = 'KILL', onStdout } = {}) {
    this.name = name;
    this.logFile = logFile;
    this.group = group;
    const fd = fs.openSync(logFile, 'a');
    fs.writeSync(fd, `\n===== ${new Date().toISOString()} start ${name}: ${cmd} ${args.join(' ')}\n`);
    const [file, argv] = HAS_PDEATHSIG
      ? ['setpriv', ['--pdeathsig', deathSignal, '--', cmd, ...args]]
      : [cmd, args];
    this.child = spawn(file, argv, {
      env,
      stdio: ['ignore', onStdout ? 'pipe' : fd, fd],
      detached: group, // its own process group (nginx: the master and its workers)
    });
    fs.closeSync(fd);
    if (onStdout) {
      const out = fs.createWriteStream(logFile, { flags: 'a' });
      this.child.stdout.on('data', (chunk) => {
        out.write(chunk);
        onStdout(chunk.toString());
      });
    }
    this.pid = this.child.pid;
    this.exited = false;
    this.exit = new Promise((resolve) => {
      this.child.on('exit', (code, signal) => {
        this.exited = true;
        this.exitStatus = { code, signal };
        live.delete(this);
        resolve(this.exitStatus);
      });
      this.child.on('error', (error) => {
        this.exited = true;
        this.exitStatus = { error: String(error) };
        live.delete(this);
        resolve(this.exitStatus);
      });
    });
    live.add(this);
  }

  signal(sig) {
    try {
      if (this.group) process.kill(-this.pid, sig);
      else if (!this.exited) process.kill(this.pid, sig);
    } catch {
      // already gone
    }
  }

  killSync() {
    this.signal('SIGKILL');
  }

  /** SIGTERM (or `sig`), a bounded wait, then SIGKILL (to the whole group for nginx). */
  async stop(sig = 'SIGTERM', waitMs = 10_000) {
    this.signal(sig);
    const timer = new Promise((resolve) => setTimeout(resolve, waitMs, 'timeout'));
    const result = await Promise.race([this.exit, timer]);
    if (result === 'timeout' || this.group) this.signal('SIGKILL');
    await this.exit;
    return this.exitStatus;
  }
}

// ---------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------

export function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `fn` until it returns a truthy value; throws after `timeoutMs`. */
export async function eventually(what, fn, { timeoutMs = 30_000, intervalMs = 100 } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      const value = await fn();
      if (value) return value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) {
      throw new Error(`gave up waiting ${timeoutMs} ms for ${what}${last ? `: ${last.message ?? last}` : ''}`);
    }
    await sleep(intervalMs);
  }
}

async function httpOk(url) {
  const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
  await res.arrayBuffer();
  return res.ok;
}

function tail(file, lines = 40) {
  try {
    const text = fs.readFileSync(file, 'utf8').split('\n');
    return text.slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/** The environment of a child: this process's, without any Tidings or database setting. */
function baseEnv() {
  const env = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (k.startsWith('TIDINGS_') || k === 'DATABASE_URL' || k === 'NATS_URL' || k.startsWith('OTEL_')) continue;
    env[k] = v;
  }
  env.RUST_BACKTRACE ??= '1';
  env.NO_COLOR = '1'; // plain logs in the log files
  return env;
}

function nginxBinary() {
  if (process.env.TIDINGS_NGINX) return process.env.TIDINGS_NGINX;
  for (const candidate of ['nginx', '/usr/sbin/nginx']) {
    if (spawnSync(candidate, ['-v']).status === 0) return candidate;
  }
  throw new Error('nginx is needed: run through tests/browser/run.sh (ensure_nginx) or set TIDINGS_NGINX');
}

function requireEnv(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run the tests through tests/browser/run.sh`);
  return value;
}

/** DATABASE_URL with another database name. */
export function databaseUrl(name) {
  const url = new URL(requireEnv('DATABASE_URL'));
  databases.add(name);
  url.pathname = `/${name}`;
  return url.toString();
}

/** Drops a test database (forcefully: a killed api may have left sessions). */
export async function dropDatabase(name) {
  const url = new URL(requireEnv('DATABASE_URL'));
  try {
    await execFileP('psql', [url.toString(), '-v', 'ON_ERROR_STOP=1', '-qAtc', `DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`], { timeout: 20_000 });
    databases.delete(name);
  } catch (error) {
    console.error(`# could not drop database ${name}: ${error.stderr ?? error.message}`);
  }
}

/** A unique name for this run's database, stream and subject prefix. */
export function runId() {
  return randomBytes(5).toString('hex');
}

/** Copies the test page and the current client library into `dir`. */
export function preparePage(dir) {
  fs.mkdirSync(dir, { recursive: true });
  for (const file of fs.readdirSync(path.join(HERE, 'page'))) {
    fs.copyFileSync(path.join(HERE, 'page', file), path.join(dir, file));
  }
  if (!fs.existsSync(CLIENT_JS)) throw new Error(`${CLIENT_JS} does not exist yet (the client library)`);
  fs.copyFileSync(CLIENT_JS, path.join(dir, 'tidings.js'));
}

// ---------------------------------------------------------------------------------
// The cluster
// ---------------------------------------------------------------------------------

export const JWT_SECRET = 'browser-tests-jwt-secret-0123456789abcdef';
const API_KEY = `browser-${randomBytes(12).toString('hex')}`;

/**
 * Starts api, edge-1, edge-2 and nginx. `edgeEnv` is added to both edges' environment
 * (e.g. `{ TIDINGS_REPLAY_LIMIT: '5' }`).
 */
export async function startCluster({ name = 'cluster', edgeEnv = {}, apiEnv = {} } = {}) {
  if (!fs.existsSync(BIN)) throw new Error(`${BIN} is missing: cargo build --locked -p tidings`);
  const cluster = new Cluster(name, edgeEnv, apiEnv);
  try {
    await cluster.start();
  } catch (error) {
    console.error(cluster.logs());
    await cluster.stop();
    throw error;
  }
  return cluster;
}

export class Cluster {
  constructor(name, edgeEnv, apiEnv) {
    this.name = name;
    this.id = runId();
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), `tidings-browser-${name}-`));
    fs.chmodSync(this.dir, 0o777); // nginx's workers may run as another user
    this.database = `tidings_test_browser_${this.id}`;
    this.edgeEnv = edgeEnv;
    this.apiEnv = apiEnv;
    this.edges = [null, null]; // {port, node, proc}
    this.procs = new Set();
    this.stopped = false;
  }

  get nginxUrl() {
    return `http://127.0.0.1:${this.nginxPort}`;
  }

  /** The test page's URL (with an optional query string). */
  pageUrl(query = '') {
    return `${this.nginxUrl}/app/index.html${query ? `?${query}` : ''}`;
  }

  commonEnv() {
    return {
      ...baseEnv(),
      NATS_URL: requireEnv('NATS_URL'),
      TIDINGS_STREAM: `BROWSER_${this.id.toUpperCase()}`,
      TIDINGS_SUBJECT_PREFIX: `browser${this.id}`,
      TIDINGS_STREAM_PARTITIONS: '16',
    };
  }

  async start() {
    // The api: gRPC for producers, HTTP for /readyz.
    this.apiPort = await freePort();
    this.apiHttpPort = await freePort();
    this.apiUrl = `http://127.0.0.1:${this.apiPort}`;
    this.apiEnvFull = {
      ...this.commonEnv(),
      DATABASE_URL: databaseUrl(this.database),
      TIDINGS_API_LISTEN: `127.0.0.1:${this.apiPort}`,
      TIDINGS_API_HTTP_LISTEN: `127.0.0.1:${this.apiHttpPort}`,
      TIDINGS_API_KEYS: `browser=${API_KEY}`,
      TIDINGS_SHUTDOWN_GRACE: '2s',
      ...this.apiEnv,
    };
    this.api = this.spawn('api', BIN, ['api'], { env: this.apiEnvFull });
    await this.waitReady('api', `http://127.0.0.1:${this.apiHttpPort}/readyz`, this.api);

    // The edges.
    for (const i of [0, 1]) {
      this.edges[i] = { port: await freePort(), node: `edge-${i + 1}`, proc: null };
    }
    await Promise.all([this.startEdge(0), this.startEdge(1)]);

    // nginx with the project's config, plus /app/ for the page.
    this.nginxPort = await freePort();
    const appDir = path.join(this.dir, 'app');
    preparePage(appDir);
    let conf = fs.readFileSync(NGINX_CONF, 'utf8');
    for (const i of [0, 1]) {
      const server = `server edge-${i + 1}:8080`;
      if (!conf.includes(server)) throw new Error(`${NGINX_CONF} must list \`${server}\``);
      conf = conf.replace(server, `server 127.0.0.1:${this.edges[i].port}`);
    }
    if (!conf.includes('listen 80;')) throw new Error(`${NGINX_CONF} must \`listen 80;\``);
    conf = conf.replace('listen 80;', `listen 127.0.0.1:${this.nginxPort};`);
    conf = conf.replaceAll('/var/log/nginx/', `${this.dir}/`);
    const end = conf.lastIndexOf('}');
    conf = `${conf.slice(0, end)}
    # Added by tests/browser/cluster.mjs: the test page and the client library.
    location /app/ {
        alias ${appDir}/;
        add_header Cache-Control "no-store" always;
    }
${conf.slice(end)}`;
    const p = this.dir;
    const main = `worker_processes 1;
daemon off;
pid ${p}/nginx.pid;
error_log ${p}/error.log info;
events { worker_connections 1024; }
http {
  include ${p}/mime.types;
  access_log ${p}/access.log;
  client_body_temp_path ${p}/body;
  proxy_temp_path ${p}/proxy;
  fastcgi_temp_path ${p}/fastcgi;
  uwsgi_temp_path ${p}/uwsgi;
  scgi_temp_path ${p}/scgi;
  include ${p}/tidings.conf;
}
`;
    // The page is an ES module: browsers insist on a JavaScript MIME type.
    fs.writeFileSync(
      path.join(p, 'mime.types'),
      'types {\n  text/html html;\n  text/javascript js mjs;\n  text/css css;\n  application/json json;\n  image/png png;\n}\n',
    );
    fs.writeFileSync(path.join(p, 'tidings.conf'), conf);
    fs.writeFileSync(path.join(p, 'nginx.conf'), main);
    this.nginx = this.spawn('nginx', nginxBinary(), ['-p', p, '-c', `${p}/nginx.conf`], {
      env: baseEnv(),
      group: true,
      deathSignal: 'TERM', // the master then stops its workers
    });
    await eventually('nginx to listen', async () => {
      if (this.nginx.exited) throw new Error(`nginx exited: ${JSON.stringify(this.nginx.exitStatus)}\n${tail(path.join(p, 'error.log'))}`);
      const errors = fs.existsSync(path.join(p, 'error.log')) ? fs.readFileSync(path.join(p, 'error.log'), 'utf8') : '';
      if (errors.includes('[emerg]')) throw new Error(`nginx failed:\n${errors}`);
      return httpOk(`${this.nginxUrl}/nginx-health`);
    }, { timeoutMs: 20_000 });
    await eventually('the edges through nginx', () => httpOk(`${this.nginxUrl}/readyz`), { timeoutMs: 20_000 });
  }

  spawn(name, cmd, args, options) {
    const proc = new Proc(name, cmd, args, { logFile: path.join(this.dir, `${name}.log`), ...options });
    this.procs.add(proc);
    proc.exit.then(() => this.procs.delete(proc));
    return proc;
  }

  async waitReady(what, url, proc, timeoutMs = 60_000) {
    await eventually(`${what} ready (${url})`, async () => {
      if (proc.exited) {
        throw new Error(`${what} exited ${JSON.stringify(proc.exitStatus)}:\n${tail(proc.logFile, 30)}`);
      }
      return httpOk(url);
    }, { timeoutMs });
  }

  edgeEnvFor(i) {
    return {
      ...this.commonEnv(),
      TIDINGS_EDGE_LISTEN: `127.0.0.1:${this.edges[i].port}`,
      TIDINGS_NODE_NAME: this.edges[i].node,
      TIDINGS_API_URL: this.apiUrl,
      TIDINGS_EDGE_API_KEY: API_KEY,
      TIDINGS_JWT_SECRET: JWT_SECRET,
      TIDINGS_TOPIC_MODES: 'ranking=latest,*=all',
      TIDINGS_PUBLIC_TOPICS: 'ranking',
      TIDINGS_DRAIN_WINDOW: '2s',
      TIDINGS_RETRY: '500ms',
      TIDINGS_SHUTDOWN_GRACE: '2s',
      ...this.edgeEnv,
    };
  }

  /** Starts (or restarts, on the same port) edge `i` (0 or 1) and waits for /readyz. */
  async startEdge(i) {
    const edge = this.edges[i];
    if (edge.proc && !edge.proc.exited) throw new Error(`${edge.node} is running`);
    edge.proc = this.spawn(edge.node, BIN, ['edge'], { env: this.edgeEnvFor(i) });
    await this.waitReady(edge.node, `${this.edgeUrl(i)}/readyz`, edge.proc);
  }

  /** Stops edge `i` with `signal` (SIGTERM drains) and waits for it to exit. */
  async stopEdge(i, signal = 'SIGTERM', waitMs = 15_000) {
    const proc = this.edges[i].proc;
    if (!proc || proc.exited) return proc?.exitStatus;
    return proc.stop(signal, waitMs);
  }

  /** Sends signal without waiting (a drain takes TIDINGS_DRAIN_WINDOW). */
  signalEdge(i, signal) {
    this.edges[i].proc?.signal(signal);
    return this.edges[i].proc?.exit;
  }

  edgeUrl(i) {
    return `http://127.0.0.1:${this.edges[i].port}`;
  }

  /** The index of the edge named `node` ('edge-1' → 0). */
  edgeIndex(node) {
    const i = this.edges.findIndex((e) => e.node === node);
    if (i < 0) throw new Error(`no edge named ${node}`);
    return i;
  }

  /** Edge `i`'s /metrics text. */
  async edgeMetrics(i) {
    const res = await fetch(`${this.edgeUrl(i)}/metrics`, { signal: AbortSignal.timeout(5000) });
    if (!res.ok) throw new Error(`${this.edges[i].node} /metrics: ${res.status}`);
    return res.text();
  }

  /** A metric's value (summed over its series matching `labels`) in edge `i`'s /metrics. */
  async edgeMetric(i, name, labels = {}) {
    const text = await this.edgeMetrics(i);
    let sum = 0;
    for (const line of text.split('\n')) {
      if (line.startsWith('#')) continue;
      const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
      if (!m || m[1] !== name) continue;
      const ok = Object.entries(labels).every(([k, v]) => (m[2] ?? '').includes(`${k}="${v}"`));
      if (ok) sum += Number(m[3]);
    }
    return sum;
  }

  /** Open streams on both edges (an edge that is down counts 0). */
  async openStreams() {
    const counts = [];
    for (const i of [0, 1]) {
      const proc = this.edges[i].proc;
      counts.push(proc && !proc.exited ? await this.edgeMetric(i, 'tidings_edge_connections') : 0);
    }
    return counts;
  }

  cliEnv() {
    return {
      ...baseEnv(),
      TIDINGS_API_URL: this.apiUrl,
      TIDINGS_API_KEY: API_KEY,
      TIDINGS_JWT_SECRET: JWT_SECRET,
    };
  }

  async cli(args) {
    try {
      const { stdout } = await execFileP(BIN, args, { env: this.cliEnv(), timeout: 30_000 });
      return stdout.trim();
    } catch (error) {
      throw new Error(`tidings ${args.join(' ')} failed: ${error.stderr || error.message}`);
    }
  }

  /** `tidings send --member <member> --content <content>`; returns the notification id. */
  async send(member, content, extra = []) {
    const out = JSON.parse(await this.cli(['send', '--member', member, '--content', content, ...extra]));
    const delivery = out.deliveries?.[0];
    if (!delivery?.notificationId) throw new Error(`tidings send printed no delivery: ${JSON.stringify(out)}`);
    return { id: delivery.notificationId, eventId: delivery.eventId, content };
  }

  /** `tidings send --topic <topic> --data <json>`; returns the event id. */
  async publish(topic, data) {
    const out = JSON.parse(await this.cli(['send', '--topic', topic, '--data', JSON.stringify(data)]));
    return out.eventId;
  }

  /** `tidings token --member <member> --ttl <ttl>`. */
  async token(member, ttl = '1h', topics = []) {
    const args = ['token', '--member', member, '--ttl', ttl];
    if (topics.length) args.push('--topics', topics.join(','));
    return this.cli(args);
  }

  /** The last lines of every log, for a failed test. */
  logs(lines = 40) {
    const files = fs.existsSync(this.dir) ? fs.readdirSync(this.dir).filter((f) => f.endsWith('.log')) : [];
    return files.map((f) => `----- ${this.name}: ${f} (last ${lines} lines) -----\n${tail(path.join(this.dir, f), lines)}`).join('\n');
  }

  /** Stops everything (edges, api, nginx), drops the database, removes the temp dir. */
  async stop() {
    if (this.stopped) return;
    this.stopped = true;
    const procs = [...this.procs];
    await Promise.all(procs.filter((p) => p.name !== 'nginx').map((p) => p.stop('SIGKILL', 5000)));
    await Promise.all(procs.filter((p) => p.name === 'nginx').map((p) => p.stop('SIGTERM', 5000)));
    await dropDatabase(this.database);
    if (!process.env.KEEP_LOGS) fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

/** A process tracked like the cluster's (for `tidings dev`). */
export function spawnTracked(name, cmd, args, options) {
  return new Proc(name, cmd, args, options);
}
