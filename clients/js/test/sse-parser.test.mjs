import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SseParser, TidingsError, parseEventId } from '../tidings.js';

/** Feeds `chunks` to a fresh parser; returns what it produced. */
function parse(chunks, opts = {}) {
  const events = [];
  const retries = [];
  const comments = [];
  const parser = new SseParser({
    onEvent: (e) => events.push(e),
    onRetry: (ms) => retries.push(ms),
    onComment: (c) => comments.push(c),
    ...opts,
  });
  for (const c of chunks) parser.feed(c);
  return { events, retries, comments, parser };
}

const T = { timeout: 5000 };

test('one event with id, name and data', T, () => {
  const { events } = parse(['id: e-1\nevent: notification\ndata: {"a":1}\n\n']);
  assert.deepEqual(events, [{ type: 'notification', data: '{"a":1}', id: 'e-1', lastEventId: 'e-1' }]);
});

test('an event split at every possible point parses the same', T, () => {
  const text = 'retry: 250\n: hi\nid: x-7\r\nevent: score\r\ndata: line one\rdata: line two\n\ndata: tail\n\n';
  const whole = parse([text]);
  for (let i = 1; i < text.length; i += 1) {
    const split = parse([text.slice(0, i), text.slice(i)]);
    assert.deepEqual(split.events, whole.events, `split at ${i}`);
    assert.deepEqual(split.retries, [250]);
  }
  // and one character at a time
  assert.deepEqual(parse([...text]).events, whole.events);
  assert.equal(whole.events.length, 2);
  assert.deepEqual(whole.events[0], { type: 'score', data: 'line one\nline two', id: 'x-7', lastEventId: 'x-7' });
  assert.deepEqual(whole.events[1], { type: 'message', data: 'tail', id: null, lastEventId: 'x-7' });
});

test('multi-line data joins with LF, no trailing LF', T, () => {
  const { events } = parse(['data: a\ndata:b\ndata:  c\ndata\n\n']);
  assert.equal(events[0].data, 'a\nb\n c\n');
});

test('CRLF at a chunk boundary does not make an empty line', T, () => {
  const { events } = parse(['data: one\r', '\ndata: two\r\n', '\r\n']);
  assert.deepEqual(events.map((e) => e.data), ['one\ntwo']);
});

test('CR alone ends lines', T, () => {
  const { events } = parse(['event: t\rdata: x\r\r']);
  assert.deepEqual(events.map((e) => [e.type, e.data]), [['t', 'x']]);
});

test('comments are reported and ignored', T, () => {
  const { events, comments } = parse([': heartbeat\n\n:\n', 'data: x\n\n']);
  assert.deepEqual(comments, [' heartbeat', '']);
  assert.equal(events.length, 1);
});

test('retry: only all digits counts', T, () => {
  const { retries, events } = parse(['retry: 1500\nretry: 12a\nretry: -5\nretry:\nretry:700\n\n']);
  assert.deepEqual(retries, [1500, 700]);
  assert.equal(events.length, 0);
});

test('no data, no event; an id without data still moves lastEventId', T, () => {
  const { events, parser } = parse(['event: x\nid: 9\n\n', 'data: y\n\n']);
  assert.deepEqual(events, [{ type: 'message', data: 'y', id: null, lastEventId: '9' }]);
  assert.equal(parser.lastEventId, '9');
});

test('an id with NUL is ignored; field without colon; unknown fields ignored', T, () => {
  const { events } = parse(['id: a\0b\nfoo: bar\ndata\n\n']);
  assert.deepEqual(events, [{ type: 'message', data: '', id: null, lastEventId: '' }]);
});

test('a leading BOM is stripped, an incomplete event at the end is not dispatched', T, () => {
  const { events } = parse(['\uFEFFdata: a\n\ndata: never']);
  assert.deepEqual(events.map((e) => e.data), ['a']);
});

test('a line over the limit throws overflow', T, () => {
  const parser = new SseParser({ maxBufferLength: 16 });
  parser.feed('data: 0123456789');
  assert.throws(() => parser.feed('0123456789'), (e) => e instanceof TidingsError && e.code === 'overflow');
});

test('event data over the limit throws overflow', T, () => {
  const parser = new SseParser({ maxBufferLength: 20 });
  assert.throws(() => parser.feed('data: 0123456789\ndata: 0123456789\n'), (e) => e.code === 'overflow');
});

test('parseEventId reads epoch-seq ids, null otherwise', T, () => {
  assert.deepEqual(parseEventId('18ea3c347dd1bd36-42'), { epoch: '18ea3c347dd1bd36', seq: 42n });
  assert.deepEqual(parseEventId('AB-18446744073709551615'), { epoch: 'ab', seq: 18446744073709551615n });
  assert.equal(parseEventId('opaque'), null);
  assert.equal(parseEventId(''), null);
  assert.equal(parseEventId(null), null);
  assert.equal(parseEventId('zz-1'), null);
});
