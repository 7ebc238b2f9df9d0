// Type declarations for tidings.js (hand-written).

/** Why a credential is asked for. */
export type CredentialReason =
  | 'connect' // the first connect
  | 'reconnect' // a reconnect after the stream ended or failed
  | 'reauth' // the edge announced the token's expiry
  | 'unauthorized' // the edge answered 401: return a fresh credential, not a cached one
  | 'request' // an inbox REST call
  | 'identify'; // naming the cross-tab lock (shareAcrossTabs)

export interface CredentialContext {
  reason: CredentialReason;
}

/** The `tidings_token` cookie authenticates the stream and REST (`credentials: 'include'`). */
export interface CookieAuth {
  cookie: true;
}

/** A JWT from `getToken()`, asked for on every connect. */
export interface TokenAuth {
  getToken: (context: CredentialContext) => string | Promise<string>;
  /** `header` (default): `Authorization: Bearer`; `query`: `?access_token=` on the stream (REST always uses the header). */
  via?: 'header' | 'query';
}

/** A single-use ticket from `getTicket()` on every connect (`?ticket=`); REST uses `getToken`'s bearer, else the cookie. */
export interface TicketAuth {
  getTicket: (context: CredentialContext) => string | Promise<string>;
  getToken?: (context: CredentialContext) => string | Promise<string>;
  cookie?: boolean;
}

export type TidingsAuth = CookieAuth | TokenAuth | TicketAuth;

/** The subset of Web Locks the client uses (`navigator.locks`). */
export interface LockManagerLike {
  request<T>(name: string, options: { signal?: AbortSignal }, callback: (lock: unknown) => T | Promise<T>): Promise<T>;
}

/** The subset of BroadcastChannel the client uses. */
export interface BroadcastChannelLike {
  postMessage(message: unknown): void;
  close(): void;
  /** The client sets it; it reads only `event.data`. */
  onmessage: ((event: MessageEvent) => void) | null;
}

export interface TidingsOptions {
  /** The edge's base URL, e.g. `https://edge.example.com` (no trailing `/v1`). */
  edgeUrl: string;
  /** How to authenticate; omit or `null` for anonymous (public topics only, no inbox). */
  auth?: TidingsAuth | null;
  /** Broadcast topics to join. */
  topics?: string[];
  /** One stream per browser (per edge, member and topics) shared by all tabs. Default false. */
  shareAcrossTabs?: boolean;
  /** Inbox page size; the store keeps at most `pageSize * 5` notifications. Default 20. */
  pageSize?: number;
  /** Longest reconnect delay (before a Retry-After). Default 30000. */
  maxBackoffMs?: number;
  /** A stream silent this long (no event, no heartbeat) is dropped and resumed; 0 disables. Default 45000. */
  idleTimeoutMs?: number;
  /** The BroadcastChannel name; default: the lock name. */
  channelName?: string;
  // Injected for tests; default to the globals.
  fetch?: typeof fetch;
  locks?: LockManagerLike;
  BroadcastChannel?: new (name: string) => BroadcastChannelLike;
  random?: () => number;
  setTimeout?: (fn: () => void, ms: number) => unknown;
  clearTimeout?: (id: any) => void;
}

export type TidingsStatus =
  | { readonly state: 'connecting' }
  | { readonly state: 'live' }
  | { readonly state: 'reconnecting'; readonly attempt: number; readonly retryMs: number }
  | { readonly state: 'resumed'; readonly missed: number }
  | { readonly state: 'closed'; readonly reason: 'closed' | 'unauthenticated' | 'forbidden' | 'bad_request' };

/** An inbox item, from the stream or from REST. */
export interface TidingsNotification<D = unknown> {
  readonly id: string;
  readonly type: string;
  readonly content: string;
  readonly data: D | null;
  readonly groupId: string | null;
  /** RFC 3339. */
  readonly createdAt: string;
  /** RFC 3339, null while unread. */
  readonly readAt: string | null;
  /** The SSE id it came with (or the one the inbox recorded); null when unknown. */
  readonly eventId: string | null;
  /** RFC 3339 when archived (REST lists with `archived`); absent or null otherwise. */
  readonly archivedAt?: string | null;
}

/** `connected` event data. */
export interface ConnectedInfo {
  connectionId: number;
  memberId: string | null;
  node: string;
  resumed: boolean;
  /** The member's routing key (absent on an anonymous stream); the client sends it back as `?affinity=` on every later connect. */
  affinity?: string;
}

/** The store's immutable snapshot; a new object only when something changed. */
export interface TidingsSnapshot {
  readonly status: TidingsStatus;
  readonly unreadCount: number;
  /** Newest first, deduped by id, at most `pageSize * 5`. */
  readonly notifications: readonly TidingsNotification[];
  /** The latest data per topic event name. */
  readonly topics: Readonly<Record<string, unknown>>;
  /** The id of the last event delivered (what a reconnect resumes from). */
  readonly lastEventId: string | null;
  /** The member the stream is for; null when anonymous or not yet connected. */
  readonly member: string | null;
  /** Whether this tab holds the stream (always true without shareAcrossTabs, once started). */
  readonly leader: boolean;
}

export interface TopicMeta {
  /** The event's SSE id; null for a `latest` value older than the stream position. */
  id: string | null;
}

export interface ClientEvents {
  notification: (item: TidingsNotification) => void;
  unread: (count: number) => void;
  /** After a reset: the inbox is reloaded. `reason` is the edge's (e.g. `history_trimmed`). */
  reset: (reason: string | null) => void;
  status: (status: TidingsStatus) => void;
  connected: (info: ConnectedInfo) => void;
  /** Background failures (the inbox load after start or reset, cross-tab messaging). */
  error: (error: unknown) => void;
}

export interface ListOptions {
  cursor?: string;
  /** Default: pageSize. */
  limit?: number;
  unreadOnly?: boolean;
  /** Archived notifications: left out (`exclude`, the default), `include`d, or `only` them. */
  archived?: 'exclude' | 'include' | 'only';
}

export interface InboxPage {
  notifications: readonly TidingsNotification[];
  /** Empty when there is no next page. */
  nextCursor: string;
}

/** Notification ids: an array, a Set or another iterable of them, but not one id as a string (rejected with a TypeError). */
export type Ids<I extends Iterable<string>> = I extends string ? never : I;

export interface TidingsInbox {
  list(options?: ListOptions): Promise<InboxPage>;
  /** Marks these notifications read; resolves with the new unread count. */
  markRead<I extends Iterable<string>>(ids: Ids<I>): Promise<number>;
  /** Marks everything up to the newest notification read; 0 (and no call) when the inbox is empty. */
  markAllRead(): Promise<number>;
  /**
   * Archives these notifications (out of the default list and the unread count, still
   * listed with `archived: 'only'`); they leave the store. Resolves with the new unread
   * count; rejects with code `not_found` (archiving nothing) if one is not the member's.
   */
  archive<I extends Iterable<string>>(ids: Ids<I>): Promise<number>;
  /**
   * Deletes these notifications for good; they leave the store. Ids the member does not
   * have are skipped, so a retry succeeds. Resolves with the new unread count.
   */
  delete<I extends Iterable<string>>(ids: Ids<I>): Promise<number>;
  unreadCount(): Promise<number>;
}

export interface TidingsClient {
  /** Listens to a client event, or to a topic by its event name; returns the unsubscribe function. */
  on<K extends keyof ClientEvents>(event: K, fn: ClientEvents[K]): () => void;
  /** A topic by its event name; a client event's name always means the client event (use `onTopic`). */
  on<T = unknown, N extends string = string>(
    topic: N extends keyof ClientEvents ? never : N,
    fn: (data: T, meta: TopicMeta) => void,
  ): () => void;
  /** Listens to a topic whatever its name (also one named like a client event). */
  onTopic<T = unknown>(name: string, fn: (data: T, meta: TopicMeta) => void): () => void;
  /** Inbox REST calls; they reject with code `unauthenticated` for an anonymous client. */
  readonly inbox: TidingsInbox;
  /** For `useSyncExternalStore`: bound, safe to pass around. */
  readonly subscribe: (listener: () => void) => () => void;
  readonly getSnapshot: () => TidingsSnapshot;
  /** Stops the stream, timers, the cross-tab lock and channel; status becomes `closed`. */
  close(): void;
}

/** Creates a client and starts it (connects, or follows the leader tab). */
export function createTidings(options: TidingsOptions): TidingsClient;

export class TidingsError extends Error {
  constructor(message: string, details?: { status?: number; code?: string; cause?: unknown });
  readonly status: number | null;
  readonly code: string | null;
}

/** Trades a bearer token for a single-use stream ticket (`POST /v1/stream/ticket`). */
export function fetchTicket(args: { edgeUrl: string; token: string; fetch?: typeof fetch }): Promise<string>;

export interface SseEvent {
  type: string;
  data: string;
  /** The event's own `id:` field, null when it had none. */
  id: string | null;
  /** The last event ID buffer (as EventSource's `lastEventId`). */
  lastEventId: string;
}

/** A streaming WHATWG Server-Sent Events parser. */
export class SseParser {
  constructor(handlers?: {
    onEvent?: (event: SseEvent) => void;
    onRetry?: (ms: number) => void;
    onComment?: (text: string) => void;
    maxBufferLength?: number;
  });
  lastEventId: string;
  /** Throws a TidingsError with code `overflow` past maxBufferLength. */
  feed(text: string): void;
}

/** `<epoch hex>-<sequence>`, or null for another shape. */
export function parseEventId(id: string | null | undefined): { epoch: string; seq: bigint } | null;

/** The jittered, capped backoff for a reconnect attempt (1-based). */
export function reconnectDelay(args: {
  attempt: number;
  retryMs?: number;
  maxBackoffMs?: number;
  retryAfterMs?: number | null;
  random?: () => number;
}): number;

/** A Retry-After header in ms (seconds or HTTP date), null when absent. */
export function parseRetryAfter(value: string | null | undefined, now?: number): number | null;

export const DEFAULT_RETRY_MS: number;
export const MAX_BUFFER_LENGTH: number;
