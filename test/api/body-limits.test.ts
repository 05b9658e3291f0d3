// Issue #20 §1, the pieces that bound a request body, alone: the JSON nesting scan, the YAML decode
// (depth while parsing, duplicate keys, aliases, expansion), the YAML decoder's worker bounds (time,
// heap, queue) and kube's Warning truncation. The HTTP behaviour: test/reliability/fuzz-bodies.test.ts.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { jsonNestingExceeds, jsonSizeWithin, shapeExceeds } from '../../src/api/body-limits.js';
import { ApiError } from '../../src/api/errors.js';
import { limitWarnings } from '../../src/api/warning-header.js';
import { decodeYamlText } from '../../src/api/yaml/decode.js';
import { YamlDecoder } from '../../src/api/yaml/decoder.js';

const LIMITS = { maxDepth: 20, maxAliases: 5, maxJsonChars: 10_000 };

test('jsonNestingExceeds counts brackets outside strings, escapes included, exactly at the limit', () => {
  const deep = (d: number): Buffer => Buffer.from('['.repeat(d) + ']'.repeat(d));
  assert.equal(jsonNestingExceeds(deep(1000), 1000), false);
  assert.equal(jsonNestingExceeds(deep(1001), 1000), true);
  const inString = Buffer.from(JSON.stringify({ s: '['.repeat(5000), t: '\\"[[[' + '{'.repeat(3000) }));
  assert.equal(jsonNestingExceeds(inString, 1000), false);
  // Too short to nest past the limit: not scanned.
  assert.equal(jsonNestingExceeds(Buffer.from('['.repeat(1500)), 1000), false);
});

test('shapeExceeds and jsonSizeWithin stop at their budget (a shared subtree is walked once per path)', () => {
  let v: unknown = ['x'];
  for (let i = 0; i < 40; i++) v = [v, v]; // 2^40 paths
  assert.equal(shapeExceeds(v, 100, 10_000), 'large');
  assert.equal(jsonSizeWithin(v, 1000), 1001);
  assert.equal(shapeExceeds({ a: { b: 1 } }, 2), undefined);
  assert.equal(shapeExceeds({ a: { b: {} } }, 2), 'deep');
});

test('decodeYamlText: depth refused while parsing, duplicate keys, aliases, expansion, multiple documents', () => {
  assert.deepEqual(decodeYamlText('a: [1, {b: c}]\n', LIMITS), { ok: true, json: '{"a":[1,{"b":"c"}]}' });
  for (const text of ['['.repeat(30) + ']'.repeat(30), '- '.repeat(30) + '1', Array.from({ length: 30 }, (_, i) => `${' '.repeat(i)}a:`).join('\n') + ' 1', 'a: &a [*a]']) {
    assert.deepEqual(decodeYamlText(text, LIMITS), { ok: false, kind: 'depth', reason: 'exceeded max depth of 20' }, text.slice(0, 20));
  }
  assert.deepEqual(decodeYamlText('a: 1\nb: 2\na: 3\n', LIMITS), { ok: false, kind: 'syntax', reason: 'Map keys must be unique at line 3, column 1' });
  assert.equal((decodeYamlText('a: 1\n---\nb: 2\n', LIMITS) as { reason: string }).reason, 'Source contains multiple documents; please use YAML.parseAllDocuments()');
  assert.deepEqual(decodeYamlText('a: &a 1\nb: [*a, *a, *a, *a, *a, *a]\n', LIMITS), { ok: false, kind: 'aliases', reason: 'document contains excessive aliasing: more than 5 aliases' });
  const bomb = 'a: &a [' + 'x,'.repeat(99) + 'x]\nb: &b [*a, *a, *a, *a]\nc: [*b]\n';
  assert.deepEqual(decodeYamlText(bomb, { ...LIMITS, maxJsonChars: 2000 }), { ok: false, kind: 'large', reason: 'the document expands to more than 2000 characters of JSON' });
  // A chain of anchors that expands to little is fine (the library's own alias estimate refused it).
  const chain = ['a0: &a0 [x]', ...Array.from({ length: 4 }, (_, i) => `a${i + 1}: &a${i + 1} [*a${i}]`)].join('\n');
  assert.equal(decodeYamlText(chain, LIMITS).ok, true);
  const bad = decodeYamlText('a: [1\n', LIMITS);
  assert.equal(bad.ok, false);
  assert.match((bad as { reason: string }).reason, / at line 2, column 1$/);
});

test('YamlDecoder: a body past the time or memory bound is a 413, a full queue a 429; the worker is replaced', { timeout: 60_000 }, async () => {
  const slow = new YamlDecoder({ maxDepth: 1000, maxJsonChars: 1e8, timeoutMs: 200, maxQueue: 1 });
  try {
    const heavy = `x: [${'1,'.repeat(400_000)}1]`;
    const first = slow.decode(heavy);
    const queued = slow.decode('a: 1');
    await assert.rejects(slow.decode('b: 2'), (err: unknown) => err instanceof ApiError && err.httpCode === 429 && (err.details?.retryAfterSeconds ?? 0) > 0);
    await assert.rejects(first, (err: unknown) => err instanceof ApiError && err.httpCode === 413 && /could not be decoded within 0.2s/.test(err.message));
    assert.deepEqual(await queued, { a: 1 }, 'the next body is decoded by a new worker');
  } finally {
    await slow.close();
  }
  const small = new YamlDecoder({ maxDepth: 1000, maxJsonChars: 1e8, maxHeapMb: 16 });
  try {
    await assert.rejects(small.decode(`x: [${'{},'.repeat(600_000)}{}]`), (err: unknown) => err instanceof ApiError && err.httpCode === 413 && /needs more than 16 MiB of memory/.test(err.message));
    assert.deepEqual(await small.decode('ok: true'), { ok: true });
  } finally {
    await small.close();
  }
});

test('Warning headers: kube\'s truncation (4096 characters in all, then 256 per warning) and dedup', () => {
  assert.deepEqual(limitWarnings(['a', 'b', 'a', '']), ['a', 'b']);
  const many = Array.from({ length: 500 }, (_, i) => `unknown field "f${i}"`);
  const out = limitWarnings(many);
  assert.ok(out.length < many.length);
  assert.ok(out.join('').length <= 4096 + 256);
  const long = ['x'.repeat(5000), 'y'];
  assert.deepEqual(limitWarnings(long), ['x'.repeat(256), 'y']);
});
