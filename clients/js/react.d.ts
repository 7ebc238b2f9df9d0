import type { TidingsClient, TidingsSnapshot } from './tidings.js';

/** The client's current snapshot; the component re-renders when it changes. */
export function useTidings(client: TidingsClient): TidingsSnapshot;

/**
 * The latest value of one topic (`undefined` until it arrives); the component
 * re-renders only when that value changes.
 */
export function useTopic<T = unknown>(client: TidingsClient, name: string): T | undefined;
