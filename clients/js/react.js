/**
 * React bindings for the Tidings client: hooks over the client's store with
 * `useSyncExternalStore` (React 18+). The core module (`tidings.js`) never imports React.
 *
 * @module tidings/react
 */
import { useCallback, useSyncExternalStore } from 'react';

/**
 * The client's current snapshot; the component re-renders when it changes.
 * @param {import('./tidings.js').TidingsClient} client
 * @returns {import('./tidings.js').TidingsSnapshot}
 */
export function useTidings(client) {
  return useSyncExternalStore(client.subscribe, client.getSnapshot, client.getSnapshot);
}

/**
 * The latest value of one topic (`undefined` until it arrives); the component
 * re-renders only when that value changes.
 * @param {import('./tidings.js').TidingsClient} client
 * @param {string} name the topic's event name
 * @returns {unknown}
 */
export function useTopic(client, name) {
  const select = useCallback(() => client.getSnapshot().topics[name], [client, name]);
  return useSyncExternalStore(client.subscribe, select, select);
}
