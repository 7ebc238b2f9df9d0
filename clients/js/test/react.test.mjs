// The React hooks, against a stand-in `react` module (React is only a peer dependency):
// a module hook resolves `react` to a fake whose useSyncExternalStore records its
// arguments and returns getSnapshot().
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { register } from 'node:module';
import { createTidings } from '../tidings.js';
import { connected, fakeEdge, recordingTimers, testOptions, waitFor } from './helpers.mjs';

const fakeReact = `
export function useSyncExternalStore(subscribe, getSnapshot, getServerSnapshot) {
  globalThis.__reactCalls.push({ subscribe, getSnapshot, getServerSnapshot });
  return getSnapshot();
}
export function useCallback(fn) { return fn; }
`;
const hooks = `
export async function resolve(specifier, context, next) {
  if (specifier === 'react') return { url: 'data:text/javascript,' + encodeURIComponent(${JSON.stringify(fakeReact)}), shortCircuit: true };
  return next(specifier, context);
}
`;
register(`data:text/javascript,${encodeURIComponent(hooks)}`, import.meta.url);
globalThis.__reactCalls = [];
const { useTidings, useTopic } = await import('../react.js');

const T = { timeout: 5000 };

test('useTidings subscribes to the store and returns the snapshot', T, async () => {
  const edge = fakeEdge();
  const client = createTidings(testOptions(edge, recordingTimers(), { auth: null, topics: ['ranking'] }));
  try {
    const s = edge.stream();
    const snap = useTidings(client);
    assert.equal(snap, client.getSnapshot());
    const call = globalThis.__reactCalls.at(-1);
    assert.equal(call.getSnapshot, client.getSnapshot);
    assert.equal(call.getServerSnapshot, client.getSnapshot);
    let renders = 0;
    const unsubscribe = call.subscribe(() => { renders += 1; });
    connected(s, { id: 'aa-1', member: null });
    await waitFor(() => client.getSnapshot().status.state === 'live');
    assert.ok(renders >= 1);
    assert.notEqual(call.getSnapshot(), snap);
    unsubscribe();
    const before = renders;
    s.event('ranking', [1], 'aa-2');
    await waitFor(() => client.getSnapshot().topics.ranking);
    assert.equal(renders, before, 'no call after unsubscribe');
  } finally {
    client.close();
  }
});

test('useTopic selects one topic and stays stable while others change', T, async () => {
  const edge = fakeEdge();
  const client = createTidings(testOptions(edge, recordingTimers(), { auth: null, topics: ['ranking', 'other'] }));
  try {
    const s = edge.stream();
    assert.equal(useTopic(client, 'ranking'), undefined);
    const select = globalThis.__reactCalls.at(-1).getSnapshot;
    connected(s, { id: 'aa-1', member: null });
    s.event('ranking', { top: ['alice'] }, 'aa-2');
    await waitFor(() => select());
    const value = select();
    assert.deepEqual(value, { top: ['alice'] });
    s.event('other', 1, 'aa-3');
    await waitFor(() => client.getSnapshot().topics.other === 1);
    assert.equal(select(), value, 'same reference: no re-render');
    assert.deepEqual(useTopic(client, 'ranking'), { top: ['alice'] });
  } finally {
    client.close();
  }
});
