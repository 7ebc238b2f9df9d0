// The hand-written declarations against the code: every value tidings.js and react.js
// export is declared and every declared one exists; the client, its inbox, its snapshot
// and its options have exactly the members tidings.d.ts gives them. (What the declared
// types accept is test/types.test-d.ts's job, checked by tsc.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { register } from 'node:module';
import { fileURLToPath } from 'node:url';

import * as tidings from '../tidings.js';
import { declarations } from './typescript.mjs';
import { fakeEdge, recordingTimers, testOptions } from './helpers.mjs';

const file = (name) => fileURLToPath(new URL(`../${name}`, import.meta.url));
const sorted = (names) => [...names].sort();

// react.js imports React, a peer dependency not installed here: a stand-in will do.
const fakeReact = 'export function useSyncExternalStore() {} export function useCallback(fn) { return fn; }';
const hooks = `export async function resolve(specifier, context, next) {
  if (specifier === 'react') return { url: 'data:text/javascript,' + encodeURIComponent(${JSON.stringify(fakeReact)}), shortCircuit: true };
  return next(specifier, context);
}`;
register(`data:text/javascript,${encodeURIComponent(hooks)}`, import.meta.url);

const core = declarations(file('tidings.d.ts'));
const react = declarations(file('react.d.ts'));

test('tidings.d.ts declares exactly the values tidings.js exports', () => {
  assert.deepEqual(sorted(core.values), sorted(Object.keys(tidings)));
});

test('react.d.ts declares exactly the hooks react.js exports', async () => {
  const module = await import('../react.js');
  assert.deepEqual(sorted(react.values), sorted(Object.keys(module)));
});

test('a client has the members TidingsClient, TidingsInbox and TidingsSnapshot declare', () => {
  const edge = fakeEdge();
  const client = tidings.createTidings(testOptions(edge, recordingTimers(), { auth: { cookie: true } }));
  try {
    const members = new Set([
      ...Object.keys(client),
      ...Object.getOwnPropertyNames(Object.getPrototypeOf(client)).filter((n) => n !== 'constructor'),
    ]);
    assert.deepEqual(sorted(members), sorted(core.interfaces.get('TidingsClient')), 'TidingsClient');
    assert.deepEqual(sorted(Object.keys(client.inbox)), sorted(core.interfaces.get('TidingsInbox')), 'TidingsInbox');
    assert.deepEqual(sorted(Object.keys(client.getSnapshot())), sorted(core.interfaces.get('TidingsSnapshot')), 'TidingsSnapshot');
  } finally {
    client.close();
  }
});

test('TidingsOptions declares exactly the options createTidings reads', () => {
  // The options the constructor destructures, plus those it reads as options.<name>.
  const source = fs.readFileSync(file('tidings.js'), 'utf8');
  const ctor = source.slice(source.indexOf('constructor(options = {})'));
  const destructured = /const \{([^}]*)\} = options;/.exec(ctor)[1];
  const read = new Set(destructured.split(',').map((p) => p.trim().split(/\s*=/)[0]).filter(Boolean));
  for (const m of ctor.slice(0, ctor.indexOf('this.#start()')).matchAll(/options\.(\w+)/g)) read.add(m[1]);
  assert.deepEqual(sorted(read), sorted(core.interfaces.get('TidingsOptions')));
});

test('ClientEvents declares exactly the events the client emits itself', () => {
  const source = fs.readFileSync(file('tidings.js'), 'utf8');
  const names = /const CLIENT_EVENTS = new Set\(\[([^\]]*)\]\)/.exec(source)[1].match(/'(\w+)'/g).map((s) => s.slice(1, -1));
  assert.deepEqual(sorted(names), sorted(core.interfaces.get('ClientEvents')));
});
