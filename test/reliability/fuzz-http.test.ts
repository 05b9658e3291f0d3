// Issue #8 §5, bad input on the REST handlers of a running `atrest serve` (startApiServer in the
// test process, real HTTPS) and on the protobuf request decoder (fast-check): malformed and random
// JSON/YAML/protobuf bodies, bodies beyond the 3 MiB limit (413 like kube), deep nesting, bad names
// (DNS-1123 → 422 naming metadata.name), bad base64 in Secret data, wrong content types. Every
// answer is a 4xx (or a 2xx when the input happens to be valid) with a Status carrying a one-line
// message; never a 5xx, a crash or a hang; the server answers normally afterwards.
// CI-sized run counts; ATREST_FUZZ_RUNS raises them (`npm run fuzz:long`).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { test } from 'node:test';
import fc from 'fast-check';
import { ApiError } from '../../src/api/errors.js';
import { decodeProtobufObject } from '../../src/api/protobuf.js';
import { PROTOBUF_MAGIC } from '../../src/k8s-objects/protobuf.js';
import { apiRequest, startTestServer, type HttpResult } from '../helpers/server.js';

const RUNS = Number(process.env['ATREST_FUZZ_RUNS'] ?? 150);
const SECRETS = '/api/v1/namespaces/default/secrets';
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

const captures = readFileSync(new URL('../fixtures/kubectl-captures/scenario_kubectl.requests.jsonl', import.meta.url), 'utf8')
  .split('\n').filter((l) => l.trim() !== '').map((l) => JSON.parse(l) as { ct?: string; body64?: string });
const protobufBodies = captures.filter((c) => c.ct === 'application/vnd.kubernetes.protobuf' && c.body64).map((c) => Buffer.from(c.body64!, 'base64'));

const counts: Record<string, Record<string, number>> = {};
function tally(prop: string, r: HttpResult): void {
  const byStatus = (counts[prop] ??= {});
  byStatus[r.status] = (byStatus[r.status] ?? 0) + 1;
  assert.ok(r.status < 500, `${prop}: ${r.status} ${r.text.slice(0, 300)}`);
  if (r.status >= 400) {
    const st = r.json<{ kind: string; message: string; code: number }>();
    assert.equal(st.kind, 'Status');
    assert.equal(st.code, r.status);
    assert.ok(st.message.length > 0 && !/[\r\n]/.test(st.message), `${prop}: message ${JSON.stringify(st.message)}`);
  }
}

const mutateBytes = (base: Buffer) => fc.record({ at: fc.nat(), op: fc.constantFrom('flip', 'cut', 'insert'), bytes: fc.uint8Array({ minLength: 1, maxLength: 6 }) })
  .map(({ at, op, bytes }) => {
    const i = at % Math.max(1, base.length);
    if (op === 'flip') { const b = Buffer.from(base); b[i]! ^= bytes[0]! | 1; return b; }
    if (op === 'cut') return base.subarray(0, i);
    return Buffer.concat([base.subarray(0, i), bytes, base.subarray(i)]);
  });

test('protobuf request decoder: random and mutated bodies throw only ApiError (400/415)', async () => {
  let thrown = 0;
  let decoded = 0;
  const check = (b: Buffer): void => {
    try { decodeProtobufObject(b); decoded++; } catch (err) {
      assert.ok(err instanceof ApiError, `untyped: ${String(err)}`);
      assert.ok(err.httpCode === 400 || err.httpCode === 415, String(err.httpCode));
      thrown++;
    }
  };
  await fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), (b) => check(Buffer.concat([PROTOBUF_MAGIC, b]))), { numRuns: RUNS * 10 });
  await fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), (b) => check(Buffer.from(b))), { numRuns: RUNS * 5 });
  for (const base of protobufBodies) await fc.assert(fc.property(mutateBytes(base), check), { numRuns: RUNS * 5 });
  console.log(`RELIABILITY ${JSON.stringify({ section: 'fuzz-protobuf', runs: decoded + thrown, decoded, rejected: thrown, capturedBodies: protobufBodies.length })}`);
  assert.ok(protobufBodies.length > 0);
});

test('REST handlers over HTTPS: malformed, random, huge, deep, badly named and badly typed bodies get a clear 4xx', { timeout: 600_000 }, async () => {
  const ts = await startTestServer();
  const s = ts.server;
  const req = (method: string, path: string, body: string | Buffer, contentType = 'application/json'): Promise<HttpResult> =>
    apiRequest(s, method, path, { body, headers: { 'Content-Type': contentType } });
  try {
    const valid = JSON.stringify({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'fz' }, data: { k: 'dmFsdWU=' } });
    // Malformed JSON: mutations of a valid body, random strings, random JSON values, on create/update/patch.
    await fc.assert(fc.asyncProperty(mutateBytes(Buffer.from(valid)), async (b) => tally('mutated-json', await req('POST', SECRETS, b))), { numRuns: RUNS });
    await fc.assert(fc.asyncProperty(fc.string({ minLength: 1, maxLength: 200 }), fc.constantFrom('POST', 'PUT', 'PATCH'), async (b, m) => {
      const path = m === 'POST' ? SECRETS : `${SECRETS}/fz`;
      tally('random-string', await req(m, path, b, m === 'PATCH' ? 'application/merge-patch+json' : 'application/json'));
    }), { numRuns: RUNS });
    await fc.assert(fc.asyncProperty(fc.json({ maxDepth: 6 }), async (b) => tally('random-json', await req('POST', '/api/v1/namespaces/default/configmaps', b))), { numRuns: RUNS });
    await fc.assert(fc.asyncProperty(fc.string({ maxLength: 200 }), async (b) => tally('random-yaml', await req('POST', SECRETS, `metadata:\n  name: y\n${b}`, 'application/yaml'))), { numRuns: RUNS });
    // Protobuf bodies over HTTP.
    await fc.assert(fc.asyncProperty(fc.uint8Array({ maxLength: 200 }), async (b) => tally('random-protobuf', await req('POST', SECRETS, Buffer.concat([PROTOBUF_MAGIC, b]), 'application/vnd.kubernetes.protobuf'))), { numRuns: RUNS });
    // Bad names: 422 naming metadata.name unless the name is a valid DNS-1123 subdomain.
    await fc.assert(fc.asyncProperty(fc.oneof(fc.string({ maxLength: 70 }), fc.stringMatching(/^[a-zA-Z0-9.\-_]{1,300}$/)), async (name) => {
      const r = await req('POST', SECRETS, JSON.stringify({ metadata: { name }, data: {} }));
      tally('names', r);
      const validName = name.length <= 253 && DNS1123_SUBDOMAIN.test(name);
      if (!validName && name !== '') {
        assert.equal(r.status, 422, `${JSON.stringify(name)}: ${r.status} ${r.text}`);
        assert.match(r.json<{ message: string }>().message, /metadata\.name: Invalid value/);
      }
      if (validName) {
        assert.ok(r.status === 201 || r.status === 409, `${name}: ${r.status} ${r.text}`);
        if (r.status === 201) await apiRequest(s, 'DELETE', `${SECRETS}/${encodeURIComponent(name)}`);
      }
    }), { numRuns: RUNS });
    // Names in the URL path: 404 or 4xx, never 5xx.
    await fc.assert(fc.asyncProperty(fc.string({ minLength: 1, maxLength: 80 }), async (name) => {
      tally('path-names', await apiRequest(s, 'GET', `${SECRETS}/${encodeURIComponent(name)}`));
    }), { numRuns: RUNS });
    // Bad base64 in Secret data.
    await fc.assert(fc.asyncProperty(fc.string({ minLength: 1, maxLength: 40 }).filter((v) => !/^[A-Za-z0-9+/]*={0,2}$/.test(v) || v.length % 4 !== 0), async (v) => {
      const r = await req('POST', SECRETS, JSON.stringify({ metadata: { name: 'b64' }, data: { k: v } }));
      tally('bad-base64', r);
      assert.equal(r.status, 400, `${JSON.stringify(v)}: ${r.text}`);
      assert.match(r.json<{ message: string }>().message, /base64/);
    }), { numRuns: RUNS });
    // Wrong content types.
    await fc.assert(fc.asyncProperty(fc.constantFrom('text/plain', 'application/xml', 'multipart/form-data', 'application/x-www-form-urlencoded', 'application/octet-stream', 'image/png', 'application/json-patch+json'),
      async (ct) => {
        const r = await req('POST', SECRETS, valid, ct);
        tally('content-types', r);
        assert.equal(r.status, 415, `${ct}: ${r.text}`);
      }), { numRuns: Math.min(RUNS, 40) });

    // Huge bodies: just beyond 3 MiB with a Content-Length, and chunked without one (→ 413).
    const limit = 3 * 1024 * 1024;
    const huge = await req('POST', SECRETS, JSON.stringify({ metadata: { name: 'huge' }, data: { k: 'A'.repeat(limit) } }));
    tally('huge', huge);
    assert.equal(huge.status, 413);
    assert.equal(huge.json()['reason'], 'RequestEntityTooLarge');
    const chunked = await new Promise<HttpResult>((resolve, reject) => {
      const r = httpsRequest(new URL(SECRETS, s.url), { method: 'POST', ca: s.caPem, headers: { Authorization: `Bearer ${s.token}`, 'Content-Type': 'application/json', Accept: 'application/json' } }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => { const body = Buffer.concat(chunks); const text = body.toString(); resolve({ status: res.statusCode ?? 0, headers: res.headers, body, text, json: <T>() => JSON.parse(text) as T }); });
      });
      r.on('error', reject);
      const piece = Buffer.alloc(256 * 1024, 0x41);
      let sent = 0;
      const pump = (): void => {
        while (sent < limit + 2 * piece.length) { sent += piece.length; if (!r.write(piece)) { r.once('drain', pump); return; } }
        r.end();
      };
      pump();
    }).catch((err: Error) => ({ status: 0, text: err.message } as HttpResult));
    // The server may close the connection after answering 413 while the client still writes: EPIPE/ECONNRESET is fine.
    if (chunked.status !== 0) { tally('huge-chunked', chunked); assert.equal(chunked.status, 413); }

    // Deep nesting, within the size limit: JSON arrays/objects and YAML flow sequences.
    for (const [label, body, ct] of [
      ['json-array-1M', '['.repeat(1_000_000) + ']'.repeat(1_000_000), 'application/json'],
      ['json-object-200k', '{"metadata":'.repeat(200_000) + '{}' + '}'.repeat(200_000), 'application/json'],
      ['json-labels-100k', `{"metadata":{"name":"deep","labels":${'{"a":'.repeat(100_000)}1${'}'.repeat(100_000)}}}`, 'application/json'],
      ['json-data-100k', `{"metadata":{"name":"deep"},"data":${'['.repeat(100_000)}${']'.repeat(100_000)}}`, 'application/json'],
      ['yaml-flow-100k', '['.repeat(100_000) + ']'.repeat(100_000), 'application/yaml'],
      ['yaml-block-2k', Array.from({ length: 2000 }, (_, i) => `${' '.repeat(i)}a:`).join('\n') + ' 1', 'application/yaml'],
      ['yaml-aliases', `a: &a [x,x,x,x,x,x,x,x,x]\n${Array.from({ length: 12 }, (_, i) => `${String.fromCharCode(98 + i)}: &${String.fromCharCode(98 + i)} [${Array(9).fill(`*${String.fromCharCode(97 + i)}`).join(',')}]`).join('\n')}\n`, 'application/yaml'],
      ['merge-patch-deep', `{"metadata":{"labels":${'{"a":'.repeat(100_000)}1${'}'.repeat(100_000)}}}`, 'application/merge-patch+json'],
    ] as const) {
      const method = label.startsWith('merge-patch') ? 'PATCH' : 'POST';
      const path = method === 'PATCH' ? `${SECRETS}/deep-target` : SECRETS;
      if (method === 'PATCH') await req('POST', SECRETS, JSON.stringify({ metadata: { name: 'deep-target' } }));
      const r = await req(method, path, body, ct);
      tally(`deep:${label}`, r);
      assert.ok(r.status >= 400, `${label}: ${r.status}`);
    }

    // Alive and normal afterwards.
    const ok = await req('POST', SECRETS, JSON.stringify({ metadata: { name: 'after-fuzz' }, data: { k: 'dmFsdWU=' } }));
    assert.equal(ok.status, 201, ok.text);
    assert.equal((await apiRequest(s, 'GET', '/readyz', { token: null })).status, 200);
    console.log(`RELIABILITY ${JSON.stringify({ section: 'fuzz-http', runsPerProperty: RUNS, statusesByProperty: counts, aliveAfter: true })}`);
  } finally {
    await ts.close();
  }
});
