// The in-flight limiter behind --max-requests-inflight / --max-mutating-requests-inflight, and its
// 429 reply (Retry-After + a TooManyRequests Status) through a real server.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { InflightLimiter, isMutatingMethod } from '../../src/api/inflight-limit.js';
import { request as httpsRequest } from 'node:https';
import { waitFor } from '../helpers/plugin.js';
import { apiRequest, startTestServer } from '../helpers/server.js';

test('read-only and mutating requests have separate limits; release frees a slot once', () => {
  const l = new InflightLimiter({ maxRequestsInflight: 2, maxMutatingRequestsInflight: 1 });
  const r1 = l.tryAcquire(false);
  const r2 = l.tryAcquire(false);
  assert.ok(r1 && r2);
  assert.equal(l.tryAcquire(false), undefined, 'the third read-only request is refused');
  const m1 = l.tryAcquire(true);
  assert.ok(m1, 'mutating slots are separate');
  assert.equal(l.tryAcquire(true), undefined);
  r1();
  r1(); // a second release must not free another slot
  assert.deepEqual(l.inflight, { readOnly: 1, mutating: 1 });
  assert.ok(l.tryAcquire(false));
  assert.equal(l.tryAcquire(false), undefined);
  assert.equal(l.rejected, 3);
  assert.ok(isMutatingMethod('PATCH') && !isMutatingMethod('GET'));
});

test('0 means no limit; negative limits are refused naming the flag', () => {
  const l = new InflightLimiter({ maxRequestsInflight: 0, maxMutatingRequestsInflight: 0 });
  for (let i = 0; i < 1000; i++) assert.ok(l.tryAcquire(i % 2 === 0));
  assert.throws(() => new InflightLimiter({ maxRequestsInflight: -1, maxMutatingRequestsInflight: 1 }), /--max-requests-inflight/);
});

test('over the limit the server answers 429 with Retry-After and a TooManyRequests Status; health stays open', async () => {
  const s = await startTestServer({ maxRequestsInflight: 1, maxMutatingRequestsInflight: 1 });
  try {
    // Hold the one mutating slot: a POST whose body has not arrived yet is in flight.
    const body = JSON.stringify({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'held' }, stringData: { k: 'v' } });
    let held: Promise<number> = Promise.resolve(0);
    const req = httpsRequest(new URL('/api/v1/namespaces/default/secrets', s.server.url), {
      method: 'POST', ca: s.server.caPem,
      headers: { Authorization: `Bearer ${s.server.token}`, 'Content-Type': 'application/json', 'Content-Length': String(body.length) },
    });
    held = new Promise((resolve, reject) => {
      req.on('response', (res) => { res.resume(); res.on('end', () => resolve(res.statusCode ?? 0)); });
      req.on('error', reject);
    });
    req.flushHeaders();
    req.write(body.slice(0, 5));
    const post = () => apiRequest(s.server, 'POST', '/api/v1/namespaces/default/secrets', { body: JSON.stringify({ apiVersion: 'v1', kind: 'Secret', metadata: { generateName: 'x-' } }) });
    const limited = await waitFor('a 429 while the slot is held', async () => {
      const r = await post();
      return r.status === 429 ? r : undefined;
    });
    assert.equal(limited.headers['retry-after'], '1');
    // Authentication comes first (kube's handler order): without a valid token it is a 401, not a 429.
    const anonymous = await apiRequest(s.server, 'POST', '/api/v1/namespaces/default/secrets', { token: 'not-a-token', body: '{}' });
    assert.equal(anonymous.status, 401, anonymous.text);
    const status = limited.json<{ kind: string; reason: string; code: number; details: { retryAfterSeconds: number } }>();
    assert.deepEqual([status.kind, status.reason, status.code, status.details.retryAfterSeconds], ['Status', 'TooManyRequests', 429, 1]);
    assert.equal((await apiRequest(s.server, 'GET', '/api/v1/namespaces/default/secrets')).status, 200, 'read-only requests have their own limit');
    assert.equal((await apiRequest(s.server, 'GET', '/readyz')).status, 200, 'health endpoints are not limited');
    req.end(body.slice(5));
    assert.equal(await held, 201);
    assert.equal((await post()).status, 201, 'answers normally once the slot is free');
  } finally {
    await s.close();
  }
});
