// The HTTP API without kubectl: auth, limits, discovery, version, openapi, protobuf bodies from real
// kubectl captures, Status errors, validation, concurrency, pagination, watch, metrics, and a value
// that fails to decrypt (500 naming it; the server goes on).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { openSqliteStore } from '../../src/storage/sqlite.js';
import type { Store } from '../../src/storage/types.js';
import { apiRequest, startTestServer, watchEvents, writeAesGcmConfig, type TestServer } from '../helpers/server.js';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';

interface Capture { m: string; path: string; ct?: string; body64?: string; body: string }
const captures = readFileSync(new URL('../fixtures/kubectl-captures/scenario_kubectl.requests.jsonl', import.meta.url), 'utf8')
  .split('\n').filter((l) => l.trim() !== '').map((l) => JSON.parse(l) as Capture);

type Obj = { metadata: Record<string, unknown>; data?: Record<string, string>; [k: string]: unknown };

describe('atrest serve over HTTPS', () => {
  let ts: TestServer;
  let store: Store;

  before(async () => {
    const dir = mkdtempSync(join(tmpdir(), 'atrest-api-http-'));
    const { path } = writeAesGcmConfig(dir);
    store = openSqliteStore(join(dir, 'store.db'));
    ts = await startTestServer({ encryptionProviderConfig: path, store, maxRequestBodyBytes: 64 * 1024, watchBookmarkIntervalMs: 100 }, dir);
  });
  after(async () => {
    await ts?.close();
  });

  const req = (method: string, path: string, options: Parameters<typeof apiRequest>[3] = {}) => apiRequest(ts.server, method, path, options);
  const post = (path: string, body: unknown, query = '') => req('POST', path + query, { body: JSON.stringify(body) });

  test('anonymous requests get a 401 Status except /healthz, /livez, /readyz and /version', async () => {
    const r = await req('GET', '/api/v1/secrets', { token: null });
    assert.equal(r.status, 401);
    assert.deepEqual(r.json(), { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: 'Unauthorized', reason: 'Unauthorized', code: 401 });
    assert.equal((await req('GET', '/api', { token: 'wrong' })).status, 401);
    assert.equal((await req('GET', '/metrics', { token: null })).status, 401);
    for (const p of ['/healthz', '/livez', '/readyz']) {
      const h = await req('GET', p, { token: null });
      assert.equal(h.status, 200, p);
      assert.equal(h.text, 'ok');
    }
    const v = await req('GET', '/version', { token: null });
    assert.equal(v.json()['minor'], '32', 'the gcloud dispatcher picks kubectl 1.32 only for minor "32"');
    assert.match(String(v.json()['gitVersion']), /^v1\.32\.\d+-atrest/);
  });

  test('discovery (legacy and aggregated), openapi, empty events list', async () => {
    const agg = await req('GET', '/api', { headers: { Accept: 'application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json' } });
    assert.equal(agg.headers['content-type'], 'application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList');
    const resources = (agg.json() as { items: Array<{ versions: Array<{ resources: Array<{ resource: string; shortNames?: string[] }> }> }> }).items[0]?.versions[0]?.resources ?? [];
    assert.deepEqual(resources.map((r) => r.resource).sort(), ['configmaps', 'namespaces', 'secrets']);
    assert.equal((await req('GET', '/api')).json()['kind'], 'APIVersions');
    assert.equal((await req('GET', '/apis')).json()['kind'], 'APIGroupList');
    const v1 = (await req('GET', '/api/v1')).json() as { resources: Array<{ name: string; namespaced: boolean; shortNames?: string[] }> };
    assert.deepEqual(v1.resources.find((r) => r.name === 'configmaps')?.shortNames, ['cm']);
    const o2 = await req('GET', '/openapi/v2');
    assert.equal(o2.status, 200);
    assert.equal(o2.body.length, 0);
    assert.equal(o2.headers['content-type'], 'application/com.github.proto-openapi.spec.v2.v1.0+protobuf');
    assert.equal((await req('GET', '/openapi/v3')).status, 404);
    const ev = await req('GET', '/api/v1/namespaces/default/events?fieldSelector=involvedObject.name%3Dx');
    assert.deepEqual(ev.json()['items'], []);
    const nf = await req('GET', '/api/v1/pods');
    assert.equal(nf.status, 404);
    assert.equal(nf.json()['message'], 'the server could not find the requested resource');
  });

  test('protobuf bodies captured from kubectl 1.32 create a Secret and a Namespace', async () => {
    const pb = captures.filter((c) => c.ct === 'application/vnd.kubernetes.protobuf' && c.body64);
    const secret = pb.find((c) => c.path === '/api/v1/namespaces/default/secrets') as Capture;
    const r = await req('POST', `${secret.path}?fieldManager=kubectl-create&fieldValidation=Strict`, {
      body: Buffer.from(secret.body64 as string, 'base64'),
      headers: { 'Content-Type': 'application/vnd.kubernetes.protobuf', Accept: 'application/vnd.kubernetes.protobuf,application/json' },
    });
    assert.equal(r.status, 201, r.text);
    const obj = r.json() as Obj;
    assert.equal(obj.metadata['name'], 'secret1');
    assert.deepEqual(obj.data, { mykey: 'bXlkYXRh' });
    assert.equal(obj['type'], 'Opaque', 'type "" defaults to Opaque');
    const ns = pb.find((c) => c.path === '/api/v1/namespaces') as Capture;
    const n = await req('POST', ns.path, { body: Buffer.from(ns.body64 as string, 'base64'), headers: { 'Content-Type': 'application/vnd.kubernetes.protobuf' } });
    assert.equal(n.status, 201, n.text);
    assert.deepEqual((n.json() as Obj)['status'], { phase: 'Active' });
    const bad = await req('POST', '/api/v1/namespaces/default/secrets', { body: 'not protobuf', headers: { 'Content-Type': 'application/vnd.kubernetes.protobuf' } });
    assert.equal(bad.status, 400);
  });

  test('a body that is not JSON: 400 with the parser\'s reason, never an excerpt of the body', async () => {
    const r = await req('POST', '/api/v1/namespaces/default/secrets', { body: '{"metadata":{"name":"x"},"stringData":{"k":"never-echo-this-value"}, tru}' });
    assert.equal(r.status, 400);
    assert.match(String(r.json()['message']), /^the body of the request could not be decoded as JSON: /);
    assert.doesNotMatch(r.text, /never-echo|this-value|tru\}/);
  });

  test('create: python-style bodies, stringData, validation, strict and warn unknown fields, dryRun', async () => {
    const r = await post('/api/v1/namespaces/default/secrets', { metadata: { name: 'py', labels: { a: 'b' } }, stringData: { k: 'v' }, data: { d: 'ZA==' } });
    assert.equal(r.status, 201, r.text);
    const obj = r.json() as Obj;
    assert.equal(obj['kind'], 'Secret');
    assert.deepEqual(obj.data, { d: 'ZA==', k: 'dg==' });
    assert.equal(obj['stringData'], undefined);
    assert.match(String(obj.metadata['creationTimestamp']), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);

    const dup = await post('/api/v1/namespaces/default/secrets', { metadata: { name: 'py' } });
    assert.equal(dup.status, 409);
    assert.equal(dup.json()['reason'], 'AlreadyExists');
    assert.equal(dup.json()['message'], 'secrets "py" already exists');

    const badKey = await post('/api/v1/namespaces/default/configmaps', { metadata: { name: 'cm' }, data: { 'bad key': 'x' } });
    assert.equal(badKey.status, 422);
    assert.equal(badKey.json()['reason'], 'Invalid');
    assert.match(String(badKey.json()['message']), /^ConfigMap "cm" is invalid: data\[bad key\]: Invalid value: "bad key": a valid config key must consist of alphanumeric characters/);
    const noName = await post('/api/v1/namespaces/default/configmaps', { metadata: {} });
    assert.equal(noName.status, 422);
    assert.match(String(noName.json()['message']), /metadata.name: Required value: name or generateName is required/);
    const badB64 = await post('/api/v1/namespaces/default/secrets', { metadata: { name: 'b64' }, data: { k: 'not base64!' } });
    assert.equal(badB64.status, 400);
    assert.match(String(badB64.json()['message']), /illegal base64 data at input byte/);
    const tls = await post('/api/v1/namespaces/default/secrets', { metadata: { name: 'tls' }, type: 'kubernetes.io/tls', data: { 'tls.crt': 'YQ==' } });
    assert.equal(tls.status, 422);
    assert.equal(tls.json()['message'], 'Secret "tls" is invalid: data[tls.key]: Required value');
    const badNs = await post('/api/v1/namespaces', { metadata: { name: 'Not.A.Label' } });
    assert.equal(badNs.status, 422);
    const wrongNs = await post('/api/v1/namespaces/default/configmaps', { metadata: { name: 'x', namespace: 'other' } });
    assert.equal(wrongNs.status, 400);
    assert.equal(wrongNs.json()['message'], 'the namespace of the provided object does not match the namespace sent on the request');

    const strict = await post('/api/v1/namespaces/default/configmaps', { metadata: { name: 'u', bogus: 1 }, foo: 'bar' }, '?fieldValidation=Strict');
    assert.equal(strict.status, 400);
    assert.equal(strict.json()['message'], 'ConfigMap in version "v1" cannot be handled as a ConfigMap: strict decoding error: unknown field "metadata.bogus", unknown field "foo"');
    const warn = await post('/api/v1/namespaces/default/configmaps', { metadata: { name: 'u' }, foo: 'bar' });
    assert.equal(warn.status, 201);
    assert.equal(warn.headers['warning'], '299 - "unknown field \\"foo\\""');
    assert.equal((warn.json() as Obj)['foo'], undefined);

    const dry = await post('/api/v1/namespaces/default/configmaps', { metadata: { name: 'dry' } }, '?dryRun=All');
    assert.equal(dry.status, 201);
    assert.equal((await req('GET', '/api/v1/namespaces/default/configmaps/dry')).status, 404);

    const big = await post('/api/v1/namespaces/default/configmaps', { metadata: { name: 'big' }, data: { k: 'x'.repeat(70 * 1024) } });
    assert.equal(big.status, 413);
    assert.equal(big.json()['reason'], 'RequestEntityTooLarge');
  });

  test('update: unchanged PUT keeps resourceVersion, stale one gets 409, unconditional PUT works; patches', async () => {
    const created = (await post('/api/v1/namespaces/default/configmaps', { metadata: { name: 'upd' }, data: { a: '1' } })).json() as Obj;
    const rv = created.metadata['resourceVersion'];
    const same = await req('PUT', '/api/v1/namespaces/default/configmaps/upd', { body: JSON.stringify(created) });
    assert.equal(same.status, 200);
    assert.equal((same.json() as Obj).metadata['resourceVersion'], rv);
    const changed = await req('PUT', '/api/v1/namespaces/default/configmaps/upd', { body: JSON.stringify({ ...created, data: { a: '2' } }) });
    assert.notEqual((changed.json() as Obj).metadata['resourceVersion'], rv);
    const stale = await req('PUT', '/api/v1/namespaces/default/configmaps/upd', { body: JSON.stringify({ ...created, data: { a: '3' } }) });
    assert.equal(stale.status, 409);
    assert.equal(stale.json()['message'], 'Operation cannot be fulfilled on configmaps "upd": the object has been modified; please apply your changes to the latest version and try again');
    const unconditional = await req('PUT', '/api/v1/namespaces/default/configmaps/upd', { body: JSON.stringify({ metadata: { name: 'upd' }, data: { a: '4' } }) });
    assert.equal(unconditional.status, 200);
    assert.equal((unconditional.json() as Obj).metadata['uid'], created.metadata['uid'], 'uid is kept');
    const nameMismatch = await req('PUT', '/api/v1/namespaces/default/configmaps/upd', { body: JSON.stringify({ metadata: { name: 'other' } }) });
    assert.equal(nameMismatch.status, 400);
    assert.equal((await req('PUT', '/api/v1/namespaces/default/configmaps/none', { body: JSON.stringify({ metadata: { name: 'none' } }) })).status, 404);

    const smp = await req('PATCH', '/api/v1/namespaces/default/configmaps/upd', {
      body: JSON.stringify({ metadata: { finalizers: ['example.com/f1'], labels: { l: 'v' } }, data: { a: null, b: '2' } }),
      headers: { 'Content-Type': 'application/strategic-merge-patch+json' },
    });
    assert.equal(smp.status, 200, smp.text);
    assert.deepEqual((smp.json() as Obj).data, { b: '2' });
    const smp2 = await req('PATCH', '/api/v1/namespaces/default/configmaps/upd', {
      body: JSON.stringify({ metadata: { $setElementOrder: undefined, finalizers: ['example.com/f2'], '$deleteFromPrimitiveList/finalizers': ['example.com/f1'] } }),
      headers: { 'Content-Type': 'application/strategic-merge-patch+json' },
    });
    assert.deepEqual((smp2.json() as Obj).metadata['finalizers'], ['example.com/f2'], 'finalizers merge; $deleteFromPrimitiveList removes');
    const unsupported = await req('PATCH', '/api/v1/namespaces/default/configmaps/upd', { body: '{}', headers: { 'Content-Type': 'text/plain' } });
    assert.equal(unsupported.status, 415);
    const missing = await req('PATCH', '/api/v1/namespaces/default/configmaps/nope', { body: '{}', headers: { 'Content-Type': 'application/merge-patch+json' } });
    assert.equal(missing.status, 404);
  });

  test('immutable secrets, generateName, delete preconditions and dryRun in the body, namespace rules', async () => {
    const imm = (await post('/api/v1/namespaces/default/secrets', { metadata: { name: 'imm' }, data: { a: 'YQ==' }, immutable: true })).json() as Obj;
    const change = await req('PATCH', '/api/v1/namespaces/default/secrets/imm', { body: '{"data":{"a":"Yg=="}}', headers: { 'Content-Type': 'application/merge-patch+json' } });
    assert.equal(change.status, 422);
    assert.match(String(change.json()['message']), /data: Forbidden: field is immutable when `immutable` is set/);
    const labelOnly = await req('PATCH', '/api/v1/namespaces/default/secrets/imm', { body: '{"metadata":{"labels":{"ok":"yes"}}}', headers: { 'Content-Type': 'application/merge-patch+json' } });
    assert.equal(labelOnly.status, 200, 'metadata of an immutable secret may change');

    const gen = (await post('/api/v1/namespaces/default/configmaps', { metadata: { generateName: 'gen-' } })).json() as Obj;
    assert.match(String(gen.metadata['name']), /^gen-[bcdfghjklmnpqrstvwxz2456789]{5}$/);

    const wrongUid = await req('DELETE', '/api/v1/namespaces/default/secrets/imm', { body: JSON.stringify({ preconditions: { uid: 'not-the-uid' } }) });
    assert.equal(wrongUid.status, 409);
    const dry = await req('DELETE', '/api/v1/namespaces/default/secrets/imm', { body: JSON.stringify({ dryRun: ['All'] }) });
    assert.equal(dry.status, 200);
    assert.equal((await req('GET', '/api/v1/namespaces/default/secrets/imm')).status, 200, 'dryRun in the DELETE body deletes nothing');
    const del = await req('DELETE', '/api/v1/namespaces/default/secrets/imm', { body: JSON.stringify({ preconditions: { uid: imm.metadata['uid'] } }) });
    assert.deepEqual(del.json(), { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Success', details: { name: 'imm', kind: 'secrets', uid: imm.metadata['uid'] } });

    assert.equal((await req('DELETE', '/api/v1/namespaces/kube-system')).status, 403);
    await post('/api/v1/namespaces', { metadata: { name: 'doomed' } });
    await post('/api/v1/namespaces/doomed/secrets', { metadata: { name: 's' } });
    const ns = await req('DELETE', '/api/v1/namespaces/doomed', { body: '{"propagationPolicy":"Background"}' });
    assert.equal(ns.status, 200);
    assert.equal(((ns.json() as Obj)['status'] as { phase: string }).phase, 'Terminating');
    assert.ok((ns.json() as Obj).metadata['deletionTimestamp']);
    assert.equal((await req('GET', '/api/v1/namespaces/doomed')).status, 404);
    assert.equal((await req('GET', '/api/v1/namespaces/doomed/secrets/s')).status, 404);
    assert.equal((await store.list('/registry/secrets/doomed/')).items.length, 0, 'the contents are gone from the store');
  });

  test('list with limit/continue at a consistent revision; label and field selectors; table', async () => {
    await post('/api/v1/namespaces', { metadata: { name: 'pages' } });
    for (let i = 0; i < 5; i++) await post('/api/v1/namespaces/pages/configmaps', { metadata: { name: `cm${i}`, labels: { even: String(i % 2 === 0) } } });
    const names: string[] = [];
    let cont = '';
    let first: string | undefined;
    for (let pages = 0; pages < 10; pages++) {
      const r = (await req('GET', `/api/v1/namespaces/pages/configmaps?limit=2${cont ? `&continue=${encodeURIComponent(cont)}` : ''}`)).json() as { metadata: { continue?: string; resourceVersion: string }; items: Obj[] };
      first ??= r.metadata.resourceVersion;
      names.push(...r.items.map((i) => i.metadata['name'] as string));
      if (pages === 0) await post('/api/v1/namespaces/pages/configmaps', { metadata: { name: 'cm9-late' } });
      if (!r.metadata.continue) break;
      assert.equal(r.metadata.resourceVersion, first, 'every page is read at the first page\'s revision');
      cont = r.metadata.continue;
    }
    assert.deepEqual(names, ['cm0', 'cm1', 'cm2', 'cm3', 'cm4']);
    const even = (await req('GET', '/api/v1/namespaces/pages/configmaps?labelSelector=even%3Dtrue')).json() as { items: Obj[] };
    assert.deepEqual(even.items.map((i) => i.metadata['name']), ['cm0', 'cm2', 'cm4']);
    const byName = (await req('GET', '/api/v1/configmaps?fieldSelector=metadata.name%3Dcm3')).json() as { kind: string; items: Obj[] };
    assert.equal(byName.kind, 'ConfigMapList');
    assert.deepEqual(byName.items.map((i) => i.metadata['namespace']), ['pages']);
    const table = await req('GET', '/api/v1/namespaces/pages/configmaps', { headers: { Accept: 'application/json;as=Table;v=v1;g=meta.k8s.io,application/json' } });
    const t = table.json() as { kind: string; columnDefinitions: Array<{ name: string }>; rows: Array<{ cells: unknown[]; object: { kind: string } }> };
    assert.equal(t.kind, 'Table');
    assert.deepEqual(t.columnDefinitions.map((c) => c.name), ['Name', 'Data', 'Age']);
    assert.equal(t.rows[0]?.object.kind, 'PartialObjectMetadata');
    assert.deepEqual(t.rows[0]?.cells.slice(0, 2), ['cm0', 0]);
  });

  test('a list without limit is streamed whole at one revision; bad values on any page fail it with one 500 naming them all', async () => {
    await post('/api/v1/namespaces', { metadata: { name: 'bulk' } });
    // More than two of the server's internal pages (LIST_STREAM_PAGE = 500), written as plaintext
    // JSON (identity is the config's read fallback) so the test does not wait on 1,100 creates.
    const total = 1100;
    for (let i = 0; i < total; i++) {
      const name = `cm-${String(i).padStart(4, '0')}`;
      await store.create(`/registry/configmaps/bulk/${name}`, Buffer.from(JSON.stringify({ kind: 'ConfigMap', apiVersion: 'v1', metadata: { name, namespace: 'bulk', uid: `u-${i}`, creationTimestamp: '2026-11-28T00:00:00Z' }, data: { i: String(i) } })));
    }
    const whole = await req('GET', '/api/v1/namespaces/bulk/configmaps');
    assert.equal(whole.status, 200);
    assert.equal(whole.headers['content-type'], 'application/json');
    const list = whole.json() as { kind: string; apiVersion: string; metadata: { resourceVersion: string; continue?: string }; items: Obj[] };
    assert.deepEqual(Object.keys(list), ['kind', 'apiVersion', 'metadata', 'items']);
    assert.equal(list.kind, 'ConfigMapList');
    assert.equal(list.metadata.continue, undefined);
    assert.equal(list.items.length, total);
    assert.deepEqual(list.items.map((o) => o.data?.['i']), Array.from({ length: total }, (_, i) => String(i)), 'every object once, in key order');
    assert.equal(list.items[0]?.['kind'], undefined, 'items carry no kind inside a list');
    assert.equal(list.items[0]?.metadata['resourceVersion'] !== undefined, true);
    // The same list through limit/continue pages gives the same objects.
    const paged = (await req('GET', '/api/v1/namespaces/bulk/configmaps?limit=700')).json() as { metadata: { continue?: string }; items: Obj[] };
    assert.ok(paged.metadata.continue);
    assert.deepEqual(paged.items, list.items.slice(0, 700));
    const selected = (await req('GET', '/api/v1/namespaces/bulk/configmaps?fieldSelector=metadata.name%3Dcm-1042')).json() as { items: Obj[] };
    assert.deepEqual(selected.items.map((o) => o.metadata['name']), ['cm-1042'], 'selectors apply across pages');

    // Values that do not decrypt, one on the first page and one beyond it: one 500 naming both
    // (KEP-3926), never a short 200 list; selectors do not hide them (they apply after decryption).
    await store.create('/registry/configmaps/bulk/aa-broken', Buffer.from('k8s:enc:aesgcm:v1:key1:not-a-valid-ciphertext'));
    await store.create('/registry/configmaps/bulk/zz-broken', Buffer.from('k8s:enc:aesgcm:v1:key1:not-a-valid-ciphertext'));
    for (const query of ['', '?fieldSelector=metadata.name%3Dcm-0001']) {
      const bad = await req('GET', `/api/v1/namespaces/bulk/configmaps${query}`);
      assert.equal(bad.status, 500, bad.text);
      assert.equal(bad.json()['reason'], 'StoreReadError');
      const causes = (bad.json()['details'] as { causes: Array<{ field: string }> }).causes;
      assert.deepEqual(causes.map((c) => c.field), ['/registry/configmaps/bulk/aa-broken', '/registry/configmaps/bulk/zz-broken']);
      assert.match(String(bad.json()['message']), /\/registry\/configmaps\/bulk\/aa-broken: .*\/registry\/configmaps\/bulk\/zz-broken: /);
      assert.doesNotMatch(bad.text, /not-a-valid-ciphertext/);
    }
    await store.delete('/registry/configmaps/bulk/aa-broken');
    await store.delete('/registry/configmaps/bulk/zz-broken');
    assert.equal((await req('GET', '/api/v1/namespaces/bulk/configmaps')).status, 200, 'the server keeps serving');
  });

  test('watch streams ADDED, MODIFIED, DELETED as JSON lines from a resourceVersion', async () => {
    const list = (await req('GET', '/api/v1/namespaces/default/secrets')).json() as { metadata: { resourceVersion: string } };
    const w = watchEvents(ts.server, `/api/v1/namespaces/default/secrets?watch=true&resourceVersion=${list.metadata.resourceVersion}&timeoutSeconds=30`, 3);
    await w.ready;
    await post('/api/v1/namespaces/default/secrets', { metadata: { name: 'w1' }, stringData: { a: 'b' } });
    await req('PATCH', '/api/v1/namespaces/default/secrets/w1', { body: '{"metadata":{"labels":{"x":"y"}}}', headers: { 'Content-Type': 'application/merge-patch+json' } });
    await req('DELETE', '/api/v1/namespaces/default/secrets/w1', { body: '' });
    const events = await w.events;
    assert.deepEqual(events.map((e) => `${e.type} ${String(e.object.metadata['name'])}`), ['ADDED w1', 'MODIFIED w1', 'DELETED w1']);
    assert.equal(events[0]?.object['kind'], 'Secret');
    assert.ok(Number(events[2]?.object.metadata['resourceVersion']) > Number(events[1]?.object.metadata['resourceVersion']));
  });

  test('a value that fails to decrypt: 500 naming the key for get and list; the rest keeps working', async () => {
    await store.create('/registry/secrets/default/broken', Buffer.from('k8s:enc:aesgcm:v1:key1:this-is-not-a-valid-ciphertext'));
    const r = await req('GET', '/api/v1/namespaces/default/secrets/broken');
    assert.equal(r.status, 500);
    assert.equal(r.json()['reason'], 'InternalError');
    assert.match(String(r.json()['message']), /\/registry\/secrets\/default\/broken/);
    assert.doesNotMatch(String(r.json()['message']), /this-is-not/);
    assert.equal((await req('GET', '/api/v1/namespaces/default/secrets')).status, 500);
    assert.equal((await req('GET', '/api/v1/namespaces/default/secrets/py')).status, 200);
    const del = await req('DELETE', '/api/v1/namespaces/default/secrets/broken');
    assert.equal(del.status, 500, 'delete reads the object first, like kube');
    await store.delete('/registry/secrets/default/broken');
    assert.equal((await req('GET', '/api/v1/namespaces/default/secrets')).status, 200);
  });

  test('a watch from a compacted resourceVersion gets an ERROR event with 410 Expired', async () => {
    await post('/api/v1/namespaces/default/configmaps', { metadata: { name: 'compact-me' } });
    await req('DELETE', '/api/v1/namespaces/default/configmaps/compact-me');
    await (store.compact as (rev: number) => Promise<void>)(await store.revision());
    const r = await req('GET', '/api/v1/namespaces/default/configmaps?watch=1&resourceVersion=2&timeoutSeconds=5');
    assert.equal(r.status, 200);
    const ev = JSON.parse(r.text.split('\n')[0] as string) as { type: string; object: { code: number; reason: string } };
    assert.equal(ev.type, 'ERROR');
    assert.equal(ev.object.code, 410);
    assert.equal(ev.object.reason, 'Expired');
  });

  test('stored values: protobuf (kube-apiserver\'s default) is read; garbage is a 500 naming the key', async () => {
    // A Namespace in kube's protobuf encoding (the kubectl capture of `create namespace x`).
    await store.create('/registry/namespaces/x-proto', Buffer.from('azhzAAoPCgJ2MRIJTmFtZXNwYWNlEhkKEQoBeBIAGgAiACoAMgA4AEIAEgAaAgoAGgAiAA==', 'base64'));
    const proto = await req('GET', '/api/v1/namespaces/x-proto');
    assert.equal(proto.status, 200, proto.text);
    assert.equal((proto.json() as Obj).metadata['name'], 'x');
    await store.create('/registry/namespaces/not-json', Buffer.from('k8s\u0000garbage-bytes'));
    const r = await req('GET', '/api/v1/namespaces/not-json');
    assert.equal(r.status, 500);
    assert.match(String(r.json()['message']), /\/registry\/namespaces\/not-json is not a JSON object/);
    await store.delete('/registry/namespaces/not-json');
    await store.delete('/registry/namespaces/x-proto');
  });

  test('watch with allowWatchBookmarks gets BOOKMARK events carrying the reached resourceVersion; timeoutSeconds ends it', async () => {
    const r = await req('GET', '/api/v1/namespaces/kube-system/configmaps?watch=true&allowWatchBookmarks=true&timeoutSeconds=2');
    assert.equal(r.status, 200);
    const events = r.text.trim().split('\n').map((l) => JSON.parse(l) as { type: string; object: Obj });
    const bookmarks = events.filter((e) => e.type === 'BOOKMARK');
    assert.ok(bookmarks.length >= 1, r.text);
    assert.equal(bookmarks[0]?.object['kind'], 'ConfigMap');
    assert.ok(Number(bookmarks[0]?.object.metadata['resourceVersion']) >= 1);
  });

  test('metrics count requests by verb, resource and code', async () => {
    const m = await req('GET', '/metrics');
    assert.equal(m.status, 200);
    assert.match(m.text, /apiserver_request_total\{verb="POST",resource="secrets",code="201"\} \d+/);
    assert.match(m.text, /apiserver_request_total\{verb="GET",resource="secrets",code="500"\} \d+/);
    assert.match(m.text, /apiserver_request_total\{verb="WATCH",resource="secrets",code="200"\} 1\n/);
    assert.match(m.text, /apiserver_request_duration_seconds_bucket\{le="[^"]+",verb="LIST",resource="configmaps"\}/);
    assert.match(m.text, /apiserver_storage_transformation_operations_total\{transformation_type="to_storage",transformer_prefix="k8s:enc:aesgcm:v1:",status="OK"\} \d+/);
    assert.match(m.text, /apiserver_storage_transformation_operations_total\{transformation_type="from_storage",transformer_prefix="identity",status="OK"\} \d+/);
    assert.match(m.text, /apiserver_storage_transformation_operations_total\{transformation_type="from_storage",transformer_prefix="k8s:enc:aesgcm:v1:",status="Unknown"\} \d+/);
  });
});
